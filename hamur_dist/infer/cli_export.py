"""``hamur export --model RUN --out DIR``: a model plain PyTorch loads (torch.export), plus its input contract."""
from __future__ import annotations

import argparse
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a run directory (or its model/ folder)")
    p.add_argument("--out", required=True,
                   help="new folder for model.pt2, encoding.json and vocab/*.csv (must not exist)")


def run(args: argparse.Namespace) -> int:
    from hamur_dist.cli import UserError
    from hamur_dist.infer.export import export_model
    from hamur_dist.model.artifact import ArtifactError

    start = time.perf_counter()
    try:
        out = export_model(args.model, args.out)
    except (ArtifactError, FileExistsError) as exc:
        raise UserError(str(exc)) from None
    seconds = time.perf_counter() - start
    print(f"exported {args.model} to {out} in {seconds:.1f} s:")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(out)}  ({path.stat().st_size:,} bytes)")
    print("load it with plain PyTorch: torch.export.load(path).module()(sparse, dense, domain) -> probabilities;"
          f" inputs as {out / 'encoding.json'} describes")
    return 0
