"""Ray Job entrypoint: prepare a dataset as sharded Parquet + manifest (on storage every node sees).

    ray job submit --working-dir . -- python jobs/prepare.py --help

Takes exactly the arguments of `hamur prepare`.
"""
from _entry import run_subcommand

if __name__ == "__main__":
    run_subcommand("prepare")
