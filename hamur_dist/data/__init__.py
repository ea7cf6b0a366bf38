"""The data layer: preparers (raw logs -> sharded Parquet + manifest), validation and reading.

    from hamur_dist.data import prepare
    manifest = prepare("movielens-1m", "datasets/ml1m", source="path/to/ml-1m")

Importing this package is cheap: each preparer is imported only when ``prepare`` runs it.
"""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from hamur_dist.config_loader import ConfigError
from hamur_dist.data.manifest import Manifest

# dataset -> (module, function); each function takes ``out`` and keyword options
PREPARERS = {
    "movielens-1m": ("hamur_dist.data.movielens", "prepare_movielens_1m"),
    "movielens-100k": ("hamur_dist.data.movielens", "prepare_movielens_100k"),
    "ali-ccp": ("hamur_dist.data.aliccp", "prepare_aliccp"),
    "synthetic": ("hamur_dist.data.synthetic", "prepare_synthetic"),
    "table": ("hamur_dist.data.table_inputs", "prepare_from_schema"),
}


def preparer(dataset: str):
    """The preparer function of ``dataset`` (its signature lists the options)."""
    if dataset not in PREPARERS:
        raise ConfigError(f"unknown dataset '{dataset}' (known: {', '.join(PREPARERS)})")
    module, function = PREPARERS[dataset]
    return getattr(importlib.import_module(module), function)


def prepare(dataset: str, out: str | Path, **kwargs) -> Manifest:
    """Prepare ``dataset`` into the directory ``out``; returns its manifest.

    ``kwargs`` are the preparer's options (source=, rows=, seed=, shard_rows=, row_group_rows=,
    bad_rows=, overwrite=, ...); an option the preparer does not take is an error listing the valid ones.
    """
    function = preparer(dataset)
    params = inspect.signature(function).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params or k == "out"]
    if unknown and not takes_any:
        valid = [name for name in params if name != "out"]
        raise ConfigError(f"prepare {dataset}: unknown option(s) {unknown}; valid: {', '.join(valid)}")
    return function(out, **kwargs)


__all__ = ["prepare", "preparer", "PREPARERS", "Manifest"]
