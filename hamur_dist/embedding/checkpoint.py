"""Per-worker checkpoints of sharded tables, loadable on any number of workers.

Each worker writes ``shard-rank{r}-of{w}.pt`` (``hamur_dist.fileio``: temp file + rename, so a reader never sees
half a file) holding, per table, the ids ``[row_start, row_end)`` it owns, those rows, and the
sparse optimiser state of those rows. Replicated tables are written once, by rank 0: dense-update
ones without optimiser state (the dense optimiser owns theirs), replicated-sparse ones with it. A checkpoint is thus a set of row ranges per
table; loading copies, for each table, the saved ranges that overlap the rows the loading worker
holds under the current plan, so any saved world size loads into any current one (2 -> 1, 1 -> 3,
...) and ``assemble_full_state`` rebuilds full tables for a single-process ``EmbeddingCollection``.
Files are opened with ``mmap`` so a worker reads only the rows it needs.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch

from hamur_dist.embedding.collection import ShardedEmbeddingCollection
from hamur_dist.embedding.optimizer import SparseRowOptimizer
from hamur_dist.fileio import atomic_torch_save

FORMAT = "hamur-sharded-embedding/1"
_NAME = re.compile(r"^shard-rank(\d+)-of(\d+)\.pt$")


def shard_file_name(rank: int, world_size: int) -> str:
    return f"shard-rank{rank}-of{world_size}.pt"


def _compact(view: torch.Tensor) -> torch.Tensor:
    """A CPU tensor owning exactly ``view``'s values (torch.save writes a view's whole storage);
    no copy when the view already is its whole storage, to spare memory on big shards."""
    view = view.detach().cpu()
    whole = (view.is_contiguous() and view.storage_offset() == 0
             and view.untyped_storage().nbytes() == view.numel() * view.element_size())
    return view if whole else view.clone()


def save_shard(collection: ShardedEmbeddingCollection, optimizer: SparseRowOptimizer | None,
               directory: str | os.PathLike) -> Path:
    """Write this worker's rows and optimiser state into ``directory``; returns the file written."""
    if optimizer is not None and optimizer.collection is not collection:
        raise ValueError("the optimiser belongs to another collection")
    rank, world = collection.rank, collection.world_size
    tables = {}
    for spec in collection.specs:
        placed = collection.plan.placement(spec.name)
        if not placed.is_sharded and rank != 0:
            continue                      # identical on every rank: rank 0 writes it
        start, end = collection.local_row_range(spec.name)
        if end == start:
            continue
        state = None
        if optimizer is not None and placed.is_sparse:
            state = {k: _compact(v) for k, v in optimizer.table_state(spec.name).items()}
        tables[spec.name] = {"scheme": placed.scheme, "update": placed.update,
                             "num_rows": spec.num_rows, "dim": spec.dim,
                             "row_start": start, "row_end": end,
                             "weight": _compact(collection.local_table(spec.name)),
                             "optimizer": state}
    payload = {"format": FORMAT, "rank": rank, "world_size": world, "tables": tables,
               "optimizer": None if optimizer is None else {"kind": optimizer.kind,
                                                            "hparams": dict(optimizer.hparams)}}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / shard_file_name(rank, world)
    atomic_torch_save(payload, final)
    return final


