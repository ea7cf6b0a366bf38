"""Ray pipeline vs in-process: samples/s of the same model and batch size for
  (a) an in-process loop over pre-loaded tensors (no Ray),
  (b) Ray Train with 1 worker and Ray Data streaming the Parquet shards,
  (c) Ray Train with 2 workers,
on a synthetic dataset (default 2M rows). Prints each figure and the ratios b/a and c/a.

    python benchmarks/ray_pipeline.py [--rows 2000000] [--epochs 2] [--batch-size 4096]

Steady state: the figure of each Ray run is its last epoch's samples/s (the first pays start-up).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import torch
import torch.nn.functional as F

from hamur_dist.config import load_experiment
from hamur_dist.data import prepare
from hamur_dist.data.manifest import load_manifest
from hamur_dist.data.reader import read_split
from hamur_dist.model import build_model

REPO = Path(__file__).resolve().parents[1]


def in_process(cfg, root: str, epochs: int) -> float:
    """Samples/s of the plain loop on tensors already in memory (last epoch)."""
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    manifest = load_manifest(root)
    cols = read_split(root, "train")
    sparse = torch.stack([torch.from_numpy(cols[f.name]) for f in manifest.sparse], dim=1)
    dense = torch.stack([torch.from_numpy(cols[f.name]) for f in manifest.dense], dim=1)
    domain = torch.from_numpy(cols[manifest.domain.column])
    label = torch.from_numpy(cols[manifest.label])
    model = build_model(cfg.model, manifest.schema)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    bs, n = cfg.data.batch_size, len(label)
    rate = 0.0
    for _ in range(epochs):
        perm = torch.randperm(n)
        start = time.perf_counter()
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = F.binary_cross_entropy_with_logits(model(sparse[idx], dense[idx], domain[idx]), label[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rate = n / (time.perf_counter() - start)
    return rate


def ray_run(cfg, workers: int, storage: Path) -> float:
    from hamur_dist.train.trainer import train

    cfg.train.num_workers = workers
    cfg.run.name = f"bench-{workers}w-{int(time.time())}"
    cfg.run.storage_path = str(storage)
    result = train(cfg, log=lambda *_: None)
    return result.history[-1]["train/samples_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--data", default=str(REPO / "datasets" / "bench-synthetic"))
    p.add_argument("--storage", default="/tmp/hamur-bench-runs")
    args = p.parse_args()

    root = Path(args.data)
    if not (root / "manifest.json").is_file():
        prepare("synthetic", root, rows=args.rows, shard_rows=max(args.rows // 16, 1), seed=1)
    cfg = load_experiment(REPO / "configs" / "quickstart.yaml",
                          [f"data.path={root}", f"data.batch_size={args.batch_size}", "data.prepare=null", "data.materialize=false",
                           f"train.epochs={args.epochs}", "train.patience=0", "train.log_every_steps=0"])
    import ray

    ray.init(num_cpus=4, object_store_memory=2 * 1024**3, include_dashboard=False)
    try:
        a = in_process(cfg, str(root), args.epochs)
        print(f"(a) in-process, pre-loaded tensors : {a:12,.0f} samples/s")
        b = ray_run(cfg, 1, Path(args.storage))
        print(f"(b) Ray Train 1 worker + Ray Data  : {b:12,.0f} samples/s   b/a = {b / a:.2f}")
        c = ray_run(cfg, 2, Path(args.storage))
        print(f"(c) Ray Train 2 workers + Ray Data : {c:12,.0f} samples/s   c/a = {c / a:.2f}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
