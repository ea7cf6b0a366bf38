"""Helpers of the fault tests: finding and killing Ray Train workers (the rest is in tests/helpers.py)."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from tests.helpers import checkpointed_epochs

# Test AUC of a run that recovered from a failure vs. an uninterrupted one with the same seed: the
# restarted epoch sees the shards in another order, so they are close, not equal.
AUC_NOISE = 0.03


def train_worker_pids() -> list[int]:
    """Pids of the live Ray Train workers of the Ray this process is connected to (from the GCS actor table:
    the state API needs the dashboard, which the shared test Ray does not start)."""
    from ray._private import state

    return [a["Pid"] for a in state.actors().values()
            if a["ActorClassName"] == "RayTrainWorker" and a["State"] == "ALIVE" and a.get("Pid")]


class WorkerKiller(threading.Thread):
    """SIGKILLs one Ray Train worker once the checkpoint of epoch ``after_epoch`` is registered (the
    next epoch is then running: the kill lands mid-epoch and the restart resumes after ``after_epoch``)."""

    def __init__(self, run_dir: Path, after_epoch: int = 0, timeout_s: float = 900):
        super().__init__(daemon=True)
        self.run_dir, self.after_epoch, self.timeout_s = Path(run_dir), after_epoch, timeout_s
        self.killed: int | None = None
        self.error: str | None = None

    def kill(self) -> int | None:
        pids = train_worker_pids()
        if not pids:
            return None
        os.kill(pids[-1], signal.SIGKILL)
        return pids[-1]

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if any(e >= self.after_epoch for e in checkpointed_epochs(self.run_dir)):
                self.killed = self.kill()
                return
            time.sleep(0.2)
        self.error = f"no checkpoint of epoch {self.after_epoch} was registered in {self.run_dir}"
