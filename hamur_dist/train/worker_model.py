"""Everything one worker holds for its model: modules, DDP wrapper, optimisers, precision.

The loop talks to this object only (forward, backward_step, checkpoint state), so replicated
and sharded embedding tables are a choice made here, not in the loop or the model code.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hamur_dist.config import ExperimentConfig
from hamur_dist.config_loader import to_dict
from hamur_dist.console import say
from hamur_dist.data.manifest import Manifest
from hamur_dist.model import build_model, embedding_specs
from hamur_dist.fileio import atomic_torch_save
from hamur_dist.train.checkpoint import STATE


ADAPTER_PREFIX = "hamur."     # the hyper-network and adapter cells of a model with HAMUR


def adapters_scaled(cfg: ExperimentConfig) -> bool:
    h = cfg.model.hamur
    return h.enabled and (h.lr_scale != 1.0 or h.weight_decay_scale != 1.0)


def make_optimizer(named_params: list, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """One parameter group, or two when the HAMUR parameters train at scaled lr / weight decay
    (``named_params`` then lists the others first; each group's ``lr_scale`` is kept for the schedule)."""
    t, h = cfg.train, cfg.model.hamur
    if adapters_scaled(cfg):
        groups = [{"params": [p for n, p in named_params if not n.startswith(ADAPTER_PREFIX)]},
                  {"params": [p for n, p in named_params if n.startswith(ADAPTER_PREFIX)], "lr": t.lr * h.lr_scale,
                   "lr_scale": h.lr_scale, "weight_decay": t.weight_decay * h.weight_decay_scale}]
    else:
        groups = [{"params": [p for _, p in named_params]}]
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(groups, lr=t.lr, weight_decay=t.weight_decay, momentum=0.9)


class WorkerModel:
    def __init__(self, cfg: ExperimentConfig, manifest: Manifest, rank: int, world: int, init=None):
        """``init``: a ``warm_start.InitSource`` to start from (train.init_from), or None."""
        self.cfg, self.manifest, self.rank, self.world = cfg, manifest, rank, world
        self.device = self._device()
        self.sharded, self.sparse_optimizer = self._sharded_tables()
        self.model = build_model(cfg.model, manifest.schema, embedding=self.sharded).to(self.device)
        self.frozen, self.init_report = None, None
        if init is not None:   # before DDP, whose construction broadcasts rank 0's weights
            from hamur_dist.train.warm_start import load_weights
            self.init_report = load_weights(self, init)
            if cfg.train.trainable == "new_domains":
                self.frozen = self._freeze_old_parts(init.old_num_domains)
                if rank == 0:
                    say(f"[hamur] {self.frozen.summary()}")
        if world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Searching the graph for unused parameters costs every step; needed only for a model
            # that leaves some parameters out of a step (routing keeps absent domains in the graph).
            # gradient_as_bucket_view: gradients live in DDP's buckets (no copy in and out each step)
            self.wrapped = DistributedDataParallel(self.model, device_ids=ids, gradient_as_bucket_view=True,
                                                   find_unused_parameters=not self._every_parameter_used())
        else:
            self.wrapped = self.model
        self.optimizer = make_optimizer(self.optimizer_named_parameters(), cfg)
        if init is not None:
            from hamur_dist.train.warm_start import load_optimizer_state
            load_optimizer_state(self, init, self.init_report)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                         if cfg.train.precision == "bf16" and self.device.type == "cuda" else contextlib.nullcontext())

    def _freeze_old_parts(self, old_num_domains: int):
        """Only the new domains' parts train, and the rows a grown table added (ids only new logs have:
        old ids keep their rows, so old predictions stay as they were). Sparse-update tables stay frozen."""
        from hamur_dist.model.freeze import freeze_all_but_new_domains

        rows = {table: old for table, (old, _) in self.init_report.tables.items()}
        if self.manifest.domain_feature:
            rows[self.manifest.domain_feature] = old_num_domains + 1
        sparse = set(self.sharded.sparse_table_names()) if self.sharded is not None else set()
        frozen = freeze_all_but_new_domains(self.model, old_num_domains,
                                            {t: r for t, r in rows.items() if t not in sparse})
        if "hyper_network" in self.cfg.train.unfreeze:
            if getattr(self.model, "hamur", None) is None:
                raise ValueError("train.unfreeze: hyper_network, but the model has no HAMUR adapters")
            frozen.unfreeze("hamur.hyper")
        return frozen

    def _every_parameter_used(self) -> bool:
        """Whether a training step on a batch of one domain gives every parameter a gradient. Every
        rank runs it (sharded lookups are collectives); it leaves no trace: buffers, RNG, gradients."""
        batch = self.dummy_batch()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self.keep_buffers(enabled=True):
            self.train()
            logits = self.model(batch["sparse"].to(self.device), batch["dense"].to(self.device),
                                batch["domain"].to(self.device))
            logits.float().sum().backward()
        used = all(p.grad is not None for p in self.model.parameters() if p.requires_grad)
        self.model.zero_grad(set_to_none=True)
        self.discard_lookups()
        return used

    def _sharded_tables(self):
        """Tables split across workers or updated row-sparsely (hamur_dist.embedding); None when every
        table is replicated with dense updates."""
        from hamur_dist.embedding import ShardedEmbeddingCollection, SparseRowOptimizer, plan_sharding

        specs = embedding_specs(self.cfg.model, self.manifest.schema)
        plan = plan_sharding(specs, self.world, self.cfg.embedding, batch_size=self.cfg.data.batch_size)
        if not plan.any_sparse:
            return None, None
        if self.rank == 0:
            say(f"embedding plan:\n{plan.describe()}")
        # A process group of its own: the lookups' blocking all-to-alls must not interleave with
        # DDP's asynchronous gradient all-reduces on the default group.
        timeout = timedelta(seconds=self.cfg.train.collective_timeout_s)
        group = dist.new_group(list(range(self.world)), timeout=timeout) if self.world > 1 else None
        emb = ShardedEmbeddingCollection(specs, plan, self.rank, self.world, init_std=self.cfg.model.embed_init_std,
                                         process_group=group, device=self.device, init_seed=self.cfg.train.seed)
        return emb, SparseRowOptimizer.from_config(emb, self.cfg.embedding, self.cfg.train)

    def table_bytes(self) -> int:
        """Bytes of embedding tables held by this worker."""
        if self.sharded is not None:
            return self.sharded.local_bytes()
        return sum(t.weight.numel() * t.weight.element_size() for t in self.model.embedding.tables.values())

    def _device(self) -> torch.device:
        if self.cfg.train.use_gpu and torch.cuda.is_available():
            try:
                import ray.train.torch
                return ray.train.torch.get_device()
            except Exception:
                return torch.device("cuda", 0)
        return torch.device("cpu")

    def optimizer_named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The dense optimiser's parameters by name, in its order (only the trainable ones when frozen;
        the HAMUR parameters last when they have a parameter group of their own)."""
        named = (self.frozen.named_trainable_parameters() if self.frozen is not None
                 else list(self.model.named_parameters()))
        if adapters_scaled(self.cfg):
            named.sort(key=lambda item: item[0].startswith(ADAPTER_PREFIX))    # stable: model order within each
        return named

    # --- steps -------------------------------------------------------------------------------
    def train(self):
        if self.frozen is not None:
            self.frozen.train_mode(self.model)     # frozen parts keep their BatchNorm statistics
        else:
            self.model.train()

    def eval(self):
        self.model.eval()

    def forward(self, batch: dict) -> torch.Tensor:
        module = self.wrapped if self.model.training else self.model  # no DDP sync in eval
        with self.autocast:
            return module(batch["sparse"], batch["dense"], batch["domain"])

    def dummy_batch(self, rows: int = 2) -> dict:
        """A valid filler batch (id 0, domain 0) for a worker whose share of a pass is empty."""
        slots = sum(getattr(f, "max_len", 1) for f in self.manifest.sparse)     # multi_hot: max_len columns
        return {"sparse": torch.zeros(rows, slots, dtype=torch.long),
                "dense": torch.zeros(rows, len(self.manifest.dense)),
                "domain": torch.zeros(rows, dtype=torch.long), "label": torch.zeros(rows),
                "user": torch.zeros(rows, dtype=torch.long)}

    @contextlib.contextmanager
    def keep_buffers(self, enabled: bool):
        """Restore buffers (BatchNorm running statistics) after the block when ``enabled``."""
        if not enabled:
            yield
            return
        saved = [b.detach().clone() for b in self.model.buffers()]
        try:
            yield
        finally:
            with torch.no_grad():
                for b, s in zip(self.model.buffers(), saved):
                    b.copy_(s)

    def set_epoch_lr(self, epoch: int) -> float:
        """Learning rates for this epoch: the configured ones times ``train.lr_decay ** epoch``.
        Derived from the epoch alone, so a resumed run continues on the same schedule."""
        factor = self.cfg.train.lr_decay ** epoch
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.train.lr * factor * group.get("lr_scale", 1.0)
        if self.sparse_optimizer is not None:
            base = self.cfg.embedding.sparse_lr if self.cfg.embedding.sparse_lr is not None else self.cfg.train.lr
            self.sparse_optimizer.hparams["lr"] = base * factor
        return self.cfg.train.lr * factor

    def backward_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.frozen is not None:
            self.frozen.restore()          # frozen rows of partly trainable tensors, exactly as they were
        if self.sparse_optimizer is not None:
            if self.frozen is not None:
                self.sparse_optimizer.zero_grad()   # sparse tables are shared parts: frozen
            else:
                self.sparse_optimizer.step()   # the rows this step touched, on their owners

    def discard_lookups(self) -> None:
        """Forget sharded lookups made without a backward (evaluation)."""
        if self.sparse_optimizer is not None:
            self.sparse_optimizer.zero_grad()

    # --- state -------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """What a checkpoint must match to be loaded: model config and data layout."""
        m = self.manifest
        # fields added later enter only when they matter, so older checkpoints keep matching
        layout = json.dumps({"sparse": [(f.name, f.vocab_size, *((f.max_len,) if f.multi_hot else ()))
                                        for f in m.sparse],
                             "dense": [f.name for f in m.dense], "domains": m.domain.num_domains}, sort_keys=True)
        sharded = self.sharded.sparse_table_names() if self.sharded is not None else []   # kept in shard files
        model = to_dict(self.cfg.model)
        if not any(f.multi_hot for f in m.sparse):
            model.pop("multi_hot_pooling", None)
        found = {"model": json.dumps(model, sort_keys=True),
                 "data_layout": hashlib.sha256(layout.encode()).hexdigest()[:16],
                 "sharded_tables": ",".join(sharded)}
        if self.cfg.train.trainable != "all":   # another set of optimised parameters
            found["trainable"] = self.cfg.train.trainable + "".join(f"+{u}" for u in self.cfg.train.unfreeze)
        return found

    def save_checkpoint(self, directory: str, loop_state: dict) -> bool:
        """Write this rank's part of a checkpoint; returns whether it wrote anything.

        Rank 0 writes the dense model, its optimiser and the loop state; with sharded tables every
        rank also writes its own rows and their optimiser state (any world size can load them).
        """
        wrote = False
        if self.rank == 0:
            names = [name for name, _ in self.optimizer_named_parameters()]   # a warm start maps state by name
            atomic_torch_save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                               "param_names": names, "world_size": self.world, **loop_state},
                              Path(directory) / STATE)
            wrote = True
        if self.sharded is not None:
            from hamur_dist.embedding import save_shard
            save_shard(self.sharded, self.sparse_optimizer, directory)
            wrote = True
        return wrote

    def load_checkpoint(self, directory: str, state: dict, with_optimizer: bool = True) -> None:
        self.model.load_state_dict(state["model"])
        if with_optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.sharded is not None:
            from hamur_dist.embedding import load_shards
            load_shards(self.sharded, self.sparse_optimizer if with_optimizer else None, directory)

    def full_state_dict(self, checkpoint_dir: str | None) -> dict:
        """A plain (unsharded) model state dict; sharded tables are assembled from the checkpoint's shards."""
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        if self.sharded is not None:
            from hamur_dist.embedding import assemble_full_state
            full = assemble_full_state(checkpoint_dir)
            for name in self.sharded.sparse_table_names():
                state[f"embedding.tables.{name}.weight"] = full[f"tables.{name}.weight"]
        return state

    def export_artifact(self, directory: Path, cfg: ExperimentConfig, checkpoint_dir: str | None,
                        dataset_root: str | None = None) -> None:
        from hamur_dist.model.artifact import save_artifact
        save_artifact(directory, cfg.model, self.manifest, self.full_state_dict(checkpoint_dir),
                      dataset_root=dataset_root, experiment=to_dict(cfg))
