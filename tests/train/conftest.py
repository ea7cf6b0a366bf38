"""Small hand-made datasets for training tests (independent of the preparers, fully controlled)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hamur_dist.data.manifest import (DenseFeature, DomainInfo, Manifest, ShardInfo, SparseFeature, SplitInfo,
                                      write_manifest)

VOCABS = {"user": 200, "item": 300, "cat": 12}


def make_tiny_dataset(root: Path, rows=(6000, 1500, 1500), shards=(5, 2, 2), num_domains=3, seed=0,
                      with_user=True) -> Manifest:
    """Rows with a planted, domain-dependent signal; uneven shard sizes; ids include 0 and vocab-1."""
    rng = np.random.default_rng(seed)
    effects = {name: rng.normal(0, 1.0, size=v) for name, v in VOCABS.items()}
    domain_sign = np.array([1.0, -1.0, 0.5, 2.0, -0.5][:num_domains])
    root.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n, n_shards in zip(("train", "val", "test"), rows, shards):
        (root / split).mkdir(exist_ok=True)
        cuts = np.sort(rng.choice(np.arange(1, n), size=n_shards - 1, replace=False)) if n_shards > 1 else []
        bounds = [0, *cuts, n]
        shard_infos, per_domain, positives = [], np.zeros(num_domains, int), np.zeros(num_domains, int)
        for i in range(n_shards):
            m = int(bounds[i + 1] - bounds[i])
            cols = {name: rng.integers(0, v, size=m) for name, v in VOCABS.items()}
            domain = rng.choice(num_domains, size=m, p=np.linspace(3, 1, num_domains) / np.linspace(3, 1, num_domains).sum())
            x = rng.random(m).astype(np.float32)
            score = (effects["user"][cols["user"]] + effects["item"][cols["item"]] * domain_sign[domain]
                     + effects["cat"][cols["cat"]] + 2 * (x - 0.5))
            label = (rng.random(m) < 1 / (1 + np.exp(-2 * score))).astype(np.float32)
            table = pa.table({**{k: pa.array(v, pa.int64()) for k, v in cols.items()},
                              "domain_id": pa.array(domain, pa.int64()), "x": pa.array(x, pa.float32()),
                              "domain": pa.array(domain, pa.int64()), "label": pa.array(label, pa.float32())})
            rel = f"{split}/part-{i:05d}.parquet"
            pq.write_table(table, root / rel, row_group_size=512)
            digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
            counts = np.bincount(domain, minlength=num_domains)
            per_domain += counts
            positives += np.bincount(domain, weights=label, minlength=num_domains).astype(int)
            shard_infos.append(ShardInfo(path=rel, rows=m, sha256=digest, rows_per_domain=counts.tolist()))
        splits[split] = SplitInfo(rows=n, rows_per_domain=per_domain.tolist(),
                                  positives_per_domain=positives.tolist(), shards=shard_infos)
    manifest = Manifest(
        name="tiny",
        sparse=[SparseFeature(k, v) for k, v in VOCABS.items()] + [SparseFeature("domain_id", num_domains)],
        dense=[DenseFeature("x", "none")],
        domain=DomainInfo(column="domain", num_domains=num_domains, names=[f"d{i}" for i in range(num_domains)]),
        label="label", splits=splits, user_column="user" if with_user else None)
    write_manifest(root, manifest)
    return manifest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "ds"
    make_tiny_dataset(root)
    return root
