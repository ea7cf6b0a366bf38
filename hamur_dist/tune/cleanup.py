"""Give back the train workers' CPUs of trials that Tune stopped.

When ASHA stops a trial, Tune kills the trial's actor, and with it the TorchTrainer's controller.
The worker group's placement group outlives them: placement groups belong to the job, and Ray
Train's own PlacementGroupCleaner finds a dead controller through the State API, which needs the
dashboard (``hamur train``'s local Ray runs without it) and a single Ray instance on the machine,
so without this a search can hang with its CPUs held by dead trials (docs/design-notes.md).

So each trial's controller records its worker group's placement group in the trial's run directory
(``PlacementGroupRecorder``, a Train worker-group callback: the hook Ray's own cleaner uses), and the
search driver removes the recorded groups of trials that have ended (``EndedTrialCleanup``, a Tune
callback), before the next trial starts and once more when the search ends.

Imports Ray; the Ray Train internals it needs come from ``hamur_dist.ray_internals``.
"""
from __future__ import annotations

from pathlib import Path

import ray
from ray import tune

from hamur_dist.ray_internals import WorkerGroupCallback, placement_group_from_hex, placement_group_of

RECORD = ".placement_groups"   # in the trial's run directory: one placement group id (hex) per line


class PlacementGroupRecorder(WorkerGroupCallback):
    """Runs in the Train controller: note every worker group's placement group (one per (re)start)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / RECORD

    def after_worker_group_start(self, worker_group) -> None:
        pg = placement_group_of(worker_group)
        with open(self.path, "a") as f:
            f.write(pg.id.hex() + "\n")


def remove_recorded_placement_groups(run_dir: str | Path) -> int:
    """Remove the run's recorded placement groups that still exist; returns how many were removed.
    Ids from an earlier Ray session (a resumed search) are unknown to this one and skipped."""
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return 0
    removed = 0
    for hex_id in dict.fromkeys(path.read_text().split()):
        pg = placement_group_from_hex(hex_id)
        if ray.util.placement_group_table(pg).get("state", "REMOVED") != "REMOVED":
            ray.util.remove_placement_group(pg)
            removed += 1
    return removed


class EndedTrialCleanup(tune.Callback):
    """Driver side: after a trial ends (and before one starts), free what ended trials left reserved."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = str(runs_dir)

    def run_dir(self, trial) -> Path:
        """Where the trial's training run records its placement groups (``hamur compare`` names runs by cell)."""
        return Path(self.runs_dir) / trial.trial_id

    def _sweep(self, trials, ended=None) -> None:
        for trial in [t for t in trials if t.status in ("TERMINATED", "ERROR")] + ([ended] if ended else []):
            n = remove_recorded_placement_groups(self.run_dir(trial))
            if n:
                print(f"[hamur] trial {trial.trial_id} ended: removed {n} placement group(s) "
                      "its training run left behind")

    def on_trial_start(self, iteration, trials, trial, **info):
        self._sweep(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._sweep(trials, ended=trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._sweep(trials, ended=trial)

    def on_experiment_end(self, trials, **info):
        self._sweep(trials)
