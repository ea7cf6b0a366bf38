"""Ray Job entrypoint: per-domain metrics of a trained model, computed on the Ray cluster.

    ray job submit --working-dir . -- python jobs/evaluate.py --help

Takes exactly the arguments of `hamur evaluate`.
"""
from _entry import run_subcommand

if __name__ == "__main__":
    run_subcommand("evaluate")
