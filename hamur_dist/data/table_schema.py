"""The YAML schema that describes a user's own logs (CSV or Parquet) to the ``table`` preparer.

A minimal schema (see configs/datasets/example-table.yaml for every option)::

    name: my-logs
    label: {column: clicked}
    domain: {column: surface, mapping: {home: 0, search: 1}}
    user: user_id
    sparse: [user_id, item_id, {name: query, encoding: hash, buckets: 1000000}]
    dense: [{name: price, scaling: standard}]

Loaded with the project's typed config loader, so an unknown key or a wrong type is an error naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hamur_dist.config_loader import ConfigError, build, read_yaml


@dataclass
class SparseSpec:
    name: str                                   # output column (and embedding table) name
    column: str | None = None                   # raw input column; default: name
    encoding: Literal["vocab", "hash", "identity"] = "vocab"
    min_count: int = 1                          # vocab: values seen fewer times map to id 0
    buckets: int = 0                            # hash: vocab_size (ids 1..buckets-1; 0 = missing)
    vocab_size: int = 0                         # identity: declared size; 0 = max id + 1 in the data
    dtype: Literal["auto", "int", "string"] = "auto"   # how to read a CSV column (vocab/hash)
    # several values per row (hamur_dist.data.multi_hot): a text cell joined by `separator`, or a
    # Parquet list column; min_count counts occurrences. max_len: ids kept per row (the first ones),
    # 0 = the longest list in the prepared input
    multi_hot: bool = False
    separator: str = "|"
    max_len: int = 0

    @property
    def source(self) -> str:
        return self.column or self.name

    def validate(self) -> None:
        if self.encoding == "hash" and self.buckets < 2:
            raise ConfigError(f"sparse feature '{self.name}': encoding hash needs buckets >= 2")
        if self.min_count < 1:
            raise ConfigError(f"sparse feature '{self.name}': min_count must be >= 1")
        if not self.separator:
            raise ConfigError(f"sparse feature '{self.name}': separator must not be empty")
        if self.max_len < 0:
            raise ConfigError(f"sparse feature '{self.name}': max_len must be >= 0 (0: the longest list seen)")
        if self.max_len and not self.multi_hot:
            raise ConfigError(f"sparse feature '{self.name}': max_len applies to multi_hot features only")


@dataclass
class DenseSpec:
    name: str
    column: str | None = None
    scaling: Literal["none", "minmax", "standard", "log1p_minmax"] = "none"

    @property
    def source(self) -> str:
        return self.column or self.name


@dataclass
class LabelSpec:
    column: str
    threshold: float | None = None              # label = value > threshold; None: values must be 0/1


@dataclass
class DomainSpec:
    """Exactly one of: mapping (raw value -> domain id), bins (numeric edges), num_domains (identity)."""
    column: str
    mapping: dict[Any, int] = field(default_factory=dict)
    bins: list[float] = field(default_factory=list)     # domain = number of edges <= value
    num_domains: int = 0                                # raw values are already 0..num_domains-1
    names: list[str] = field(default_factory=list)
    sparse_feature: str | None = "domain_indicator"     # also feed domain+1 as a sparse feature (null: no)

    @property
    def count(self) -> int:
        if self.mapping:
            return max(self.mapping.values()) + 1
        if self.bins:
            return len(self.bins) + 1
        return self.num_domains

    def validate(self) -> None:
        given = [bool(self.mapping), bool(self.bins), self.num_domains > 0]
        if sum(given) != 1:
            raise ConfigError("domain: give exactly one of mapping, bins, num_domains")
        if self.mapping:
            keys = {type(k) for k in self.mapping}
            if len(keys) != 1 or keys.pop() not in (int, str):
                raise ConfigError("domain.mapping: keys must be all integers or all strings")
            ids = set(self.mapping.values())
            if ids != set(range(len(ids))):
                raise ConfigError(f"domain.mapping: domain ids must be 0..n-1 without gaps, got {sorted(ids)}")
        if self.bins and sorted(self.bins) != list(self.bins):
            raise ConfigError("domain.bins must be increasing")
        if self.names and len(self.names) != self.count:
            raise ConfigError(f"domain.names has {len(self.names)} names for {self.count} domains")


@dataclass
class SplitSpec:
    method: Literal["random", "time", "files", "hash"] = "random"
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])   # train, val, test
    time_column: str | None = None              # method time: order by this numeric column
    # method hash: a row's split follows from a hash of these columns (and the seed) alone, so a row
    # lands in the same split whatever else the input holds (held-out domains, later days); sizes
    # match the fractions only on average
    hash_columns: list[str] = field(default_factory=list)
    seed: int = 2022
    shuffle: bool = True                        # shuffle rows within each split (external, bounded memory)

    def validate(self) -> None:
        if len(self.fractions) != 3 or min(self.fractions) < 0 or abs(sum(self.fractions) - 1) > 1e-6:
            raise ConfigError(f"split.fractions must be 3 non-negative numbers summing to 1, got {self.fractions}")
        if self.method == "time" and not self.time_column:
            raise ConfigError("split.method time needs split.time_column")
        if self.method == "hash" and not self.hash_columns:
            raise ConfigError("split.method hash needs split.hash_columns (e.g. [user_id, item_id])")


@dataclass
class InputSpec:
    format: Literal["auto", "csv", "parquet"] = "auto"
    delimiter: str = ","
    header: bool = True
    column_names: list[str] = field(default_factory=list)   # CSV without header
    encoding: str = "utf8"
    # split -> glob patterns, relative to --source (or to the YAML file's folder without --source).
    # For split.method files use train/val/test; otherwise a single key "all" (default: every
    # .csv/.csv.gz/.parquet under --source).
    files: dict[str, list[str]] = field(default_factory=dict)

    def validate(self) -> None:
        if len(self.delimiter) != 1:
            raise ConfigError(f"input.delimiter must be one character, got {self.delimiter!r}")
        if not self.header and not self.column_names:
            raise ConfigError("input.header false needs input.column_names")


@dataclass
class TableSchema:
    name: str
    label: LabelSpec
    domain: DomainSpec
    sparse: list[SparseSpec]
    dense: list[DenseSpec] = field(default_factory=list)
    extra_labels: list[str] = field(default_factory=list)   # more 0/1 label columns kept as they are
    user: str | None = None                     # a sparse feature whose ids identify users (GAUC)
    drop: list[str] = field(default_factory=list)           # input columns to ignore
    split: SplitSpec = field(default_factory=SplitSpec)
    input: InputSpec = field(default_factory=InputSpec)

    def validate(self) -> None:
        outputs = [f.name for f in self.sparse] + [f.name for f in self.dense]
        if self.domain.sparse_feature:
            outputs.append(self.domain.sparse_feature)
        outputs += ["domain", "label", *self.extra_labels]
        duplicates = sorted({n for n in outputs if outputs.count(n) > 1})
        if duplicates:
            raise ConfigError(f"output column names must be unique; repeated: {duplicates} "
                              "('domain' and 'label' are reserved)")
        if self.user is not None and self.user not in [f.name for f in self.sparse]:
            raise ConfigError(f"user: '{self.user}' must name one of the sparse features")
        lists = {f.source: f.name for f in self.sparse if f.multi_hot}
        if self.user in lists.values():
            raise ConfigError(f"user: '{self.user}' is multi_hot; the user column needs one id per row")
        clash = [c for c in self.split.hash_columns if c in lists]
        if clash and self.split.method == "hash":
            raise ConfigError(f"split.hash_columns: '{clash[0]}' is a multi_hot column; hash on single values")
        if not self.sparse:
            raise ConfigError("sparse: at least one sparse feature is needed")

    def input_columns(self) -> list[str]:
        """Every raw column the schema reads (the input must have exactly these plus ``drop``)."""
        cols = [f.source for f in self.sparse] + [f.source for f in self.dense]
        cols += [self.label.column, *self.extra_labels, self.domain.column]
        if self.split.method == "time":
            cols.append(self.split.time_column)
        if self.split.method == "hash":
            cols += self.split.hash_columns
        return list(dict.fromkeys(cols))


def _normalise(data: dict) -> dict:
    """Allow the short forms ``sparse: [a, b]`` and ``dense: [x]`` for default settings."""
    data = dict(data)
    for key in ("sparse", "dense"):
        if isinstance(data.get(key), list):
            data[key] = [{"name": item} if isinstance(item, str) else item for item in data[key]]
    if isinstance(data.get("label"), str):
        data["label"] = {"column": data["label"]}
    return data


def load_table_schema(source: str | Path | dict) -> TableSchema:
    """A ``TableSchema`` from a YAML file or a dict; errors name the file and the key."""
    if isinstance(source, dict):
        return build(TableSchema, _normalise(source))
    try:
        return build(TableSchema, _normalise(read_yaml(source)))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
