"""What many test modules share: the tiny dataset, a small training config, and readers of a run's files.

Import it as ``from tests.helpers import ...`` (the tests are a package).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hamur_dist.config import ExperimentConfig, load_experiment
from hamur_dist.data.manifest import (DenseFeature, DomainInfo, Manifest, ShardInfo, SparseFeature, SplitInfo,
                                      write_manifest)
from hamur_dist.train.outputs import EVENTS_FILE, read_history

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


# --- a small, quick training run (MLP + HAMUR adapters on the tiny dataset) -----------------------
TRAIN_OVERRIDES = ["data.batch_size=256", "model.hidden_dims=[32,16]", "model.hamur.enabled=true",
                   "model.hamur.rank=4", "model.hamur.hyper_hidden=[16]", "train.lr=0.01",
                   "train.log_every_steps=0", "train.patience=0", "train.seed=7"]


def small_experiment(root, storage, *extra: str) -> ExperimentConfig:
    return load_experiment(None, [f"data.path={root}", f"run.storage_path={storage}", *TRAIN_OVERRIDES, *extra])


# --- reading a run directory -------------------------------------------------------------------
def history(run_dir: Path) -> list[dict]:
    """metrics.jsonl, one dict per epoch (the run-output reader the package itself uses)."""
    return read_history(run_dir)


def events(run_dir: Path) -> list[str]:
    path = Path(run_dir) / EVENTS_FILE
    return path.read_text().splitlines() if path.is_file() else []


def report_test_auc(run_dir: Path) -> float:
    return json.loads((Path(run_dir) / "report.json").read_text())["test"]["overall"]["auc"]


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Ray Train's checkpoint folders of a run, oldest first (their names carry the time)."""
    return sorted(p for p in Path(run_dir).glob("checkpoint_*") if p.is_dir())


def checkpointed_epochs(run_dir: Path) -> list[int]:
    """Epochs (not the final test report) whose checkpoint Ray Train has registered, from its snapshot
    (rewritten on every registration): a restart from then on resumes after the newest of them."""
    try:
        data = json.loads((Path(run_dir) / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, json.JSONDecodeError):   # not there yet, or caught mid-write
        return []
    return sorted(r["metrics"]["epoch"] for r in data.get("checkpoint_results", [])
                  if "epoch" in r.get("metrics", {}) and not r["metrics"].get("final"))
