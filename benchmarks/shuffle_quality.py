"""Per-epoch shuffling of the ML-1M config: Ray Data's full random_shuffle vs a local shuffle buffer
over the materialized blocks (new block order every epoch), to convergence, over seeds.

    python benchmarks/shuffle_quality.py [--seeds 0 1 2]

Prints per run: best epoch, best val AUC, test AUC at it, steady samples/s; then mean ± std.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from hamur_dist.config import load_experiment  # noqa: E402
from hamur_dist.train.trainer import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"global random_shuffle": ["data.global_shuffle=true", "data.local_shuffle_buffer=0"],
            "local buffer 16384": ["data.global_shuffle=false", "data.local_shuffle_buffer=16384"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "movielens1m_hamur_mlp.yaml"))
    p.add_argument("--data", default=str(REPO / "datasets" / "ml1m"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--storage", default="/tmp/hamur-shuffle-runs")
    args = p.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
    for seed in args.seeds:
        for variant, extra in VARIANTS.items():
            cfg = load_experiment(args.config, [f"data.path={args.data}", "data.prepare=null", f"train.seed={seed}",
                                                "train.log_every_steps=0", f"run.storage_path={args.storage}",
                                                f"run.name=shuffle-{seed}-{int(time.time())}", *extra])
            result = train(cfg, log=lambda *_: None)
            rate = statistics.mean(h["train/samples_per_s"] for h in result.history[1:] or result.history)
            row = (result.report["best_val"]["overall"]["auc"], result.report["test"]["overall"]["auc"], rate)
            results[variant].append(row)
            print(f"seed {seed} | {variant} | best epoch {result.report['best_epoch']} | val {row[0]:.4f} | "
                  f"test {row[1]:.4f} | {rate:,.0f} samples/s", flush=True)
    print("\n| per-epoch shuffle | val AUC | test AUC | samples/s |\n|---|---:|---:|---:|")
    for variant, rows in results.items():
        cols = list(zip(*rows))
        spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0   # noqa: E731
        print(f"| {variant} | {statistics.mean(cols[0]):.4f} ± {spread(cols[0]):.4f} | "
              f"{statistics.mean(cols[1]):.4f} ± {spread(cols[1]):.4f} | {statistics.mean(cols[2]):,.0f} |")


if __name__ == "__main__":
    main()
