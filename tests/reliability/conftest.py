"""Fixtures for the fault tests: the training tests' tiny dataset, made once per session."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("hamur_tests_train_data",
                                               Path(__file__).resolve().parent.parent / "train" / "conftest.py")
_train_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_train_data)
make_tiny_dataset = _train_data.make_tiny_dataset


@pytest.fixture(scope="session")
def fault_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault-data") / "ds"
    make_tiny_dataset(root)
    return root
