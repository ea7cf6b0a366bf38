"""Every experiment YAML in configs/ with a model section loads and builds its model."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from hamur_dist.config import ExperimentConfig, load_experiment
from hamur_dist.model import build_model, count_parameters
from tests.model.model_helpers import fake_schema, random_batch

ROOT = Path(__file__).resolve().parents[2] / "configs"


EXPERIMENT_KEYS = {f.name for f in dataclasses.fields(ExperimentConfig)} | {"extends"}


def _experiment_configs():
    """Every YAML under configs/ shaped as an experiment config (only experiment sections at the
    top level). Files with other top-level keys (a tune search, a dataset recipe) belong to other
    suites."""
    found = []
    for path in sorted(ROOT.glob("**/*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and data and set(data) <= EXPERIMENT_KEYS:
            found.append(path)
    return found


MODEL_CONFIGS = _experiment_configs()


def test_the_model_configs_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in MODEL_CONFIGS}
    for want in ("models/ml1m/mlp_hamur.yaml", "models/aliccp/dcn.yaml", "models/baselines/ple.yaml"):
        assert want in names


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_loads_and_builds(path):
    cfg = load_experiment(path)
    schema = fake_schema([50, 20, 4], num_dense=2, num_domains=3)
    model = build_model(cfg.model, schema)
    assert count_parameters(model) > 0
    out = model(*random_batch(schema, 8))
    out.sum().backward()
    assert out.shape == (8,) and torch.isfinite(out).all()


def test_a_wrong_model_key_names_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: mlp\n  hamur:\n    rnak: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*model.hamur.rnak"):
        load_experiment(bad)
    bad.write_text("model:\n  name: mmoe\n  hamur:\n    enabled: true\n")
    with pytest.raises(ValueError, match="model.hamur.enabled"):
        load_experiment(bad)
