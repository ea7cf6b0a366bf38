"""Ray Job entrypoint: run a Ray Tune search on the Ray cluster this job runs in.

    ray job submit --working-dir . -- python jobs/tune.py --help

Takes exactly the arguments of `hamur tune`.
"""
from _entry import run_subcommand

if __name__ == "__main__":
    run_subcommand("tune")
