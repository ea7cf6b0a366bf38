"""Ray Job entrypoint: batch-score a dataset split (or raw logs) with a trained model, on the Ray cluster.

    ray job submit --working-dir . -- python jobs/predict.py --help

Takes exactly the arguments of `hamur predict`; scores are Parquet files under --out.
"""
from _entry import run_subcommand

if __name__ == "__main__":
    run_subcommand("predict")
