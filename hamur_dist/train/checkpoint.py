"""Training checkpoints: one directory per checkpoint, verified by content hashes.

Layout::

    state.pt                  rank 0: model (dense + replicated tables), optimiser, epoch, best-so-far, history
    shard-rank{r}-of{w}.pt    one per rank when tables are sharded (hamur_dist.embedding writes these)
    CHECKSUMS.json            rank 0, written last: sha256 of its files, the world size, and the
                              fingerprint (model config, data layout) the checkpoint belongs to
    CHECKSUMS.rank{r}.json    every other rank that wrote files: sha256 of its files

A directory without every checksum file or with a file whose hash differs is corrupt and is never
loaded; ``latest_good`` falls back to the previous checkpoint. Every file is written to a temporary
name and renamed into place, so a crash mid-write leaves no file that looks whole.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

CHECKSUMS = "CHECKSUMS.json"
STATE = "state.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, truncated, or belongs to an incompatible config."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_torch_save(obj, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    try:
        sums = json.loads(sums_path.read_text())
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {directory}: {CHECKSUMS} is corrupt") from None
    files = dict(sums["files"])
    others = sorted(directory.glob("CHECKSUMS.rank*.json"))
    if len(others) + 1 < sums.get("ranks_with_files", 1):
        raise CheckpointError(f"checkpoint {directory} is incomplete: {len(others) + 1} of "
                              f"{sums['ranks_with_files']} workers' checksum files are present")
    for other in others:
        try:
            files.update(json.loads(other.read_text())["files"])
        except (json.JSONDecodeError, KeyError):
            raise CheckpointError(f"checkpoint {directory}: {other.name} is corrupt") from None
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {directory}: file {name} is missing")
        if sha256_file(path) != digest:
            raise CheckpointError(f"checkpoint {directory}: file {name} is corrupt (content hash differs)")
    return sums.get("fingerprint", {})


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


def check_compatible(saved: dict, current: dict) -> None:
    """Refuse a checkpoint made for another model/data layout, naming what differs."""
    diffs = [d for key in sorted(set(saved) | set(current)) for d in _differences(key, saved.get(key), current.get(key))]
    if diffs:
        raise CheckpointError("checkpoint is incompatible with this config: " + "; ".join(diffs))


def load_state(directory: str | Path, fingerprint: dict, map_location="cpu") -> dict:
    saved = verify(directory)
    check_compatible(saved, fingerprint)
    return torch.load(Path(directory) / STATE, map_location=map_location, weights_only=False)


def latest_good(checkpoint_dirs: list[str], fingerprint: dict, log=print) -> tuple[str, dict] | None:
    """Newest checkpoint that verifies; corrupt ones are skipped with a message.

    An incompatible config is not skipped: it raises, since an older checkpoint of the same run
    would be just as incompatible.
    """
    for directory in reversed(checkpoint_dirs):
        try:
            return directory, load_state(directory, fingerprint)
        except CheckpointError as exc:
            if "incompatible" in str(exc):
                raise
            log(f"[hamur] skipping checkpoint: {exc}")
    return None
