"""``hamur compare``: models x seeds, each cell a full training run under Ray Tune, one comparison table.

    hamur compare --config configs/compare/movielens100k.yaml [--models a,b] [key=value ...]
    hamur compare --resume runs/<comparison>                                     # finish an interrupted one
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="comparison YAML: an experiment config plus a 'compare:' section "
                                    "(see configs/compare/)")
    p.add_argument("--resume", metavar="EXPERIMENT_DIR",
                   help="continue an interrupted comparison; finished cells are kept, not re-run")
    p.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--models", help="only these models of the file (comma-separated names)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="overrides of the base experiment (every cell), e.g. train.epochs=10; "
                        "compare.* keys change the comparison (e.g. compare.seeds=[0,1])")


def run(args: argparse.Namespace) -> int:
    from hamur_dist.compare.config import load_comparison
    from hamur_dist.compare.driver import resume_comparison, run_comparison
    from hamur_dist.config_loader import ConfigError   # printed as one line by hamur_dist.cli

    if args.resume:
        if args.config or args.overrides or args.models:
            raise ConfigError("--resume continues the comparison exactly as it was saved (its compare.yaml); "
                              "drop --config and the overrides")
        result = resume_comparison(args.resume, address=args.address)
    else:
        if not args.config:
            raise ConfigError("name a comparison file with --config (e.g. configs/compare/movielens100k.yaml), "
                              "or --resume EXPERIMENT_DIR")
        only = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        comparison = load_comparison(args.config, args.overrides, only)
        if args.address:
            comparison.base.ray.address = args.address
        result = run_comparison(comparison, config_path=args.config)
    print()
    print(result.files["comparison.md"].read_text())
    for name, path in result.files.items():
        print(f"{name}: {path}")
    done = sum(c.status == "completed" for c in result.cells)
    if done < len(result.cells):
        print(f"hamur compare: {len(result.cells) - done} of {len(result.cells)} cells did not finish; "
              f"`hamur compare --resume {result.experiment_dir}` trains them")
        return 1
    return 0
