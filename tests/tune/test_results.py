"""Tables, best config and plot from trial run directories (no Ray: trials are laid out by hand)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hamur_dist.config import load_experiment
from hamur_dist.data.manifest import load_manifest
from hamur_dist.model import build_model, count_parameters
from hamur_dist.tune.config import load_search
from hamur_dist.tune.results import write_outputs

from tests.tune.tune_helpers import write_search_file


@dataclass
class FakeResult:   # the three fields of ray.tune.Result the tables read
    path: str
    config: dict
    error: Exception | None = None


def _write_run(run_dir: Path, val_aucs: list[float], domains: int, test_auc: float | None):
    """metrics.jsonl with one row per epoch; report.json only when the run finished (test_auc given)."""
    run_dir.mkdir(parents=True)
    rows = []
    for epoch, auc in enumerate(val_aucs):
        row = {"epoch": epoch, "train/loss": 0.6, "val/auc": auc}
        row.update({f"val/d{d}/auc": auc - 0.01 * (d + 1) for d in range(domains)})
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if test_auc is not None:
        entry = {"count": 10, "positive_rate": 0.5, "logloss": 0.6}
        test = {"overall": {**entry, "auc": test_auc},
                "domains": [{**entry, "domain": d, "name": f"d{d}", "auc": test_auc + 0.001 * d} for d in range(domains)]}
        (run_dir / "report.json").write_text(json.dumps({"test": test}))


@pytest.fixture()
def search(tmp_path, tune_dataset):
    path = write_search_file(tmp_path / "s.yaml", tune_dataset, tmp_path / "runs", "exp", epochs=3)
    experiment, tune = load_search(path)
    exp_dir = tmp_path / "runs" / "exp"
    domains = load_manifest(tune_dataset).domain.num_domains
    # (rank, hidden) -> per-epoch val AUC, test AUC (None: stopped early)
    plan = {"t0": ((2, [8]), [0.70, 0.72, 0.71], 0.715), "t1": ((8, [8]), [0.69, 0.74, 0.76], 0.755),
            "t2": ((2, [16]), [0.60], None), "t3": ((8, [16]), [0.71, 0.73, 0.73], 0.728)}
    grid = []
    for trial_id, ((rank, hidden), aucs, test) in plan.items():
        _write_run(exp_dir / "runs" / trial_id, aucs, domains, test)
        grid.append(FakeResult(str(exp_dir / trial_id), {"model.hamur.rank": rank,
                                                         "model.hamur.hyper_hidden": json.dumps(hidden)}))
    grid.append(FakeResult(str(exp_dir / "t4"), {"model.hamur.rank": 4, "model.hamur.hyper_hidden": "[8]"},
                           RuntimeError("worker died\nTrainingError: bad input row")))
    return experiment, tune, exp_dir, grid, plan


def test_tables_best_config_and_plot(search, tune_dataset):
    experiment, tune, exp_dir, grid, plan = search
    manifest = load_manifest(tune_dataset)
    rows, best, files = write_outputs(grid, experiment, tune, exp_dir, manifest)

    by_id = {r.trial_id: r for r in rows}
    assert set(by_id) == {"t0", "t1", "t2", "t3", "t4"}
    assert best.trial_id == "t1" and best.best_epoch == 2 and best.best["val/auc"] == pytest.approx(0.76)
    assert by_id["t0"].best_epoch == 1 and by_id["t0"].best["val/d1/auc"] == pytest.approx(0.72 - 0.02)
    assert by_id["t2"].status == "stopped early" and by_id["t2"].test == {}
    assert by_id["t1"].status == "completed" and by_id["t1"].test["test/auc"] == pytest.approx(0.755)
    assert by_id["t4"].status == "error: TrainingError: bad input row" and by_id["t4"].epochs_run == 0
    for row in rows:   # parameter counts are the trial's own model
        cfg = experiment.model
        cfg.hamur.rank, cfg.hamur.hyper_hidden = row.rank, row.hyper_hidden
        assert row.parameters == count_parameters(build_model(cfg, manifest.schema))
    assert by_id["t0"].parameters < by_id["t1"].parameters   # K=8 has bigger adapters than K=2

    with open(files["table_csv"]) as f:
        table = {r["trial_id"]: r for r in csv.DictReader(f)}
    assert table["t1"]["model.hamur.hyper_hidden"] == "[8]" and table["t1"]["epochs_run"] == "3"
    assert float(table["t3"]["val/auc"]) == pytest.approx(0.73) and float(table["t3"]["test/d2/auc"]) == pytest.approx(0.730)
    assert table["t2"]["test/auc"] == "" and table["t2"]["run_dir"] == "runs/t2"
    md = files["table_md"].read_text()
    assert "**Best trial: t1**" in md
    assert sorted(line.split(" | ")[0] for line in md.splitlines() if line.startswith("| t") and "trial_id" not in line) \
        == ["| t0", "| t1", "| t2", "| t3", "| t4"]

    best_cfg = load_experiment(files["best_config"])   # a ready `hamur train` config
    assert (best_cfg.model.hamur.rank, best_cfg.model.hamur.hyper_hidden) == (8, [8])
    assert best_cfg.run.name is None and not best_cfg.run.resume
    assert best_cfg.data.path == experiment.data.path and best_cfg.train.epochs == 3
    assert "test AUC 0.7550" in files["best_config"].read_text().splitlines()[0]

    assert files["plot"].stat().st_size > 10_000
    assert files["plot"].read_bytes()[:4] == b"\x89PNG"


def test_the_search_metric_can_be_minimised(search, tune_dataset):
    experiment, tune, exp_dir, grid, _ = search
    tune.mode = "min"
    rows, best, _ = write_outputs(grid, experiment, tune, exp_dir, load_manifest(tune_dataset))
    assert best.trial_id == "t2" and {r.trial_id: r.best_epoch for r in rows}["t0"] == 0
