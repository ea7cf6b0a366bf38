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
