"""Where a training run stands between epochs, and the epoch loop with early stopping (no Ray, no torch).

``LoopState`` is what a checkpoint carries besides the weights, so a resumed run continues with the
same best epoch, history, patience and global step. ``run_epochs`` drives the epochs; the caller
supplies what one epoch does and what happens after it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class BestEpoch:
    auc: float = -math.inf
    epoch: int = -1               # -1: no epoch has a defined validation AUC yet
    val: dict | None = None       # the best epoch's validation report


@dataclass
class LoopState:
    last_epoch: int = -1          # the last epoch that finished (-1: none)
    best: BestEpoch = field(default_factory=BestEpoch)
    history: list[dict] = field(default_factory=list)
    patience_left: int = 0
    global_step: int = 0

    @classmethod
    def fresh(cls, patience: int) -> "LoopState":
        return cls(patience_left=patience)

    @property
    def next_epoch(self) -> int:
        return self.last_epoch + 1

    def finished(self, epochs: int, patience: int) -> bool:
        """All epochs ran, or (with ``patience`` > 0) validation AUC has not improved for ``patience`` epochs."""
        return self.next_epoch >= epochs or (patience > 0 and self.patience_left <= 0)

    def record(self, epoch: int, val_auc: float | None, val: dict, row: dict, patience: int) -> bool:
        """Book a finished epoch; returns whether it is the best so far."""
        auc = -math.inf if val_auc is None or math.isnan(val_auc) else val_auc
        improved = auc > self.best.auc
        if improved:
            self.best = BestEpoch(auc=auc, epoch=epoch, val=val)
            self.patience_left = patience
        else:
            self.patience_left -= 1
        self.last_epoch = epoch
        row["best_epoch"] = self.best.epoch
        self.history.append(row)
        return improved

    # --- in a checkpoint (plain types only: it is loaded with weights_only=True) --------------
    def to_checkpoint(self) -> dict:
        return {"epoch": self.last_epoch, "best": {"auc": self.best.auc, "epoch": self.best.epoch, "val": self.best.val},
                "history": self.history, "patience_left": self.patience_left, "global_step": self.global_step}

    @classmethod
    def from_checkpoint(cls, state: dict) -> "LoopState":
        best = state["best"]
        return cls(last_epoch=state["epoch"], best=BestEpoch(best["auc"], best["epoch"], best["val"]),
                   history=list(state["history"]), patience_left=state["patience_left"],
                   global_step=state["global_step"])


def run_epochs(state: LoopState, epochs: int, patience: int,
               one_epoch: Callable[[int], tuple[float | None, dict, dict]],
               after_epoch: Callable[[int, dict, bool], None]) -> LoopState:
    """Run epochs ``state.next_epoch ..`` until ``epochs`` or early stopping.

    ``one_epoch(epoch)`` trains and validates: (validation AUC or None, validation report, metrics row).
    ``after_epoch(epoch, row, improved)`` logs and checkpoints; ``state`` is already updated then.
    """
    while not state.finished(epochs, patience):
        epoch = state.next_epoch
        val_auc, val, row = one_epoch(epoch)
        improved = state.record(epoch, val_auc, val, row, patience)
        after_epoch(epoch, row, improved)
    return state
