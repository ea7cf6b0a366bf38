"""GPU check: the MovieLens-1M reference config trained through Ray Data + Ray Train on one GPU.

Prints per-epoch samples/s (end to end: Parquet -> Ray Data -> pinned host batches -> GPU step),
peak GPU memory and the per-domain test AUC. Needs a prepared ML-1M dataset (`hamur prepare`).

    python benchmarks/gpu_train.py --data datasets/ml1m [--batch-size 65536] [--epochs 4] [--precision bf16]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO / "datasets" / "ml1m"))
    p.add_argument("--config", default=str(REPO / "configs" / "movielens1m_hamur_mlp.yaml"))
    p.add_argument("--batch-size", type=int, default=65536)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--lr", type=float, default=0.004, help="larger batch, larger step")
    p.add_argument("--storage", default="/tmp/hamur-gpu-runs")
    p.add_argument("--cpus", type=int, default=0, help="logical CPUs for Ray (default: all cores)")
    args = p.parse_args()

    import ray
    import torch

    from hamur_dist.config import load_experiment
    from hamur_dist.metrics import markdown_table
    from hamur_dist.train.trainer import train

    print(f"torch {torch.__version__}, ray {ray.__version__}, GPU: {torch.cuda.get_device_name(0)}")
    cfg = load_experiment(args.config, [
        f"data.path={Path(args.data).absolute()}", f"data.batch_size={args.batch_size}",
        f"data.eval_batch_size={args.batch_size}", "data.materialize=true",
        "train.use_gpu=true", "train.num_workers=1", "train.cpus_per_worker=4",
        f"train.precision={args.precision}", f"train.epochs={args.epochs}", "train.patience=0",
        f"train.lr={args.lr}", "train.log_every_steps=0",
        f"run.storage_path={args.storage}", f"run.name=gpu-{int(time.time())}"])
    ray.init(num_cpus=args.cpus or os.cpu_count(), num_gpus=1, object_store_memory=8 * 1024**3,
             include_dashboard=False)
    try:
        start = time.perf_counter()
        result = train(cfg, log=print)
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    print(f"\nwall time {wall:.1f}s (Ray start-up and evaluation included)")
    for row in result.history:
        print(f"epoch {row['epoch']}: {row['train/samples_per_s']:>12,.0f} samples/s, "
              f"peak GPU memory {row.get('gpu/max_memory_mb', float('nan')):,.0f} MiB, "
              f"val AUC {row['val/auc']:.4f}")
    print("\nper-domain test metrics:\n" + markdown_table(result.report["test"]))


if __name__ == "__main__":
    main()
