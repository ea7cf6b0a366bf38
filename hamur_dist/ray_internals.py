"""Every use of a Ray API that is not public, in one place: a Ray upgrade is a one-file change.

Checked against ray 2.60.0 (the version pyproject.toml pins). What each item is for:

* ``ControllerCallback`` and the controller states: ``train.restart_watch`` logs worker-group
  failures and restarts and stops a run that cannot place its workers.
* ``WorkerGroupCallback`` and placement groups by id: ``tune.cleanup`` frees the placement group of
  a trial that Tune stopped.
* ``DataConfig._enable_shard_locality`` / ``_resolve_execution_options``: ``exact_split_data_config``
  splits every dataset with ``equal=False`` (Ray's default drops rows).
* the attributes Ray's errors carry their causes in (``error_causes``), ``_base_exc`` of Ray Train's
  ``UserExceptionWithTraceback`` among them.
* the logger name of Ray Train's placement-group cleaner (``PLACEMENT_GROUP_CLEANER_LOGGER``).
* the driver's dispatcher of worker output lines (``worker_output_to``): ``console`` shows our lines
  and writes Ray's to the run's log file instead of printing them.

Import this module only where Ray is already in use (it imports Ray).
"""
from __future__ import annotations

import contextlib

import ray
from ray.train import DataConfig
from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback
from ray.train.v2._internal.execution.controller.state import (
    ErroredState, InitializingState, ReschedulingState, RestartingState, RunningState, SchedulingState,
    ShuttingDownState)

CHECKED_RAY_VERSIONS = ("2.60.0",)
PLACEMENT_GROUP_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"

# Controller states in which the worker group is not running yet: it is being (re)placed.
WAITING_STATES = (InitializingState, SchedulingState, ReschedulingState, RestartingState)

__all__ = ["CHECKED_RAY_VERSIONS", "ControllerCallback", "ErroredState", "RestartingState", "RunningState",
           "ShuttingDownState", "WAITING_STATES", "WorkerGroupCallback", "error_causes", "find_cause",
           "exact_split_data_config", "placement_group_from_hex", "placement_group_of", "worker_output_to"]


def error_causes(error: BaseException) -> list:
    """The exceptions a Ray error wraps: per-worker failures, a controller failure, a health check's cause."""
    causes = []
    for attr in ("worker_failures", "_worker_failures"):
        failures = getattr(error, attr, None)
        if isinstance(failures, dict):
            causes.extend(failures.values())
    causes += [getattr(error, "cause", None), getattr(error, "controller_failure", None),
               getattr(error, "health_check_failure", None),
               getattr(error, "_base_exc", None)]   # UserExceptionWithTraceback: a worker's own exception
    return [c for c in causes if c is not None]


def find_cause(error: BaseException, types: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of ``types`` in ``error`` or anything it wraps (Python's cause and context
    chains, and Ray's wrappers above), or None."""
    seen, stack = set(), [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, types):
            return e
        stack.extend([e.__cause__, e.__context__, *error_causes(e)])
    return None


def placement_group_of(worker_group):
    """The placement group a Train worker group runs in (seen from a ``WorkerGroupCallback``)."""
    return worker_group.get_worker_group_state().placement_group_handle.placement_group


def placement_group_from_hex(hex_id: str):
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    return PlacementGroup(PlacementGroupID(bytes.fromhex(hex_id)))


def exact_split_data_config() -> DataConfig:
    """Ray Train's default DataConfig splits with ``equal=True``, which drops rows; this one keeps every row once."""

    from ray.data import DataContext, ExecutionOptions

    # Explicit options: Ray's defaults copy the deprecated ``exclude_resources`` and warn in every run.
    current = DataContext.get_current().execution_options
    options = ExecutionOptions(resource_limits=current.resource_limits, preserve_order=current.preserve_order)

    class ExactSplitDataConfig(DataConfig):
        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            output = [{} for _ in range(world_size)]
            hints = worker_node_ids if self._enable_shard_locality else None
            for name, ds in datasets.items():
                ds = ds.copy(ds)
                if ds.name is None:
                    ds.set_name(name)
                ds.context.execution_options = self._resolve_execution_options(name)
                for i, it in enumerate(ds.streaming_split(world_size, equal=False, locality_hints=hints)):
                    output[i][name] = it
            return output

    return ExactSplitDataConfig(execution_options=options)


def warn_if_unchecked(log=print) -> None:
    if ray.__version__ not in CHECKED_RAY_VERSIONS:
        log(f"[hamur] warning: ray {ray.__version__} is not a version hamur_dist.ray_internals was checked "
            f"with ({', '.join(CHECKED_RAY_VERSIONS)}); failure handling and data splitting may break")


@contextlib.contextmanager
def worker_output_to(handler):
    """On the driver, hand every batch of forwarded output to ``handler`` instead of Ray's printer
    (restored afterwards): the worker log stream's batches, and the cluster's error messages (raylet
    warnings), which Ray prints through the module function ``print_to_stdstream``. Elsewhere (a Tune
    trial's actor) nothing is forwarded: no-op."""
    from ray._private import worker as ray_worker
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    if not ray.is_initialized() or ray_worker.global_worker.mode != ray_worker.SCRIPT_MODE:
        yield
        return
    printers = [pair for pair in dispatcher.handlers if pair[0] == "ray_print_logs"]
    printer = ray_worker.print_to_stdstream
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("hamur_console", handler)
    ray_worker.print_to_stdstream = lambda data, ignore_prefix=False: handler(data)
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = printer
        dispatcher.remove_handler("hamur_console")
        if ray.is_initialized():   # ray.shutdown removes the printer itself
            for name, function in printers:
                dispatcher.add_handler(name, function)
