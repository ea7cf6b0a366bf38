"""A worker's side of checkpoints in a Ray Train run: restore the newest that verifies, load the best
epoch's for the test, and report an epoch with this worker's part of a checkpoint.

``train_api`` is the ``ray.train`` module (passed in, so these run against a fake in unit tests).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from hamur_dist.train import checkpoint as ckpt
from hamur_dist.train.loop_state import LoopState
from hamur_dist.train.outputs import append_event
from hamur_dist.console import say
from hamur_dist.train.worker_model import WorkerModel


def load_verified(wm: WorkerModel, checkpoint, fingerprint: dict, with_optimizer: bool = True):
    """Load ``checkpoint`` into the model if it verifies: (its state, None), else (None, why not).
    A checkpoint of an incompatible config raises: no other checkpoint of the run would do."""
    with checkpoint.as_directory() as d:
        try:
            state = ckpt.load_state(d, fingerprint)
            wm.load_checkpoint(d, state, with_optimizer=with_optimizer)
            return state, None
        except ckpt.IncompatibleCheckpointError:
            raise
        except ckpt.CheckpointError as exc:
            return None, exc


def restore_latest(train_api, wm: WorkerModel, fingerprint: dict, run_dir: Path) -> tuple[LoopState, int] | None:
    """Load the newest checkpoint that verifies (falling back past corrupt ones, noted in events.log):
    its loop state and the number of workers that saved it; None when the run has no checkpoint yet.

    Rank 0 chooses the checkpoint and every other rank loads that one: storage that looks different
    from two nodes must not make them resume from different epochs. A rank that cannot verify the
    chosen checkpoint fails every rank."""
    chosen, state = None, None
    candidates = _candidates(train_api) if wm.rank == 0 else []
    for checkpoint in candidates:
        state, problem = load_verified(wm, checkpoint, fingerprint)
        if state is not None:
            chosen = checkpoint
            break
        say(f"[hamur] skipping checkpoint {checkpoint.path}: {problem}")
        append_event(run_dir, f"skipping checkpoint {checkpoint.path}: {problem}")
    decision = _from_rank0({"path": chosen.path if chosen else None, "any": bool(candidates)}, wm.world)
    if decision["path"] is None:
        if decision["any"]:
            raise ckpt.CheckpointError("no checkpoint of this run verifies; remove the run directory to start over")
        return None
    problem = None
    if wm.rank != 0:
        checkpoint = next((c for c in _candidates(train_api) if c.path == decision["path"]), None)
        checkpoint = checkpoint or train_api.Checkpoint(decision["path"])
        state, problem = load_verified(wm, checkpoint, fingerprint)
    failed = _ranks_failing(problem is not None, wm.world)
    if failed:
        raise ckpt.CheckpointError(f"rank(s) {failed} could not verify checkpoint {decision['path']} that rank 0 "
                                   f"resumes from{': ' + str(problem) if problem else ''}")
    return LoopState.from_checkpoint(state), state.get("world_size", 0)


def _candidates(train_api) -> list:
    """The run's reported checkpoints, newest first (the latest one included even if not listed)."""
    latest = train_api.get_checkpoint()
    if latest is None:
        return []
    candidates = [c.checkpoint for c in train_api.get_all_reported_checkpoints()]
    if not candidates or candidates[-1].path != latest.path:
        candidates.append(latest)
    return list(reversed(candidates))


def _from_rank0(obj, world: int):
    if world == 1 or not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _ranks_failing(failed: bool, world: int) -> list[int]:
    if world == 1 or not dist.is_initialized():
        return [0] if failed else []
    flags = torch.zeros(world)
    flags[dist.get_rank()] = float(failed)
    dist.all_reduce(flags)
    return [r for r in range(world) if flags[r] > 0]


def load_best(train_api, wm: WorkerModel, best_epoch: int, fingerprint: dict):
    """Load the checkpoint of the best epoch into the model; returns that checkpoint (or None).

    After a resume from an older checkpoint (the newer one was corrupt) an epoch can have two: the
    newest is this run's. One that does not verify is skipped like in ``restore_latest``."""
    if best_epoch < 0:
        return None
    matching = [r.checkpoint for r in train_api.get_all_reported_checkpoints()
                if r.metrics.get("epoch") == best_epoch and not r.metrics.get("final")]
    for checkpoint in sorted(matching, key=lambda c: Path(c.path).name, reverse=True):   # names carry the time
        state, problem = load_verified(wm, checkpoint, fingerprint, with_optimizer=False)
        if state is not None:
            return checkpoint
        if wm.rank == 0:
            say(f"[hamur] skipping checkpoint {checkpoint.path} for the test: {problem}")
    if wm.rank == 0:
        say(f"[hamur] warning: no checkpoint of the best epoch {best_epoch} verifies; testing the last weights")
    return None


def report(train_api, wm: WorkerModel, state: LoopState, row: dict, fingerprint: dict,
           with_checkpoint: bool) -> None:
    """``ray.train.report`` the row's numbers; with a checkpoint, every rank writes its part and seals it."""
    metrics = {k: v for k, v in row.items() if isinstance(v, (int, float))}
    if not with_checkpoint:
        train_api.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="hamur-ckpt-") as d:
        wrote = wm.save_checkpoint(d, state.to_checkpoint())
        if wrote:
            ranks_with_files = wm.world if wm.sharded is not None else 1
            ckpt.seal(d, fingerprint, wm.rank, wm.world, ranks_with_files)
        checkpoint = train_api.Checkpoint.from_directory(d) if wrote or wm.rank == 0 else None
        train_api.report(metrics, checkpoint=checkpoint)
