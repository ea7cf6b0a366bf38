"""Helpers for the search tests."""
from __future__ import annotations

from pathlib import Path

import yaml


def write_search_file(path: Path, dataset: Path, storage: Path, name: str, epochs: int = 2,
                      space: dict | None = None, tune: dict | None = None) -> Path:
    """A small search file: the tiny dataset, 1 worker per trial, MLP + HAMUR, 2 x 2 grid by default."""
    doc = {
        "data": {"path": str(dataset), "batch_size": 512, "eval_batch_size": 4096, "materialize": True},
        "model": {"name": "mlp", "hidden_dims": [32, 16],
                  "hamur": {"enabled": True, "mode": "paper", "rank": 4, "hyper_hidden": [16], "bottleneck": 8}},
        "train": {"num_workers": 1, "cpus_per_worker": 0.5, "epochs": epochs, "patience": 0, "lr": 0.01,
                  "log_every_steps": 0},
        "run": {"name": name, "storage_path": str(storage)},
        "tune": {"search": "grid", "max_concurrent_trials": 2, "max_failures": 1,
                 "scheduler": {"grace_period": 1, "reduction_factor": 2},
                 "space": space or {"model.hamur.rank": {"grid": [2, 8]},
                                    "model.hamur.hyper_hidden": {"grid": [[8], [16]]}},
                 **(tune or {})},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
