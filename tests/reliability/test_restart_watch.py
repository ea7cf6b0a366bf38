"""The controller callback that logs restarts and stops a run whose workers cannot be placed, driven
with Ray Train's own controller states (no cluster needed), and the elastic scaling config."""
from __future__ import annotations

import time

import pytest

from hamur_dist.config import load_experiment
from hamur_dist.config_loader import ConfigError
from hamur_dist.data.batches import InputDataError
from hamur_dist.train.checkpoint import IncompatibleCheckpointError
from hamur_dist.train.restart_watch import ClusterTooSmallError, RestartWatch
from hamur_dist.train.trainer import _num_workers, _unwrap
from tests.helpers import events

from ray.train.v2._internal.execution.controller.state import (ErroredState, InitializingState, ReschedulingState,
                                                                RestartingState, RunningState, SchedulingState,
                                                                ShuttingDownState)
from ray.train.v2._internal.execution.scaling_policy import ResizeDecision
from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError


def worker_died():
    return WorkerGroupError("rank 1 died", {1: RuntimeError("The actor died unexpectedly before finishing")})


def test_restarts_and_final_failure_are_logged(tmp_path, capsys):
    watch = RestartWatch(tmp_path, 2, {"CPU": 0.5}, wait_s=60, max_failures=1)
    decision = ResizeDecision(num_workers=2, resources_per_worker={"CPU": 0.5})
    watch.before_controller_execute_resize_decision(decision)
    watch.after_controller_state_update(InitializingState(), SchedulingState(decision))
    watch.after_controller_state_update(SchedulingState(decision), RunningState())
    watch.after_controller_state_update(RunningState(), RestartingState(worker_died()))
    watch.before_controller_execute_resize_decision(ResizeDecision(num_workers=1, resources_per_worker={"CPU": 0.5}))
    watch.after_controller_state_update(RestartingState(worker_died()), RunningState())
    watch.after_controller_state_update(RunningState(), ShuttingDownState(ErroredState(worker_died())))
    log = [line.split(" ", 2)[2] for line in events(tmp_path)]
    assert log == [
        "worker group failed (rank 1: RuntimeError: The actor died unexpectedly before finishing); "
        "restart 1 of run.max_failures=1: resuming from the latest checkpoint",
        "starting the worker group again on 1 worker(s)",
        "worker group failed (rank 1: RuntimeError: The actor died unexpectedly before finishing); "
        "no restarts left (run.max_failures=1): stopping",
    ]
    assert "[hamur] worker group failed" in capsys.readouterr().out


def test_waiting_longer_than_worker_wait_s_stops_the_run(tmp_path):
    watch = RestartWatch(tmp_path, 2, {"CPU": 2}, wait_s=0.2, max_failures=3)
    restarting = RestartingState(worker_died())
    watch.after_controller_state_update(RunningState(), restarting)
    watch.after_controller_state_update(restarting, restarting)          # elastic policy: still too few
    time.sleep(0.3)
    with pytest.raises(ClusterTooSmallError, match=r"could not place 2 worker\(s\) of \{'CPU': 2\} for 0 s"):
        watch.after_controller_state_update(restarting, restarting)
    assert "stopping: the cluster could not place 2 worker(s)" in events(tmp_path)[-1]
    # a group that starts in time resets the clock
    watch = RestartWatch(tmp_path, 2, {"CPU": 2}, wait_s=0.2, max_failures=3)
    watch.after_controller_state_update(RunningState(), restarting)
    time.sleep(0.3)
    watch.after_controller_state_update(restarting, RunningState())
    watch.after_controller_state_update(RunningState(), ReschedulingState(worker_died()))


def test_the_error_reaches_the_user_through_rays_wrapping():
    error = ControllerError(ClusterTooSmallError("the cluster could not place 2 worker(s)"))
    assert _unwrap(error) == "ClusterTooSmallError: the cluster could not place 2 worker(s)"


def test_min_workers_makes_the_worker_group_elastic():
    def workers(*overrides):
        return _num_workers(load_experiment(None, list(overrides)))

    assert workers("train.num_workers=2") == 2
    assert workers("train.num_workers=3", "train.min_workers=1") == (1, 3)
    assert workers("train.num_workers=2", "train.min_workers=2") == 2     # min == max: fixed
    with pytest.raises(ConfigError, match=r"train.min_workers must be in \[0, train.num_workers=2\], got 3"):
        workers("train.num_workers=2", "train.min_workers=3")
    from ray.train import ScalingConfig

    elastic = ScalingConfig(num_workers=workers("train.num_workers=3", "train.min_workers=1"))
    assert elastic.elasticity_enabled and (elastic.min_workers, elastic.max_workers) == (1, 3)


def test_a_killed_worker_is_reported_with_how_it_died(tmp_path):
    from ray.exceptions import ActorDiedError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    killed = WorkerGroupError("rank 1", {1: WorkerHealthCheckFailedError("A worker health check failed.", ActorDiedError())})
    watch = RestartWatch(tmp_path, 2, {"CPU": 0.5}, wait_s=60, max_failures=2)
    watch.after_controller_state_update(RunningState(), RestartingState(killed))
    [line] = events(tmp_path)
    assert ("worker group failed (rank 1: WorkerHealthCheckFailedError: A worker health check failed. "
            "(ActorDiedError: The actor died unexpectedly before finishing this task.)); restart 1 of") in line


@pytest.mark.parametrize("cause", [InputDataError("column 'x': dense value nan is not finite", "train"),
                                   IncompatibleCheckpointError("checkpoint is incompatible with this config: model.x")])
def test_a_failure_a_restart_would_repeat_stops_the_run_without_using_a_retry(tmp_path, cause):
    watch = RestartWatch(tmp_path, 2, {"CPU": 0.5}, wait_s=60, max_failures=3)
    failed = WorkerGroupError("rank 0 failed", {0: RuntimeError("wrapped"), 1: cause})
    with pytest.raises(type(cause)) as err:
        watch.after_controller_state_update(RunningState(), RestartingState(failed))
    assert err.value.args == cause.args            # the copy carries the split to the driver
    assert watch.failures == 0
    [line] = events(tmp_path)
    assert f"{type(cause).__name__}: {cause}" in line and "not restarted" in line


def test_the_driver_names_file_row_and_column_of_bad_input(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hamur_dist.data.manifest import load_manifest
    from tests.helpers import make_tiny_dataset

    make_tiny_dataset(tmp_path / "ds")
    manifest = load_manifest(tmp_path / "ds")
    shard = tmp_path / "ds" / manifest.splits["val"].shards[1].path
    table = pq.read_table(shard)
    x = table.column("x").to_numpy().copy()
    x[5] = np.inf
    pq.write_table(table.set_column(table.schema.get_field_index("x"), "x", pa.array(x, pa.float32())), shard)
    error = ControllerError(InputDataError("column 'x': dense value inf is not finite", "val"))
    message = _unwrap(error, str(tmp_path / "ds"), manifest)
    assert message.startswith("InputDataError: bad input row: ") and f"{shard}, row 5, column 'x'" in message


def test_a_workers_own_exception_is_found_inside_rays_wrapper(tmp_path):
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    wrapped = UserExceptionWithTraceback(InputDataError("column 'x': bad", "train"), "Traceback ...")
    watch = RestartWatch(tmp_path, 2, {"CPU": 0.5}, wait_s=60, max_failures=3)
    with pytest.raises(InputDataError):
        watch.after_controller_state_update(RunningState(), RestartingState(WorkerGroupError("x", {0: wrapped})))
