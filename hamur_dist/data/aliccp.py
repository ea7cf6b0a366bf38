"""Ali-CCP in its common preprocessed CSV layout (torch-rechub / HAMUR): a configuration of ``table``.

Columns ``click,purchase,101,...,301,...,D853``: label click, purchase kept as an extra label, the
23 integer fields (``301`` included) as already-encoded ids (kept as they are, vocab = max id + 1
over all splits, as the reference code does), the 8 ``D*`` fields as already-scaled dense values,
domain = field 301 mapped {1, 2, 3} -> {0, 1, 2}, user column ``101``. The train / val / test files
are kept as the splits. configs/datasets/ali-ccp.yaml is the same schema as a table YAML.
"""
from __future__ import annotations

from pathlib import Path

from hamur_dist.config_loader import ConfigError
from hamur_dist.data.manifest import Manifest
from hamur_dist.data.table import prepare_table
from hamur_dist.data.like import like_schema
from hamur_dist.data.table_inputs import check_like_options, resolve_inputs
from hamur_dist.data.table_schema import TableSchema, load_table_schema

SPARSE = ["101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210", "216",
          "508", "509", "702", "853", "301", "109_14", "110_14", "127_14", "150_14"]
DENSE = ["D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"]
FILE_PATTERNS = {"train": ["*train*.csv", "*train*.csv.gz"], "val": ["*val*.csv", "*val*.csv.gz"],
                 "test": ["*test*.csv", "*test*.csv.gz"]}


def aliccp_schema(seed: int = 2022, shuffle: bool = True) -> TableSchema:
    return load_table_schema({
        "name": "ali-ccp",
        "label": {"column": "click"},
        "extra_labels": ["purchase"],
        "domain": {"column": "301", "mapping": {1: 0, 2: 1, 3: 2}, "names": ["301=1", "301=2", "301=3"]},
        "user": "101",
        "sparse": [{"name": name, "encoding": "identity"} for name in SPARSE],
        "dense": DENSE,
        "split": {"method": "files", "seed": seed, "shuffle": shuffle},
        "input": {"files": FILE_PATTERNS},
    })


def prepare_aliccp(out, source: str | Path | None = None, seed: int = 2022, shard_rows: int = 1_000_000,
                   row_group_rows: int = 65_536, chunk_rows: int = 262_144, bad_rows: str = "fail",
                   overwrite: bool = False, shuffle: bool = True, progress: bool | None = None,
                   like=None, grow_vocab: bool = False, add_domains: bool = False) -> Manifest:
    if source is None:
        raise ConfigError("ali-ccp needs --source: the folder with the train / val / test CSV files")
    parent = check_like_options(like, grow_vocab, add_domains, "ali-ccp")
    schema = aliccp_schema(seed, shuffle)
    if parent is not None:
        schema = like_schema(parent, schema)
    files = resolve_inputs(schema, source, Path.cwd())
    return prepare_table(schema, files, out, shard_rows=shard_rows, row_group_rows=row_group_rows,
                         chunk_rows=chunk_rows, bad_rows=bad_rows, overwrite=overwrite, progress=progress,
                         parent=parent, source_info={"preparer": "ali-ccp", "source": str(source),
                                      "files": {f.split: f.path.name for f in files}})
