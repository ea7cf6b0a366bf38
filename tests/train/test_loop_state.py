"""The epoch loop without Ray: early stopping, what a checkpoint carries, and a resumed run's schedule."""
from __future__ import annotations

import math

import pytest

from hamur_dist.train.loop_state import LoopState, run_epochs


def drive(val_aucs, epochs, patience, state=None):
    """Run the loop with epochs whose validation AUC is given; returns (state, epochs run, improved flags)."""
    ran, improved_flags = [], []

    def one_epoch(epoch):
        ran.append(epoch)
        auc = val_aucs[epoch]
        return auc, {"overall": {"auc": auc}}, {"epoch": epoch}

    def after_epoch(epoch, row, improved):
        assert state_.last_epoch == epoch and state_.history[-1] is row
        improved_flags.append(improved)

    state_ = state if state is not None else LoopState.fresh(patience)
    run_epochs(state_, epochs, patience, one_epoch, after_epoch)
    return state_, ran, improved_flags


def test_early_stopping_ends_on_the_last_epoch_that_ran():
    state, ran, improved = drive([0.70, 0.72, 0.71, 0.705, 0.74, 0.75], epochs=6, patience=2)
    assert ran == [0, 1, 2, 3]                      # epochs 2 and 3 did not beat epoch 1
    assert state.last_epoch == 3                     # not one past it
    assert improved == [True, True, False, False]
    assert (state.best.epoch, state.best.auc) == (1, 0.72)
    assert [row["best_epoch"] for row in state.history] == [0, 1, 1, 1]
    assert state.finished(6, 2)


def test_without_patience_every_epoch_runs():
    state, ran, _ = drive([0.7, 0.6, 0.5], epochs=3, patience=0)
    assert ran == [0, 1, 2] and state.last_epoch == 2 and state.best.epoch == 0


def test_an_undefined_auc_never_counts_as_best():
    state, _, improved = drive([None, math.nan, 0.6], epochs=3, patience=0)
    assert improved == [False, False, True] and state.best.epoch == 2


@pytest.mark.parametrize("stop_after", [0, 1, 2])
def test_a_resumed_run_continues_where_the_checkpoint_left_off(stop_after):
    aucs = [0.70, 0.72, 0.71, 0.705, 0.74]
    whole, ran_whole, _ = drive(aucs, epochs=5, patience=2)
    first, _, _ = drive(aucs, epochs=stop_after + 1, patience=2)    # interrupted after epoch `stop_after`
    restored = LoopState.from_checkpoint(first.to_checkpoint())
    assert restored == first
    resumed, ran_after, _ = drive(aucs, epochs=5, patience=2, state=restored)
    assert [r["epoch"] for r in resumed.history] == ran_whole
    assert ran_after == ran_whole[stop_after + 1:]
    assert resumed.last_epoch == whole.last_epoch and resumed.best == whole.best


def test_a_finished_run_runs_no_more_epochs():
    state, ran, _ = drive([0.7, 0.6, 0.5], epochs=3, patience=1)
    assert ran == [0, 1]
    again, ran_again, _ = drive([0.7, 0.6, 0.5], epochs=3, patience=1, state=state)
    assert ran_again == [] and again.last_epoch == 1
