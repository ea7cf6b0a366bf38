"""Fixtures for the training tests: the tiny hand-made dataset (independent of the preparers)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_tiny_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "ds"
    make_tiny_dataset(root)
    return root
