"""`hamur compare` on tiny data: a 2-model x 2-seed matrix, killed after its first finished cell and
resumed. Finished cells are not trained again, every artifact is written, the numbers match the runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.killed_cli import killed_command

pytestmark = pytest.mark.slow


def _comparison_file(tmp_path: Path, dataset: Path, storage: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "hamur.yaml").write_text(yaml.safe_dump({"model": {
        "name": "mlp", "hamur": {"enabled": True, "mode": "paper", "rank": 4, "hyper_hidden": [16], "bottleneck": 8}}}))
    doc = {
        "data": {"path": str(dataset), "batch_size": 512, "eval_batch_size": 4096, "materialize": True},
        "model": {"hidden_dims": [32, 16]},
        "train": {"num_workers": 1, "cpus_per_worker": 0.5, "epochs": 1, "patience": 0, "lr": 0.01,
                  "log_every_steps": 0},
        "run": {"name": "matrix", "storage_path": str(storage)},
        "ray": {"num_cpus": 4, "object_store_mb": 256},
        "compare": {"seeds": [0, 1], "max_concurrent_trials": 2, "max_failures": 0,
                    "every_model": {"model.embed_dim": 8},
                    "models": {"hamur": {"extends": "models/hamur.yaml"}, "mlp": {"set": {"model.name": "mlp"}}}},
    }
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_killed_comparison_resumes_and_writes_every_artifact(tune_dataset, tmp_path):
    exp = tmp_path / "runs" / "matrix"
    path = _comparison_file(tmp_path, tune_dataset, tmp_path / "runs")
    reports = lambda: sorted(exp.glob("runs/*/seed*/report.json"))   # noqa: E731
    with killed_command("compare", tmp_path / "first.log") as command:
        command.start("--config", str(path))
        first = command.wait_for(reports, "a finished cell")[0]
        command.kill()
        finished_before = {p: p.stat().st_mtime_ns for p in reports()}
        assert len(finished_before) < 4, "the kill came too late to test a resume"
        assert not (exp / "comparison.md").exists()
        resumed = command.resume(exp)

    assert f"{len(finished_before)} cells finished, {4 - len(finished_before)} to train" in resumed.stdout
    # finished cells were not trained again
    assert first in finished_before
    assert all(p.stat().st_mtime_ns == t for p, t in finished_before.items())
    assert len(reports()) == 4
    for name in ("comparison.md", "comparison.csv", "comparison.json", "comparison.png"):
        assert (exp / name).is_file() and (exp / name).stat().st_size > 0, name
    summary = json.loads((exp / "comparison.json").read_text())
    assert list(summary["models"]) == ["hamur", "mlp"] and summary["seeds"] == [0, 1]
    assert all(c["status"] == "completed" for c in summary["cells"])
    # the table's numbers are the runs' own test AUCs
    for model in ("hamur", "mlp"):
        aucs = [json.loads((exp / "runs" / model / f"seed{s}" / "report.json").read_text())["test"]["overall"]["auc"]
                for s in (0, 1)]
        assert summary["models"][model]["test"]["all"]["auc"]["mean"] == pytest.approx(sum(aucs) / 2)
        seeds = {yaml.safe_load((exp / "runs" / model / f"seed{s}" / "config.yaml").read_text())["train"]["seed"]
                 for s in (0, 1)}
        assert seeds == {0, 1}
    # the adapters make a different model: more parameters
    assert summary["models"]["hamur"]["parameters"] > summary["models"]["mlp"]["parameters"]
    assert "## Who leads, per domain (test AUC)" in resumed.stdout
    # the console: one line per cell, not the cells' training output (that is in ray.log and the runs)
    assert resumed.stdout.count("[hamur compare] hamur seed") + resumed.stdout.count("[hamur compare] mlp seed") >= 2
    assert "[hamur] epoch" not in resumed.stdout and "Reporting training result" not in resumed.stdout
    assert "View detailed results here" not in resumed.stdout   # Tune's own prints: in ray.log
    assert "Reporting training result" in (exp / "ray.log").read_text()
