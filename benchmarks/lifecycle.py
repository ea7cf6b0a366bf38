"""Day two on real data, every figure measured: the walk-through of docs/lifecycle.md.

    python benchmarks/lifecycle.py ml100k  [--seeds 0,1,2] [--work /tmp/hamur-lifecycle]
    python benchmarks/lifecycle.py ml1m-new-domain [--seeds 0,1,2]

ml100k: MovieLens-100K's ratings cut by time (the first 70% are day one, the rest day two). Day one is
prepared and trained; day two is prepared --like it (frozen: unknown ids counted) and scored with the
old model, then prepared --like it with --grow-vocab and trained three ways: warm-started from day
one (--init-from), from scratch, and not at all (the old model). Test AUC on day two's test split.

ml1m-new-domain: MovieLens-1M without its 35+ age domain (--domains 0,1), then all three domains
prepared --like that (--add-domains --grow-vocab, hash split: every rating keeps its split). The new
domain is onboarded with only its parts trainable (--init-from, train.trainable=new_domains), and
compared with joint training of all three domains from scratch.

Every step runs the `hamur` command a user would type (printed as it runs); figures are means +- std
over the seeds, each run selected on validation AUC (early stopping) and reported on test.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
HAMUR = [sys.executable, "-m", "hamur_dist.cli"]
CONFIG = "configs/movielens1m_hamur_mlp.yaml"


def hamur(*args: str) -> str:
    command = [*HAMUR, *args]
    print("$ hamur " + " ".join(args), flush=True)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def train(work: Path, name: str, data: Path, seed: int, *extra: str) -> dict:
    run = work / "runs" / name
    if not (run / "report.json").is_file():
        hamur("train", "--config", CONFIG, *extra, f"data.path={data}", f"train.seed={seed}",
              f"run.storage_path={work / 'runs'}", f"run.files_path={work / 'runs'}", f"run.name={name}")
    return json.loads((run / "report.json").read_text())


def prepared(out: Path, *args: str) -> Path:
    if not (out / "manifest.json").is_file():
        print(hamur("prepare", *args, "--out", str(out)), flush=True)
    return out


def auc(report: dict, domain: int | None) -> float:
    part = report["overall"] if domain is None else next(d for d in report["domains"] if d["domain"] == domain)
    return part["auc"]


def show(title: str, rows: dict[str, list[dict]], domains: list[tuple[int | None, str]]) -> None:
    print(f"\n{title}\n")
    print("| model | " + " | ".join(name for _, name in domains) + " |")
    print("|---|" + "---:|" * len(domains))
    for label, reports in rows.items():
        cells = []
        for d, _ in domains:
            values = [auc(r, d) for r in reports if d is None or any(x["domain"] == d for x in r["domains"])]
            cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1
                         else f"{values[0]:.4f}" if values else "n/a")
        print(f"| {label} | " + " | ".join(cells) + " |")


def split_by_time(work: Path) -> tuple[Path, Path]:
    """day1/ and day2/: ML-100K's folder layout, the ratings cut at the 70% point in time."""
    import gzip
    source = SHARED / "movielens-100k"
    lines = gzip.open(source / "u.data.gz", "rt").read().splitlines()
    lines.sort(key=lambda line: int(line.split("\t")[3]))
    cut = len(lines) * 7 // 10
    days = []
    for name, part in (("day1", lines[:cut]), ("day2", lines[cut:])):
        folder = work / "raw" / name
        folder.mkdir(parents=True, exist_ok=True)
        for extra in ("u.user", "u.item", "u.genre"):
            shutil.copy(source / extra, folder / extra)
        (folder / "u.data").write_text("\n".join(part) + "\n")
        days.append(folder)
    return days[0], days[1]


def ml100k(work: Path, seeds: list[int]) -> None:
    day1, day2 = split_by_time(work)
    d1 = prepared(work / "d1", "movielens-100k", "--source", str(day1), "--split", "time")
    d2 = prepared(work / "d2", "movielens-100k", "--source", str(day2), "--split", "time", "--like", str(d1))
    d2g = prepared(work / "d2-grown", "movielens-100k", "--source", str(day2), "--split", "time", "--like", str(d1),
                   "--grow-vocab")
    rows: dict[str, list[dict]] = {"day-one model, not retrained": [], "day two, warm start (--init-from)": [],
                                   "day two, from scratch": [], "day-one model on its own test split": []}
    for seed in seeds:
        first = train(work, f"day1-s{seed}", d1, seed)
        rows["day-one model on its own test split"].append(first["test"])
        scored = work / f"day1-s{seed}-on-day2.json"
        if not scored.is_file():
            hamur("evaluate", "--model", str(work / "runs" / f"day1-s{seed}"), "--data", str(d2), "--out", str(scored))
        rows["day-one model, not retrained"].append(json.loads(scored.read_text()))
        warm = train(work, f"day2-warm-s{seed}", d2g, seed, "--init-from", str(work / "runs" / f"day1-s{seed}"))
        rows["day two, warm start (--init-from)"].append(warm["test"])
        rows["day two, from scratch"].append(train(work, f"day2-scratch-s{seed}", d2g, seed)["test"])
    names = json.loads((d1 / "manifest.json").read_text())["domain"]["names"]
    show("ML-100K, day two's test split (day-one model's own split last), test AUC, mean ± std over seeds "
         + ",".join(map(str, seeds)), rows, [(None, "all"), *enumerate(names)])


def ml1m_new_domain(work: Path, seeds: list[int]) -> None:
    source = str(SHARED / "movielens-1m" / "full")
    d01 = prepared(work / "ml1m-d01", "movielens-1m", "--source", source, "--split", "hash", "--domains", "0,1")
    d012 = prepared(work / "ml1m-d012", "movielens-1m", "--source", source, "--split", "hash", "--like", str(d01),
                    "--add-domains", "--grow-vocab")
    rows: dict[str, list[dict]] = {"two domains (before)": [], "onboarded: new domain's parts only": [],
                                   "joint, all three from scratch": []}
    for seed in seeds:
        old = train(work, f"ml1m-d01-s{seed}", d01, seed)
        onboard = train(work, f"ml1m-onboard-s{seed}", d012, seed, "--init-from",
                        str(work / "runs" / f"ml1m-d01-s{seed}"), "train.trainable=new_domains")
        rows["two domains (before)"].append(onboard["previous_model"]["test"])
        rows["onboarded: new domain's parts only"].append(onboard["test"])
        rows["joint, all three from scratch"].append(train(work, f"ml1m-joint-s{seed}", d012, seed)["test"])
        del old
    names = json.loads((d012 / "manifest.json").read_text())["domain"]["names"]
    show("ML-1M, the 35+ domain added to a two-domain model, test AUC (hash split), mean ± std over seeds "
         + ",".join(map(str, seeds)), rows, [(None, "all"), *enumerate(names)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=["ml100k", "ml1m-new-domain"])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", default="/tmp/hamur-lifecycle", help="datasets and runs (kept: reruns skip done runs)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    (ml100k if args.study == "ml100k" else ml1m_new_domain)(work, seeds)


if __name__ == "__main__":
    main()
