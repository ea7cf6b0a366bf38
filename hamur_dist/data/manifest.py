"""The dataset manifest: the one description of a prepared dataset that later stages read.

A prepared dataset is a directory::

    DATASET/
      manifest.json
      train/part-00000.parquet ...
      val/...
      test/...

Column conventions inside every shard (the contract between data, model and training):
  * each sparse feature is an ``int64`` column named after the feature, ids in ``[0, vocab_size)``
    (id 0 is reserved for "unknown / rare / missing"); a multi-valued (``multi_hot``) feature is a
    ``list<int64>`` column of 0..max_len such ids per row (the model pools their embeddings). Batches
    (``hamur_dist.data.batches``) give it max_len consecutive columns, unused slots -1;
  * each dense feature is a ``float32`` column named after the feature, already scaled;
  * the domain column is ``int64`` in ``[0, num_domains)``;
  * the label column (and any extra label columns) are ``float32`` in {0, 1};
  * the optional user column is ``int64`` (for GAUC).

This module is plain Python (no Ray, no torch) so the model layer can read a schema from it.
"""
from __future__ import annotations

import dataclasses
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from hamur_dist.fileio import atomic_write_text

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SCHEMA_KEY = "table_schema"       # source key: the table schema a dataset was prepared with (hamur_dist.data.like)


class ManifestError(ValueError):
    """A manifest is missing, malformed, or does not match its shards."""


@dataclass
class SparseFeature:
    name: str
    vocab_size: int
    hashed: bool = False          # ids were hashed into vocab_size buckets (no vocabulary file)
    source: str | None = None     # raw column it came from, when different
    fingerprint: str | None = None   # sha256 of how raw values become ids (hamur_dist.data.vocabulary);
                                     # equal fingerprints = the same mapping, whatever the sizes
    multi_hot: bool = False       # a list<int64> column: each row holds 0..max_len ids, pooled by the model
    max_len: int = 1              # ids kept per row (batches pad a multi_hot feature to max_len with -1)

    @property
    def width(self) -> int:
        """Columns this feature takes in a batch's ``sparse`` tensor."""
        return self.max_len if self.multi_hot else 1


PAD_ID = -1   # an unused slot of a multi_hot feature in a batch's (B, S) sparse tensor (data and model agree)


def sparse_width(features: list[SparseFeature]) -> int:
    """Columns of a batch's ``(B, S)`` sparse tensor: feature i takes ``width`` consecutive columns, in order."""
    return sum(f.width for f in features)


@dataclass
class DenseFeature:
    name: str
    scaling: str = "none"         # none | minmax | standard | log1p_minmax
    params: dict = field(default_factory=dict)   # e.g. {"min": 1, "max": 56}


@dataclass
class DomainInfo:
    column: str
    num_domains: int
    names: list[str]


@dataclass
class ShardInfo:
    path: str                     # relative to the dataset root, e.g. "train/part-00000.parquet"
    rows: int
    sha256: str
    rows_per_domain: list[int] = field(default_factory=list)


@dataclass
class SplitInfo:
    rows: int
    rows_per_domain: list[int]
    positives_per_domain: list[int]
    shards: list[ShardInfo]

    @property
    def positive_rate(self) -> float:
        return sum(self.positives_per_domain) / self.rows if self.rows else float("nan")


@dataclass
class FeatureSchema:
    """What a model needs to know about the data: built from a manifest, or by hand in tests."""
    sparse: list[SparseFeature]
    dense: list[DenseFeature]
    num_domains: int
    domain_column: str = "domain"
    label: str = "label"

    @property
    def sparse_names(self) -> list[str]:
        return [f.name for f in self.sparse]

    @property
    def dense_names(self) -> list[str]:
        return [f.name for f in self.dense]

    @property
    def sparse_width(self) -> int:
        return sparse_width(self.sparse)


