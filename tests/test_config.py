"""Experiment configs from YAML and key=value overrides: types, names in errors, extends."""
from __future__ import annotations

import pytest

from hamur_dist.config import load_experiment
from hamur_dist.config_loader import ConfigError


def test_numbers_in_exponent_form_without_a_dot_are_numbers():
    # YAML 1.1 reads 3e-5 as a string; users type it that way on the command line
    cfg = load_experiment(None, ["train.weight_decay=3e-5", "train.lr=1E-3", "train.lr_decay=0.9"])
    assert cfg.train.weight_decay == pytest.approx(3e-5)
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.lr_decay == pytest.approx(0.9)


@pytest.mark.parametrize("override, message", [
    ("train.weight_decay=lots", "config key 'train.weight_decay': expected a number, got 'lots'"),
    ("train.epochs=2.5", "config key 'train.epochs': expected an integer, got 2.5"),
    ("train.lr_decay=1.5", "train.lr_decay must be in (0, 1], got 1.5"),
    ("trian.epochs=2", "unknown config key 'trian'"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_experiment(None, [override])
    assert message in str(err.value)


def test_extends_and_overrides_win_in_order(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 4\n  lr: 0.01\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ntrain:\n  epochs: 6\n")
    cfg = load_experiment(tmp_path / "child.yaml", ["train.lr=2e-3"])
    assert (cfg.train.epochs, cfg.train.lr) == (6, pytest.approx(2e-3))


@pytest.mark.parametrize("overrides, message", [
    (["checkpoint.every_epochs=0"], "checkpoint.every_epochs must be >= 1"),
    (["checkpoint.num_to_keep=0"], "checkpoint.num_to_keep must be >= 1"),
    (["train.precision=bf16"], "train.precision: bf16 autocast runs on GPUs only"),
    (["model.hamur.enabled=true", "model.hidden_dims=[32,16]", "model.hamur.insert_after=[2]"],
     "model.hamur.insert_after: hidden layer 2 does not exist (model 'mlp' has 2 hidden layers"),
    (["model.hamur.enabled=true", "model.hidden_dims=[32]", "model.hamur.insert_after=[-2]"],
     "hidden layer -2 does not exist"),
])
def test_values_that_could_only_fail_in_a_worker_are_refused_at_load(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_experiment(None, overrides)


def test_adapter_slots_count_the_bottom_and_the_towers_of_shared_bottom():
    cfg = load_experiment(None, ["model.name=shared_bottom", "model.hidden_dims=[32]", "model.tower_dims=[16]",
                                 "model.hamur.enabled=true", "model.hamur.insert_after=[1]"])
    assert cfg.model.hidden_layer_count() == 2
    assert load_experiment(None, ["train.precision=bf16", "train.use_gpu=true"]).train.precision == "bf16"
