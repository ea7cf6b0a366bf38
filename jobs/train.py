"""Ray Job entrypoint: train a model on the Ray cluster this job runs in.

    ray job submit --working-dir . -- python jobs/train.py --help

Takes exactly the arguments of `hamur train`.
"""
from _entry import run_subcommand

if __name__ == "__main__":
    run_subcommand("train")
