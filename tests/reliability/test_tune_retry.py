"""A crashing Tune trial is retried and continues its own training run from the last checkpoint
(the driver-death resume of a whole search is tests/tune/test_resume.py)."""
from __future__ import annotations

import pytest
import yaml

from tests.helpers import events, history
from hamur_dist.data.manifest import load_manifest

pytestmark = pytest.mark.slow


def test_a_crashing_trial_is_retried_and_resumes_its_run(ray_session, fault_dataset, tmp_path):
    from hamur_dist.tune.config import load_search
    from hamur_dist.tune.driver import run_search

    search = {
        "data": {"path": str(fault_dataset), "batch_size": 512, "materialize": True},
        "model": {"name": "mlp", "hidden_dims": [32, 16], "hamur": {"enabled": True, "rank": 4, "hyper_hidden": [16]}},
        # each trial's own TorchTrainer may not restart (run.max_failures=0): the crash reaches Tune
        "train": {"num_workers": 1, "epochs": 2, "patience": 0, "lr": 0.01, "log_every_steps": 0,
                  "fail_at_step": 22},   # 12 steps an epoch: late in epoch 1, long after epoch 0's checkpoint was registered
        "run": {"name": "retry", "storage_path": str(tmp_path), "max_failures": 0},
        "tune": {"search": "grid", "max_failures": 1, "max_concurrent_trials": 1, "scheduler": {"enabled": False},
                 "space": {"model.hamur.rank": {"grid": [4]}}},
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(search))
    experiment, tune_cfg = load_search(path)
    result = run_search(experiment, tune_cfg, config_path=str(path), log=lambda *_: None)

    [trial] = result.trials
    assert trial.status == "completed", trial.status
    run_dir = trial.run_dir
    assert (run_dir / ".fault_injected").read_text() == "22"      # it did crash, once
    log = events(run_dir)
    stop = [i for i, line in enumerate(log) if "no restarts left (run.max_failures=0)" in line]
    resumed = [i for i, line in enumerate(log) if "resumed from the checkpoint after epoch 0" in line]
    assert stop and resumed and resumed[0] > stop[0], log             # Tune's retry continued the run
    rows = load_manifest(fault_dataset).splits["train"].rows
    assert [(h["epoch"], h["train/samples"]) for h in history(run_dir)] == [(0, rows), (1, rows)]
    assert trial.epochs_run == 2 and (run_dir / "report.json").is_file()
