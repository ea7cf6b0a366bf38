"""Shared fixtures: the real datasets in ../shared/data and one Ray instance for the whole session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports torch or Ray: one intra-op thread per process (2 cores are shared by
# several processes; more threads collapse throughput), and explicit Ray auth (no hidden state in $HOME).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Ray Train's controller polls its workers this often (default 2 s): a finished run, a report or a
# failure is seen sooner.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HAMUR_SHARED_DATA", REPO.parent / "shared" / "data"))


def _need(path: Path) -> Path:
    if path.exists():
        return path
    reason = f"real data not found at {path} (set HAMUR_SHARED_DATA to the shared/data folder)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + "; CI must run every real-data test")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder: skipped for users without it, a failure in CI."""
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def ml1m_dir(shared_data) -> Path:
    return _need(shared_data / "movielens-1m" / "full")


@pytest.fixture(scope="session")
def ml1m_dataset(ml1m_dir, tmp_path_factory) -> Path:
    """MovieLens-1M from the shared folder, prepared once per session (100k-row shards)."""
    from hamur_dist.data import prepare

    out = tmp_path_factory.mktemp("datasets") / "ml1m"
    prepare("movielens-1m", out, source=str(ml1m_dir), progress=False)
    return out


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every test that needs it: logical CPUs leave room for Ray Data read tasks."""
    import ray

    if not ray.is_initialized():
        from hamur_dist.ray_connection import LOCAL_RUNTIME_ENV

        ray.init(num_cpus=4, object_store_memory=512 * 1024**2, include_dashboard=False,
                 log_to_driver=True, configure_logging=False, runtime_env=LOCAL_RUNTIME_ENV)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tune_dataset(tmp_path_factory) -> Path:
    """A tiny dataset for the search and comparison tests (each trial or cell is a full training run)."""
    from tests.helpers import make_tiny_dataset

    root = tmp_path_factory.mktemp("tune-data") / "ds"
    make_tiny_dataset(root, rows=(3000, 1000, 1000), shards=(3, 1, 1))
    return root
