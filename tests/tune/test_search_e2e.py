"""A tiny real search on the shared Ray: 4 trials x 2 epochs, ASHA, every artifact, the best config re-trains."""
from __future__ import annotations

import csv
import json

import pytest
import yaml

from hamur_dist.config import load_experiment
from hamur_dist.data.manifest import load_manifest
from hamur_dist.tune.config import load_search
from hamur_dist.tune.driver import run_search

from tests.helpers import history as read_history
from tests.tune.tune_helpers import write_search_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def search(ray_session, tune_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    path = write_search_file(tmp / "search.yaml", tune_dataset, tmp / "runs", "tiny", epochs=2)
    experiment, tune = load_search(path)
    return run_search(experiment, tune, config_path=str(path), log=lambda *_: None), tune


def test_every_trial_is_a_training_run_with_its_own_values(search, tune_dataset):
    result, tune = search
    rows = result.trials
    assert len(rows) == 4
    assert {(r.params["model.hamur.rank"], tuple(r.params["model.hamur.hyper_hidden"])) for r in rows} \
        == {(2, (8,)), (2, (16,)), (8, (8,)), (8, (16,))}
    train_rows = load_manifest(tune_dataset).splits["train"].rows
    for row in rows:
        run_cfg = yaml.safe_load((row.run_dir / "config.yaml").read_text())
        assert run_cfg["model"]["hamur"]["rank"] == row.params["model.hamur.rank"]
        assert run_cfg["model"]["hamur"]["hyper_hidden"] == row.params["model.hamur.hyper_hidden"]
        assert run_cfg["train"]["num_workers"] == 1
        history = read_history(row.run_dir)
        assert [h["epoch"] for h in history] == list(range(row.epochs_run))
        assert all(h["train/samples"] == train_rows for h in history)   # full epochs from Ray Data
        assert any((row.run_dir / "tb").iterdir())                       # TensorBoard logs under the experiment
        # ASHA (grace 1, one rung before the last epoch) stops a trial after epoch 0 or lets it finish and
        # test; a stop can land only after the trial went on a little (reports do not wait for Tune).
        if row.status == "completed":
            assert row.epochs_run == 2 and 0.5 < row.test["test/auc"] <= 1
        else:
            assert row.status == "stopped early" and row.epochs_run >= 1 and not row.test
    assert sum(r.status == "completed" for r in rows) >= 1   # the first trial at a rung is never cut


def test_ended_trials_leave_no_train_workers_reserved(search, ray_session):
    """Every worker group's placement group is gone after the search, also those of stopped trials."""
    from hamur_dist.tune.cleanup import RECORD

    result, _ = search
    recorded = [line for row in result.trials for line in (row.run_dir / RECORD).read_text().split()]
    assert len(recorded) >= len(result.trials)   # one per worker-group start
    table = ray_session.util.placement_group_table()
    assert {table[pg]["state"] for pg in recorded if pg in table} <= {"REMOVED"}


def test_tune_got_the_epoch_reports_and_the_final_report(search):
    result, _ = search
    finished = 0
    for row in result.trials:
        tune_results = [json.loads(x) for x in (result.experiment_dir / row.trial_id / "result.json").read_text().splitlines()]
        epochs = [r for r in tune_results if not r.get("final")]
        assert [r["epochs_done"] for r in epochs] == list(range(1, len(epochs) + 1))
        assert 1 <= len(epochs) <= row.epochs_run
        finals = [r for r in tune_results if r.get("final")]
        assert len(finals) <= 1
        if finals:
            finished += 1
            assert "epochs_done" not in finals[0]   # ASHA ignores the test report
            assert finals[0]["test/auc"] == pytest.approx(row.test["test/auc"])
            assert finals[0]["val/auc"] == pytest.approx(row.best["val/auc"])
    assert finished >= 1


def test_artifacts_and_the_best_config_retrains(search, tune_dataset):
    result, tune = search
    exp = result.experiment_dir
    for name in ("tune.yaml", "trials.csv", "trials.md", "best.yaml", "auc_vs_rank.png"):
        assert (exp / name).is_file(), name
    with open(exp / "trials.csv") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["trial_id"] for r in table) == sorted(r.trial_id for r in result.trials)
    best_val = max(r.best["val/auc"] for r in result.trials)
    assert result.best.best["val/auc"] == best_val
    assert "test/d2/auc" in table[0] and "val/d0/auc" in table[0] and "parameters" in table[0]

    best = load_experiment(exp / "best.yaml", ["train.epochs=1", f"run.storage_path={exp.parent}",
                                               "run.name=best-retrain"])
    assert best.model.hamur.rank == result.best.params["model.hamur.rank"]
    assert best.model.hamur.hyper_hidden == result.best.params["model.hamur.hyper_hidden"]
    from hamur_dist.train.trainer import train

    retrained = train(best, log=lambda *_: None)
    assert retrained.report["test"]["overall"]["auc"] > 0.5
    assert len(retrained.history) == 1