@dataclass
class Manifest:
    name: str
    sparse: list[SparseFeature]
    dense: list[DenseFeature]
    domain: DomainInfo
    label: str
    splits: dict[str, SplitInfo]
    extra_labels: list[str] = field(default_factory=list)
    user_column: str | None = None
    skipped_rows: dict[str, int] = field(default_factory=dict)   # reason -> count (--bad-rows=skip)
    source: dict = field(default_factory=dict)                    # how it was made (preparer, args, seed)
    unknown_ids: dict[str, int] = field(default_factory=dict)     # feature -> values encoded as id 0 because
                                                                  # the (frozen) vocabulary lacks them
    lineage: dict = field(default_factory=dict)                   # prepared --like a parent: its sha256, what grew
    format_version: int = FORMAT_VERSION

    @property
    def schema(self) -> FeatureSchema:
        return FeatureSchema(sparse=list(self.sparse), dense=list(self.dense),
                             num_domains=self.domain.num_domains, domain_column=self.domain.column,
                             label=self.label)

    @property
    def domain_feature(self) -> str | None:
        """The sparse feature that feeds the domain to the model (id = domain + 1), if there is one."""
        record = self.source.get(SCHEMA_KEY) if isinstance(self.source, dict) else None
        if isinstance(record, dict):
            return record.get("domain", {}).get("sparse_feature")
        return "domain_indicator" if "domain_indicator" in [f.name for f in self.sparse] else None

    @property
    def columns(self) -> list[str]:
        """Every column a shard holds, in shard order."""
        cols = [f.name for f in self.sparse] + [f.name for f in self.dense]
        for extra in (self.domain.column, self.label, *self.extra_labels, self.user_column):
            if extra and extra not in cols:
                cols.append(extra)
        return cols

    def shard_paths(self, root: str | Path, split: str) -> list[str]:
        if split not in self.splits:
            raise ManifestError(f"dataset {root} has no split '{split}' (has {sorted(self.splits)})")
        shards = self.splits[split].shards
        for shard in shards:
            check_inside_root(shard.path, where=f"dataset {root}")
        return [str(Path(root) / s.path) for s in shards]

    # --- serialisation -------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest") -> "Manifest":
        try:
            splits = {
                name: SplitInfo(rows=s["rows"], rows_per_domain=s["rows_per_domain"],
                                positives_per_domain=s["positives_per_domain"],
                                shards=[ShardInfo(**sh) for sh in s["shards"]])
                for name, s in d["splits"].items()
            }
            return cls(
                name=d["name"],
                sparse=[SparseFeature(**f) for f in d["sparse"]],
                dense=[DenseFeature(**f) for f in d["dense"]],
                domain=DomainInfo(**d["domain"]),
                label=d["label"],
                splits=splits,
                extra_labels=d.get("extra_labels", []),
                user_column=d.get("user_column"),
                skipped_rows=d.get("skipped_rows", {}),
                source=d.get("source", {}),
                unknown_ids=d.get("unknown_ids", {}),
                lineage=d.get("lineage", {}),
                format_version=d.get("format_version", FORMAT_VERSION),
            )
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from None


def check_inside_root(relative: str, where: str = "manifest") -> None:
    """A path a manifest lists must stay inside the dataset root: readers join it to the root, and a
    manifest is data, so it must not make them open files elsewhere. Judged on the text alone
    (symlinks inside the root are followed: a dataset may be a folder of links)."""
    if not isinstance(relative, str) or not relative.strip():
        raise ManifestError(f"{where}: shard path {relative!r} is not a relative file path")
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).anchor:
        raise ManifestError(f"{where}: shard path '{relative}' is absolute; shard paths must be relative "
                            f"to the dataset root")
    normal = posixpath.normpath(relative.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        raise ManifestError(f"{where}: shard path '{relative}' points outside the dataset root")


def load_manifest(root: str | Path) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    if not Path(root).is_dir():
        raise ManifestError(f"dataset directory not found: {root}")
    if not path.is_file():
        raise ManifestError(f"{path} not found: is {root} a dataset made by `hamur prepare`?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    manifest = Manifest.from_dict(data, where=str(path))
    if manifest.format_version != FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version {manifest.format_version}, this code reads {FORMAT_VERSION}")
    for split in manifest.splits.values():
        for shard in split.shards:
            check_inside_root(shard.path, where=str(path))
    return manifest


def write_manifest(root: str | Path, manifest: Manifest) -> None:
    """Write manifest.json atomically."""
    atomic_write_text(Path(root) / MANIFEST_NAME, manifest.to_json())
