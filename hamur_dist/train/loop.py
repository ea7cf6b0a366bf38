"""The per-worker training loop that Ray Train runs on every worker.

Follow one epoch: batches from this worker's shard of the stream (``aligned_batches`` keeps the
workers in lock-step when their shares differ by a batch) -> forward/backward under DDP ->
optimiser step. Then every worker evaluates its share of the validation split, predictions are
gathered so metrics are exact, and all workers take the same early-stopping decision. Rank 0
writes the run files; every rank reports (``ray.train.report`` is a barrier).
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from hamur_dist.config import ExperimentConfig, from_dict, to_dict
from hamur_dist.data.manifest import load_manifest
from hamur_dist.train import checkpoint as ckpt
from hamur_dist.train.memory import MEMORY_KEYS, MemoryMonitor, release_freed_memory
from hamur_dist.train.metrics import PredictionBuffer, domain_report, flat_metrics, fmt, gather_predictions
from hamur_dist.train.outputs import RunOutputs
from hamur_dist.train.pipeline import BatchCollator, InputDataError, locate_bad_row
from hamur_dist.train.trainer import append_event
from hamur_dist.train.worker_model import WorkerModel


def say(message: str) -> None:
    """Print once. Ray Train patches ``print`` to log *and* tee to a redirected stdout (shown twice);
    writing to the process's real stdout reaches the driver exactly once."""
    print(message, file=sys.__stdout__, flush=True)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def aligned_batches(batches, device, dummy):
    """Yield ``(batch, is_real)`` until *every* worker is out of data.

    Collectives (DDP's all-reduce, sharded-table all-to-all) need the same number of steps on
    every rank; ``streaming_split(equal=False)`` gives shares that can differ by a block. A worker
    that runs out early repeats its last batch (or ``dummy``, when it got none) with ``is_real=False``:
    its loss is multiplied by 0 and its predictions are dropped.
    """
    rank, world = _world()
    it = iter(batches)
    last = None
    while True:
        batch = next(it, None)
        if world > 1:
            flag = torch.tensor([0 if batch is None else 1], device=device)
            dist.all_reduce(flag)
            if flag.item() == 0:
                return
        elif batch is None:
            return
        if batch is None:
            yield (last if last is not None else dummy), False
        else:
            last = batch
            yield batch, True


class Progress:
    """Rank 0's progress line: samples/s, loss, elapsed and ETA for the epoch."""

    def __init__(self, rank: int, world: int, every: int, expected_rows: int, epoch: int):
        self.on = rank == 0 and every > 0
        self.world, self.every, self.expected, self.epoch = world, every, expected_rows, epoch
        self.start = time.perf_counter()

    def step(self, step: int, seen_local: int, loss: float):
        if not self.on or step % self.every:
            return
        elapsed = time.perf_counter() - self.start
        rate = seen_local * self.world / max(elapsed, 1e-9)
        eta = max(self.expected - seen_local * self.world, 0) / max(rate, 1e-9)
        say(f"[hamur] epoch {self.epoch} step {step}: loss {loss:.4f}, {rate:,.0f} samples/s, "
              f"elapsed {elapsed:.1f}s, ETA {eta:.1f}s")


