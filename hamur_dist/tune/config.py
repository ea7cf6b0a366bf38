"""The ``tune:`` section of a search file, and how a search file splits into base experiment + search.

A search file is an experiment config (``extends:``, ``data:``, ``model:``, ``train:`` ... — the base
training config of every trial) plus one extra top-level section::

    tune:
      search: grid                 # grid | random | optuna
      space:
        model.hamur.rank: {grid: [4, 8, 16]}
        model.hamur.hyper_hidden: {grid: [[32], [64]]}

The experiment directory is ``run.storage_path/run.name`` of the base config (name default:
``<search file stem>-<timestamp>``); each trial's training run goes to ``<experiment dir>/runs/<trial id>``.

``load_search(path, overrides)`` returns ``(ExperimentConfig, TuneConfig)``; ``tune.*`` overrides go
to the search, everything else to the experiment. Both halves are checked by the same typed loader,
so an unknown key is an error naming it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hamur_dist import config_loader
from hamur_dist.config import ExperimentConfig
from hamur_dist.config_loader import ConfigError

SPACE_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
SEARCH_FILE = "tune.yaml"   # the resolved search, saved in the experiment directory (read by --resume)
RUNS_DIR = "runs"           # trial training runs: <experiment dir>/runs/<trial_id>/


@dataclass
class AshaConfig:
    """Asynchronous successive halving on the validation metric after each epoch.

    Rungs sit at grace_period x reduction_factor^k epochs, all before a trial's last epoch
    (train.epochs): stopping a trial at its last epoch saves no training and would lose its test report.
    """
    enabled: bool = True
    grace_period: int = 1             # epochs every trial runs before it can be stopped
    reduction_factor: float = 2.0     # keep about 1/reduction_factor of the trials at each rung

    def validate(self) -> None:
        if self.grace_period < 1:
            raise ConfigError("tune.scheduler.grace_period must be >= 1")
        if self.reduction_factor <= 1:
            raise ConfigError("tune.scheduler.reduction_factor must be > 1")


@dataclass
class TuneConfig:
    search: Literal["grid", "random", "optuna"] = "grid"
    num_samples: int = 1              # grid: repeats of the whole grid; random/optuna: trials drawn
    metric: str = "val/auc"           # a per-epoch validation metric reported by training
    mode: Literal["max", "min"] = "max"
    max_concurrent_trials: int = 2
    max_failures: int = 0             # retries of a failed trial (it resumes from its last checkpoint)
    seed: int | None = None           # random / optuna sampling seed
    scheduler: AshaConfig = field(default_factory=AshaConfig)
    # dotted experiment key -> {grid: [...]} | {choice: [...]} | {uniform: [lo, hi]}
    #                          | {loguniform: [lo, hi]} | {randint: [lo, hi]}  (randint: hi inclusive)
    space: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def validate(self) -> None:
        if self.num_samples < 1:
            raise ConfigError("tune.num_samples must be >= 1")
        if self.max_concurrent_trials < 1:
            raise ConfigError("tune.max_concurrent_trials must be >= 1")
        if self.max_failures < 0:
            raise ConfigError("tune.max_failures must be >= 0")
        if not self.metric.startswith("val/"):
            raise ConfigError(f"tune.metric: '{self.metric}' must be a validation metric (val/...), "
                              "reported once per epoch")
        if not self.space:
            raise ConfigError("tune.space is empty: name at least one experiment key to search over")
        for key, spec in self.space.items():
            check_space_entry(key, spec)
        kinds = {next(iter(spec)) for spec in self.space.values()}
        if self.search == "grid" and kinds != {"grid"}:
            raise ConfigError(f"tune.search: grid needs every tune.space entry to be {{grid: [...]}}; "
                              f"found {sorted(kinds - {'grid'})} (use search: random or optuna)")
        if self.search == "optuna" and "grid" in kinds:
            raise ConfigError("tune.search: optuna samples its own values; use {choice: [...]} "
                              "instead of {grid: [...]} in tune.space")


def check_space_entry(key: str, spec: dict) -> None:
    """One ``tune.space`` entry is exactly one kind with a sensible value list."""
    where = f"tune.space.{key}"
    if len(spec) != 1 or next(iter(spec)) not in SPACE_KINDS:
        raise ConfigError(f"{where}: give exactly one of {list(SPACE_KINDS)}, got {sorted(spec)}")
    kind, values = next(iter(spec.items()))
    if not values:
        raise ConfigError(f"{where}.{kind}: the list is empty")
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{where}.{kind}: expected [low, high] numbers, got {values!r}")
        lo, hi = values
        if not lo < hi:
            raise ConfigError(f"{where}.{kind}: low {lo} must be < high {hi}")
        if kind == "loguniform" and lo <= 0:
            raise ConfigError(f"{where}.loguniform: low must be > 0, got {lo}")
        if kind == "randint" and not all(isinstance(v, int) for v in values):
            raise ConfigError(f"{where}.randint: bounds must be integers, got {values!r}")


def _split_overrides(overrides) -> tuple[list[str], list[str], dict[str, Any]]:
    """(experiment overrides, tune.* overrides except space, tune.space.<dotted key> -> value)."""
    experiment, tune, space = [], [], {}
    for text in overrides:
        path, value = config_loader.parse_override(text)
        if path[0] != "tune":
            experiment.append(text)
        elif len(path) == 1:
            raise ConfigError(f"override '{text}': name a key inside tune (e.g. tune.num_samples=4)")
        elif len(path) > 2 and path[1] == "space":
            space[".".join(path[2:])] = value   # the entry's key is itself dotted: keep it whole
        else:
            tune.append(text.split(".", 1)[1])
    return experiment, tune, space


def build_search(data: dict, overrides=(), source: str = "") -> tuple[ExperimentConfig, TuneConfig]:
    """Split a search mapping (already read, ``extends`` merged) into its two validated halves."""
    data = copy.deepcopy(data)
    tune_data = data.pop("tune", None)
    if tune_data is None:
        raise ConfigError(f"{source or 'search config'}: no 'tune:' section (see configs/tune/)")
    if not isinstance(tune_data, dict):
        raise ConfigError(f"{source}: 'tune' must be a mapping")
    experiment_overrides, tune_overrides, space_overrides = _split_overrides(overrides)
    try:
        config_loader.apply_overrides(tune_data, tune_overrides)
        space = dict(tune_data.get("space") or {})
        for key, value in space_overrides.items():
            if value is None:
                space.pop(key, None)   # tune.space.KEY=null drops an entry
            else:
                space[key] = value
        tune_data["space"] = space
        tune_cfg = config_loader.build(TuneConfig, tune_data, prefix="tune")
        experiment = config_loader.build(ExperimentConfig, config_loader.apply_overrides(data, experiment_overrides))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None
    return experiment, tune_cfg


def load_search(path: str | Path, overrides=()) -> tuple[ExperimentConfig, TuneConfig]:
    return build_search(config_loader.read_yaml(path), overrides, source=str(path))


def search_dict(experiment: ExperimentConfig, tune_cfg: TuneConfig) -> dict:
    return {**config_loader.to_dict(experiment), "tune": config_loader.to_dict(tune_cfg)}


def save_search(experiment_dir: Path, experiment: ExperimentConfig, tune_cfg: TuneConfig) -> Path:
    path = Path(experiment_dir) / SEARCH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(search_dict(experiment, tune_cfg), sort_keys=False))
    return path


def load_saved_search(experiment_dir: str | Path) -> tuple[ExperimentConfig, TuneConfig]:
    path = Path(experiment_dir) / SEARCH_FILE
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} not found (is {experiment_dir} a `hamur tune` experiment directory?)")
    return load_search(path)
