"""Ray path vs a plain loop: samples/s of the same model at the same global batch on the same cores.

  (a) an in-process loop over tensors already in memory (no Ray, ``--threads`` torch threads);
  (b) ``hamur train``'s path: Ray Data streaming the Parquet shards to N Ray Train workers x global/N
      (one torch thread each), for each N in ``--workers``;
then where each Ray run's time went, per worker: waiting for input, agreeing on the step count,
and the steps themselves (forward, backward, update, DDP's all-reduce).

    python benchmarks/ray_pipeline.py                      # ML-1M, the shipped HAMUR config
    python benchmarks/ray_pipeline.py --config configs/quickstart.yaml --data datasets/quickstart

The ML-1M dataset is prepared on first use from ``--source`` (default ../shared/data/movielens-1m/full).
Steady state: each figure is the last epoch's (the first pays start-up). ``--repeat N`` alternates the
paths N times, each ratio against the in-process figure of its own round; results in docs/performance.md.
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
from hamur_dist.data.manifest import load_manifest
from hamur_dist.data.reader import read_split
from hamur_dist.model import build_model

REPO = Path(__file__).resolve().parents[1]


def in_process(cfg, root: str, epochs: int, batch: int, threads: int) -> float:
    """Samples/s of the plain loop on tensors already in memory (last epoch)."""
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    manifest = load_manifest(root)
    cols = read_split(root, "train")
    sparse = torch.stack([torch.from_numpy(cols[f.name]) for f in manifest.sparse], dim=1).long()
    dense = torch.stack([torch.from_numpy(cols[f.name]) for f in manifest.dense], dim=1).float()
    domain = torch.from_numpy(cols[manifest.domain.column]).long()
    label = torch.from_numpy(cols[manifest.label]).float()
    model = build_model(cfg.model, manifest.schema).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    n = len(label)
    rate = 0.0
    for _ in range(epochs):
        perm = torch.randperm(n)
        start = time.perf_counter()
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            loss = F.binary_cross_entropy_with_logits(model(sparse[idx], dense[idx], domain[idx]), label[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rate = n / (time.perf_counter() - start)
    return rate


def ray_run(cfg, workers: int, batch: int, storage: Path) -> dict:
    from hamur_dist.train.trainer import train

    cfg.train.num_workers = workers
    cfg.data.batch_size = batch // workers
    cfg.run.name = f"bench-{workers}w-{int(time.time())}"
    cfg.run.storage_path = str(storage)
    return train(cfg, log=lambda *_: None).history[-1]


def profile_lines(row: dict, workers: int) -> list[str]:
    total = row["train/epoch_seconds"]
    lines = []
    for r in range(workers):
        parts = {k: row.get(f"worker{r}/{k}_s", float("nan")) for k in ("input", "agree", "step")}
        other = total - sum(parts.values())
        lines.append(f"    worker {r}: epoch {total:5.1f}s = input {parts['input']:5.1f}s ({parts['input'] / total:4.0%})"
                     f" + agreeing {parts['agree']:4.1f}s ({parts['agree'] / total:4.0%}) + steps {parts['step']:5.1f}s"
                     f" ({parts['step'] / total:4.0%}) + other {other:4.1f}s")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "movielens1m_hamur_mlp.yaml"))
    p.add_argument("--data", default=str(REPO / "datasets" / "ml1m"))
    p.add_argument("--source", default=str(REPO.parent / "shared" / "data" / "movielens-1m" / "full"),
                   help="raw MovieLens-1M, used when --data is not prepared yet")
    p.add_argument("--global-batch", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[2, 1])
    p.add_argument("--threads", type=int, default=2, help="torch threads of the in-process loop (= the cores)")
    p.add_argument("--storage", default="/tmp/hamur-bench-runs")
    p.add_argument("--skip-in-process", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="rounds; the machine's speed drifts between sittings")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides for every run")
    args = p.parse_args()

    root = Path(args.data)
    if not (root / "manifest.json").is_file():
        from hamur_dist.data import prepare

        prepare("movielens-1m", root, source=args.source)
    overrides = [f"data.path={root}", "data.prepare=null", f"train.epochs={args.epochs}", "train.patience=0",
                 "train.log_every_steps=0", *args.overrides]
    import ray

    from hamur_dist.ray_connection import LOCAL_RUNTIME_ENV

    ray.init(num_cpus=4, object_store_memory=2 * 1024**3, include_dashboard=False, runtime_env=LOCAL_RUNTIME_ENV)
    try:
        print(f"config {Path(args.config).name}, global batch {args.global_batch:,}, {os.cpu_count()} cores, "
              f"{args.repeat} round(s): the in-process loop, then each Ray run, in turn\n")
        rates: dict[str, list[float]] = {}
        profiles = []
        for _ in range(args.repeat):
            if not args.skip_in_process:
                rates.setdefault("in-process", []).append(in_process(
                    load_experiment(args.config, overrides), str(root), args.epochs, args.global_batch, args.threads))
            for workers in args.workers:
                row = ray_run(load_experiment(args.config, overrides), workers, args.global_batch, Path(args.storage))
                rates.setdefault(f"{workers}w", []).append(row["train/samples_per_s"])
                profiles += [f"  {workers} worker(s):", *profile_lines(row, workers)]
        base = rates.get("in-process", [float("nan")] * args.repeat)
        names = {"in-process": f"in-process loop over tensors in memory ({args.threads} threads)",
                 **{f"{w}w": f"hamur train, {w} Ray Train worker(s) x {args.global_batch // w:,}" for w in args.workers}}
        print("| path | samples/s per round | vs in-process, per round | mean ratio |\n|---|---:|---:|---:|")
        for key, values in rates.items():
            ratios = [v / b for v, b in zip(values, base)]
            print(f"| {names[key]} | {' / '.join(f'{v:,.0f}' for v in values)} | "
                  f"{' / '.join(f'{r:.2f}' for r in ratios)} | {sum(ratios) / len(ratios):.2f} |")
        print("\nwhere the last epoch's time went (per worker, each Ray run):")
        print("\n".join(profiles))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