def _to_device(batch: dict, device) -> dict:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _maybe_inject_failure(cfg: ExperimentConfig, global_step: int, run_dir: Path, rank: int) -> None:
    """Test hook: crash once at the configured global step (a marker file makes it once per run)."""
    if cfg.train.fail_at_step < 0 or global_step != cfg.train.fail_at_step or rank != 0:
        return
    marker = run_dir / ".fault_injected"
    if marker.exists():
        return
    marker.write_text(str(global_step))
    say(f"[hamur] injecting a failure at global step {global_step} (train.fail_at_step)")
    # The controller picks up reports (and registers their checkpoints) when it polls the workers,
    # every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s). On a loaded machine a crash a few steps after an
    # epoch's report can come before that poll, and the restart then rightly starts one checkpoint
    # earlier. Tests want a fixed checkpoint to resume from, so the injected crash waits for the poll.
    time.sleep(3 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")))   # three polls
    os._exit(1)  # like a SIGKILL'd worker: no cleanup, no exception handling


def run_epoch(wm: WorkerModel, batches, cfg: ExperimentConfig, epoch: int, expected_rows: int,
              run_dir: Path, global_step: int, memory: MemoryMonitor) -> tuple[dict, int]:
    rank, world = _world()
    wm.train()
    progress = Progress(rank, world, cfg.train.log_every_steps, expected_rows, epoch)
    loss_sum = torch.zeros((), dtype=torch.float64)
    seen = 0
    step = 0
    start = time.perf_counter()
    for batch, real in aligned_batches(batches, wm.device, wm.dummy_batch()):
        if cfg.train.max_steps_per_epoch and step >= cfg.train.max_steps_per_epoch:
            real = False  # smoke-test cap: keep stepping in lock-step but stop learning
        batch = _to_device(batch, wm.device)
        with wm.keep_buffers(enabled=not real):  # a filler step must not move BatchNorm statistics
            logits = wm.forward(batch)
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch["label"])
            wm.backward_step(loss if real else loss * 0.0)
        step += 1
        global_step += 1
        if real:
            n = batch["label"].shape[0]
            seen += n
            loss_sum += loss.detach().double().cpu() * n
            progress.step(step, seen, loss.item())
            _maybe_inject_failure(cfg, global_step, run_dir, rank)
    elapsed = time.perf_counter() - start
    totals = torch.tensor([seen, loss_sum.item()], dtype=torch.float64)
    per_worker = torch.zeros(world, dtype=torch.float64)
    per_worker[rank] = seen
    figures = torch.zeros(len(MEMORY_KEYS), world, dtype=torch.float64)   # every rank's memory (a leak shows here)
    release_freed_memory()   # what the last epoch's evaluation and checkpoint freed is not held
    figures[:, rank] = torch.tensor(memory.report(), dtype=torch.float64)
    if world > 1:
        dist.all_reduce(totals)
        dist.all_reduce(per_worker)
        dist.all_reduce(figures)
    extra = {f"worker{r}/{key}": round(figures[i, r].item(), 1)
             for i, key in enumerate(MEMORY_KEYS) for r in range(world)}
    if wm.device.type == "cuda":
        extra["gpu/max_memory_mb"] = torch.cuda.max_memory_allocated(wm.device) / 2**20
    return {
        **extra,
        "train/samples": int(totals[0].item()),
        "train/samples_per_worker": [int(x) for x in per_worker.tolist()],
        "train/loss": totals[1].item() / max(totals[0].item(), 1),
        "train/samples_per_s": totals[0].item() / max(elapsed, 1e-9),
        "train/epoch_seconds": elapsed,
    }, global_step


@torch.no_grad()
def evaluate(wm: WorkerModel, batches, manifest, with_user: bool) -> dict:
    wm.eval()
    buf = PredictionBuffer(with_user=with_user)
    for batch, real in aligned_batches(batches, wm.device, wm.dummy_batch()):
        batch = _to_device(batch, wm.device)
        prob = torch.sigmoid(wm.forward(batch).float())
        if real:
            buf.add(prob, batch["label"], batch["domain"], batch.get("user"))
    preds = gather_predictions(buf.tensors())
    return domain_report(preds, manifest.domain.num_domains, manifest.domain.names)


def _iter(cfg: ExperimentConfig, name: str, collate: BatchCollator, device, training: bool, epoch: int = 0):
    import ray.train

    shard = ray.train.get_dataset_shard(name)
    kwargs = dict(batch_size=cfg.data.batch_size if training else cfg.data.eval_batch_size,
                  collate_fn=collate, prefetch_batches=2, device="cpu",
                  pin_memory=device.type == "cuda")
    if training and cfg.data.local_shuffle_buffer > 0:
        kwargs.update(local_shuffle_buffer_size=cfg.data.local_shuffle_buffer,
                      local_shuffle_seed=cfg.train.seed + epoch)   # a fixed seed mixes alike every epoch
    return shard.iter_torch_batches(**kwargs)


def _guard_input(fn, files_of, manifest):
    """Run ``fn``; turn a bad value found in a batch into an error naming shard, row and column."""
    try:
        return fn()
    except Exception as exc:  # Ray wraps errors raised in its prefetch threads
        cause = exc
        while cause is not None and not isinstance(cause, InputDataError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, InputDataError):
            raise InputDataError(f"bad input row: {locate_bad_row(files_of(), manifest)}") from None
        raise


