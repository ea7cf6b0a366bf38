"""Fixtures for the fault tests: the tiny dataset, made once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_tiny_dataset


@pytest.fixture(scope="session")
def fault_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault-data") / "ds"
    make_tiny_dataset(root)
    return root
