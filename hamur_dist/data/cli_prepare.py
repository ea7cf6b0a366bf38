"""``hamur prepare DATASET --out DIR [options]``: make a dataset and print what was made."""
from __future__ import annotations

import argparse
import time

from hamur_dist.data import PREPARERS, prepare
from hamur_dist.data.manifest import Manifest


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=list(PREPARERS), help="what to prepare")
    parser.add_argument("--out", required=True, help="dataset directory to create")
    parser.add_argument("--source", help="input: a folder, a file, a .zip or a URL (movielens); "
                        "movielens defaults to the GroupLens download")
    parser.add_argument("--schema", help="table: the YAML schema of your data (see configs/datasets/)")
    parser.add_argument("--rows", type=int, help="synthetic: number of rows")
    parser.add_argument("--seed", type=int, help="split / generator seed (default 2022)")
    parser.add_argument("--shard-rows", type=int, help="rows per Parquet shard")
    parser.add_argument("--row-group-rows", type=int, help="rows per Parquet row group")
    parser.add_argument("--chunk-rows", type=int, help="rows read and processed at a time (memory bound)")
    parser.add_argument("--bad-rows", choices=["fail", "skip"], help="on a bad row: stop (default) or skip and count")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="replace an existing --out, if it is a dataset made by hamur prepare")
    parser.add_argument("--split", choices=["random", "time", "hash"],
                        help="movielens: random 80/10/10, time-ordered, or hash (each rating's split follows from its "
                             "user and movie: stable across datasets that hold different domains)")
    parser.add_argument("--no-shuffle", dest="shuffle", action="store_false", default=None,
                        help="keep input order inside each split (default: shuffle rows)")
    parser.add_argument("--sha256", help="expected sha256 of a downloaded archive (the built-in ML-1M "
                        "download has one pinned; the ML-100K download needs this)")
    parser.add_argument("--download-dir", help="where downloads are kept (default ~/.cache/hamur-dist)")
    parser.add_argument("--workers", type=int, help="synthetic: generator processes (default: all CPUs)")
    parser.add_argument("--num-domains", type=int, help="synthetic: number of domains")
    parser.add_argument("--domain-weights", type=_floats, help="synthetic: relative domain sizes, e.g. 32,0.6,52")
    parser.add_argument("--vocab-sizes", type=_ints,
                        help="synthetic: vocabulary size per sparse feature, e.g. 1e8,1000")
    parser.add_argument("--num-dense", type=int, help="synthetic: number of dense features")
    parser.add_argument("--drift", type=float, help="synthetic --like: how far the planted weights move from the "
                        "dataset's, in [0, 1] (default 0.1)")
    parser.add_argument("--new-ids", type=float, help="synthetic --like: share of each feature's ids that are new, "
                        "beyond the dataset's vocabulary, in [0, 1) (default 0.05)")
    parser.add_argument("--like", metavar="DATASET",
                        help="encode like this prepared dataset: its vocabularies, scaling, domains and features, "
                             "frozen (unknown ids -> 0, counted; an unknown domain is an error)")
    parser.add_argument("--grow-vocab", action="store_true", default=None,
                        help="with --like: append ids not seen before after the existing ones (old ids keep their rows)")
    parser.add_argument("--add-domains", action="store_true", default=None,
                        help="with --like: new domain values get new ids after the old ones")
    parser.add_argument("--domains", type=_ints, help="movielens-1m: keep only these age domains (0..k-1), e.g. 0,1")
    parser.add_argument("--genres", choices=["first", "all"],
                        help="movielens: cate_id holds all of a movie's genres (multi-hot; default, or the --like "
                             "dataset's) or its first genre only (the HAMUR reference dataset)")


_OPTION_NAMES = ["source", "schema", "rows", "seed", "shard_rows", "row_group_rows", "chunk_rows", "bad_rows",
                 "overwrite", "split", "shuffle", "sha256", "download_dir", "workers", "num_domains",
                 "domain_weights", "vocab_sizes", "num_dense", "like", "grow_vocab", "add_domains", "domains",
                 "drift", "new_ids", "genres"]


def run(args: argparse.Namespace) -> int:
    options = {name: getattr(args, name) for name in _OPTION_NAMES if getattr(args, name, None) is not None}
    started = time.perf_counter()
    manifest = prepare(args.dataset, args.out, **options)
    print(summary(manifest, args.out, time.perf_counter() - started))
    return 0


def summary(manifest: Manifest, out, seconds: float) -> str:
    total = sum(s.rows for s in manifest.splits.values())
    positives = sum(sum(s.positives_per_domain) for s in manifest.splits.values())
    lines = [f"prepared {manifest.name} -> {out}: {total:,} rows in {seconds:.1f} s ({total / seconds:,.0f} rows/s), "
             f"positive rate {positives / max(total, 1):.4f}"]
    names = manifest.domain.names
    lines.append(f"  {'split':<6} {'rows':>12} {'shards':>6} {'pos.rate':>8}  rows per domain")
    for split, info in manifest.splits.items():
        per_domain = ", ".join(f"{n}: {r:,}" for n, r in zip(names, info.rows_per_domain))
        lines.append(f"  {split:<6} {info.rows:>12,} {len(info.shards):>6} {info.positive_rate:>8.4f}  {per_domain}")
    lines.append("  sparse: " + ", ".join(f"{f.name}({f.vocab_size:,}{' hashed' if f.hashed else ''}"
                                          f"{f', multi-hot <= {f.max_len}' if f.multi_hot else ''})"
                                          for f in manifest.sparse))
    if manifest.dense:
        lines.append("  dense: " + ", ".join(f"{f.name}({f.scaling})" for f in manifest.dense))
    if manifest.skipped_rows:
        lines.append("  skipped rows: " + ", ".join(f"{k}: {v:,}" for k, v in manifest.skipped_rows.items()))
    if manifest.lineage:
        lines.append(lineage_line(manifest.lineage))
    truncated = manifest.source.get("truncated_lists") if isinstance(manifest.source, dict) else None
    if truncated:
        lines.append("  lists cut to max_len: " + ", ".join(f"{k}: {v['rows']:,} rows over {v['max_len']}"
                                                           for k, v in truncated.items()))
    if manifest.unknown_ids and (manifest.lineage or any(manifest.unknown_ids.values())):
        lines.append("  unknown ids (encoded as 0): " + ", ".join(f"{k}: {v:,}" for k, v in manifest.unknown_ids.items()))
    return "\n".join(lines)


def lineage_line(lineage: dict) -> str:
    grown = ", ".join(f"{k} {a:,} -> {b:,}" for k, (a, b) in lineage.get("grown", {}).items())
    added = ", ".join(lineage.get("added_domains", []))
    return (f"  encoded like {lineage.get('parent')} (vocabularies {lineage.get('vocabularies')}"
            f"{'; grown: ' + grown if grown else ''}{'; new domains: ' + added if added else ''})")
