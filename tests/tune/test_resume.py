"""`hamur tune` killed mid-search (SIGKILL, its own local Ray) and `--resume`d: finished trials are kept,
the interrupted trial continues its training run, the final table is complete."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import checkpointed_epochs
from tests.tune.tune_helpers import write_search_file

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _statuses(exp_dir: Path) -> dict[str, str]:
    """Trial id -> status from Tune's newest experiment state file ({} while there is none)."""
    files = sorted(exp_dir.glob("experiment_state-*.json"))
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
    except (json.JSONDecodeError, OSError):   # caught mid-write
        return {}
    states = [json.loads(t) if isinstance(t, str) else t for t, _meta in data["trial_data"]]
    return {s["trial_id"]: s["status"] for s in states}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def _ray_pids(marker: str) -> list[int]:
    """Processes of the subprocess's own Ray: they inherit its RAY_TMPDIR (Ray workers start their own
    process groups and retitle themselves ``ray::...``, so neither the group nor the command line finds them)."""
    pids = []
    needle = f"RAY_TMPDIR={marker}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill_ray(marker: str, wait_s: float = 30) -> None:
    deadline = time.time() + wait_s
    while (pids := _ray_pids(marker)) and time.time() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def _wait_for(condition, timeout_s: float, proc, what: str, log: Path):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"`hamur tune` exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def test_killed_search_resumes_without_redoing_finished_work(tune_dataset, tmp_path):
    storage = tmp_path / "runs"
    path = write_search_file(tmp_path / "search.yaml", tune_dataset, storage, "interrupted", epochs=2,
                             space={"model.hamur.rank": {"grid": [2, 4]}},   # one to finish, one to interrupt
                             tune={"max_concurrent_trials": 1, "scheduler": {"enabled": False}})
    text = path.read_text() + "ray: {num_cpus: 4, object_store_mb: 256}\n"
    path.write_text(text)
    exp = storage / "interrupted"
    ray_tmp = tempfile.mkdtemp(prefix="hrt-", dir="/tmp")   # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1", RAY_AUTH_MODE="disabled", RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0")
    cli = [sys.executable, "-m", "hamur_dist.cli", "tune"]
    log = tmp_path / "first.log"
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen([*cli, "--config", str(path)], cwd=REPO, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

        def one_done_one_checkpointed():
            statuses = _statuses(exp)
            done = [t for t, s in statuses.items() if s == "TERMINATED"]
            running = [t for t, s in statuses.items() if s == "RUNNING" and checkpointed_epochs(exp / "runs" / t)]
            return (done[0], running[0]) if done and running else None

        finished, interrupted = _wait_for(one_done_one_checkpointed, 900, proc,
                                          "a finished trial and a checkpointed running one", log)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _kill_ray(ray_tmp)
        assert not _ray_pids(ray_tmp)

        before = {
            "ids": set(_statuses(exp)),
            "finished_metrics": _lines(exp / "runs" / finished / "metrics.jsonl"),
            "finished_report": (exp / "runs" / finished / "report.json").stat().st_mtime_ns,
            "finished_tune": _lines(exp / finished / "result.json"),
            "interrupted_metrics": _lines(exp / "runs" / interrupted / "metrics.jsonl"),
            "interrupted_checkpointed": checkpointed_epochs(exp / "runs" / interrupted),
        }
        assert before["interrupted_checkpointed"]

        resumed = subprocess.run([*cli, "--resume", str(exp)], cwd=REPO, env=env, capture_output=True, text=True,
                                 timeout=900, start_new_session=True)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    finally:
        _kill_ray(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    statuses = _statuses(exp)
    assert set(statuses) == before["ids"] and len(statuses) == 2
    assert set(statuses.values()) == {"TERMINATED"}
    # The finished trial was not run again: its run files and Tune's results are as they were.
    assert _lines(exp / "runs" / finished / "metrics.jsonl") == before["finished_metrics"]
    assert (exp / "runs" / finished / "report.json").stat().st_mtime_ns == before["finished_report"]
    if before["finished_tune"]:
        assert _lines(exp / finished / "result.json") == before["finished_tune"]
    # The interrupted trial continued from its last checkpoint: the epochs up to it are kept byte for byte
    # (a redone epoch would have rewritten its row with a new timing), the rest were added.
    after = _lines(exp / "runs" / interrupted / "metrics.jsonl")
    kept = max(before["interrupted_checkpointed"]) + 1
    assert len(before["interrupted_metrics"]) >= kept
    assert after[:kept] == before["interrupted_metrics"][:kept]
    assert [json.loads(x)["epoch"] for x in after] == [0, 1]
    assert "continuing its run" in resumed.stdout + resumed.stderr
    with open(exp / "trials.csv") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["trial_id"] for r in table) == sorted(statuses)
    assert all(r["status"] == "completed" and r["epochs_run"] == "2" and r["test/auc"] for r in table)
    assert sorted(int(r["model.hamur.rank"]) for r in table) == [2, 4]
