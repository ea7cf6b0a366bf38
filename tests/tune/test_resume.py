"""`hamur tune` killed mid-search (SIGKILL, its own local Ray) and `--resume`d: finished trials are kept,
the interrupted trial continues its training run, the final table is complete."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import checkpointed_epochs
from tests.killed_cli import killed_command
from tests.tune.tune_helpers import write_search_file

pytestmark = pytest.mark.slow


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


def test_killed_search_resumes_without_redoing_finished_work(tune_dataset, tmp_path):
    storage = tmp_path / "runs"
    path = write_search_file(tmp_path / "search.yaml", tune_dataset, storage, "interrupted", epochs=2,
                             space={"model.hamur.rank": {"grid": [2, 4]}},   # one to finish, one to interrupt
                             tune={"max_concurrent_trials": 1, "scheduler": {"enabled": False}})
    text = path.read_text() + "ray: {num_cpus: 4, object_store_mb: 256}\n"
    path.write_text(text)
    exp = storage / "interrupted"
    with killed_command("tune", tmp_path / "first.log") as command:
        command.start("--config", str(path))

        def one_done_one_checkpointed():
            statuses = _statuses(exp)
            done = [t for t, s in statuses.items() if s == "TERMINATED"]
            running = [t for t, s in statuses.items() if s == "RUNNING" and checkpointed_epochs(exp / "runs" / t)]
            return (done[0], running[0]) if done and running else None

        finished, interrupted = command.wait_for(one_done_one_checkpointed,
                                                 "a finished trial and a checkpointed running one")
        command.kill()

        before = {
            "ids": set(_statuses(exp)),
            "finished_metrics": _lines(exp / "runs" / finished / "metrics.jsonl"),
            "finished_report": (exp / "runs" / finished / "report.json").stat().st_mtime_ns,
            "finished_tune": _lines(exp / finished / "result.json"),
            "interrupted_metrics": _lines(exp / "runs" / interrupted / "metrics.jsonl"),
            "interrupted_checkpointed": checkpointed_epochs(exp / "runs" / interrupted),
        }
        assert before["interrupted_checkpointed"]

        resumed = command.resume(exp)

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
