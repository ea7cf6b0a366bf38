"""Everything one worker holds for its model: modules, DDP wrapper, optimisers, precision.

The loop talks to this object only (forward, backward_step, checkpoint state), so replicated
and sharded embedding tables are a choice made here, not in the loop or the model code.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from hamur_dist.config import ExperimentConfig
from hamur_dist.config_loader import to_dict
from hamur_dist.data.manifest import Manifest
from hamur_dist.model import build_model
from hamur_dist.train.checkpoint import STATE, atomic_torch_save


def make_optimizer(params, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay, momentum=0.9)


class WorkerModel:
    def __init__(self, cfg: ExperimentConfig, manifest: Manifest, rank: int, world: int):
        self.cfg, self.manifest, self.rank, self.world = cfg, manifest, rank, world
        self.device = self._device()
        self.model = build_model(cfg.model, manifest.schema).to(self.device)
        if world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Paper-mode routing skips the towers of domains absent from a worker's batch, so the
            # set of parameters with gradients differs between ranks: DDP must look for them.
            self.wrapped = DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=True)
        else:
            self.wrapped = self.model
        self.optimizer = make_optimizer(self.model.parameters(), cfg)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                         if cfg.train.precision == "bf16" and self.device.type == "cuda" else contextlib.nullcontext())

    def _device(self) -> torch.device:
        if self.cfg.train.use_gpu and torch.cuda.is_available():
            try:
                import ray.train.torch
                return ray.train.torch.get_device()
            except Exception:
                return torch.device("cuda", 0)
        return torch.device("cpu")

    # --- steps -------------------------------------------------------------------------------
    def train(self):
        self.model.train()

    def eval(self):
        self.model.eval()

    def forward(self, batch: dict) -> torch.Tensor:
        module = self.wrapped if self.model.training else self.model  # no DDP sync in eval
        with self.autocast:
            return module(batch["sparse"], batch["dense"], batch["domain"])

    def dummy_batch(self, rows: int = 2) -> dict:
        """A valid filler batch (id 0, domain 0) for a worker whose share of a pass is empty."""
        return {"sparse": torch.zeros(rows, len(self.manifest.sparse), dtype=torch.long),
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

    def backward_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    # --- state -------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """What a checkpoint must match to be loaded: model config and data layout."""
        m = self.manifest
        layout = json.dumps({"sparse": [(f.name, f.vocab_size) for f in m.sparse],
                             "dense": [f.name for f in m.dense], "domains": m.domain.num_domains}, sort_keys=True)
        return {"model": json.dumps(to_dict(self.cfg.model), sort_keys=True),
                "data_layout": hashlib.sha256(layout.encode()).hexdigest()[:16]}

    def state_for_best(self) -> dict:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def load_best(self, state: dict) -> None:
        self.model.load_state_dict(state)

    def save_checkpoint(self, directory: str, loop_state: dict) -> bool:
        """Write this rank's part of a checkpoint; returns whether it wrote anything."""
        if self.rank != 0:
            return False
        atomic_torch_save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                           **loop_state}, Path(directory) / STATE)
        return True

    def load_checkpoint(self, directory: str, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def export_artifact(self, directory: Path, cfg: ExperimentConfig) -> None:
        from hamur_dist.infer.artifact import save_artifact
        save_artifact(directory, cfg.model, self.manifest, self.model.state_dict())
