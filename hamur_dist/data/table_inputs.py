"""``hamur prepare table --schema my.yaml --source DATA``: finding the input files a schema names."""
from __future__ import annotations

from pathlib import Path

from hamur_dist.config_loader import ConfigError
from hamur_dist.data.like import like_schema, load_parent
from hamur_dist.data.manifest import SPLITS, Manifest
from hamur_dist.data.sources import InputFile
from hamur_dist.data.table import prepare_table
from hamur_dist.data.table_schema import TableSchema, load_table_schema
from hamur_dist.data.validation import DataError

DEFAULT_PATTERNS = ["*.csv", "*.csv.gz", "*.tsv", "*.parquet"]


def resolve_inputs(schema: TableSchema, source: str | Path | None, base: Path) -> list[InputFile]:
    """Input files, each bound to its split for ``split.method: files``.

    ``source`` may be one file, a folder (searched with ``input.files`` patterns, or every
    CSV/Parquet file in it), or None (``input.files`` patterns relative to ``base``).
    """
    root = Path(source) if source is not None else base
    if source is not None and root.is_file():
        if schema.split.method == "files":
            raise ConfigError("split.method files needs a folder with one file set per split, not one file")
        return [InputFile(root)]
    if not root.is_dir():
        raise FileNotFoundError(f"input not found: {root}")
    patterns = schema.input.files or {"all": DEFAULT_PATTERNS}
    if schema.split.method == "files":
        if set(patterns) != set(SPLITS):
            raise ConfigError(f"split.method files needs input.files with keys {list(SPLITS)}, got {sorted(patterns)}")
    elif set(patterns) != {"all"}:
        raise ConfigError(f"input.files for split.method {schema.split.method} takes one key 'all', "
                          f"got {sorted(patterns)}")
    files = []
    for split, globs in patterns.items():
        matches = sorted({p for pattern in globs for p in root.glob(pattern) if p.is_file()})
        if not matches:
            raise DataError(f"no input files match {globs}", file=root)
        files += [InputFile(p, split if split != "all" else None) for p in matches]
    return files


def prepare_from_schema(out, schema: str | Path | dict | TableSchema | None = None, source: str | Path | None = None,
                        shard_rows: int = 1_000_000, row_group_rows: int = 65_536, chunk_rows: int = 262_144,
                        bad_rows: str = "fail", overwrite: bool = False, seed: int | None = None,
                        progress: bool | None = None, like: str | Path | None = None, grow_vocab: bool = False,
                        add_domains: bool = False) -> Manifest:
    """The ``table`` preparer: ``schema`` is a YAML path, a dict or a ``TableSchema``. With ``like`` (a
    dataset), the data is encoded like that one; the schema then defaults to the one it recorded."""
    parent = check_like_options(like, grow_vocab, add_domains, "table")
    if schema is None and parent is None:
        raise ConfigError("the table preparer needs a schema (--schema my-table.yaml)")
    base = Path(schema).parent if isinstance(schema, (str, Path)) else Path.cwd()
    spec = None if schema is None else schema if isinstance(schema, TableSchema) else load_table_schema(schema)
    if parent is not None:
        if source is None:
            raise ConfigError("--like needs --source: the new logs to encode like the dataset")
        spec = like_schema(parent, spec)
    if seed is not None:
        spec.split.seed = seed
    files = resolve_inputs(spec, source, base)
    return prepare_table(spec, files, out, shard_rows=shard_rows, row_group_rows=row_group_rows,
                         chunk_rows=chunk_rows, bad_rows=bad_rows, overwrite=overwrite, progress=progress,
                         source_info={"preparer": "table", "schema": str(schema) if isinstance(schema, (str, Path))
                                      else "inline" if schema is not None else f"like {parent.root}",
                                      "files": [str(f.path) for f in files]}, parent=parent)


def check_like_options(like, grow_vocab: bool, add_domains: bool, preparer: str):
    """The parent dataset of ``--like`` (None without it); --grow-vocab / --add-domains need --like."""
    if like is None:
        if grow_vocab or add_domains:
            raise ConfigError("--grow-vocab and --add-domains change the encoding of a --like dataset: give --like")
        return None
    return load_parent(like, grow_vocab, add_domains, preparer)
