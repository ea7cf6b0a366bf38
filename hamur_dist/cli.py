"""The ``hamur`` command: parse arguments, call one package function per subcommand, print.

Each subcommand lives in ``<package>/cli_<command>.py`` of the package that owns its logic; that
module defines ``add_arguments(parser)`` and ``run(args) -> int``. Errors the user can fix (bad config, bad data)
are printed as one clear line, without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "prepare": ("hamur_dist.data.cli_prepare", "prepare a dataset as sharded Parquet + manifest"),
    "train": ("hamur_dist.train.cli_train", "train a model (embedded local Ray, or --address to join a cluster)"),
    "evaluate": ("hamur_dist.infer.cli_evaluate", "per-domain metrics of a trained model on a dataset split"),
    "predict": ("hamur_dist.infer.cli_predict", "score a Parquet dataset with Ray Data batch inference"),
    "export": ("hamur_dist.infer.cli_export", "write a model plain PyTorch loads (torch.export) and its vocabularies"),
    "tune": ("hamur_dist.tune.cli_tune", "Ray Tune search over adapter rank, hyper-network size, ..."),
    "compare": ("hamur_dist.compare.cli_compare", "models x seeds, each a full training run: per-domain mean ± std "
                "and whether the best model's lead is beyond noise"),
}


class UserError(Exception):
    """An error caused by input the user can fix; printed without a traceback."""


def _user_error_types() -> tuple[type, ...]:
    from hamur_dist.config_loader import ConfigError
    from hamur_dist.data.manifest import ManifestError
    from hamur_dist.data.validation import DataError

    return UserError, ConfigError, ManifestError, FileNotFoundError, DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hamur", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)   # a broken subcommand is an error, not a missing one
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["train"]  # `hamur` alone runs the quickstart training
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except _user_error_types() as exc:
        print(f"hamur {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