def train_loop_per_worker(config: dict) -> None:
    import ray.train

    cfg = from_dict(config["experiment"])
    root = config["dataset_root"]
    run_dir = Path(config["run_dir"])
    manifest = load_manifest(root)
    rank, world = _world()
    torch.manual_seed(cfg.train.seed)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    wm = WorkerModel(cfg, manifest, rank, world)
    fingerprint = wm.fingerprint()

    start_epoch, best, history, patience_left = 0, {"auc": -math.inf, "epoch": -1, "val": None}, [], cfg.train.patience
    global_step = 0
    restored = _restore(ray.train, wm, fingerprint, run_dir)
    if restored is not None:
        state = restored
        start_epoch = state["epoch"] + 1
        best, history = state["best"], state["history"]
        patience_left, global_step = state["patience_left"], state["global_step"]
        if rank == 0:
            message = (f"resumed from the checkpoint after epoch {state['epoch']} on {world} worker(s) "
                       f"(saved by {state.get('world_size', '?')}; best val AUC {best['auc']:.4f} "
                       f"at epoch {best['epoch']})")
            say(f"[hamur] {message}")
            append_event(run_dir, message)

    outputs = RunOutputs(run_dir) if rank == 0 else None
    with_user = manifest.user_column is not None
    collate_train = BatchCollator(manifest)
    collate_eval = BatchCollator(manifest, with_user=with_user)
    train_rows = manifest.splits["train"].rows
    stop = start_epoch >= cfg.train.epochs or (cfg.train.patience and patience_left <= 0)
    epoch = start_epoch - 1
    memory = MemoryMonitor()
    for epoch in range(start_epoch, cfg.train.epochs):
        if stop:
            break
        lr = wm.set_epoch_lr(epoch)
        train_metrics, global_step = _guard_input(
            lambda: run_epoch(wm, _iter(cfg, "train", collate_train, wm.device, True, epoch), cfg, epoch,
                              train_rows, run_dir, global_step, memory),
            lambda: manifest.shard_paths(root, "train"), manifest)
        val = _guard_input(lambda: evaluate(wm, _iter(cfg, "val", collate_eval, wm.device, False), manifest, with_user),
                           lambda: manifest.shard_paths(root, "val"), manifest)
        val_auc = val["overall"]["auc"] if val["overall"]["auc"] is not None else -math.inf
        improved = val_auc > best["auc"]
        if improved:
            best = {"auc": val_auc, "epoch": epoch, "val": val}
            patience_left = cfg.train.patience
        else:
            patience_left -= 1
        stop = bool(cfg.train.patience) and patience_left <= 0
        row = {"epoch": epoch, "global_step": global_step, "train/lr": lr, **train_metrics, **flat_metrics(val, "val"),
               "best_epoch": best["epoch"]}
        history.append({k: v for k, v in row.items() if k != "train/samples_per_worker"})
        if rank == 0:
            outputs.log_epoch({k: v for k, v in row.items() if k != "train/samples_per_worker"})
            per_domain = ", ".join(f"d{e['domain']} {fmt(e['auc'])}" for e in val["domains"])
            say(f"[hamur] epoch {epoch}: train loss {row['train/loss']:.4f}, "
                  f"{row['train/samples_per_s']:,.0f} samples/s, val AUC {fmt(val['overall']['auc'])} "
                  f"({per_domain}){' *best*' if improved else ''}")
            say(f"[hamur] epoch {epoch}: worker memory MB, RSS now/peak (private now/epoch peak + shared, "
                "of it object store): " + ", ".join(
                    f"rank {r} {row[f'worker{r}/rss_mb']:,.0f}/{row[f'worker{r}/peak_rss_mb']:,.0f} "
                    f"({row[f'worker{r}/private_rss_mb']:,.0f}/{row[f'worker{r}/private_peak_rss_mb']:,.0f} + "
                    f"{row[f'worker{r}/shared_rss_mb']:,.0f}, {row[f'worker{r}/store_rss_mb']:,.0f})"
                    for r in range(world)))
        state = {"epoch": epoch, "best": best, "history": history, "patience_left": patience_left,
                 "global_step": global_step}
        # An improved epoch is always saved: the test runs on the best epoch's checkpoint.
        save_now = improved or (epoch + 1) % cfg.checkpoint.every_epochs == 0 or stop or epoch == cfg.train.epochs - 1
        _report(ray.train, wm, state, row, fingerprint, with_checkpoint=save_now)
        if stop and rank == 0:
            say(f"[hamur] early stopping: no better val AUC for {cfg.train.patience} epochs")

    memory.close()
    # Test with the best weights (the best epoch's checkpoint).
    best_dir = _load_best(ray.train, wm, best["epoch"], fingerprint)
    test = _guard_input(lambda: evaluate(wm, _iter(cfg, "test", collate_eval, wm.device, False), manifest, with_user),
                        lambda: manifest.shard_paths(root, "test"), manifest)
    final = {"epoch": max(epoch, start_epoch - 1), "best": best, "history": history,
             "patience_left": patience_left, "global_step": global_step}
    report = {"run_name": run_dir.name, "model": cfg.model.name + ("+hamur-" + cfg.model.hamur.mode if cfg.model.hamur.enabled else ""),
              "dataset": str(root), "best_epoch": best["epoch"], "epochs_run": len(history),
              "test": test, "best_val": best["val"], "world_size": world}
    if rank == 0:
        outputs.write_report(report)
        outputs.plot_val_auc(manifest.domain.num_domains, manifest.domain.names)
        outputs.close()
        with best_dir.as_directory() if best_dir is not None else contextlib.nullcontext(None) as d:
            wm.export_artifact(run_dir / "model", cfg, d)
        say("[hamur] test metrics (best weights):")
        from hamur_dist.train.outputs import markdown_table
        say(markdown_table(test))
    row = {"epoch": final["epoch"], "final": 1, **flat_metrics(test, "test"), "best_epoch": best["epoch"],
           "val/auc": best["auc"] if best["auc"] != -math.inf else float("nan")}
    _report(ray.train, wm, final, row, fingerprint, with_checkpoint=True)


