"""What every jobs/*.py entrypoint does: join the Ray cluster it runs in and call the ``hamur`` CLI.

Inside ``ray job submit`` Ray sets RAY_ADDRESS to the cluster's address; outside a job the
default "auto" makes Ray join the cluster already running on this machine (and fail if there is
none), never silently start a private one.
"""
from __future__ import annotations

import os
import sys


def run_subcommand(subcommand: str) -> None:
    """Run ``hamur <subcommand> <this script's arguments>`` and exit with its status."""
    if not os.environ.get("RAY_ADDRESS"):
        os.environ["RAY_ADDRESS"] = "auto"
    try:
        from hamur_dist import cli
        import hamur_dist.config  # noqa: F401  (pulls in torch, as every subcommand does)
    except ImportError as exc:
        sys.exit(
            f"jobs/{subcommand}.py: cannot import the hamur_dist package ({exc}).\n"
            "Install it where the job runs: use the hamur-dist image (Dockerfile), pip install the\n"
            "package on every node, or submit from the repository root with --working-dir . and put\n"
            "its dependencies (pyproject.toml) in the runtime env's pip list. See docs/deploy.md."
        )
    sys.exit(cli.main([subcommand, *sys.argv[1:]]))
