"""Batch inference with Ray Data: score a prepared dataset split on actors, write Parquet.

Each actor loads the model artifact once; ``map_batches`` streams the shards through them, and the
output (the input columns plus ``prediction``) is written to a temporary folder renamed into place.
The driver first checks, before Ray reads anything, that the artifact loads weights-only, that the
dataset is encoded like the model's training data and that the split's shards match the manifest.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import torch

from hamur_dist.data.batches import InputDataError, find_bad_row
from hamur_dist.data.manifest import load_manifest
from hamur_dist.fileio import rename_no_replace
from hamur_dist.infer.evaluate import check_artifact_matches_dataset, verified_dataset
from hamur_dist.model.artifact import model_dir
from hamur_dist.data.ray_datasets import parquet_dataset


class Scorer:
    """A Ray Data actor: model loaded once, then Arrow batch in, Arrow batch + prediction out."""

    def __init__(self, model_path: str, data_root: str):
        from hamur_dist.model.artifact import load_artifact
        from hamur_dist.data.batches import BatchCollator

        torch.set_num_threads(1)
        self.model = load_artifact(model_path)   # predict() checked it against the dataset before scoring
        self.collate = BatchCollator(load_manifest(data_root))

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        t = self.collate(batch)
        prob = torch.sigmoid(self.model(t["sparse"], t["dense"], t["domain"])).numpy()
        return batch.append_column("prediction", pa.array(prob, pa.float32()))


def caused_by_bad_input(exc: BaseException) -> bool:
    """Whether a scoring failure was an ``InputDataError``. Ray hands the driver a ``RayTaskError``
    whose remote cause survives only as traceback text, so the text is searched too."""
    name = f"{InputDataError.__module__}.{InputDataError.__qualname__}"
    cause, seen = exc, set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, InputDataError) or name in str(cause):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def predict(model_path: str | Path, data_root: str | Path, out: str | Path, split: str = "test",
            batch_size: int = 8192, num_actors: int = 2, verify_hashes: bool = True) -> int:
    """Score ``split`` of a dataset; returns the number of rows written."""
    data_root = str(Path(data_root).absolute())
    out = Path(out).absolute()
    if out.exists():
        raise FileExistsError(f"output {out} exists; choose another --out")
    model_path = model_dir(model_path)
    check_artifact_matches_dataset(model_path, load_manifest(data_root), data_root)
    manifest = verified_dataset(data_root, split, verify_hashes)
    files = manifest.shard_paths(data_root, split)
    ds = parquet_dataset(files, manifest.columns)
    scored = ds.map_batches(Scorer, fn_constructor_args=(str(model_path), data_root),
                            batch_size=batch_size, batch_format="pyarrow", concurrency=num_actors,
                            num_cpus=0.5)
    return write_scored(scored, out, lambda exc: find_bad_row(files, manifest))


def write_scored(scored, out: Path, bad_input: Callable[[BaseException], Exception | None]) -> int:
    """Write the scored dataset into a hidden sibling of ``out``, then publish it (never replacing
    anything at ``out``); returns the rows written. A failure caused by bad input is raised as
    ``bad_input(exc)`` when that names it better (file, row), else as it came."""
    import ray.data

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        scored.write_parquet(str(tmp))
        rows = ray.data.read_parquet(str(tmp)).count()
        rename_no_replace(tmp, out)
    except Exception as exc:
        better = bad_input(exc) if caused_by_bad_input(exc) else None
        if better is None:
            raise
        raise better from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


class RawScorer:
    """A Ray Data actor for raw logs: encodes each batch with the model's own vocabularies, then scores."""

    def __init__(self, model_path: str):
        from hamur_dist.infer.raw_encoding import RawEncoder
        from hamur_dist.model.artifact import load_artifact

        torch.set_num_threads(1)
        self.model = load_artifact(model_path)
        self.encoder = RawEncoder(model_path)

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        from hamur_dist.infer.raw_encoding import PATH_COLUMN

        t = self.encoder.tensors(batch)
        prob = torch.sigmoid(self.model(t["sparse"], t["dense"], t["domain"])).numpy()
        if PATH_COLUMN in batch.column_names:
            batch = batch.drop_columns([PATH_COLUMN])
        return batch.append_column("prediction", pa.array(prob, pa.float32()))


def raw_files(source: str | Path) -> tuple[list[str], str]:
    """The CSV or Parquet files of ``source`` (a file or a folder) and their format."""
    from hamur_dist.data.table_inputs import DEFAULT_PATTERNS
    from hamur_dist.data.validation import DataError

    root = Path(source).absolute()
    if not root.exists():
        raise FileNotFoundError(f"raw logs not found: {root}")
    files = [root] if root.is_file() else sorted({p for pattern in DEFAULT_PATTERNS for p in root.glob(pattern)})
    if not files:
        raise DataError(f"no input files match {DEFAULT_PATTERNS}", file=root)
    kinds = {"parquet" if p.suffix == ".parquet" else "csv" for p in files}
    if len(kinds) > 1:
        raise DataError("mixes CSV and Parquet files; score one format at a time", file=root)
    return [str(p) for p in files], kinds.pop()


def predict_raw(model_path: str | Path, source: str | Path, out: str | Path, batch_size: int = 8192,
                num_actors: int = 2) -> int:
    """Score raw logs (the raw columns of the model's training schema) without a prepare step."""
    import pyarrow.csv as csv
    import ray.data

    from hamur_dist.infer.raw_encoding import RawEncoder

    out = Path(out).absolute()
    if out.exists():
        raise FileExistsError(f"output {out} exists; choose another --out")
    model_path = model_dir(model_path)
    encoder = RawEncoder(model_path)            # refuses a model that cannot read raw rows, before Ray reads
    files, kind = raw_files(source)
    if kind == "parquet":
        ds = ray.data.read_parquet(files, include_paths=True)
    else:
        i = encoder.schema.input
        ds = ray.data.read_csv(files, include_paths=True,
                               parse_options=csv.ParseOptions(delimiter=i.delimiter),
                               read_options=csv.ReadOptions(column_names=i.column_names or None, encoding=i.encoding),
                               convert_options=csv.ConvertOptions(column_types=encoder.column_types()))
    scored = ds.map_batches(RawScorer, fn_constructor_args=(str(model_path),), batch_size=batch_size,
                            batch_format="pyarrow", concurrency=num_actors, num_cpus=0.5)
    return write_scored(scored, out, lambda exc: InputDataError(_remote_message(exc)))


def _remote_message(exc: BaseException) -> str:
    """The InputDataError's own line out of Ray's wrapped traceback text."""
    name = f"{InputDataError.__module__}.{InputDataError.__qualname__}: "
    for line in reversed(str(exc).splitlines()):
        if name in line:
            return line.split(name, 1)[1]
    return str(exc).strip().splitlines()[-1]
