"""Sharded vs replicated embedding tables across gloo (CPU) or NCCL (GPU) processes, standalone.

One synthetic table, ``--features`` sparse columns per sample all looking it up, Zipf-like ids
(log-uniform rank, hashed so hot ids scatter over the id space). Each step: lookup, backward of a
dummy loss, update. Row-wise: one all-to-all exchange per step, then the row-sparse optimiser.
Replicated: ``nn.Embedding`` with dense gradients all-reduced (what DDP does) and the dense optimiser.
Replicated-sparse: the whole table on every worker, local lookups, the touched rows' gradients
exchanged after backward and the row-sparse optimiser (``--case replicated_sparse``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sharded_embedding.py --rows 50000000 --case row_wise
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sharded_embedding.py --rows 5000000 --case both

Reports per worker: table bytes, peak RSS, steady steps/s and samples/s (the first ``--warmup``
steps, which touch each row's pages for the first time, are reported apart as "cold"), all-to-all
bytes per step and the share of step time spent in communication (which includes waiting for the
slower worker: a collective returns only when every worker has reached it). A case whose
worst-case memory (every row of the optimiser state resident) exceeds ``--max-total-gb`` or 60% of
the available memory is skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hamur_dist.config import EmbeddingConfig  # noqa: E402
from hamur_dist.embedding import ShardedEmbeddingCollection, SparseRowOptimizer, plan_sharding  # noqa: E402
from hamur_dist.model.embedding import TableSpec  # noqa: E402

GiB = 1024**3


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def worst_case_bytes(case: str, rows: int, dim: int, world: int, optimizer: str) -> int:
    """All workers together, every optimiser-state page resident."""
    table = rows * dim * 4
    if case == "replicated":                       # weights + dense grad + dense Adam/Adagrad state, per worker
        per_worker = table * (2 + (2 if optimizer == "adam" else 1))
        return per_worker * world
    state = table * (2 if optimizer == "adam" else 1) + (rows * 4 if optimizer == "adam" else 0)
    if case == "replicated_sparse":                # weights + sparse state, per worker
        return (table + state + 300 * 1024**2) * world
    return table + state + world * 300 * 1024**2   # plus interpreter + torch per process


def make_batches(args, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(args.distinct_batches):
        u = torch.rand(args.batch, args.features, generator=gen, dtype=torch.float64)
        rank = torch.exp(u * torch.log(torch.tensor(float(args.rows)))).long() - 1     # log-uniform: Zipf(1)-like
        out.append((rank * 2_654_435_761 + 97) % args.rows)                             # scatter hot ids
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_worker(rank: int, world: int, port: int, case: str, args, out_dir: str) -> None:
    torch.set_num_threads(1)
    device = torch.device(f"cuda:{rank}" if args.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    specs = [TableSpec(f"f{i}", args.rows, args.dim) for i in range(1)]
    plan = plan_sharding(specs, world, EmbeddingConfig(sharding=case))
    if rank == 0:
        print(plan.describe(), flush=True)
    t0 = time.perf_counter()
    emb = ShardedEmbeddingCollection(specs, plan, rank, world, device=device, init_seed=1)
    init_s = time.perf_counter() - t0
    if case != "replicated":
        sparse_opt = SparseRowOptimizer(emb, args.optimizer, lr=1e-3)
        dense_opt = None
    else:
        sparse_opt = None
        dense_cls = torch.optim.Adam if args.optimizer == "adam" else torch.optim.Adagrad
        dense_opt = dense_cls(emb.parameters(), lr=1e-3)
    state = sparse_opt.state.values() if sparse_opt else [v for st in dense_opt.state.values() for v in st.values()]
    state_bytes = sum(t.numel() * t.element_size() for t in state)   # dense state appears at its first step
    batches = [b.to(device) for b in make_batches(args, seed=100 + rank)]
    rss_after_init = rss_bytes()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times, comm, fwd_s, bwd_s, opt_s, cold = [], [], [], [], [], []
    comm_bytes, uniques = 0, []
    for step in range(args.warmup + args.steps):
        ids = batches[step % len(batches)]
        # one table, F features: the collection expects one column per table, so fold F into the batch
        flat = ids.reshape(-1, 1)
        emb.exchanger.reset_stats()
        sync()
        t_start = time.perf_counter()
        out = emb(flat)
        sync()
        t_fwd = time.perf_counter()
        out.square().mean().backward()
        sync()
        t_bwd = time.perf_counter()
        extra_comm = 0.0
        if case != "replicated":
            sparse_opt.step()
        else:
            grad = emb.tables["f0"].weight.grad
            c0 = time.perf_counter()
            dist.all_reduce(grad)                   # what DDP does for a replicated table
            sync()
            extra_comm = time.perf_counter() - c0
            grad /= world
            dense_opt.step()
            dense_opt.zero_grad(set_to_none=False)
        sync()
        t_end = time.perf_counter()
        if step < args.warmup:
            cold.append(t_end - t_start)
        else:
            times.append(t_end - t_start)
            fwd_s.append(t_fwd - t_start)
            bwd_s.append(t_bwd - t_fwd)
            opt_s.append(t_end - t_bwd)
            comm.append(emb.exchanger.seconds + extra_comm)
            values = emb.tables["f0"].weight.numel() if case == "replicated" else 0
            comm_bytes += emb.exchanger.bytes_sent + values * 4 * 2 * (world - 1) // world   # ring all-reduce
            uniques.append(torch.unique(flat).numel())
    total = sum(times)
    result = {"case": case, "rank": rank, "world": world, "rows": args.rows, "dim": args.dim, "batch": args.batch,
              "features": args.features, "optimizer": args.optimizer, "device": str(device),
              "table_bytes": emb.local_bytes(), "init_s": init_s, "opt_state_bytes": state_bytes,
              "rss_after_init": rss_after_init,
              "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "steps_per_s": len(times) / total, "samples_per_s": len(times) * args.batch / total,
              "step_ms": 1000 * total / len(times), "cold_step_ms": 1000 * sum(cold) / max(1, len(cold)),
              "loadavg_1min": os.getloadavg()[0], "fwd_ms": 1000 * sum(fwd_s) / len(times),
              "bwd_ms": 1000 * sum(bwd_s) / len(times), "update_ms": 1000 * sum(opt_s) / len(times),
              "comm_share": sum(comm) / total, "comm_bytes_per_step": comm_bytes / len(times),
              "unique_ids_per_step": sum(uniques) / len(uniques)}
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def run_case(case: str, args) -> list[dict] | None:
    need = worst_case_bytes(case, args.rows, args.dim, args.world, args.optimizer)
    free = available_bytes()
    limit = min(args.max_total_gb * GiB, 0.6 * free)
    if need > limit:
        print(f"[skip] {case}: worst case {need / GiB:.1f} GiB for {args.world} workers exceeds the "
              f"limit {limit / GiB:.1f} GiB (available {free / GiB:.1f} GiB)", flush=True)
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(bench_worker, args=(args.world, port, case, args, out_dir), nprocs=args.world, join=True)
        return [json.loads((Path(out_dir) / f"rank{r}.json").read_text()) for r in range(args.world)]


def report(results: list[dict]) -> None:
    r0 = results[0]
    print(f"\n== {r0['case']}: {r0['rows']:,} rows x {r0['dim']} fp32 ({r0['rows'] * r0['dim'] * 4 / GiB:.2f} GiB "
          f"full), {r0['world']} workers on {r0['device']}, batch {r0['batch']} x {r0['features']} features, "
          f"{r0['optimizer']}; load average {r0['loadavg_1min']:.1f} on {os.cpu_count()} CPUs")
    cols = ["rank", "table GiB", "opt state GiB", "RSS init GiB", "peak RSS GiB", "steps/s", "samples/s",
            "cold step ms", "step ms", "fwd ms",
            "bwd ms", "update ms", "comm share", "a2a MiB/step", "unique ids"]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join([str(r["rank"]), f"{r['table_bytes'] / GiB:.2f}", f"{r['opt_state_bytes'] / GiB:.2f}",
                          f"{r['rss_after_init'] / GiB:.2f}",
                          f"{r['peak_rss'] / GiB:.2f}", f"{r['steps_per_s']:.1f}", f"{r['samples_per_s']:,.0f}",
                          f"{r['cold_step_ms']:.1f}", f"{r['step_ms']:.1f}", f"{r['fwd_ms']:.1f}",
                          f"{r['bwd_ms']:.1f}", f"{r['update_ms']:.1f}",
                          f"{100 * r['comm_share']:.0f}%", f"{r['comm_bytes_per_step'] / 2**20:.2f}",
                          f"{r['unique_ids_per_step']:,.0f}"]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=50_000_000)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--steps", type=int, default=32, help="timed steps (steady: batches seen before)")
    p.add_argument("--warmup", type=int, default=8, help="untimed first steps (cold: first touch of rows)")
    p.add_argument("--distinct-batches", type=int, default=8)
    p.add_argument("--optimizer", choices=["adam", "adagrad"], default="adagrad")
    p.add_argument("--case", choices=["row_wise", "replicated", "replicated_sparse", "both", "all"], default="both")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--max-total-gb", type=float, default=8.0)
    p.add_argument("--json", help="also write all results to this file")
    args = p.parse_args()
    cases = {"both": ["row_wise", "replicated"], "all": ["row_wise", "replicated_sparse", "replicated"]}.get(
        args.case, [args.case])
    everything = []
    for case in cases:
        results = run_case(case, args)
        if results:
            report(results)
            everything.extend(results)
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
