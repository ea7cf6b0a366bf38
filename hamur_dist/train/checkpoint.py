"""Training checkpoints: one directory per checkpoint, verified by content hashes.

Layout::

    state.pt                  rank 0: model (dense + replicated tables), optimiser, epoch, best-so-far, history
    shard-rank{r}-of{w}.pt    one per rank when tables are sharded (hamur_dist.embedding writes these)
    CHECKSUMS.json            rank 0, written last: sha256 of its files, the world size, and the
                              fingerprint (model config, data layout) the checkpoint belongs to
    CHECKSUMS.rank{r}.json    every other rank that wrote files: sha256 of its files

A directory without every checksum file or with a file whose hash differs is corrupt and is never
loaded; ``train.resume.restore_latest`` falls back to the previous checkpoint. Every file is written to a temporary
name and renamed into place, so a crash mid-write leaves no file that looks whole.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from hamur_dist.fileio import atomic_write_text, sha256_file

CHECKSUMS = "CHECKSUMS.json"
STATE = "state.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt or truncated (a run falls back to an older one), or incompatible."""


class IncompatibleCheckpointError(CheckpointError):
    """A whole checkpoint made for another model or data layout: every checkpoint of the run is."""


def seal(directory: str | Path, fingerprint: dict, rank: int = 0, world_size: int = 1,
         ranks_with_files: int = 1) -> None:
    """Record the hash of every file this rank wrote into ``directory`` (after all are written)."""
    directory = Path(directory)
    files = {p.name: sha256_file(p) for p in sorted(directory.iterdir())
             if p.is_file() and not p.name.startswith((".", "CHECKSUMS"))}
    if rank == 0:
        body = {"files": files, "fingerprint": fingerprint, "world_size": world_size,
                "ranks_with_files": ranks_with_files}
        atomic_write_text(directory / CHECKSUMS, json.dumps(body, indent=1))
    else:
        atomic_write_text(directory / f"CHECKSUMS.rank{rank}.json", json.dumps({"files": files}, indent=1))


def verify(directory: str | Path) -> dict:
    """Check every recorded hash; returns the fingerprint. Raises CheckpointError when corrupt."""
    directory = Path(directory)
    sums_path = directory / CHECKSUMS
    if not sums_path.is_file():
        raise CheckpointError(f"checkpoint {directory} is incomplete: {CHECKSUMS} is missing")
    sums = _read_sums(sums_path, directory)
    files = dict(sums["files"])
    others = sorted(directory.glob("CHECKSUMS.rank*.json"))
    ranks_with_files = sums.get("ranks_with_files", 1)
    if not isinstance(ranks_with_files, int) or not isinstance(sums.get("fingerprint", {}), dict):
        raise CheckpointError(f"checkpoint {directory}: {CHECKSUMS} is corrupt (unexpected shape)")
    if len(others) + 1 < ranks_with_files:
        raise CheckpointError(f"checkpoint {directory} is incomplete: {len(others) + 1} of "
                              f"{ranks_with_files} workers' checksum files are present")
    for other in others:
        files.update(_read_sums(other, directory)["files"])
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {directory}: file {name} is missing")
        if sha256_file(path) != digest:
            raise CheckpointError(f"checkpoint {directory}: file {name} is corrupt (content hash differs)")
    return sums.get("fingerprint", {})


def _read_sums(path: Path, directory: Path) -> dict:
    """A checksum file: {"files": {name: sha256 hex}, ...}; anything else is a corrupt checkpoint."""
    try:
        sums = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        sums = None
    files = sums.get("files") if isinstance(sums, dict) else None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise CheckpointError(f"checkpoint {directory}: {path.name} is corrupt")
    return sums


def _decoded(value):
    """A fingerprint entry; JSON-encoded sections (the model config) as dicts."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    return value


def _differences(key: str, saved, current) -> list[str]:
    saved, current = _decoded(saved), _decoded(current)
    if isinstance(saved, dict) and isinstance(current, dict):   # name the field, e.g. model.hidden_dims
        return [d for k in sorted(set(saved) | set(current))
                for d in _differences(f"{key}.{k}", saved.get(k), current.get(k))]
    return [] if saved == current else [f"{key}: checkpoint has {saved!r}, this run has {current!r}"]


def check_fingerprint(saved: dict, current: dict) -> None:
    """Refuse a checkpoint made for another model/data layout, naming what differs."""
    diffs = [d for key in sorted(set(saved) | set(current)) for d in _differences(key, saved.get(key), current.get(key))]
    if diffs:
        raise IncompatibleCheckpointError("checkpoint is incompatible with this config: " + "; ".join(diffs))


def load_state(directory: str | Path, fingerprint: dict, map_location="cpu") -> dict:
    """The verified, compatible state of a checkpoint. Loaded without unpickling code (weights_only):
    a checkpoint directory may sit on shared storage that others can write to."""
    saved = verify(directory)
    check_fingerprint(saved, fingerprint)
    try:
        return torch.load(Path(directory) / STATE, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"checkpoint {directory}: {STATE} holds more than tensors and plain values; "
                              f"refused ({str(exc).splitlines()[0]})") from None
