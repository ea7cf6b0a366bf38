"""Helpers of the fault tests: configs, run-directory readers and the worker killer."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from hamur_dist.config import load_experiment
from hamur_dist.train.trainer import EVENTS_FILE

# Small and quick (the training tests' settings): MLP + HAMUR adapters on the tiny dataset.
BASE = ["data.batch_size=256", "model.hidden_dims=[32,16]", "model.hamur.enabled=true", "model.hamur.rank=4",
        "model.hamur.hyper_hidden=[16]", "train.lr=0.01", "train.log_every_steps=0", "train.patience=0",
        "train.seed=7"]
# Test AUC of a run that recovered from a failure vs. an uninterrupted one with the same seed: the
# restarted epoch sees the shards in another order, so they are close, not equal.
AUC_NOISE = 0.03


def cfg(root, storage, *extra):
    return load_experiment(None, [f"data.path={root}", f"run.storage_path={storage}", *BASE, *extra])


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def events(run_dir: Path) -> list[str]:
    path = Path(run_dir) / EVENTS_FILE
    return path.read_text().splitlines() if path.is_file() else []


def test_auc(run_dir: Path) -> float:
    return json.loads((Path(run_dir) / "report.json").read_text())["test"]["overall"]["auc"]


test_auc.__test__ = False  # a helper, not a test


def train_worker_pids() -> list[int]:
    """Pids of the live Ray Train workers of the Ray this process is connected to (from the GCS actor table:
    the state API needs the dashboard, which the shared test Ray does not start)."""
    from ray._private import state

    return [a["Pid"] for a in state.actors().values()
            if a["ActorClassName"] == "RayTrainWorker" and a["State"] == "ALIVE" and a.get("Pid")]


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Ray Train's checkpoint folders of a run, oldest first (their names carry the time)."""
    return sorted(p for p in Path(run_dir).glob("checkpoint_*") if p.is_dir())


def checkpointed_epochs(run_dir: Path) -> set[int]:
    """Epochs whose checkpoint Ray Train has registered (its snapshot, rewritten on every registration):
    a restart from then on resumes after them."""
    path = Path(run_dir) / "checkpoint_manager_snapshot.json"
    try:
        snapshot = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):   # not there yet, or caught mid-write
        return set()
    return {r["metrics"]["epoch"] for r in snapshot.get("checkpoint_results", []) if "epoch" in r.get("metrics", {})}


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
