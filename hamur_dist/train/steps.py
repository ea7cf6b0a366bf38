"""One training epoch and one evaluation pass on one worker: plain PyTorch and torch.distributed, no Ray.

Follow one epoch: batches from this worker's share of the stream (``aligned_batches`` keeps the
workers in lock-step when their shares differ by a batch) -> forward/backward (DDP when there are
several workers) -> optimiser step. Evaluation gathers every worker's predictions, so the metrics
are exact, not averages of per-worker figures.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from hamur_dist.console import progress_message
from hamur_dist.metrics import PredictionBuffer, domain_report, gather_predictions
from hamur_dist.train.memory import MEMORY_KEYS, MemoryMonitor, release_freed_memory
from hamur_dist.train.watchdog import WAITING, StallWatchdog
from hamur_dist.train.worker_model import WorkerModel


class _Unwatched:
    """Stands in for a watchdog where none runs (tests, tools)."""

    def doing(self, phase: str):
        return contextlib.nullcontext()

    def beat(self, phase: str | None = None) -> None:
        pass


_NO_WATCH = _Unwatched()


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class StepTimes:
    """Where one worker's epoch went, in seconds: waiting for its input, waiting for the other
    workers (the step-count agreement), and its own steps (forward, backward, update, and the
    collectives inside them). The benchmark prints them."""

    def __init__(self):
        self.input = self.agree = self.step = 0.0

    def as_metrics(self) -> dict:
        return {"input_s": self.input, "agree_s": self.agree, "step_s": self.step}


def aligned_batches(batches, device, dummy, watch: StallWatchdog | None = None, times: StepTimes | None = None):
    """Yield ``(batch, is_real)`` until *every* worker is out of data.

    Collectives (DDP's all-reduce, sharded-table all-to-all) need the same number of steps on
    every rank, and the workers' shares can differ by a block. A worker that runs out early repeats
    its last batch (or ``dummy``, when it got none) with ``is_real=False``: its loss is multiplied
    by 0 and its predictions are dropped. ``watch`` learns what this worker is doing and each step
    done; ``times`` adds up where the time went.
    """
    rank, world = rank_and_world()
    watch = watch or _NO_WATCH
    times = times or StepTimes()
    it = iter(batches)
    last = None
    while True:
        start = time.perf_counter()
        with watch.doing("reading its input"):
            batch = next(it, None)
        times.input += time.perf_counter() - start
        if world > 1:
            # Not started ahead of the step: a rank stuck reading must leave its peers waiting
            # here (the watchdog names it), not inside the step's own collectives.
            start = time.perf_counter()
            flag = torch.tensor([0 if batch is None else 1], device=device)
            with watch.doing(WAITING):
                dist.all_reduce(flag)
                anyone = flag.item() > 0
            times.agree += time.perf_counter() - start
            if not anyone:
                return
        elif batch is None:
            return
        start = time.perf_counter()
        with watch.doing("computing a step"):
            if batch is None:
                yield (last if last is not None else dummy), False
            else:
                last = batch
                yield batch, True
        times.step += time.perf_counter() - start
        watch.beat()


class Progress:
    """Rank 0's progress (samples seen by all workers, loss, samples/s) for the console's bar: every
    ``every`` steps and at least every ``PROGRESS_SECONDS``; only then is the loss read (a host sync)."""

    PROGRESS_SECONDS = 1.0

    def __init__(self, rank: int, world: int, every: int, expected_rows: int, epoch: int):
        self.on = rank == 0 and every > 0
        self.world, self.every, self.expected, self.epoch = world, every, expected_rows, epoch
        self.start = self.last = time.perf_counter()

    def step(self, step: int, seen_local: int, loss: torch.Tensor):
        if not self.on:
            return
        now = time.perf_counter()
        if step % self.every and now - self.last < self.PROGRESS_SECONDS:
            return
        self.last = now
        rate = seen_local * self.world / max(now - self.start, 1e-9)
        print(progress_message(self.epoch, seen_local * self.world, self.expected, loss.item(), rate),
              file=sys.__stdout__, flush=True)


def to_device(batch: dict, device) -> dict:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_epoch(wm: WorkerModel, batches, epoch: int, expected_rows: int, global_step: int,
                memory: MemoryMonitor, log_every_steps: int = 0, max_steps: int = 0,
                after_step: Callable[[int], None] | None = None,
                watch: StallWatchdog | None = None) -> tuple[dict, int]:
    """Train on this worker's batches; returns (the epoch's metrics, every worker's, and the new global step).

    ``max_steps`` > 0 stops learning after that many steps (the workers keep stepping in lock-step);
    ``after_step(global_step)`` runs after every real step.
    """
    rank, world = rank_and_world()
    wm.train()
    progress = Progress(rank, world, log_every_steps, expected_rows, epoch)
    loss_sum = torch.zeros((), dtype=torch.float64, device=wm.device)
    seen = 0
    step = 0
    times = StepTimes()
    start = time.perf_counter()
    for batch, real in aligned_batches(batches, wm.device, wm.dummy_batch(), watch, times):
        if max_steps and step >= max_steps:
            real = False
        batch = to_device(batch, wm.device)
        with wm.keep_buffers(enabled=not real):  # a filler step must not move BatchNorm statistics
            logits = wm.forward(batch)
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch["label"])
            wm.backward_step(loss if real else loss * 0.0)
        step += 1
        global_step += 1
        if real:
            n = batch["label"].shape[0]
            seen += n
            loss_sum += loss.detach().double() * n   # stays on the device: no host sync per step
            progress.step(step, seen, loss)
            if after_step is not None:
                after_step(global_step)
    elapsed = time.perf_counter() - start
    totals = torch.tensor([seen, loss_sum.item()], dtype=torch.float64)
    keys = [*MEMORY_KEYS, *times.as_metrics()]   # every rank's memory (a leak shows here) and times
    figures = torch.zeros(len(keys), world, dtype=torch.float64)
    release_freed_memory()   # what the last epoch's evaluation and checkpoint freed is not held
    figures[:, rank] = torch.tensor([*memory.report(), *times.as_metrics().values()], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(totals)
        dist.all_reduce(figures)
    metrics = {f"worker{r}/{key}": round(figures[i, r].item(), 2)
               for i, key in enumerate(keys) for r in range(world)}
    if wm.device.type == "cuda":
        metrics["gpu/max_memory_mb"] = torch.cuda.max_memory_allocated(wm.device) / 2**20
    metrics.update({
        "train/samples": int(totals[0].item()),
        "train/loss": totals[1].item() / max(totals[0].item(), 1),
        "train/samples_per_s": totals[0].item() / max(elapsed, 1e-9),
        "train/epoch_seconds": elapsed,
    })
    return metrics, global_step


@torch.no_grad()
def evaluate(wm: WorkerModel, batches, manifest, with_user: bool, watch: StallWatchdog | None = None) -> dict:
    """The per-domain report of a split, computed on every worker's predictions together."""
    wm.eval()
    buf = PredictionBuffer(with_user=with_user)
    for batch, real in aligned_batches(batches, wm.device, wm.dummy_batch(), watch):
        batch = to_device(batch, wm.device)
        prob = torch.sigmoid(wm.forward(batch).float())
        if real:
            buf.add(prob, batch["label"], batch["domain"], batch.get("user"))
    preds = gather_predictions(buf.tensors())
    return domain_report(preds, manifest.domain.num_domains, manifest.domain.names)
