"""A comparison's run folders -> one ``CellResult`` per (model, seed).

Everything is read from each cell's training run (``runs/<model>/seed<seed>/``): ``report.json`` (test
metrics of the best validation epoch's weights; written last, so its presence means the cell finished)
and ``metrics.jsonl`` (one row per epoch). Tune's own records are not needed, so a comparison can be
summarised again at any time, also while or after it was interrupted.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from hamur_dist.compare.config import RUNS_DIR, Comparison
from hamur_dist.compare.stats import CellResult


def cell_name(model: str, seed: int) -> str:
    """A cell as Tune's parameter value (and, with / as -, its trial folder): ``star/seed0``."""
    return f"{model}/seed{seed}"


def parse_cell(name: str) -> tuple[str, int]:
    model, seed = name.rsplit("/seed", 1)
    return model, int(seed)


def cell_dir(experiment_dir: Path, model: str, seed: int) -> Path:
    return Path(experiment_dir) / RUNS_DIR / model / f"seed{seed}"


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / "report.json").is_file()


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if "train/loss" in r]


def _finite(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def read_cell(run_dir: Path, model: str, seed: int, error: str | None = None) -> CellResult:
    history = _history(run_dir)
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    if report is not None and report.get("test"):
        status = "completed"
    elif error:
        status = "error: " + error
    else:
        status = "interrupted" if history else "not run"
    speeds = [s for r in history if (s := _finite(r.get("train/samples_per_s"))) is not None]
    return CellResult(
        model=model, seed=seed, status=status, test=(report or {}).get("test"),
        best_val_auc=_finite(((report or {}).get("best_val") or {}).get("overall", {}).get("auc")),
        best_epoch=(report or {}).get("best_epoch"), epochs_run=len(history),
        samples_per_s=sum(speeds) / len(speeds) if speeds else None, run_dir=str(run_dir))


def parameter_counts(comparison: Comparison, schema) -> dict[str, int]:
    """Trainable values of each model, built on the CPU from its config (no training needed)."""
    from hamur_dist.model import build_model, count_parameters

    seed = comparison.settings.seeds[0]
    return {model: count_parameters(build_model(comparison.cell_config(model, seed).model, schema))
            for model in comparison.cells}


def collect(comparison: Comparison, experiment_dir: Path, schema, errors: dict | None = None) -> list[CellResult]:
    """Every cell of the matrix, in the config's model order then seed order."""
    errors = errors or {}
    sizes = parameter_counts(comparison, schema)
    cells = []
    for model in comparison.cells:
        for seed in comparison.settings.seeds:
            cell = read_cell(cell_dir(experiment_dir, model, seed), model, seed, errors.get((model, seed)))
            cell.parameters = sizes[model]
            cells.append(cell)
    return cells
