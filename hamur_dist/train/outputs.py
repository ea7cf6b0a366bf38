"""Files a run leaves in its run directory (written by rank 0 / the driver, never by other ranks).

    config.yaml          the fully resolved config
    metrics.jsonl/.csv   one row per epoch (train loss, samples/s, val metrics per domain)
    tb/                  TensorBoard event files
    report.json/.md      final per-domain test (and best val) metrics
    val_auc.png          validation AUC per domain per epoch
    events.log           failures, restarts, resumes and skipped checkpoints, one line each
    model/               the trained model, loadable without Ray (hamur_dist.model.artifact)
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import yaml

from hamur_dist.fileio import atomic_write, atomic_write_text
from hamur_dist.metrics import markdown_table

EVENTS_FILE = "events.log"
RESTART_MARK = "resuming from the latest checkpoint"   # in the events line of every restart


def append_event(run_dir: str | Path, message: str) -> None:
    """One line in ``run_dir/events.log``: the run's failures, restarts, resumes and skipped checkpoints."""
    with open(Path(run_dir) / EVENTS_FILE, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def read_history(run_dir: str | Path) -> list[dict]:
    """metrics.jsonl of a run: one dict per epoch ([] before the first epoch ends)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunOutputs:
    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._tb = None

    # --- per epoch ---------------------------------------------------------------------------
    def history(self) -> list[dict]:
        return read_history(self.dir)

    def log_epoch(self, row: dict) -> None:
        """Append one epoch (a resumed run rewrites epochs it repeats)."""
        rows = [r for r in self.history() if r.get("epoch") != row["epoch"]] + [row]
        rows.sort(key=lambda r: r["epoch"])
        atomic_write_text(self.dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        keys = sorted({k for r in rows for k in r})
        with atomic_write(self.dir / "metrics.csv", "w") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self._tensorboard(row)

    def _tensorboard(self, row: dict) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # optional: ray[train] normally brings it
            return
        if self._tb is None:
            self._tb = SummaryWriter(str(self.dir / "tb"))
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(value):
                self._tb.add_scalar(key, value, row["epoch"])
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    # --- once ----------------------------------------------------------------------------------
    def write_config(self, cfg_dict: dict) -> None:
        atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(cfg_dict, sort_keys=False))

    def write_report(self, report: dict) -> None:
        atomic_write_text(self.dir / "report.json", json.dumps(report, indent=2))
        atomic_write_text(self.dir / "report.md", markdown_report(report))

    def plot_val_auc(self, num_domains: int, names: list[str]) -> Path | None:
        rows = self.history()
        if not rows:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [r.get("val/auc", math.nan) for r in rows], "k-o", label="overall")
        for d in range(num_domains):
            ax.plot(epochs, [r.get(f"val/d{d}/auc", math.nan) for r in rows], "-o", label=f"domain {d} ({names[d]})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation AUC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = self.dir / "val_auc.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def markdown_report(report: dict) -> str:
    parts = [f"# Run {report.get('run_name', '')}\n",
             f"model: `{report.get('model')}`, dataset: `{report.get('dataset')}`, "
             f"best epoch: {report.get('best_epoch')}, epochs run: {report.get('epochs_run')}\n"]
    if report.get("test"):
        parts += ["\n## Test (best weights)\n\n", markdown_table(report["test"])]
    if report.get("previous_model") and report.get("test"):
        from hamur_dist.metrics import comparison_table
        parts += [f"\n## Test next to the model this run started from (`{report['previous_model']['model']}`)\n\n",
                  comparison_table(report["test"], report["previous_model"]["test"])]
    if report.get("best_val"):
        parts += ["\n## Validation (best epoch)\n\n", markdown_table(report["best_val"])]
    return "".join(parts)
