"""Changes the inference tests make to a copied dataset: its manifest as a dict, a replaced shard."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from hamur_dist.fileio import sha256_file


def edit_manifest(root: Path, edit) -> None:
    """Apply ``edit`` to the manifest.json of ``root`` as a plain dict."""
    data = json.loads((root / "manifest.json").read_text())
    edit(data)
    (root / "manifest.json").write_text(json.dumps(data))


def rewrite_shard(root: Path, relative: str, table) -> Path:
    """Replace a shard and record its new sha256: a shard not made by prepare, but listed as if it were."""
    path = root / relative
    pq.write_table(table, path)
    digest = sha256_file(path)

    def record(data):
        for split in data["splits"].values():
            for shard in split["shards"]:
                if shard["path"] == relative:
                    shard["sha256"] = digest
    edit_manifest(root, record)
    return path
