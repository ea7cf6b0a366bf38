"""What a trial's training run tells Tune: rank 0's reports, with an epoch counter for the scheduler.

Imports Ray; the driver imports this module only inside a trial.
"""
from __future__ import annotations

from ray.tune.integration.ray_train import TuneReportCallback

# Epochs finished, on per-epoch reports only (the final test report has none); ASHA's time attribute.
EPOCHS_DONE = "epochs_done"


class EpochReportCallback(TuneReportCallback):
    """Forward rank 0's reports to Tune; number the per-epoch ones for the scheduler."""

    def after_report(self, run_context, metrics, checkpoint):
        first = metrics[0] if metrics else {}
        if "epoch" in first and not first.get("final"):
            metrics = [{**first, EPOCHS_DONE: int(first["epoch"]) + 1}, *metrics[1:]]
        super().after_report(run_context, metrics, checkpoint)
