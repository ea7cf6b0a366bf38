"""``hamur tune``: a Ray Tune search where every trial is a full training run.

    hamur tune --config configs/tune/quickstart.yaml [key=value ...]   # tune.* keys go to the search
    hamur tune --resume runs/<experiment>                               # continue an interrupted search
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="search YAML: an experiment config plus a 'tune:' section (see configs/tune/)")
    p.add_argument("--resume", metavar="EXPERIMENT_DIR",
                   help="continue an interrupted search; finished trials are kept, not re-run")
    p.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="config overrides; tune.* keys (e.g. tune.num_samples=8) change the search")


def run(args: argparse.Namespace) -> int:
    from hamur_dist.config_loader import ConfigError   # printed as one line by hamur_dist.cli
    from hamur_dist.tune.driver import resume_search, run_search
    from hamur_dist.tune.config import load_search

    if args.resume:
        if args.config or args.overrides:
            raise ConfigError("--resume continues the search exactly as it was saved (its tune.yaml); "
                            "drop --config and the overrides")
        result = resume_search(args.resume, address=args.address)
    else:
        if not args.config:
            raise ConfigError("name a search file with --config (e.g. configs/tune/quickstart.yaml), "
                            "or --resume EXPERIMENT_DIR")
        experiment, tune_cfg = load_search(args.config, args.overrides)
        if args.address:
            experiment.ray.address = args.address
        result = run_search(experiment, tune_cfg, config_path=args.config)
    print()
    print(result.files["table_md"].read_text())
    for name, path in result.files.items():
        print(f"{name}: {path}")
    print(f"TensorBoard: tensorboard --logdir {result.experiment_dir / 'runs'}")
    if result.best is None:
        print("hamur tune: no trial finished an epoch")
        return 1
    return 0
