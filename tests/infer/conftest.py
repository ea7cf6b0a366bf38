"""Fixtures of the inference tests: a tiny dataset and an untrained model artifact made without Ray.

The artifact's training manifest records what the table preparer records (preparer, vocabulary
files) plus vocabulary fingerprints and a min-max scaled dense feature, so every field the
dataset-vs-model check compares has a value to differ from.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from hamur_dist.data.manifest import load_manifest, write_manifest
from hamur_dist.model import build_model
from hamur_dist.model.artifact import save_artifact
from tests.helpers import make_tiny_dataset, small_experiment

VOCAB_FEATURES = ("user", "item", "cat")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "ds"
    manifest = make_tiny_dataset(root, rows=(600, 400, 400), shards=(2, 2, 2))
    manifest.dense[0].scaling, manifest.dense[0].params = "minmax", {"min": 0.0, "max": 1.0}
    manifest.source = {"preparer": "table", "vocab_files": {f: f"vocab/{f}.parquet" for f in VOCAB_FEATURES}}
    for i, feature in enumerate(f for f in manifest.sparse if f.name in VOCAB_FEATURES):
        feature.fingerprint = f"{i + 1:x}" * 64
    write_manifest(root, manifest)
    return root


@pytest.fixture(scope="module")
def artifact(tiny_root, tmp_path_factory) -> Path:
    """RUN_DIR/model of an untrained model on ``tiny_root`` (evaluation needs no training)."""
    cfg = small_experiment(tiny_root, tmp_path_factory.mktemp("runs"))
    manifest = load_manifest(tiny_root)
    torch.manual_seed(0)
    model = build_model(cfg.model, manifest.schema)
    return save_artifact(tmp_path_factory.mktemp("run") / "model", cfg.model, manifest, model.state_dict())


@pytest.fixture
def dataset(tiny_root, tmp_path) -> Path:
    """A copy of the tiny dataset this test may change."""
    return Path(shutil.copytree(tiny_root, tmp_path / "ds"))


@pytest.fixture
def model_copy(artifact, tmp_path) -> Path:
    """A copy of the artifact this test may change."""
    return Path(shutil.copytree(artifact, tmp_path / "run" / "model"))
