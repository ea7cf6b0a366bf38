"""A stall watchdog for one worker: when no step completes for ``train.stall_timeout_s``, stop, naming
the rank that holds the others up.

A stuck worker (a hung filesystem, a stalled read) holds every other rank in the next collective.
Each worker's loop marks what it is doing (``phase``) and every step it completes (``beat``); a
thread publishes that to ``<run dir>/.progress/rank<r>.json`` every few seconds, also while the
loop is blocked. When this worker has seen no step for the timeout, it reads every rank's file: the
ranks not waiting in a collective are the stuck ones. It reports them and ends its own process, so
Ray Train sees the worker group fail (and restarts it from the last checkpoint when
``run.max_failures`` allows) instead of waiting out the collective timeout.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

from hamur_dist.fileio import atomic_write_text

WAITING = "waiting for the other workers in a collective"
STALL_NOTE = "stalled.txt"     # in the progress folder: the message the driver reports


class StallWatchdog:
    def __init__(self, run_dir: str | Path, rank: int, world: int, stall_timeout_s: float,
                 on_stall: Callable[[str], None] | None = None, publish_every_s: float = 2.0):
        self.dir = Path(run_dir) / ".progress"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rank, self.world, self.timeout = rank, world, stall_timeout_s
        self.on_stall = on_stall or self._stop_process
        self.publish_every = min(publish_every_s, max(stall_timeout_s / 4, 0.05))
        self.phase, self.steps, self.last_beat = "starting", 0, time.monotonic()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hamur-stall-watchdog", daemon=True)
        if stall_timeout_s > 0:
            self._thread.start()

    # --- the training loop's side ------------------------------------------------------------
    def beat(self, phase: str | None = None) -> None:
        """A step (or another unit of progress) completed."""
        self.steps += 1
        self.last_beat = time.monotonic()
        if phase is not None:
            self.phase = phase

    @contextlib.contextmanager
    def doing(self, phase: str):
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    # --- the thread --------------------------------------------------------------------------
    def _publish(self) -> None:
        body = {"rank": self.rank, "phase": self.phase, "steps": self.steps,
                "seconds_since_step": round(time.monotonic() - self.last_beat, 1), "time": time.time()}
        # every few seconds while training: whole is enough, a crash loses nothing worth an fsync
        atomic_write_text(self.dir / f"rank{self.rank}.json", json.dumps(body), durable=False)

    def _watch(self) -> None:
        while not self._closed.wait(self.publish_every):
            self._publish()
            idle = time.monotonic() - self.last_beat
            if idle > self.timeout:
                self.on_stall(self.describe(idle))
                return

    def describe(self, idle: float) -> str:
        """Which ranks hold the others up, from every rank's published progress."""
        states = {}
        for r in range(self.world):
            try:
                states[r] = json.loads((self.dir / f"rank{r}.json").read_text())
            except (OSError, json.JSONDecodeError):   # not visible from this node (no shared run dir)
                continue
        stuck = sorted(r for r, s in states.items() if s["phase"] != WAITING)
        unseen = sorted(set(range(self.world)) - set(states))
        where = "; ".join(f"rank {r}: {states[r]['phase']}" for r in stuck) or "no rank outside a collective"
        return (f"no training step completed for {idle:.0f} s (train.stall_timeout_s={self.timeout:g}): "
                f"stuck rank(s) {stuck or unseen or 'unknown'} ({where})"
                + (f"; no progress file from rank(s) {unseen}" if unseen and stuck else ""))

    def _stop_process(self, message: str) -> None:
        print(f"[hamur] rank {self.rank}: {message}; stopping this worker", flush=True)
        if self.rank == 0:
            with contextlib.suppress(OSError):
                atomic_write_text(self.dir / STALL_NOTE, message)
        os._exit(3)   # the main thread may be blocked in a collective: only the process can end it


def stall_note(run_dir: str | Path, since: float) -> str | None:
    """The watchdog's message of a stall in this run after ``since`` (a time.time()), if any."""
    path = Path(run_dir) / ".progress" / STALL_NOTE
    try:
        return path.read_text().strip() if path.stat().st_mtime >= since else None
    except OSError:
        return None
