"""``hamur train``: load the config (default configs/quickstart.yaml), train, print the test table."""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = "configs/quickstart.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=f"experiment YAML (default: {DEFAULT_CONFIG})")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--init-from", metavar="RUN", help="start from this run's best weights (and optimiser state): "
                   "a dataset prepared --like its data, grown vocabularies and added domains included")
    p.add_argument("--no-optimizer-state", dest="init_optimizer_state", action="store_false", default=None,
                   help="with --init-from: take the weights only, the optimiser starts fresh")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's own output live as well (it always goes to RUN_DIR/ray.log)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def _default_config() -> str:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / DEFAULT_CONFIG).is_file():
            return str(base / DEFAULT_CONFIG)
    return DEFAULT_CONFIG


def run(args: argparse.Namespace) -> int:
    from hamur_dist.config import load_experiment
    from hamur_dist.console import LOG_FILE
    from hamur_dist.metrics import comparison_table, markdown_table
    from hamur_dist.train.run_location import resume_config
    from hamur_dist.train.trainer import TrainingError, train

    if args.resume:
        if args.config:
            print("hamur train: --resume uses the run's own config.yaml; --config is ignored")
        cfg = resume_config(args.resume, args.overrides)
        config_path = None
    else:
        config_path = args.config or _default_config()
        extra = [f"train.init_from={args.init_from}"] if args.init_from else []
        if args.init_optimizer_state is False:
            extra.append("train.init_optimizer_state=false")
        cfg = load_experiment(config_path, [*args.overrides, *extra])
    if args.address:
        cfg.ray.address = args.address
    try:
        result = train(cfg, config_path, verbose=args.verbose)
    except TrainingError as exc:
        print(f"hamur train: {exc}")
        return 1
    test = result.report.get("test")
    if test:
        print(f"\nTest metrics per domain (best epoch {result.report.get('best_epoch')}):\n")
        print(markdown_table(test))
    previous = result.report.get("previous_model")
    if previous:
        print(f"\nThis run next to the model it started from ({previous['model']}), same test split:\n")
        print(comparison_table(test, previous["test"]))
    print(f"run directory: {result.run_dir} (Ray's own output: {result.run_dir / LOG_FILE})")
    return 0
