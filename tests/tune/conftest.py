"""Fixtures for the search tests: a tiny dataset made with the training tests' maker."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_tiny_dataset


@pytest.fixture(scope="session")
def tune_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune-data") / "ds"
    make_tiny_dataset(root, rows=(3000, 1000, 1000), shards=(3, 1, 1))
    return root
