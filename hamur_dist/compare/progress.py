"""The comparison's console: one line when a cell starts, finishes or fails (a Tune callback on the
driver). The cells' own training output goes to the comparison's ``ray.log`` and each run's files."""
from __future__ import annotations

import time
from pathlib import Path

from ray import tune

from hamur_dist.compare.collect import cell_dir, parse_cell, read_cell
from hamur_dist.compare.stats import OVERALL
from hamur_dist.tune.cleanup import EndedTrialCleanup

PREFIX = "[hamur compare]"


def cell_of(trial) -> tuple[str, int]:
    return parse_cell(trial.config["cell"])


class CellCleanup(EndedTrialCleanup):
    """``EndedTrialCleanup`` for runs named by cell (runs/<model>/seed<seed>), not by trial id."""

    def __init__(self, experiment_dir: Path):
        super().__init__(experiment_dir)
        self.experiment_dir = Path(experiment_dir)

    def run_dir(self, trial) -> Path:
        return cell_dir(self.experiment_dir, *cell_of(trial))


class CellProgress(tune.Callback):
    def __init__(self, experiment_dir: Path, total: int, done_before: int, log=print):
        self.experiment_dir, self.total, self.done, self.log = Path(experiment_dir), total, done_before, log
        self.started: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.monotonic()
        model, seed = cell_of(trial)
        self.log(f"{PREFIX} {model} seed {seed}: training")

    def _minutes(self, trial) -> str:
        return f"{(time.monotonic() - self.started.get(trial.trial_id, time.monotonic())) / 60:.1f} min"

    def on_trial_complete(self, iteration, trials, trial, **info):
        model, seed = cell_of(trial)
        cell = read_cell(cell_dir(self.experiment_dir, model, seed), model, seed)
        self.done += 1
        auc = cell.value(OVERALL, "auc")
        score = (f"test AUC {auc:.4f}, best val AUC {cell.best_val_auc:.4f} at epoch {cell.best_epoch}"
                 if auc is not None and cell.best_val_auc is not None else cell.status)
        self.log(f"{PREFIX} {model} seed {seed}: {score} ({cell.epochs_run} epochs, {self._minutes(trial)}); "
                 f"{self.done}/{self.total} cells done")

    def on_trial_error(self, iteration, trials, trial, **info):
        model, seed = cell_of(trial)
        self.log(f"{PREFIX} {model} seed {seed}: failed after {self._minutes(trial)}; "
                 f"see {cell_dir(self.experiment_dir, model, seed)} and the comparison's ray.log")
