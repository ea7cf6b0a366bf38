"""``hamur predict --model RUN (--data DATASET | --source RAW) --out DIR``: Ray Data batch inference to Parquet."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a run directory (or its model/ folder)")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--data", help="a prepared dataset directory (encoded like the model's training data)")
    given.add_argument("--source", help="raw logs to score: CSV/Parquet files (or a folder of them) with the raw "
                                        "columns of the schema the model was trained on; no prepare step")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="with --data: which split")
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

    from hamur_dist.data.batches import InputDataError
    from hamur_dist.infer.predict import predict_raw

    try:
        with ray_cluster(RayConfig(address=args.address)):
            if args.source:
                rows = predict_raw(args.model, args.source, args.out, args.batch_size, args.actors)
            else:
                rows = predict(args.model, args.data, args.out, args.split, args.batch_size, args.actors,
                               args.verify_hashes)
    except (ArtifactError, FileExistsError, InputDataError) as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {rows} scored rows to {args.out}")
    return 0
