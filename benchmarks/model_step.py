"""Time one training step (forward + backward) of the HAMUR reference configs, in-process (no Ray).

Three forms of the same model, side by side:
  paper      model.hamur.mode=paper: each row through its own domain's tower and adapter only
  reference  model.hamur.mode=reference: every tower on every row (as the reference code), factored adapter
  naive      reference mode plus the reference code's adapter arithmetic: per-instance B x m x s
             weights built with einsum (model.hamur.naive_materialise=true)
reference and naive compute the same numbers (same seed -> same loss); paper is a different model.

    python benchmarks/model_step.py                       # CPU (or CUDA when available), batch 4096 and 32768
    python benchmarks/model_step.py --device cuda --precision fp32,bf16
    python benchmarks/model_step.py --quick               # small batches, one dataset: a smoke run

Inputs are synthetic random ids over vocabularies shaped like MovieLens-1M's and an Ali-CCP-like
schema, with the datasets' domain proportions. Peak memory: on CUDA torch.cuda.max_memory_allocated
above what the model and batch hold before the first step; on CPU each case runs in a fresh process
and reports the growth of its peak resident set size (ru_maxrss) over the same point, which counts
every allocation the step makes (activations, gradients, allocator slack), not only tensors.
A CPU case that would need more memory than is free fails on its own (its address space is capped)
and is reported as failed; the naive form at batch 32768 on the Ali-CCP config needs over 13 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from hamur_dist.config import load_experiment  # noqa: E402
from hamur_dist.data.manifest import DenseFeature, FeatureSchema, SparseFeature  # noqa: E402
from hamur_dist.model import build_model, count_parameters  # noqa: E402

# vocab sizes (id 0 = unknown included), dense count, domain proportions
DATASETS = {
    "ml1m": dict(vocab=[6041, 3707, 3, 22, 3440, 19, 4], dense=1, domains=[0.211, 0.395, 0.394]),
    # Ali-CCP after rare-id filtering: 23 fields + the domain id; sizes are stand-ins of that order.
    "aliccp": dict(vocab=[240_000, 98, 14, 3, 8, 4, 4, 3, 5, 460_000, 6_800, 260_000, 120_000, 70_000,
                          12_000, 3_000, 9_000, 8_000, 4, 30_000, 20_000, 6_000, 2_000, 4],
                   dense=8, domains=[0.378, 0.0075, 0.6145]),
}
FORMS = {"paper": ["model.hamur.mode=paper"],
         "reference": ["model.hamur.mode=reference"],
         "naive": ["model.hamur.mode=reference", "model.hamur.naive_materialise=true"]}


def schema_for(dataset: str) -> FeatureSchema:
    spec = DATASETS[dataset]
    return FeatureSchema(sparse=[SparseFeature(f"f{i}", v) for i, v in enumerate(spec["vocab"])],
                         dense=[DenseFeature(f"d{i}") for i in range(spec["dense"])],
                         num_domains=len(spec["domains"]))


def synthetic_batch(dataset: str, batch: int, device: torch.device, seed: int = 0):
    spec = DATASETS[dataset]
    gen = torch.Generator().manual_seed(seed)
    sparse = torch.stack([torch.randint(v, (batch,), generator=gen) for v in spec["vocab"]], dim=1)
    dense = torch.rand(batch, spec["dense"], generator=gen)
    domain = torch.multinomial(torch.tensor(spec["domains"]), batch, replacement=True, generator=gen)
    label = torch.randint(2, (batch,), generator=gen).float()
    return [t.to(device) for t in (sparse, dense, domain, label)]


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def run_case(dataset: str, model: str, form: str, batch: int, device: str, precision: str,
             steps: int, warmup: int = 1) -> dict:
    """Build the model, time ``steps`` forward+backward steps after ``warmup`` ones."""
    dev = torch.device(device)
    cfg = load_experiment(REPO / "configs" / "models" / dataset / f"{model}.yaml", FORMS[form]).model
    torch.manual_seed(0)
    net = build_model(cfg, schema_for(dataset)).to(dev).train()
    sparse, dense, domain, label = synthetic_batch(dataset, batch, dev)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> float:
        with autocast:
            loss = loss_fn(net(sparse, dense, domain).float(), label)
        loss.backward()
        net.zero_grad(set_to_none=False)     # keep gradient buffers: steady-state memory
        return loss.detach()

    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_peak_mb()
    first = float(step())
    for _ in range(warmup - 1):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        last = step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    float(last)
    peak = ((torch.cuda.max_memory_allocated() - base) / 2**20) if cuda else rss_peak_mb() - base
    return dict(dataset=dataset, model=model, form=form, batch=batch, device=device, precision=precision,
                steps=steps, ms_per_step=1e3 * elapsed / steps, samples_per_s=batch * steps / elapsed,
                peak_mb=peak, loss=first, params=count_parameters(net), threads=torch.get_num_threads())


def available_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cap_address_space() -> None:
    """Child-process set-up: a case that needs more memory than the machine has free fails with an
    allocation error instead of waking the OOM killer (the 2 GiB cover the interpreter's and
    libraries' reserved but unused address space)."""
    free = available_memory_bytes()
    if free:
        limit = int(0.9 * free) + 2 * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_in_fresh_process(case: dict, timeout: float, cap_memory: bool = True) -> dict:
    """CPU cases: one process each, so ru_maxrss is this case's peak and nothing else's."""
    cmd = [sys.executable, __file__, "--_case", json.dumps(case)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=cap_address_space if cap_memory else None)
    except subprocess.TimeoutExpired:
        return dict(case, error=f"timed out after {timeout:.0f}s")
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return dict(case, error=f"exit {done.returncode}: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_row(r: dict) -> None:
    head = f"{r['dataset']:7} {r['model']:16} {r['form']:9} {r['device']:5} {r['precision']:5} {r['batch']:>6}"
    if "error" in r:
        print(f"{head}  FAILED: {r['error']}", flush=True)
    else:
        print(f"{head} {r['samples_per_s']:>12,.0f} {r['ms_per_step']:>10.1f} {r['peak_mb']:>10,.0f} "
              f"{r['loss']:>8.5f} {r['params']:>11,}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    ap.add_argument("--batch-sizes", default="4096,32768")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per case")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first one sets the memory baseline)")
    ap.add_argument("--datasets", default="ml1m,aliccp")
    ap.add_argument("--models", default="mlp_hamur", help="configs/models/<dataset>/<name>.yaml, comma-separated")
    ap.add_argument("--forms", default="paper,reference,naive")
    ap.add_argument("--precision", default="fp32", help="fp32 and/or bf16 (autocast), comma-separated")
    ap.add_argument("--quick", action="store_true", help="smoke run: ML-1M only, batch 1024, 1 step")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per CPU case")
    ap.add_argument("--no-memory-cap", action="store_true",
                    help="CPU: do not cap each case's address space at the memory free when it starts")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--_case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._case:
        print(json.dumps(run_case(**json.loads(args._case))))
        return 0
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    datasets, steps = args.datasets.split(","), args.steps
    if args.quick:
        batches, datasets, steps = [1024], ["ml1m"], 1
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"forward+backward per step on {where}; torch {torch.__version__}; {steps} timed steps after {max(1, args.warmup)} warm-up")
    print(f"{'dataset':7} {'model':16} {'form':9} {'dev':5} {'prec':5} {'batch':>6} {'samples/s':>12} "
          f"{'ms/step':>10} {'peak MB':>10} {'loss':>8} {'params':>11}")
    results = []
    for dataset in datasets:
        for model in args.models.split(","):
            for precision in args.precision.split(","):
                for batch in batches:
                    for form in args.forms.split(","):
                        case = dict(dataset=dataset, model=model, form=form, batch=batch, device=device,
                                    precision=precision, steps=steps, warmup=max(1, args.warmup))
                        if device == "cpu":
                            r = run_in_fresh_process(case, args.timeout, cap_memory=not args.no_memory_cap)
                        else:
                            try:
                                r = run_case(**case)
                            except torch.OutOfMemoryError as exc:
                                r = dict(case, error=f"out of memory: {str(exc).splitlines()[0]}")
                            torch.cuda.empty_cache()
                        print_row(r)
                        results.append(r)
    by_key = {(r["dataset"], r["model"], r["precision"], r["batch"], r["form"]): r
              for r in results if "error" not in r}
    print("\nspeed-up over naive (samples/s ratio) and peak-memory ratio naive/form:")
    for (ds, model, prec, batch, form), r in by_key.items():
        naive = by_key.get((ds, model, prec, batch, "naive"))
        if naive and form != "naive":
            print(f"  {ds:7} {model:16} {prec:5} {batch:>6} {form:9} x{r['samples_per_s'] / naive['samples_per_s']:.2f} "
                  f"speed, memory /{naive['peak_mb'] / max(r['peak_mb'], 1e-9):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
