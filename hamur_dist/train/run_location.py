"""Where a run lives: its name, Ray's storage for checkpoints, and the folder of hamur's own files.

Local storage keeps both in ``run.storage_path/<name>``. With a URI storage (``s3://``, ``gs://``,
``file://``) Ray's checkpoints go to ``<uri>/<name>`` and hamur's files (config, metrics, report,
model) to ``run.files_path/<name>``; ``hamur train --resume <that folder>`` finds the checkpoints
in the URI its config names.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from hamur_dist.config import ExperimentConfig, from_dict, to_dict
from hamur_dist.config_loader import ConfigError, apply_overrides, build, read_yaml


def is_uri(storage: str) -> bool:
    return "://" in storage


def stored_run_exists(storage_uri: str, name: str) -> bool:
    """Whether ``<storage_uri>/<name>`` exists (a run Ray would resume from)."""
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(storage_uri)
    return fs.get_file_info(f"{root.rstrip('/')}/{name}").type != pyarrow.fs.FileType.NotFound


def resolve_run(cfg: ExperimentConfig, config_path: str | None) -> tuple[str, str, Path]:
    """(name, storage_path for Ray, run_dir for hamur's files)."""
    stem = Path(config_path).stem if config_path else "run"
    name = cfg.run.name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = cfg.run.storage_path
    if is_uri(storage):
        return name, storage, Path(cfg.run.files_path).expanduser().absolute() / name
    storage = str(Path(storage).expanduser().absolute())  # relative paths vanish inside Ray jobs
    return name, storage, Path(storage) / name


def claim_run_dir(run_dir: Path, auto_named: bool) -> Path:
    """Make ``run_dir`` this run's, atomically: its config.yaml is created exclusively, so two launches
    cannot share a directory. A name taken by another run is an error, or for a generated
    (time-stamped) name, the next free ``NAME-2``, ``NAME-3``, ..."""
    for attempt in range(1, 100):
        candidate = run_dir if attempt == 1 else run_dir.with_name(f"{run_dir.name}-{attempt}")
        candidate.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(candidate / "config.yaml", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return candidate
        except FileExistsError:
            if not auto_named:
                raise ConfigError(f"run directory {candidate} exists: pass --resume {candidate} to continue it, "
                                  "or choose another run.name") from None
    raise ConfigError(f"no free run directory next to {run_dir}")


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} not found (is {run_dir} a run directory?)")
    return from_dict(read_yaml(path))




def resume_config(run_dir: str | Path, overrides=()) -> ExperimentConfig:
    """The config to continue the run in ``run_dir`` with: its own config.yaml plus ``overrides``.
    A local run's checkpoints are beside its files (wherever the folder is now); a URI run's stay
    in the storage its config names."""
    run_dir = Path(run_dir).absolute()
    cfg = build(ExperimentConfig, apply_overrides(to_dict(load_run_config(run_dir)), list(overrides)))
    cfg.run.name, cfg.run.resume = run_dir.name, True
    if is_uri(cfg.run.storage_path):
        cfg.run.files_path = str(run_dir.parent)
    else:
        cfg.run.storage_path = str(run_dir.parent)
    return cfg
