"""A comparison file: a base experiment, the models to compare, the seeds.

A comparison file is an experiment config (``data:``, ``train:``, ``run:`` ... shared by every cell;
its ``model:`` section holds what every model shares, e.g. ``embed_dim``) plus a ``compare:`` section::

    compare:
      seeds: [0, 1, 2]
      models:
        hamur-mlp:                              # the model's name in the tables
          extends: ../models/ml1m/mlp_hamur.yaml   # partial configs merged over the base (paths
          set: {model.hamur.mode: paper}           # relative to this file), then dotted overrides
        star: {extends: ../models/baselines/star.yaml}
      every_model: {model.embed_dim: 32}           # applied to each model after its extends

Every (model, seed) cell is one full training run with ``train.seed = seed``. All cells read the same
prepared dataset, hence the same split: a model may change ``model.*``, ``embedding.*``, ``train.*``
(except the seed) and the batch sizes, never the data, ``run`` or ``ray`` sections.

``load_comparison`` resolves every cell and validates it here, before anything starts.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hamur_dist import config_loader
from hamur_dist.config import ExperimentConfig, from_dict, to_dict
from hamur_dist.config_loader import ConfigError
from hamur_dist.fileio import atomic_write_text

SAVED_FILE = "compare.yaml"     # the resolved comparison in the experiment directory (read by --resume)
RUNS_DIR = "runs"               # <experiment dir>/runs/<model>/seed<seed>/: each cell's training run
SEED_KEY = "train.seed"
# dotted prefixes a model may not change: they would change the data a cell sees or where it runs
FIXED_KEYS = ("data.path", "data.prepare", "run", "ray", SEED_KEY)


@dataclass
class ModelEntry:
    extends: list[str] = field(default_factory=list)   # partial configs (a path or a list of paths)
    set: dict[str, Any] = field(default_factory=dict)  # dotted key -> value, applied last


@dataclass
class CompareConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    models: dict[str, ModelEntry] = field(default_factory=dict)
    every_model: dict[str, Any] = field(default_factory=dict)   # dotted overrides applied to each model after its
                                                      # extends (before its own set): what all share
    max_concurrent_trials: int = 2     # cells trained at once (each uses train.num_workers x cpus_per_worker)
    max_failures: int = 1              # retries of a failed cell (it resumes from its last checkpoint)
    alpha: float = 0.05                # a lead is "beyond noise" when the paired test's p-value is below it

    def validate(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"compare.seeds: give distinct seeds, got {self.seeds}")
        if len(self.models) < 1:
            raise ConfigError("compare.models is empty: name at least one model")
        for name in self.models:
            if not name or "/" in name or name.startswith("."):
                raise ConfigError(f"compare.models: '{name}' is not usable as a folder name")
        if self.max_concurrent_trials < 1 or self.max_failures < 0:
            raise ConfigError("compare.max_concurrent_trials must be >= 1 and compare.max_failures >= 0")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"compare.alpha must lie in (0, 1), got {self.alpha}")


@dataclass
class Comparison:
    base: ExperimentConfig
    settings: CompareConfig
    cells: dict[str, dict]      # model name -> its full experiment config (a dict; seed not set yet)

    def cell_config(self, model: str, seed: int) -> ExperimentConfig:
        data = copy.deepcopy(self.cells[model])
        data["train"]["seed"] = seed
        return from_dict(data)


def _fixed(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in FIXED_KEYS)


def _flat_keys(data: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys += _flat_keys(value, dotted + ".") if isinstance(value, dict) and value else [dotted]
    return keys


def _set(data: dict, overrides: dict, where: str) -> None:
    for key, value in overrides.items():
        if _fixed(key):
            raise ConfigError(f"{where}: {key} cannot differ between models (same data, run and seeds)")
        config_loader.apply_overrides(data, [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"])


def _resolve_model(name: str, entry: ModelEntry, base: dict, folder: Path, every_model: dict) -> dict:
    where = f"compare.models.{name}"
    data = copy.deepcopy(base)
    for rel in entry.extends:
        part = config_loader.read_yaml(folder / rel)
        for key in _flat_keys(part):
            if _fixed(key):
                raise ConfigError(f"{where}: {rel} sets {key}; every cell shares the base's data, run and "
                                  "ray sections and compare.seeds sets the seed")
        data = config_loader.deep_merge(data, part)
    _set(data, every_model, "compare.every_model")
    _set(data, entry.set, f"{where}.set")
    try:
        return to_dict(from_dict(data))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _normalised(raw: dict, source: str) -> dict:
    """compare.models with every ``extends`` as a list (one path may be given as text)."""
    out = {}
    for name, spec in (raw or {}).items():
        spec = dict(spec or {}) if isinstance(spec, dict) or spec is None else spec
        if not isinstance(spec, dict):
            raise ConfigError(f"{source}: compare.models.{name} must be a mapping with extends / set")
        if isinstance(spec.get("extends"), str):
            spec["extends"] = [spec["extends"]]
        out[str(name)] = spec
    return out


def _split_overrides(overrides) -> tuple[list[str], list[str]]:
    """(base experiment overrides, ``compare.*`` overrides without the prefix)."""
    base, compare = [], []
    for text in overrides:
        (compare if text.startswith("compare.") else base).append(text.split(".", 1)[1] if text.startswith("compare.")
                                                                  else text)
    return base, compare


def build_comparison(data: dict, folder: Path, overrides=(), source: str = "",
                     only: list[str] | None = None) -> Comparison:
    """Split a comparison mapping (``extends`` merged) into base + settings and resolve every cell;
    ``overrides``: ``key=value`` for the base, ``compare.key=value`` for the settings; ``only``: a
    subset of the models, in the file's order."""
    data = copy.deepcopy(data)
    raw = data.pop("compare", None)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source or 'comparison'}: no 'compare:' mapping (see configs/compare/)")
    overrides, compare_overrides = _split_overrides(overrides)
    try:
        config_loader.apply_overrides(raw, compare_overrides)
        raw["models"] = _normalised(raw.get("models"), source)
        if only:
            unknown = [m for m in only if m not in raw["models"]]
            if unknown:
                raise ConfigError(f"--models: {unknown} not in compare.models ({', '.join(raw['models'])})")
            raw["models"] = {m: spec for m, spec in raw["models"].items() if m in only}
        settings = config_loader.build(CompareConfig, raw, prefix="compare")
        base = config_loader.apply_overrides(data, overrides)
        base_cfg = from_dict(base)
        base_dict = to_dict(base_cfg)
        cells = {name: _resolve_model(name, entry, base_dict, folder, settings.every_model)
                 for name, entry in settings.models.items()}
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None
    return Comparison(base=base_cfg, settings=settings, cells=cells)


