"""``hamur train --init-from RUN``: start a run from another run's best weights (and optimiser state).

The driver resolves what to start from (``resolve_init``): the run's model artifact (its best epoch's
full weights) and, for the optimiser state, that epoch's checkpoint. The dataset must continue the
old run's encoding (``hamur_dist.data.continuation``): grown vocabularies get fresh rows after the
old ones, added domains fresh per-domain parts (``hamur_dist.model.grow``). Each worker then loads
the grown weights into its own placement of the tables, so any world size and sharding plan works.
With ``train.trainable: new_domains`` only the new domains' parts train (``hamur_dist.model.freeze``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from hamur_dist import config_loader
from hamur_dist.config_loader import ConfigError
from hamur_dist.data.continuation import continuation_problem
from hamur_dist.data.manifest import Manifest
from hamur_dist.model import build_model
from hamur_dist.model.artifact import load_training_manifest, model_dir, payload_schema, read_payload
from hamur_dist.model.config import ModelConfig
from hamur_dist.model.grow import GrownTensor, grow_optimizer_state, grow_state_dict
from hamur_dist.train import checkpoint as ckpt


@dataclass
class InitSource:
    model_dir: str
    checkpoint_dir: str | None      # the best epoch's checkpoint (optimiser state), when kept
    old_num_domains: int
    note: str = ""


def _best_checkpoint(run_dir: Path) -> tuple[str | None, str]:
    """The verified checkpoint of the run's best epoch, and a note when there is none."""
    report = run_dir / "report.json"
    if not report.is_file():
        return None, f"{run_dir} has no report.json, so its best epoch is unknown: optimiser state starts fresh"
    best = json.loads(report.read_text()).get("best_epoch")
    for directory in sorted(run_dir.glob("checkpoint_*"), reverse=True):     # names carry the time
        try:
            ckpt.verify(directory)
            state = torch.load(directory / ckpt.STATE, map_location="cpu", weights_only=True, mmap=True)
        except (ckpt.CheckpointError, OSError, RuntimeError):
            continue
        if state.get("epoch") == best:
            if "param_names" not in state:
                return None, "that checkpoint predates named optimiser state: optimiser state starts fresh"
            return str(directory), ""
    return None, f"no checkpoint of {run_dir}'s best epoch {best} is kept: optimiser state starts fresh"


def resolve_init(init_from: str, model_cfg: ModelConfig, root: str, manifest: Manifest,
                 with_optimizer: bool, trainable: str = "all") -> InitSource:
    """Check on the driver that the run can start from ``init_from``; say from what exactly."""
    artifact = model_dir(init_from)
    payload = read_payload(artifact, mmap=True)
    old_cfg = config_loader.to_dict(config_loader.build(ModelConfig, payload["model_config"], prefix="model"))
    new_cfg = config_loader.to_dict(model_cfg)
    diffs = [k for k in sorted(set(old_cfg) | set(new_cfg)) if old_cfg.get(k) != new_cfg.get(k)]
    if diffs:
        raise ConfigError(f"train.init_from {init_from}: model.{diffs[0]} is {new_cfg.get(diffs[0])!r} here, "
                          f"{old_cfg.get(diffs[0])!r} in that model; a warm start keeps the architecture")
    old = load_training_manifest(artifact)
    if old is None:
        raise ConfigError(f"train.init_from {init_from}: the model has no manifest.json of its training data")
    problem = continuation_problem(old, artifact, manifest, root)
    if problem is not None:
        raise ConfigError(f"train.init_from {init_from}: dataset {root} does not continue that model's "
                          f"training data: {problem}")
    if trainable == "new_domains" and manifest.domain.num_domains == old.domain.num_domains:
        raise ConfigError(f"train.trainable new_domains: dataset {root} adds no domain to the model's "
                          f"{old.domain.names} (prepare it --like the old dataset with --add-domains)")
    checkpoint, note = (None, "optimiser state starts fresh (--no-optimizer-state)")
    if with_optimizer:
        checkpoint, note = _best_checkpoint(artifact.parent)
    return InitSource(str(artifact), checkpoint, old.domain.num_domains, note)


def load_weights(wm, source: InitSource):
    """Grown best weights of the old run into this worker's model (any placement); returns the report."""
    payload = read_payload(source.model_dir)
    template = build_model(wm.cfg.model, wm.manifest.schema)     # fresh rows and new domains' parts
    state, report = grow_state_dict(payload["state_dict"], template, payload_schema(payload), wm.manifest.schema)
    if wm.sharded is None:
        wm.model.load_state_dict(state)
        return report
    prefix = "embedding."
    wm.sharded.load_full_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
    missing, unexpected = wm.model.load_state_dict(rest, strict=False)
    if unexpected or any(not k.startswith(prefix) for k in missing):
        raise ValueError(f"warm start: keys left over {unexpected}, missing {missing}")
    return report


def load_optimizer_state(wm, source: InitSource, report) -> bool:
    """The old run's optimiser state, by parameter name and grown like the weights; False when none."""
    if source.checkpoint_dir is None:
        return False
    state = torch.load(Path(source.checkpoint_dir) / ckpt.STATE, map_location="cpu", weights_only=True)
    named = wm.optimizer_named_parameters()
    wm.optimizer.load_state_dict(grow_optimizer_state(state["optimizer"], state["param_names"], wm.optimizer,
                                                      named, report))
    if wm.sparse_optimizer is not None and wm.frozen is None:
        _load_sparse_state(wm, source.checkpoint_dir, report)
    return True


def _load_sparse_state(wm, checkpoint_dir: str, report) -> None:
    from hamur_dist.embedding.checkpoint import assemble_full_optimizer_state

    if not any(p.name.startswith("shard-rank") for p in Path(checkpoint_dir).iterdir()):
        return                                            # the old run updated every table densely
    saved = assemble_full_optimizer_state(checkpoint_dir)
    for name in wm.sharded.sparse_table_names():
        if name not in saved:
            continue
        grown = report.grown.get(f"embedding.tables.{name}.weight")
        start, end = wm.sharded.local_row_range(name)
        for key, local in wm.sparse_optimizer.table_state(name).items():
            full = saved[name][key]
            if grown is not None:
                new = torch.zeros((grown.new_shape[0],) + tuple(full.shape[1:]), dtype=full.dtype)
                full = GrownTensor(tuple(full.shape), tuple(new.shape), grown.blocks).place(full, new)
            local.copy_(full[start:end])
