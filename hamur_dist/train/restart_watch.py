"""Watching the worker group from Ray Train's controller: failures, restarts, and a cluster too small.

``RestartWatch`` runs in the controller (on the driver's node). It logs every worker-group failure
and restart to stdout and ``events.log``, and stops the run with ``ClusterTooSmallError`` when a
(re)start has not placed the workers for ``run.worker_wait_s``: Ray itself would wait forever
(the elastic policy below ``min_workers``, the fixed one retrying its start-up timeout). A failure
that a restart would repeat (bad input data, an incompatible checkpoint) stops the run at once
instead of using up ``run.max_failures``.
"""
from __future__ import annotations

import time
from pathlib import Path

from hamur_dist import ray_internals as ri
from hamur_dist.train.outputs import RESTART_MARK, append_event


class ClusterTooSmallError(RuntimeError):
    """The cluster could not place the workers for ``run.worker_wait_s``; the last checkpoint stays resumable."""


def deterministic_cause(error) -> BaseException | None:
    """The bad-input or incompatible-checkpoint error inside a worker-group failure, if that is what it is."""
    from hamur_dist.data.batches import InputDataError
    from hamur_dist.train.checkpoint import IncompatibleCheckpointError

    return ri.find_cause(error, (InputDataError, IncompatibleCheckpointError))


def failure_summary(error) -> str:
    """One line per failed worker: ``rank r: Type: first line (how it died)``."""
    def first_line(e):
        text = str(e).strip()
        line = text.splitlines()[0] if text else ""
        cause = getattr(e, "health_check_failure", None)
        return f"{line} ({type(cause).__name__}: {first_line(cause)})" if cause is not None else line

    failures = getattr(error, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        return "; ".join(f"rank {r}: {type(e).__name__}: {first_line(e)}" for r, e in sorted(failures.items()))
    return f"{type(error).__name__}: {first_line(error)}"


class RestartWatch(ri.ControllerCallback):
    def __init__(self, run_dir: Path, min_workers: int, resources: dict, wait_s: float, max_failures: int):
        self.run_dir, self.min_workers, self.resources = Path(run_dir), min_workers, resources
        self.wait_s, self.max_failures = wait_s, max_failures
        self.failures, self.starts, self.waiting_since = 0, 0, None

    def note(self, message: str) -> None:
        print(f"[hamur] {message}", flush=True)
        append_event(self.run_dir, message)

    def after_controller_state_update(self, previous_state, current_state):
        if isinstance(current_state, ri.RestartingState) and not isinstance(previous_state, ri.RestartingState):
            cause = deterministic_cause(current_state.training_failed_error)
            if cause is not None:   # a restart would fail the same way: stop now, keep the retries
                self.note(f"worker group failed ({type(cause).__name__}: {cause}); not restarted: "
                          "a restart would fail the same way")
                raise type(cause)(*cause.args)   # a copy: it travels to the driver with its arguments
            self.failures += 1
            self.note(f"worker group failed ({failure_summary(current_state.training_failed_error)}); "
                      f"restart {self.failures} of run.max_failures={self.max_failures}: {RESTART_MARK}")
        if (isinstance(current_state, ri.ShuttingDownState) and isinstance(current_state.next_state, ri.ErroredState)
                and isinstance(previous_state, ri.RunningState)):
            self.note(f"worker group failed ({failure_summary(current_state.next_state.training_failed_error)}); "
                      f"no restarts left (run.max_failures={self.max_failures}): stopping")
        if isinstance(current_state, ri.RunningState):
            self.waiting_since = None
        elif isinstance(current_state, ri.WAITING_STATES):
            now = time.monotonic()
            self.waiting_since = self.waiting_since or now
            if now - self.waiting_since > self.wait_s:
                import ray

                alive = ray.cluster_resources() if ray.is_initialized() else "unknown"
                message = (f"the cluster could not place {self.min_workers} worker(s) of {self.resources} for "
                           f"{self.wait_s:.0f} s (run.worker_wait_s; train.min_workers={self.min_workers}); "
                           f"alive cluster resources: {alive}")
                self.note(f"stopping: {message}")
                raise ClusterTooSmallError(message)

    def before_controller_execute_resize_decision(self, resize_decision):
        self.starts += 1
        if self.starts > 1:
            self.note(f"starting the worker group again on {resize_decision.num_workers} worker(s)")
