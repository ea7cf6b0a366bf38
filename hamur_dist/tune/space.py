"""``tune.space`` -> a Ray Tune param space, and a trial's sampled values -> its full experiment config.

Keys of the param space are the dotted experiment keys themselves (``model.hamur.rank``), so a
trial's config reads like the YAML it came from. Values that are lists or mappings (e.g.
``model.hamur.hyper_hidden: [64]``) travel as JSON text: Optuna's categorical distribution takes
only scalars, and the text is also what the result tables show.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from hamur_dist.config import ExperimentConfig, from_dict, to_dict
from hamur_dist.config_loader import ConfigError
from hamur_dist.tune.config import TuneConfig

DRIVER_SECTIONS = ("run", "ray")   # set per trial by the search driver, not searchable


def json_keys(space: dict[str, dict]) -> list[str]:
    """Space keys whose grid/choice values are not all scalars (sent to Tune as JSON text)."""
    return sorted(key for key, spec in space.items()
                  for kind, values in spec.items()
                  if kind in ("grid", "choice") and any(isinstance(v, (list, dict)) for v in values))


def param_space(space: dict[str, dict]) -> dict[str, Any]:
    from ray import tune

    encoded = set(json_keys(space))
    out = {}
    for key, spec in space.items():
        kind, values = next(iter(spec.items()))
        if key in encoded:
            values = [json.dumps(v) for v in values]
        if kind == "grid":
            out[key] = tune.grid_search(list(values))
        elif kind == "choice":
            out[key] = tune.choice(list(values))
        elif kind == "uniform":
            out[key] = tune.uniform(*values)
        elif kind == "loguniform":
            out[key] = tune.loguniform(*values)
        else:  # randint: the YAML's upper bound is inclusive, Tune's is exclusive
            out[key] = tune.randint(values[0], values[1] + 1)
    return out


def set_dotted(data: dict, key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and part not in node:
            raise ConfigError(f"unknown config key '{'.'.join(parts[:i + 1])}'")
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"'{'.'.join(parts[:i + 1])}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def decode_params(params: dict[str, Any], space: dict[str, dict]) -> dict[str, Any]:
    """A trial's config from Tune -> plain values (JSON text back to lists); keys outside the space are ignored."""
    encoded = set(json_keys(space))
    return {k: (json.loads(v) if k in encoded and isinstance(v, str) else v)
            for k, v in params.items() if k in space}


def trial_experiment(base: dict, params: dict[str, Any], space: dict[str, dict]) -> ExperimentConfig:
    """The base experiment dict with one trial's (decoded) values set, as a validated config."""
    data = copy.deepcopy(base)
    for key, value in decode_params(params, space).items():
        set_dotted(data, key, value)
    return from_dict(data)


def _representatives(kind: str, values: list) -> list:
    """Values a trial can get for an entry, enough to check the key's type: every listed one, or both bounds."""
    if kind in ("uniform", "loguniform"):
        return [float(v) for v in values]   # Tune samples floats even for integer bounds
    return list(values)


def validate_space(base: ExperimentConfig, tune_cfg: TuneConfig) -> None:
    """Every space key names an experiment key and every value it can take passes the config checks."""
    base_dict = to_dict(base)
    for key, spec in tune_cfg.space.items():
        if key.split(".")[0] in DRIVER_SECTIONS:
            raise ConfigError(f"tune.space.{key}: the search driver sets {'/'.join(DRIVER_SECTIONS)}.* "
                              "per trial; they cannot be searched")
        kind, values = next(iter(spec.items()))
        for value in _representatives(kind, values):
            data = copy.deepcopy(base_dict)
            try:
                set_dotted(data, key, value)
                from_dict(data)
            except ConfigError as exc:
                raise ConfigError(f"tune.space.{key}: {kind} value {value!r} is not valid: {exc}") from None


def display(value: Any) -> str:
    """A searched value as table text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
