"""A finished (or resumed) search -> trials.csv / trials.md, best.yaml and auc_vs_rank.png.

Per-trial numbers come from each trial's training run directory (``runs/<trial_id>/``):
``metrics.jsonl`` has one row per epoch (complete even when the trial was resumed, unlike Tune's
per-session progress), ``report.json`` the test metrics of the best weights. A trial that ASHA stopped
has no ``report.json``, hence no test numbers.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hamur_dist.config import ExperimentConfig, from_dict, to_dict
from hamur_dist.tune.config import RUNS_DIR, TuneConfig
from hamur_dist.tune.space import decode_params, display, set_dotted, trial_experiment

RANK_KEY, HIDDEN_KEY = "model.hamur.rank", "model.hamur.hyper_hidden"


@dataclass
class TrialRow:
    trial_id: str
    params: dict                  # dotted space key -> value this trial ran with
    status: str                   # completed | stopped early | error: ... | not started
    parameters: int               # trainable values of the trial's model
    rank: int                     # model.hamur.rank and hyper_hidden of the trial's config (for the plot)
    hyper_hidden: list
    epochs_run: int = 0
    best_epoch: int | None = None
    best: dict = field(default_factory=dict)    # val/... metrics of the best epoch (by the search metric)
    test: dict = field(default_factory=dict)    # test/... metrics of the best weights, when the run finished
    run_dir: Path | None = None


def _read_run(run_dir: Path) -> tuple[list[dict], dict | None]:
    history_path, report_path = run_dir / "metrics.jsonl", run_dir / "report.json"
    history = ([json.loads(line) for line in history_path.read_text().splitlines() if line.strip()]
               if history_path.is_file() else [])
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    return history, report


def _score(value, mode: str) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -math.inf
    return value if mode == "max" else -value


def _status(error, history: list, report: dict | None) -> str:
    if error is not None:
        lines = str(error).strip().splitlines()
        return "error: " + (lines[-1] if lines else type(error).__name__)[:160]
    if report is not None:
        return "completed"
    return "stopped early" if history else "not started"


def collect_trials(grid, experiment: ExperimentConfig, tune_cfg: TuneConfig, experiment_dir: Path,
                   manifest) -> list[TrialRow]:
    """One row per trial of a Tune ``ResultGrid`` (trial folders are named by trial id)."""
    from hamur_dist.model import build_model, count_parameters
    from hamur_dist.metrics import flat_metrics

    base = to_dict(experiment)
    sizes: dict[str, int] = {}
    rows = []
    for result in grid:
        trial_id = Path(result.path).name
        cfg = trial_experiment(base, result.config, tune_cfg.space)
        key = json.dumps(to_dict(cfg.model), sort_keys=True)
        if key not in sizes:
            sizes[key] = count_parameters(build_model(cfg.model, manifest.schema))
        run_dir = Path(experiment_dir) / RUNS_DIR / trial_id
        history, report = _read_run(run_dir)
        row = TrialRow(trial_id=trial_id, params=decode_params(result.config, tune_cfg.space),
                       status=_status(result.error, history, report), parameters=sizes[key],
                       rank=cfg.model.hamur.rank, hyper_hidden=list(cfg.model.hamur.hyper_hidden),
                       epochs_run=len(history), run_dir=run_dir)
        if history:
            best = max(history, key=lambda r: _score(r.get(tune_cfg.metric), tune_cfg.mode))
            row.best_epoch = best["epoch"]
            row.best = {k: v for k, v in best.items() if k.startswith("val/")}
        if report and report.get("test"):
            row.test = flat_metrics(report["test"], "test")
        rows.append(row)
    return sorted(rows, key=lambda r: r.trial_id)


def best_trial(rows: list[TrialRow], metric: str, mode: str) -> TrialRow | None:
    ranked = [r for r in rows if r.best]
    return max(ranked, key=lambda r: _score(r.best.get(metric), mode)) if ranked else None


def _columns(rows: list[TrialRow], tune_cfg: TuneConfig, num_domains: int) -> list[str]:
    cols = ["trial_id", *tune_cfg.space, "parameters", "epochs_run", "best_epoch", "status"]
    if tune_cfg.metric != "val/auc":
        cols.append(tune_cfg.metric)
    cols += ["val/auc", *(f"val/d{d}/auc" for d in range(num_domains)),
             "test/auc", *(f"test/d{d}/auc" for d in range(num_domains)), "run_dir"]
    return cols


def _cells(row: TrialRow, columns: list[str], experiment_dir: Path) -> dict[str, str]:
    values = {"trial_id": row.trial_id, "parameters": str(row.parameters), "epochs_run": str(row.epochs_run),
              "best_epoch": "" if row.best_epoch is None else str(row.best_epoch), "status": row.status,
              "run_dir": str(row.run_dir.relative_to(experiment_dir)) if row.run_dir else ""}
    values.update({k: display(v) for k, v in row.params.items()})
    for col in columns:
        if col.startswith(("val/", "test/")):
            v = (row.best if col.startswith("val/") else row.test).get(col)
            values[col] = "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
    return {c: values.get(c, "") for c in columns}


def write_tables(rows: list[TrialRow], tune_cfg: TuneConfig, experiment_dir: Path, manifest,
                 best: TrialRow | None) -> tuple[Path, Path]:
    columns = _columns(rows, tune_cfg, manifest.domain.num_domains)
    table = [_cells(r, columns, experiment_dir) for r in rows]
    csv_path, md_path = experiment_dir / "trials.csv", experiment_dir / "trials.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    names = ", ".join(f"d{d} = {n}" for d, n in enumerate(manifest.domain.names))
    lines = [f"# Search {experiment_dir.name}\n",
             f"{tune_cfg.search} search, {len(rows)} trials, metric `{tune_cfg.metric}` ({tune_cfg.mode}); "
             f"val columns: the best epoch of each trial; test columns: that trial's best weights "
             f"(empty when the trial was stopped early). Domains: {names}.\n"]
    if best is not None:
        test = best.test.get("test/auc")
        lines.append(f"**Best trial: {best.trial_id}** ({', '.join(f'{k}={display(v)}' for k, v in best.params.items())}): "
                     f"{tune_cfg.metric} {best.best.get(tune_cfg.metric, float('nan')):.4f}, test AUC "
                     f"{'%.4f' % test if test is not None else 'not measured (stopped early)'}; config: best.yaml\n")
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---:" if c.startswith(("val/", "test/")) or c in ("parameters", "epochs_run") else "---"
                                for c in columns) + "|")
    lines += ["| " + " | ".join(r[c] for c in columns) + " |" for r in table]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def write_best_config(path: Path, best: TrialRow, experiment: ExperimentConfig, tune_cfg: TuneConfig) -> Path:
    """The best trial's full experiment config as a ready ``hamur train --config`` file."""
    data = to_dict(experiment)
    for key, value in best.params.items():
        set_dotted(data, key, value)
    cfg = from_dict(data)
    cfg.run.name, cfg.run.resume = None, False
    header = (f"# Best trial {best.trial_id} of search {path.parent.name}: "
              f"{tune_cfg.metric} {best.best.get(tune_cfg.metric, float('nan')):.4f}"
              + (f", test AUC {best.test['test/auc']:.4f}" if "test/auc" in best.test else "")
              + f".\n# Searched: {', '.join(f'{k}={display(v)}' for k, v in best.params.items())}\n"
              f"# Train it: hamur train --config {path}\n")
    path.write_text(header + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def plot_auc_vs_rank(path: Path, rows: list[TrialRow], tune_cfg: TuneConfig) -> Path | None:
    """Best metric per trial against K, one line per hyper-network size, parameter counts annotated."""
    points: dict[str, dict[int, TrialRow]] = {}
    for row in rows:
        if tune_cfg.metric not in row.best:
            continue
        series = points.setdefault(json.dumps(row.hyper_hidden), {})
        held = series.get(row.rank)
        if held is None or _score(row.best[tune_cfg.metric], tune_cfg.mode) > _score(held.best[tune_cfg.metric], tune_cfg.mode):
            series[row.rank] = row   # other searched keys (lr, ...) differ: keep the best trial per point
    if not points:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for hidden, series in sorted(points.items(), key=lambda kv: json.loads(kv[0])):
        ranks = sorted(series)
        values = [series[k].best[tune_cfg.metric] for k in ranks]
        line, = ax.plot(ranks, values, "-", label=f"hyper_hidden {hidden}")
        for k, v in zip(ranks, values):   # hollow: the trial was stopped early (ASHA)
            finished = series[k].status == "completed"
            ax.plot([k], [v], "o", color=line.get_color(), markerfacecolor=line.get_color() if finished else "white")
            ax.annotate(_short(series[k].parameters), (k, v), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
    ax.set_xscale("log", base=2)
    all_ranks = sorted({k for s in points.values() for k in s})
    ax.set_xticks(all_ranks, [str(k) for k in all_ranks])
    ax.set_xlabel("K (model.hamur.rank)")
    ax.set_ylabel(f"best {tune_cfg.metric}")
    ax.set_title("Best validation AUC against K per hyper-network size\n"
                 "(labels: parameters; hollow: stopped early by ASHA)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def write_outputs(grid, experiment: ExperimentConfig, tune_cfg: TuneConfig, experiment_dir: Path, manifest):
    rows = collect_trials(grid, experiment, tune_cfg, experiment_dir, manifest)
    best = best_trial(rows, tune_cfg.metric, tune_cfg.mode)
    csv_path, md_path = write_tables(rows, tune_cfg, experiment_dir, manifest, best)
    files = {"table_csv": csv_path, "table_md": md_path}
    if best is not None:
        files["best_config"] = write_best_config(experiment_dir / "best.yaml", best, experiment, tune_cfg)
    plot = plot_auc_vs_rank(experiment_dir / "auc_vs_rank.png", rows, tune_cfg)
    if plot is not None:
        files["plot"] = plot
    return rows, best, files
