"""Comparison files: every cell resolved and checked when the file is loaded, before anything runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hamur_dist.compare.config import load_comparison, load_saved_comparison, save_comparison
from hamur_dist.config_loader import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, compare: dict, **sections) -> Path:
    (tmp_path / "star.yaml").write_text(yaml.safe_dump({"model": {"name": "star", "tower_dims": [8]}}))
    doc = {"data": {"path": "datasets/x"}, "model": {"embed_dim": 8}, **sections, "compare": compare}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("name", ["movielens1m", "movielens100k"])
def test_shipped_comparisons_load(name):
    comparison = load_comparison(REPO / "configs" / "compare" / f"{name}.yaml")
    assert {"hamur-mlp-paper", "star", "mmoe", "ple", "shared-bottom", "per-domain", "mlp"} <= set(comparison.cells)
    # every_model reaches every cell, over the model files' own values
    assert {c["model"]["embed_dim"] for c in comparison.cells.values()} == {32}
    assert comparison.cells["hamur-mlp-paper"]["model"]["hamur"]["mode"] == "paper"
    assert comparison.cells["hamur-mlp-reference"]["model"]["hamur"]["mode"] == "reference"
    assert not comparison.cells["mlp"]["model"]["hamur"]["enabled"]
    assert len({c["data"]["path"] for c in comparison.cells.values()}) == 1


@pytest.mark.parametrize("name,settings_of", [("hamur_ablation_ml100k", "movielens100k"),
                                               ("hamur_variants_ml100k", "movielens100k"),
                                               ("hamur_variants_ml1m", "movielens1m")])
def test_the_ablation_changes_one_thing_per_model(name, settings_of):
    comparison = load_comparison(REPO / "configs" / "compare" / f"{name}.yaml")
    base = comparison.cells["hamur"]
    assert base == load_comparison(REPO / "configs" / "compare" / f"{settings_of}.yaml").cells["hamur-mlp-paper"]
    on_star = {n: c for n, c in comparison.cells.items() if c["model"]["name"] == "star"}
    for cell_name, cell in comparison.cells.items():
        assert {k: v for k, v in cell.items() if k != "model"} == {k: v for k, v in base.items() if k != "model"}
        if cell_name in on_star:
            continue
        assert {k: v for k, v in cell["model"].items() if k != "hamur"} == \
            {k: v for k, v in base["model"].items() if k != "hamur"}
        if not cell["model"]["hamur"]["enabled"]:      # the same backbone without adapters
            continue
        changed = [k for k in base["model"]["hamur"] if cell["model"]["hamur"][k] != base["model"]["hamur"][k]]
        assert len(changed) == (0 if cell_name == "hamur" else 1), (cell_name, changed)
    if on_star:     # HAMUR on STAR: STAR's own settings plus the base's adapters, nothing else
        star, star_hamur = on_star["star"]["model"], on_star["star-hamur"]["model"]
        assert star_hamur["hamur"] == base["model"]["hamur"] and not star["hamur"]["enabled"]
        assert {k: v for k, v in star_hamur.items() if k != "hamur"} == {k: v for k, v in star.items() if k != "hamur"}


def test_cells_merge_base_files_and_sets_in_order(tmp_path):
    path = _write(tmp_path, {"seeds": [3, 4], "every_model": {"model.dropout": 0.3},
                             "models": {"star": {"extends": "star.yaml", "set": {"model.dropout": 0.1}},
                                        "mlp": {}}}, train={"lr": 0.005})
    comparison = load_comparison(path, ["train.epochs=7"])
    star = comparison.cell_config("star", 4)
    assert (star.model.name, star.model.embed_dim, star.model.dropout) == ("star", 8, 0.1)
    assert (star.train.seed, star.train.lr, star.train.epochs) == (4, 0.005, 7)
    assert comparison.cell_config("mlp", 3).model.dropout == 0.3


@pytest.mark.parametrize("compare, message", [
    ({"models": {}}, "compare.models is empty"),
    ({"seeds": [1, 1], "models": {"a": {}}}, "distinct seeds"),
    ({"models": {"a": {"set": {"data.path": "other"}}}}, "data.path cannot differ"),
    ({"models": {"a": {"set": {"train.seed": 5}}}}, "train.seed cannot differ"),
    ({"models": {"a": {"set": {"model.nope": 1}}}}, "compare.models.a: unknown config key 'model.nope'"),
    ({"models": {"a": {"extends": "missing.yaml"}}}, "config file not found"),
    ({"models": {"a/b": {}}}, "not usable as a folder name"),
    ({"models": {"a": {"sett": {}}}}, "unknown config key 'compare.models.a.sett'"),
    ({"alpha": 2, "models": {"a": {}}}, "compare.alpha"),
])
def test_bad_comparisons_are_refused_at_load(tmp_path, compare, message):
    with pytest.raises(ConfigError, match=message):
        load_comparison(_write(tmp_path, compare))


def test_a_model_file_may_not_bring_its_own_data(tmp_path):
    (tmp_path / "sneaky.yaml").write_text(yaml.safe_dump({"model": {"name": "mlp"}, "data": {"path": "elsewhere"}}))
    with pytest.raises(ConfigError, match="sneaky.yaml sets data.path"):
        load_comparison(_write(tmp_path, {"models": {"a": {"extends": "sneaky.yaml"}}}))


def test_the_saved_comparison_resumes_the_same_cells(tmp_path):
    comparison = load_comparison(_write(tmp_path, {"seeds": [0, 2], "every_model": {"model.dropout": 0.3},
                                                   "models": {"star": {"extends": "star.yaml"}, "mlp": {}}}))
    save_comparison(tmp_path / "exp", comparison)
    again = load_saved_comparison(tmp_path / "exp")
    assert again.cells == comparison.cells and again.settings.seeds == [0, 2]
    assert again.cell_config("star", 2).model.dropout == 0.3
    with pytest.raises(ConfigError, match="not found"):
        load_saved_comparison(tmp_path / "nothing")


def test_a_subset_of_models_and_compare_overrides(tmp_path):
    path = _write(tmp_path, {"models": {"star": {"extends": "star.yaml"}, "mlp": {}, "other": {}}})
    comparison = load_comparison(path, ["compare.seeds=[5]", "train.epochs=2"], only=["star", "other"])
    assert list(comparison.cells) == ["other", "star"] and comparison.settings.seeds == [5]   # the file's order
    assert comparison.cell_config("star", 5).train.epochs == 2
    with pytest.raises(ConfigError, match=r"--models: \['nope'\] not in compare.models"):
        load_comparison(path, only=["nope"])