def _load_verified(wm: WorkerModel, checkpoint, fingerprint: dict, with_optimizer: bool = True):
    """Load ``checkpoint`` into the model if it verifies: (its state, None), else (None, why not).
    A checkpoint of an incompatible config raises: no other checkpoint of the run would do."""
    with checkpoint.as_directory() as d:
        try:
            state = ckpt.load_state(d, fingerprint)
            wm.load_checkpoint(d, state, with_optimizer=with_optimizer)
            return state, None
        except ckpt.CheckpointError as exc:
            if "incompatible" in str(exc):
                raise
            return None, exc


def _restore(train_api, wm: WorkerModel, fingerprint: dict, run_dir: Path):
    """Load the newest checkpoint that verifies (falling back past corrupt ones, noted in events.log)."""
    latest = train_api.get_checkpoint()
    if latest is None:
        return None
    candidates = []
    try:
        candidates = [c.checkpoint for c in train_api.get_all_reported_checkpoints()]
    except Exception:  # older API shapes: just the latest
        candidates = []
    if not candidates or candidates[-1].path != latest.path:
        candidates.append(latest)
    for checkpoint in reversed(candidates):
        state, problem = _load_verified(wm, checkpoint, fingerprint)
        if state is not None:
            return state
        say(f"[hamur] rank {wm.rank}: skipping checkpoint {checkpoint.path}: {problem}")
        if wm.rank == 0:
            append_event(run_dir, f"skipping checkpoint {checkpoint.path}: {problem}")
    raise ckpt.CheckpointError("no checkpoint of this run verifies; remove the run directory to start over")


def _load_best(train_api, wm: WorkerModel, best_epoch: int, fingerprint: dict):
    """Load the checkpoint of the best epoch into the model; returns that checkpoint (or None).

    After a resume from an older checkpoint (the newer one was corrupt) an epoch can have two: the
    newest is this run's. One that does not verify is skipped like in ``_restore``."""
    if best_epoch < 0:
        return None
    matching = [r.checkpoint for r in train_api.get_all_reported_checkpoints()
                if r.metrics.get("epoch") == best_epoch and not r.metrics.get("final")]
    for checkpoint in sorted(matching, key=lambda c: Path(c.path).name, reverse=True):   # names carry the time
        state, problem = _load_verified(wm, checkpoint, fingerprint, with_optimizer=False)
        if state is not None:
            return checkpoint
        if wm.rank == 0:
            say(f"[hamur] skipping checkpoint {checkpoint.path} for the test: {problem}")
    if wm.rank == 0:
        say(f"[hamur] warning: no checkpoint of the best epoch {best_epoch} verifies; testing the last weights")
    return None


def _report(train_api, wm: WorkerModel, state: dict, row: dict, fingerprint: dict, with_checkpoint: bool) -> None:
    metrics = {k: v for k, v in row.items() if isinstance(v, (int, float))}
    if not with_checkpoint:
        train_api.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="hamur-ckpt-") as d:
        wrote = wm.save_checkpoint(d, state)
        if wrote:
            ranks_with_files = wm.world if wm.sharded is not None else 1
            ckpt.seal(d, fingerprint, wm.rank, wm.world, ranks_with_files)
        checkpoint = train_api.Checkpoint.from_directory(d) if wrote or wm.rank == 0 else None
        train_api.report(metrics, checkpoint=checkpoint)
