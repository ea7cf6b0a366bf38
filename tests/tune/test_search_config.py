"""Search files: splitting into experiment + tune, validation errors that name the key, param spaces."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hamur_dist.config_loader import ConfigError
from hamur_dist.tune.config import load_search
from hamur_dist.tune.space import decode_params, param_space, trial_experiment, validate_space
from hamur_dist.config import to_dict

REPO = Path(__file__).resolve().parents[2]


def _search(tmp_path, tune: dict, **sections) -> Path:
    doc = {"model": {"hamur": {"enabled": True}}, **sections, "tune": tune}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_shipped_search_files_load_and_validate():
    experiment, tune = load_search(REPO / "configs/tune/movielens1m.yaml")
    validate_space(experiment, tune)
    assert tune.space["model.hamur.rank"] == {"grid": [4, 8, 16, 32, 64]}
    assert tune.space["model.hamur.hyper_hidden"] == {"grid": [[32], [64], [128]]}
    assert experiment.model.hamur.enabled and experiment.data.path == "datasets/ml1m"
    experiment, tune = load_search(REPO / "configs/tune/quickstart.yaml")
    validate_space(experiment, tune)
    assert experiment.data.prepare is not None   # extends the quickstart: its dataset is made on first use


def test_overrides_go_to_the_right_half(tmp_path):
    path = _search(tmp_path, {"space": {"model.hamur.rank": {"grid": [2, 4]}}})
    experiment, tune = load_search(path, ["train.epochs=7", "tune.num_samples=3", "tune.search=random", "tune.scheduler.grace_period=2",
                                          "tune.space.model.hamur.rank={grid: [8]}",
                                          "tune.space.train.lr={loguniform: [0.0001, 0.01]}"])
    assert experiment.train.epochs == 7
    assert tune.num_samples == 3 and tune.scheduler.grace_period == 2
    assert tune.space == {"model.hamur.rank": {"grid": [8]}, "train.lr": {"loguniform": [0.0001, 0.01]}}
    _, tune = load_search(path, ["tune.search=random", "tune.space.model.hamur.rank=null",
                                 "tune.space.train.lr={uniform: [0.001, 0.01]}"])
    assert tune.space == {"train.lr": {"uniform": [0.001, 0.01]}}


@pytest.mark.parametrize("tune, sections, message", [
    ({"space": {"model.hamur.rank": {"grid": [2]}}, "searh": "grid"}, {}, "unknown config key 'tune.searh'"),
    ({"space": {"model.hamur.rank": {"grid": [2]}}}, {"trian": {}}, "unknown config key 'trian'"),
    ({"space": {"model.hamur.rank": {"grdi": [2]}}}, {}, "tune.space.model.hamur.rank"),
    ({"space": {"model.hamur.rank": {"uniform": [8, 2]}}, "search": "random"}, {}, "low 8 must be < high 2"),
    ({"space": {"model.hamur.rank": {"choice": [2, 4]}}}, {}, "grid needs every tune.space entry"),
    ({"space": {"model.hamur.rank": {"grid": [2, 4]}}, "search": "optuna"}, {}, "use {choice: [...]}"),
    ({"space": {}}, {}, "tune.space is empty"),
    ({"space": {"model.hamur.rank": {"grid": [2]}}, "metric": "test/auc"}, {}, "must be a validation metric"),
])
def test_bad_search_sections_name_the_key(tmp_path, tune, sections, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_search(_search(tmp_path, tune, **sections))
    assert "search.yaml" in str(info.value)


def test_a_file_without_tune_section_is_refused(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("train: {epochs: 1}\n")
    with pytest.raises(ConfigError, match="no 'tune:' section"):
        load_search(path)


@pytest.mark.parametrize("space, message", [
    ({"model.hamur.rnk": {"grid": [2]}}, "tune.space.model.hamur.rnk: grid value 2 is not valid: unknown config key 'model.hamur.rnk'"),
    ({"modle.hamur.rank": {"grid": [2]}}, "tune.space.modle.hamur.rank"),
    ({"model.hamur.rank": {"grid": [2, "big"]}}, "model.hamur.rank': expected an integer, got 'big'"),
    ({"model.hamur.rank": {"grid": [2, 0]}}, "must be >= 1"),
    ({"model.hamur.bottleneck": {"uniform": [4, 32]}}, "uniform value 4.0 is not valid"),
    ({"run.name": {"grid": ["a"]}}, "cannot be searched"),
])
def test_space_keys_are_checked_against_the_experiment(tmp_path, space, message):
    experiment, tune = load_search(_search(tmp_path, {"search": "random", "space": space}))
    with pytest.raises(ConfigError) as info:
        validate_space(experiment, tune)
    assert message in str(info.value)


def test_param_space_kinds_and_trial_values(tmp_path):
    from ray.tune.search.sample import Categorical, Float, Integer

    space = {"model.hamur.rank": {"randint": [2, 4]}, "model.hamur.hyper_hidden": {"choice": [[16], [32, 8]]},
             "train.lr": {"loguniform": [1e-4, 1e-2]}, "model.name": {"choice": ["mlp", "dcn"]}}
    experiment, tune = load_search(_search(tmp_path, {"search": "random", "space": space}))
    validate_space(experiment, tune)
    ps = param_space(tune.space)
    assert isinstance(ps["model.hamur.rank"], Integer)
    assert (ps["model.hamur.rank"].lower, ps["model.hamur.rank"].upper) == (2, 5)   # YAML bound is inclusive
    assert isinstance(ps["train.lr"], Float) and ps["train.lr"].lower == 1e-4
    assert isinstance(ps["model.hamur.hyper_hidden"], Categorical)
    assert ps["model.hamur.hyper_hidden"].categories == ["[16]", "[32, 8]"]   # lists travel as JSON text
    assert ps["model.name"].categories == ["mlp", "dcn"]
    sampled = {"model.hamur.rank": 5, "model.hamur.hyper_hidden": "[32, 8]", "train.lr": 0.003,
               "model.name": "dcn", "unrelated": 1}
    assert decode_params(sampled, tune.space) == {"model.hamur.rank": 5, "model.hamur.hyper_hidden": [32, 8],
                                                  "train.lr": 0.003, "model.name": "dcn"}
    cfg = trial_experiment(to_dict(experiment), sampled, tune.space)
    assert (cfg.model.hamur.rank, cfg.model.hamur.hyper_hidden, cfg.train.lr, cfg.model.name) == (5, [32, 8], 0.003, "dcn")
    assert experiment.model.hamur.rank != 5 or experiment.train.lr != 0.003   # the base is not modified


def test_grid_space_expands_to_every_combination():
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.experiment import Experiment

    _, tune = load_search(REPO / "configs/tune/movielens1m.yaml")
    gen = BasicVariantGenerator()
    gen.add_configurations([Experiment("x", lambda config: None, config=param_space(tune.space))])
    trials = []
    while (trial := gen.next_trial()) is not None:
        trials.append(trial)
    combos = {(t.config["model.hamur.rank"], t.config["model.hamur.hyper_hidden"]) for t in trials}
    assert len(trials) == len(combos) == 15
    assert combos == {(k, h) for k in (4, 8, 16, 32, 64) for h in ("[32]", "[64]", "[128]")}