def _shard_files(directory: Path) -> list[Path]:
    """All shard files of one save, checked complete; error if missing or mixed world sizes."""
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    found: dict[int, dict[int, Path]] = {}
    for path in directory.iterdir():
        m = _NAME.match(path.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    if not found:
        raise FileNotFoundError(f"no shard-rank*-of*.pt files in {directory}")
    if len(found) > 1:
        raise ValueError(f"{directory} mixes shard files of world sizes {sorted(found)}; keep one save per directory")
    (world, by_rank), = found.items()
    missing = [shard_file_name(r, world) for r in range(world) if r not in by_rank]
    if missing or len(by_rank) != world:
        raise FileNotFoundError(f"{directory}: incomplete checkpoint, missing {missing or sorted(by_rank)}")
    return [by_rank[r] for r in range(world)]


def _load_payloads(directory) -> list[tuple[Path, dict]]:
    out = []
    for path in _shard_files(Path(directory)):
        payload = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not a sharded-embedding checkpoint (format {payload.get('format')!r})")
        out.append((path, payload))
    return out


def _pieces(payloads: list[tuple[Path, dict]]) -> dict[str, list[tuple[Path, dict]]]:
    """table -> saved pieces (file, entry), checked to cover every row exactly once."""
    by_table: dict[str, list[tuple[Path, dict]]] = {}
    for path, payload in payloads:
        for name, entry in payload["tables"].items():
            by_table.setdefault(name, []).append((path, entry))
    for name, pieces in by_table.items():
        shapes = {(e["num_rows"], e["dim"]) for _, e in pieces}
        if len(shapes) != 1:
            raise ValueError(f"table '{name}': shard files disagree on its shape: {sorted(shapes)}")
        covered = sorted((e["row_start"], e["row_end"], str(p)) for p, e in pieces)
        expect = 0
        for start, end, path in covered:
            if start != expect:
                raise ValueError(f"table '{name}': rows [{expect}, {start}) missing or overlapping at {path}")
            expect = end
        if expect != pieces[0][1]["num_rows"]:
            raise ValueError(f"table '{name}': rows [{expect}, {pieces[0][1]['num_rows']}) missing from checkpoint")
    return by_table


def _copy_overlap(dst: torch.Tensor, dst_start: int, src: torch.Tensor, src_start: int) -> None:
    """Copy the ids both row ranges share: ``dst`` holds ids from ``dst_start``, ``src`` from ``src_start``."""
    lo = max(dst_start, src_start)
    hi = min(dst_start + dst.shape[0], src_start + src.shape[0])
    if hi > lo:
        dst[lo - dst_start:hi - dst_start] = src[lo - src_start:hi - src_start]


@torch.no_grad()
def load_shards(collection: ShardedEmbeddingCollection, optimizer: SparseRowOptimizer | None,
                directory: str | os.PathLike) -> None:
    """Fill this worker's rows (and optimiser state) from a checkpoint saved on any number of workers."""
    payloads = _load_payloads(directory)
    pieces = _pieces(payloads)
    names = [s.name for s in collection.specs]
    if set(pieces) != set(names):
        raise ValueError(f"{directory}: checkpoint tables {sorted(pieces)} differ from the model's {sorted(names)}")
    saved_opt = payloads[0][1]["optimizer"]
    if optimizer is not None and saved_opt is not None and saved_opt["kind"] != optimizer.kind:
        raise ValueError(f"{directory}: optimiser state is {saved_opt['kind']!r}, the optimiser is {optimizer.kind!r}")
    fresh_state = []
    for spec in collection.specs:
        entries = pieces[spec.name]
        if (entries[0][1]["num_rows"], entries[0][1]["dim"]) != (spec.num_rows, spec.dim):
            e = entries[0][1]
            raise ValueError(f"{entries[0][0]}: table '{spec.name}' is {e['num_rows']} x {e['dim']}, "
                             f"the model's is {spec.num_rows} x {spec.dim}")
        start, _ = collection.local_row_range(spec.name)
        target = collection.local_table(spec.name)
        wants_state = optimizer is not None and spec.name in collection.sparse_table_names()
        state = optimizer.table_state(spec.name) if wants_state else {}
        for _, entry in entries:
            _copy_overlap(target, start, entry["weight"], entry["row_start"])
            if not wants_state:
                continue
            if entry["optimizer"] is None:
                fresh_state.append(spec.name)
                continue
            for key, value in state.items():
                _copy_overlap(value, start, entry["optimizer"][key], entry["row_start"])
    if fresh_state:
        warnings.warn(f"{directory}: no sparse optimiser state saved for tables {sorted(set(fresh_state))} "
                      "(saved replicated or without an optimiser); their state starts fresh", stacklevel=2)


def assemble_full_state(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Full tables from all shard files, keyed like ``EmbeddingCollection.state_dict()``."""
    out = {}
    for name, entries in _pieces(_load_payloads(directory)).items():
        first = entries[0][1]
        full = torch.empty(first["num_rows"], first["dim"], dtype=first["weight"].dtype)
        for _, entry in entries:
            full[entry["row_start"]:entry["row_end"]] = entry["weight"]
        out[f"tables.{name}.weight"] = full
    return out


def assemble_full_optimizer_state(directory: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """Full sparse-optimiser state per table (tables saved with state only): table -> name -> tensor."""
    out = {}
    for name, entries in _pieces(_load_payloads(directory)).items():
        if any(e["optimizer"] is None for _, e in entries):
            continue
        rows = entries[0][1]["num_rows"]
        state = {}
        for key, value in entries[0][1]["optimizer"].items():
            state[key] = torch.empty((rows,) + tuple(value.shape[1:]), dtype=value.dtype)
        for _, entry in entries:
            for key, value in entry["optimizer"].items():
                state[key][entry["row_start"]:entry["row_end"]] = value
        out[name] = state
    return out
