"""Fixtures for the model tests: a small MovieLens-1M set shaped as the HAMUR reference uses it."""
from __future__ import annotations

import os

import pytest

from tests.model.model_helpers import load_ml1m_subset


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


@pytest.fixture(scope="session")
def ml1m_small(ml1m_dir):
    """The first 100k ML-1M ratings, split 80/10/10 at random (tensors + FeatureSchema)."""
    return load_ml1m_subset(ml1m_dir, rows=100_000)
