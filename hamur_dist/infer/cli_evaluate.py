"""``hamur evaluate --model RUN --data DATASET``: the per-domain report offline."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a run directory (or its model/ folder)")
    p.add_argument("--data", required=True, help="a prepared dataset directory")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--batch-size", type=int, default=16384)
    p.add_argument("--out", help="write the report as JSON here")
    p.add_argument("--no-verify-hashes", dest="verify_hashes", action="store_false",
                   help="skip the sha256 check of the split's shards (still checks their footers and row counts)")


def run(args: argparse.Namespace) -> int:
    from hamur_dist.cli import UserError
    from hamur_dist.infer.evaluate import evaluate_model
    from hamur_dist.metrics import markdown_table
    from hamur_dist.model.artifact import ArtifactError

    try:
        report = evaluate_model(args.model, args.data, args.split, args.batch_size, args.verify_hashes)
    except ArtifactError as exc:
        raise UserError(str(exc)) from None
    print(f"{args.split} metrics of {args.model} on {args.data}:\n")
    print(markdown_table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0