def load_comparison(path: str | Path, overrides=(), only: list[str] | None = None) -> Comparison:
    path = Path(path)
    return build_comparison(config_loader.read_yaml(path), path.parent, overrides, source=str(path), only=only)


def save_comparison(experiment_dir: Path, comparison: Comparison) -> Path:
    """The resolved comparison: every cell's full config inline, so a resume needs no other file."""
    settings = to_dict(comparison.settings)
    settings["models"] = {name: {"set": {}} for name in comparison.cells}
    settings["every_model"] = {}     # already applied to the cells below
    doc = {**to_dict(comparison.base), "compare": settings, "cells": comparison.cells}
    path = Path(experiment_dir) / SAVED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))
    return path


def load_saved_comparison(experiment_dir: str | Path) -> Comparison:
    path = Path(experiment_dir) / SAVED_FILE
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} not found (is {experiment_dir} a `hamur compare` directory?)")
    data = config_loader.read_yaml(path)
    cells = data.pop("cells", None)
    if not isinstance(cells, dict) or not cells:
        raise ConfigError(f"{path}: no resolved cells")
    raw = {**data.pop("compare", {}), "models": {name: {} for name in cells}}
    settings = config_loader.build(CompareConfig, raw, prefix="compare")
    return Comparison(base=from_dict(data), settings=settings,
                      cells={name: to_dict(from_dict(cell)) for name, cell in cells.items()})
