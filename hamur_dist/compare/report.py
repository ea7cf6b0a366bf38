"""Cells -> comparison.md / .csv / .json and comparison.png (test AUC per domain with error bars)."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import platform
from pathlib import Path

from hamur_dist.compare.config import RUNS_DIR
from hamur_dist.compare.stats import METRICS, OVERALL, CellResult, lead, mean_of, Summary, scopes, summarize, summarize_val
from hamur_dist.fileio import atomic_write_text

FILES = ("comparison.md", "comparison.csv", "comparison.json", "comparison.png")


def _by_model(cells: list[CellResult]) -> dict[str, list[CellResult]]:
    out: dict[str, list[CellResult]] = {}
    for cell in cells:
        out.setdefault(cell.model, []).append(cell)
    return out


def _measured(cells: list[CellResult], metric: str) -> bool:
    return any(c.value(OVERALL, metric) is not None for c in cells)


def _number(value, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def build_summary(cells: list[CellResult], name: str, alpha: float, context: dict) -> dict:
    """Everything the three files show, as one JSON-ready mapping."""
    by_model = _by_model(cells)
    names = scopes(cells)
    metrics = [m for m in METRICS if _measured(cells, m)]
    models = {}
    for model, own in by_model.items():
        models[model] = {
            "parameters": own[0].parameters,
            "samples_per_s": mean_of(c.samples_per_s for c in own if c.status == "completed"),
            "epochs_run": mean_of(c.epochs_run for c in own if c.status == "completed"),
            "completed": sum(c.status == "completed" for c in own),
            "val_auc": dataclasses.asdict(summarize_val(own)),
            "test": {scope: {m: dataclasses.asdict(summarize(own, scope, m)) for m in metrics} for scope in names},
        }
    leads = [lead(by_model, scope, "auc", alpha) for scope in names]
    return {"name": name, **context, "alpha": alpha, "scopes": names, "metrics": metrics, "models": models,
            "leads": [dict(dataclasses.asdict(x), verdict=x.verdict(alpha)) for x in leads if x is not None],
            "cells": [dataclasses.asdict(c) for c in cells]}


def _text(entry: dict) -> str:
    return Summary(**entry).text()


def markdown(summary: dict) -> str:
    names, models = summary["scopes"], summary["models"]
    heads = ["**all**" if n == OVERALL else n if n == f"d{i}" else f"d{i} {n}" for i, n in enumerate(names)]
    lines = [f"# Comparison: {summary['name']}", "",
             f"Dataset `{summary.get('dataset', '')}`; seeds {summary.get('seeds')}; every cell trained to its own "
             "early stop on validation AUC, test metrics of its best validation epoch. Mean ± std (sample std) "
             f"over the seeds that finished. Machine: {summary.get('machine', '')}.", ""]
    for metric in summary["metrics"]:
        lines += [f"## Test {metric.upper() if metric != 'logloss' else 'logloss'}", "",
                  "| model | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
        for model, info in models.items():
            lines.append(f"| {model} | " + " | ".join(_text(info["test"][s][metric]) for s in names) + " |")
        lines.append("")
    lines += ["## Who leads, per domain (test AUC)", "",
              "| domain | best | second | lead | paired t-test over seeds |", "|---|---|---|---:|---|"]
    for entry in summary["leads"]:
        diff = "–" if entry["difference"] is None else f"{entry['difference']:+.4f}"
        lines.append(f"| {entry['scope']} | {entry['best']} | {entry['second'] or '–'} | {diff} | {entry['verdict']} |")
    lines += ["", f"A lead is beyond noise when p < {summary['alpha']}.", "",
              "## Cost", "", "| model | parameters | training samples/s | epochs run | val AUC (best epoch) | cells done |",
              "|---|---:|---:|---:|---:|---:|"]
    for model, info in models.items():
        lines.append(f"| {model} | {_number(info['parameters'])} | {_number(info['samples_per_s'])} | "
                     f"{_number(info['epochs_run'], 1)} | {_text(info['val_auc'])} | {info['completed']} |")
    lines += ["", "## Cells", "", "| model | seed | status | best epoch | test AUC | run |", "|---|---:|---|---:|---:|---|"]
    for cell in summary["cells"]:
        auc = CellResult(**cell).value(OVERALL, "auc")
        marker = f"/{RUNS_DIR}/"   # shown relative to the experiment directory
        run = RUNS_DIR + "/" + cell["run_dir"].rsplit(marker, 1)[1] if marker in cell["run_dir"] else cell["run_dir"]
        lines.append(f"| {cell['model']} | {cell['seed']} | {cell['status']} | {_number(cell['best_epoch'])} | "
                     f"{'–' if auc is None else f'{auc:.4f}'} | {run} |")
    return "\n".join(lines) + "\n"


def csv_text(summary: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["model", "scope", "metric", "mean", "std", "n", "parameters", "samples_per_s"])
    for model, info in summary["models"].items():
        for scope in summary["scopes"]:
            for metric in summary["metrics"]:
                e = info["test"][scope][metric]
                writer.writerow([model, scope, metric, "" if e["mean"] is None else f"{e['mean']:.6f}",
                                 "" if e["std"] is None else f"{e['std']:.6f}", e["n"], info["parameters"],
                                 "" if info["samples_per_s"] is None else f"{info['samples_per_s']:.1f}"])
    return out.getvalue()


def plot(summary: dict, path: Path) -> Path | None:
    """Test AUC per domain (and overall): one marker per model with its std as error bar."""
    if not any(info["completed"] for info in summary["models"].values()):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, models = summary["scopes"], list(summary["models"])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names)) + 2.5, 4.5))
    width = 0.8 / max(1, len(models))
    colors, markers = plt.get_cmap("tab20").colors, "osD^vPX<>"   # distinct for up to 20 models
    for j, model in enumerate(models):
        test = summary["models"][model]["test"]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(names))]
        means = [test[s]["auc"]["mean"] for s in names]
        stds = [test[s]["auc"]["std"] or 0.0 for s in names]
        keep = [k for k, m in enumerate(means) if m is not None]
        ax.errorbar([xs[k] for k in keep], [means[k] for k in keep], yerr=[stds[k] for k in keep],
                    fmt=markers[j % len(markers)], color=colors[(2 * j) % 20 if j < 10 else (2 * j + 1) % 20],
                    capsize=3, label=model)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("test AUC (mean ± std over seeds)")
    ax.set_title(f"{summary['name']}: test AUC per domain", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def replot(json_path: Path) -> Path | None:
    """Draw comparison.png again from a comparison.json (e.g. after a change of this plot)."""
    json_path = Path(json_path)
    return plot(json.loads(json_path.read_text()), json_path.with_suffix(".png"))


def write_report(cells: list[CellResult], experiment_dir: Path, name: str, alpha: float, context: dict) -> dict:
    """Write the files (atomically) and return name -> path."""
    summary = build_summary(cells, name, alpha, {"machine": machine(), **context})
    experiment_dir = Path(experiment_dir)
    atomic_write_text(experiment_dir / "comparison.md", markdown(summary))
    atomic_write_text(experiment_dir / "comparison.csv", csv_text(summary))
    atomic_write_text(experiment_dir / "comparison.json", json.dumps(summary, indent=2))
    files = {f: experiment_dir / f for f in FILES[:3]}
    if plot(summary, experiment_dir / "comparison.png") is not None:
        files["comparison.png"] = experiment_dir / "comparison.png"
    return files


def machine() -> str:
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
