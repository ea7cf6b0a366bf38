"""Soak test: several epochs on a large synthetic set; samples/s and every worker's memory per epoch.

    python benchmarks/soak.py [--data datasets/soak20m] [--rows 20000000] [--epochs 5] [--batch-size 8192]
                              [--workers 2] [--materialize] [--json out.json] [key.sub=value ...]

The dataset is prepared first when missing (``hamur_dist.data.prepare("synthetic", ...)``, Ali-CCP-like
vocabularies, ~1.5 GB for 20M rows). Training streams it (``data.materialize=false`` unless
``--materialize``) through the normal ``train()`` path; tables of at least 10k rows are sharded
row-wise. Every epoch each worker reports its current and peak RSS and its split (``worker<r>/rss_mb``,
``peak_rss_mb``, ``private_rss_mb``, ``private_peak_rss_mb``, ``shared_rss_mb``, ``store_rss_mb`` in
metrics.jsonl, see hamur_dist/train/memory.py); the script prints them per epoch and their growth
from epoch 1 (epoch 0 includes warm-up) to the last. The worker's own (private) memory, at the end of each epoch and at its
peak, must stay flat: the script exits 1 when either grows by more than GROWTH_TOLERANCE_MB on any worker.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from hamur_dist.config import load_experiment  # noqa: E402
from hamur_dist.train.trainer import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# RSS is allowed to wobble by this much between epochs (allocator caches, Ray Data buffers) before
# it counts as growth.
GROWTH_TOLERANCE_MB = 64


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO / "datasets" / "soak20m"))
    p.add_argument("--rows", type=int, default=20_000_000, help="rows when the dataset must be prepared")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8192, help="per worker")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--materialize", action="store_true", help="hold the dataset in the object store")
    p.add_argument("--storage", default=str(REPO / "runs"))
    p.add_argument("--json", help="also write the per-epoch figures here")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="extra config overrides")
    return p.parse_args()


def experiment(args):
    overrides = [
        f"data.path={args.data}",
        "data.prepare.dataset=synthetic",
        f"data.prepare.args={{rows: {args.rows}, seed: 7, shard_rows: 1000000}}",
        f"data.batch_size={args.batch_size}", "data.eval_batch_size=32768",
        f"data.materialize={str(args.materialize).lower()}",
        f"train.num_workers={args.workers}", f"train.epochs={args.epochs}", "train.patience=0",
        "train.log_every_steps=100",
        "model.name=mlp", "model.embed_dim=16", "model.hidden_dims=[256,128]",
        "model.hamur.enabled=true", "model.hamur.mode=paper", "model.hamur.rank=16",
        "embedding.sharding=auto", "embedding.auto_row_wise_min_rows=10000",
        f"run.storage_path={args.storage}", f"run.name=soak-{time.strftime('%Y%m%d-%H%M%S')}",
        *args.overrides,
    ]
    return load_experiment(None, overrides)


MEMORY = ("rss", "peak", "private", "private_peak", "shared", "store")


def worker_memory(row: dict) -> dict[int, dict[str, float | None]]:
    """rank -> {rss, peak, private, private_peak, shared, store} MB from one metrics.jsonl row (the
    later keys are absent in runs made before they were recorded)."""
    ranks = sorted(int(k[len("worker"):].split("/")[0]) for k in row if k.startswith("worker") and k.endswith("/rss_mb"))
    return {r: {"rss": row[f"worker{r}/rss_mb"], "peak": row[f"worker{r}/peak_rss_mb"],
                **{key: row.get(f"worker{r}/{key}_rss_mb") for key in MEMORY[2:]}}
            for r in ranks}


def summarise(history: list[dict]) -> dict:
    epochs = []
    for row in history:
        mem = worker_memory(row)
        epochs.append({"epoch": row["epoch"], "samples": row["train/samples"],
                       "samples_per_s": round(row["train/samples_per_s"]),
                       "epoch_seconds": round(row["train/epoch_seconds"], 1),
                       "val_auc": row.get("val/auc"),
                       **{f"{key}_mb": {r: m[key] for r, m in mem.items()} for key in MEMORY}})
    growth = {}
    if len(epochs) >= 3:   # epoch 0 includes warm-up: compare epoch 1 with the last
        for key in ("rss", "private", "private_peak", "shared", "store"):
            first, last = epochs[1][f"{key}_mb"], epochs[-1][f"{key}_mb"]
            growth[key] = {r: round(last[r] - first[r], 1) for r in first
                           if first[r] is not None and last.get(r) is not None}
    # The worker's own memory (RSS minus shared memory, as Ray's docs measure a worker's heap) must
    # stay flat, at the end of an epoch and at its peak. Shared pages are mostly the object store
    # blocks the worker has read: bounded by the store's size, and the store's memory, not the worker's.
    judged = [g for key in ("private", "private_peak") for g in growth.get(key, {}).values()]
    judged = judged or list(growth.get("rss", {}).values())
    return {"epochs": epochs, "growth_mb_epoch1_to_last": growth,
            "memory_flat": all(g <= GROWTH_TOLERANCE_MB for g in judged) if judged else None}


def _mb(value) -> str:
    return "?" if value is None else f"{value:,.0f}"


def main() -> int:
    args = parse_args()
    cfg = experiment(args)
    started = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - started
    summary = summarise(result.history)
    summary.update(wall_seconds=round(wall, 1), run_dir=str(result.run_dir), workers=args.workers,
                   object_store_mb=cfg.ray.object_store_mb,
                   batch_size=args.batch_size, materialize=args.materialize,
                   test_auc=result.report.get("test", {}).get("overall", {}).get("auc"))
    print(f"\nsoak: {len(summary['epochs'])} epochs on {args.data}, {args.workers} workers x batch "
          f"{args.batch_size}, {'materialized' if args.materialize else 'streaming'}; wall {wall:,.0f} s")
    ranks = list(summary["epochs"][0]["rss_mb"])
    print(f"object store: {cfg.ray.object_store_mb:,} MB (a worker's mapped store pages stay below it)")
    print("| epoch | samples | samples/s | epoch s | " + " | ".join(
        f"rank {r} RSS now / peak MB (private now / epoch peak + shared; store)" for r in ranks) + " |")
    print("|---" * (4 + len(ranks)) + "|")
    for e in summary["epochs"]:
        mem = " | ".join(f"{e['rss_mb'][r]:,.0f} / {e['peak_mb'][r]:,.0f} ({_mb(e['private_mb'][r])} / "
                         f"{_mb(e['private_peak_mb'][r])} + "
                         f"{_mb(e['shared_mb'][r])}; {_mb(e['store_mb'][r])})" for r in ranks)
        print(f"| {e['epoch']} | {e['samples']:,} | {e['samples_per_s']:,} | {e['epoch_seconds']:,} | {mem} |")
    if summary["memory_flat"] is None:
        print("memory: fewer than 3 epochs, no growth figure (epoch 0 includes warm-up)")
    else:
        print(f"memory growth epoch 1 -> last per rank (MB): {summary['growth_mb_epoch1_to_last']} -> private "
              f"memory {'flat' if summary['memory_flat'] else 'GROWING'} (tolerance {GROWTH_TOLERANCE_MB} MB)")
    print(f"test AUC {summary['test_auc']}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0 if summary["memory_flat"] in (True, None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
