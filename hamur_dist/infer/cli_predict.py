"""``hamur predict --model RUN --data DATASET --out DIR``: Ray Data batch inference to Parquet."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a run directory (or its model/ folder)")
    p.add_argument("--data", required=True, help="a prepared dataset directory")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--out", required=True, help="output folder for Parquet files with a 'prediction' column")
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--actors", type=int, default=2, help="scoring actors")
    p.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--no-verify-hashes", dest="verify_hashes", action="store_false",
                   help="skip the sha256 check of the split's shards (still checks their footers and row counts)")


def run(args: argparse.Namespace) -> int:
    from hamur_dist.cli import UserError
    from hamur_dist.config import RayConfig
    from hamur_dist.infer.predict import predict
    from hamur_dist.model.artifact import ArtifactError
    from hamur_dist.ray_connection import ray_cluster

    try:
        with ray_cluster(RayConfig(address=args.address)):
            rows = predict(args.model, args.data, args.out, args.split, args.batch_size, args.actors,
                           args.verify_hashes)
    except (ArtifactError, FileExistsError) as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {rows} scored rows to {args.out}")
    return 0
