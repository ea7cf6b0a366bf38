"""Worker failures on the shared Ray: a SIGKILLed worker, a failure injected at a step (with and
without restarts left), and a corrupt latest checkpoint. Every recovered run must finish with exact
per-epoch sample counts and a test AUC close to an uninterrupted run with the same seed."""
from __future__ import annotations

from pathlib import Path

import pytest

from hamur_dist.train.outputs import RESTART_MARK
from tests.helpers import checkpoint_dirs, events, history, report_test_auc, small_experiment
from tests.reliability.faults import AUC_NOISE, WorkerKiller
from hamur_dist.data.manifest import load_manifest
from hamur_dist.train import checkpoint as ckpt
from hamur_dist.train.trainer import TrainingError, train

pytestmark = pytest.mark.slow

EPOCHS = "train.epochs=2"


def quiet(*_):
    pass


def assert_exact_epochs(run_dir: Path, dataset: Path, epochs: int) -> None:
    rows = load_manifest(dataset).splits["train"].rows
    hist = history(run_dir)
    assert [h["epoch"] for h in hist] == list(range(epochs))
    assert [h["train/samples"] for h in hist] == [rows] * epochs   # no epoch shortened or doubled


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fault-runs")


@pytest.fixture(scope="module")
def baseline(ray_session, fault_dataset, storage):
    """The uninterrupted run every recovered run is compared with."""
    result = train(small_experiment(fault_dataset, storage, EPOCHS, "run.name=baseline"), log=quiet)
    assert_exact_epochs(result.run_dir, fault_dataset, 2)
    return result


def mid_epoch_1(baseline) -> int:
    """A global step a few steps into epoch 1 (steps per epoch vary by a step or two between runs)."""
    return baseline.history[0]["global_step"] + 3


def test_injected_failure_is_retried_once_and_the_run_matches_an_uninterrupted_one(baseline, fault_dataset, storage):
    step = mid_epoch_1(baseline)
    result = train(small_experiment(fault_dataset, storage, EPOCHS, "run.name=inject1", "run.max_failures=1",
                       f"train.fail_at_step={step}"), log=quiet)
    assert (result.run_dir / ".fault_injected").read_text() == str(step)   # injected exactly once
    log = events(result.run_dir)
    assert sum("restart 1 of run.max_failures=1" in line for line in log) == 1, log
    assert not any("restart 2" in line for line in log)
    assert any("resumed from the checkpoint after epoch 0 on 2 worker(s)" in line for line in log), log
    assert_exact_epochs(result.run_dir, fault_dataset, 2)
    assert report_test_auc(result.run_dir) == pytest.approx(report_test_auc(baseline.run_dir), abs=AUC_NOISE)


def test_sigkilled_worker_restarts_the_group_from_the_last_checkpoint(baseline, fault_dataset, storage):
    run_dir = storage / "sigkill"
    killer = WorkerKiller(run_dir, after_epoch=0)    # kills in epoch 1, once epoch 0's checkpoint is in
    killer.start()
    result = train(small_experiment(fault_dataset, storage, EPOCHS, "run.name=sigkill", "run.max_failures=2"), log=quiet)
    killer.join(timeout=5)
    assert killer.killed is not None, killer.error or "the run finished before a worker could be killed"
    log = events(run_dir)
    failures = [line for line in log if "worker group failed" in line]
    assert len(failures) == 1 and "restart 1 of run.max_failures=2" in failures[0], log
    assert "ActorDiedError" in failures[0], failures[0]
    assert any("resumed from the checkpoint after epoch 0 on 2 worker(s)" in line for line in log), log
    assert_exact_epochs(result.run_dir, fault_dataset, 2)
    assert report_test_auc(result.run_dir) == pytest.approx(report_test_auc(baseline.run_dir), abs=AUC_NOISE)


@pytest.fixture(scope="module")
def stopped_run(baseline, fault_dataset, storage):
    """A 3-epoch run that fails in epoch 2 with no restarts allowed, leaving the checkpoints of epochs 0
    and 1; returns (run_dir, the TrainingError)."""
    with pytest.raises(TrainingError) as err:
        train(small_experiment(fault_dataset, storage, "train.epochs=3", "run.name=stopped", "run.max_failures=0",
                  f"train.fail_at_step={baseline.history[1]['global_step'] + 3}"), log=quiet)
    return storage / "stopped", err.value


def test_without_restarts_the_run_stops_with_a_clear_error_and_a_resumable_checkpoint(stopped_run):
    run_dir, error = stopped_run
    assert f"hamur train --resume {run_dir}" in str(error)
    assert any("no restarts left (run.max_failures=0): stopping" in line for line in events(run_dir))
    assert [h["epoch"] for h in history(run_dir)] == [0, 1]
    good = [d for d in checkpoint_dirs(run_dir) if ckpt.verify(d) is not None]
    assert len(good) >= 2, "the checkpoints of epochs 0 and 1 did not survive the failure"


def test_an_incompatible_resume_is_refused_and_leaves_the_runs_config_as_it_was(stopped_run, capsys):
    from hamur_dist.cli import main

    run_dir, _ = stopped_run
    before = (run_dir / "config.yaml").read_bytes()
    assert main(["train", "--resume", str(run_dir), "model.hidden_dims=[8]", "run.max_failures=2"]) == 1
    out = capsys.readouterr().out
    assert "model.hidden_dims: checkpoint has [32, 16], this run has [8]" in out, out
    assert (run_dir / "config.yaml").read_bytes() == before      # a plain --resume still works (next test)
    assert not any(RESTART_MARK in line for line in events(run_dir)[-2:])   # not retried


def test_corrupt_latest_checkpoint_is_skipped_and_the_previous_one_resumed(stopped_run, baseline, fault_dataset):
    """The stopped run resumed (``hamur train --resume``) after its latest checkpoint was truncated:
    the previous one is used, and the run completes."""
    from hamur_dist.cli import main

    run_dir, _ = stopped_run
    latest = checkpoint_dirs(run_dir)[-1]
    state = latest / ckpt.STATE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])   # truncated, as by a full disk
    with pytest.raises(ckpt.CheckpointError, match="state.pt is corrupt"):
        ckpt.verify(latest)

    assert main(["train", "--resume", str(run_dir)]) == 0
    log = events(run_dir)
    skipped = [line for line in log if line.split(" ", 2)[2].startswith("skipping checkpoint")]
    assert skipped and latest.name in skipped[-1] and "state.pt is corrupt (content hash differs)" in skipped[-1]
    assert "resumed from the checkpoint after epoch 0" in log[log.index(skipped[-1]) + 1]
    assert (run_dir / ".fault_injected").is_file()      # the marker keeps the resumed run from failing again
    assert_exact_epochs(run_dir, fault_dataset, 3)
    assert report_test_auc(run_dir) == pytest.approx(report_test_auc(baseline.run_dir), abs=AUC_NOISE)
