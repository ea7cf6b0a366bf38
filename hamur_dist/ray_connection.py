"""Connecting to Ray: join a cluster, or start a local Ray for one command, with the runtime env it needs.

``LOCAL_RUNTIME_ENV`` is what the local Ray's worker processes get: a setup hook that silences
known noise, and ``MALLOC_ARENA_MAX=2`` (glibc reads it only at process start; with its default of
8 arenas per core a worker's private memory crept up every epoch: docs/reliability.md). On a
cluster the image or the job's runtime env sets it instead (docs/deploy.md).
"""
from __future__ import annotations

import contextlib
import logging
import os

WORKER_ENV = {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}

LOCAL_RUNTIME_ENV = {"worker_process_setup_hook": f"{__name__}.quiet_known_noise", "env_vars": WORKER_ENV}


def quiet_known_noise() -> None:
    """Ray Train's placement-group cleaner asks the State API (which needs the dashboard, off in our
    local Ray) every second whether the controller lives, and logs each failed question."""
    from hamur_dist.ray_internals import PLACEMENT_GROUP_CLEANER_LOGGER

    logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).setLevel(logging.ERROR)


STARTUP_TRIES = 3


def _start_local(ray, cpus: int, object_store_mb: int, log) -> None:
    """``ray.init`` of a local Ray. Ray gives its raylet a fixed 30 s to register and fails the start
    on a machine busy enough to miss that (measured: another training run and a test suite on 2
    cores); a fresh start then usually succeeds, so try again before giving up."""
    for attempt in range(1, STARTUP_TRIES + 1):
        try:
            ray.init(num_cpus=cpus, object_store_memory=object_store_mb * 1024**2,
                     include_dashboard=False, configure_logging=False, runtime_env=LOCAL_RUNTIME_ENV)
            return
        except Exception as exc:   # noqa: BLE001 - Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == STARTUP_TRIES:
                raise
            log(f"[hamur] the local Ray did not start in time (busy machine?); starting it again "
                f"({attempt + 1}/{STARTUP_TRIES})")
            ray.shutdown()


@contextlib.contextmanager
def ray_cluster(rc, log=print):
    """Join ``rc.address`` / ``RAY_ADDRESS`` if given, else start a local Ray for this block only.
    ``rc``: a ``RayConfig``. A connection the caller already holds (test, Tune, notebook) is used as it is."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = rc.address or os.environ.get("RAY_ADDRESS")
    if address:
        log(f"[hamur] joining Ray cluster at {address}")
        ray.init(address=address, log_to_driver=True)
    else:
        cpus = rc.num_cpus or max(4, 2 * (os.cpu_count() or 1))
        log(f"[hamur] starting local Ray ({cpus} logical CPUs, {rc.object_store_mb} MB object store)")
        _start_local(ray, cpus, rc.object_store_mb, log)
    try:
        from hamur_dist.ray_internals import warn_if_unchecked

        warn_if_unchecked(log)
        yield
    finally:
        ray.shutdown()
