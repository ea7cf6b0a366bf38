"""Ray Job entrypoint: compare models x seeds (each cell a full training run) on the Ray cluster this job runs in.

    ray job submit --working-dir . -- python jobs/compare.py --config configs/compare/movielens1m.yaml

Takes exactly the arguments of `hamur compare`.
"""
from _entry import run_subcommand

if __name__ == "__main__":
    run_subcommand("compare")
