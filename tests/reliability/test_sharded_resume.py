"""Row-wise sharded tables across restarts and world sizes: a restart inside a run restores every shard
and its row-sparse optimiser state, and a run resumes on 1 and on 3 workers from a 2-worker checkpoint.

The per-row Adam step counters in the checkpoints tell whether the optimiser state survived: every row's
count only grows from one checkpoint to the next (a lost or misplaced shard restarts its rows from 0), and
each epoch adds about as many row-updates as the first one did.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import checkpoint_dirs, events, history, report_test_auc, small_experiment
from hamur_dist.data.manifest import load_manifest
from hamur_dist.embedding.checkpoint import assemble_full_optimizer_state
from hamur_dist.train import checkpoint as ckpt
from hamur_dist.train.trainer import train

pytestmark = pytest.mark.slow

SHARDED = ["embedding.sharding=row_wise", "checkpoint.num_to_keep=10"]


def quiet(*_):
    pass


def epoch_checkpoints(run_dir: Path) -> dict[int, Path]:
    """epoch -> the checkpoint saved at the end of that epoch (the final test checkpoints are left out)."""
    out = {}
    for d in checkpoint_dirs(run_dir):
        state = ckpt.load_state(d, ckpt.verify(d))
        if not any(p.name.startswith("shard-") for p in d.iterdir()):
            continue
        out.setdefault(state["epoch"], d)   # the first of an epoch is the epoch's own; a later one is the final
    return out


def row_steps(checkpoint: Path) -> dict[str, torch.Tensor]:
    return {name: state["step"].double() for name, state in assemble_full_optimizer_state(checkpoint).items()}


def shard_files(checkpoint: Path) -> list[str]:
    return sorted(p.name for p in checkpoint.glob("shard-rank*.pt"))


def assert_state_carried(before: dict, after: dict) -> float:
    """Every row's step count kept and grown; returns the row-updates added, relative to ``before``'s."""
    assert before.keys() == after.keys()
    for name in before:
        assert (after[name] >= before[name]).all(), f"table {name}: optimiser state lost for some rows"
    return sum(float((after[n] - before[n]).sum()) for n in before) / sum(float(before[n].sum()) for n in before)


def test_sharded_tables_survive_a_restart_and_a_change_of_world_size(ray_session, fault_dataset, tmp_path):
    from hamur_dist.cli import main

    rows = load_manifest(fault_dataset).splits["train"].rows
    first = train(small_experiment(fault_dataset, tmp_path, *SHARDED, "train.epochs=2", "run.name=sharded",
                      "run.max_failures=1", "train.fail_at_step=15"), log=quiet)
    run_dir = first.run_dir
    assert any("restart 1 of run.max_failures=1" in line for line in events(run_dir))
    ckpts = epoch_checkpoints(run_dir)
    assert shard_files(ckpts[0]) == ["shard-rank0-of2.pt", "shard-rank1-of2.pt"]
    steps = {0: row_steps(ckpts[0]), 1: row_steps(ckpts[1])}
    growth = assert_state_carried(steps[0], steps[1])
    assert 0.7 < growth < 1.3          # epoch 1 (redone after the restart) added one epoch of updates

    assert main(["train", "--resume", str(run_dir), "train.num_workers=1", "train.epochs=3"]) == 0
    ckpts = epoch_checkpoints(run_dir)
    assert shard_files(ckpts[2]) == ["shard-rank0-of1.pt"]
    steps[2] = row_steps(ckpts[2])
    assert assert_state_carried(steps[1], steps[2]) > 0.1     # one more epoch of updates (~0.4 of the sum so far)

    assert main(["train", "--resume", str(run_dir), "train.num_workers=3", "train.epochs=4"]) == 0
    ckpts = epoch_checkpoints(run_dir)
    assert shard_files(ckpts[3]) == ["shard-rank0-of3.pt", "shard-rank1-of3.pt", "shard-rank2-of3.pt"]
    assert assert_state_carried(steps[2], row_steps(ckpts[3])) > 0.1

    log = events(run_dir)
    assert any("after epoch 1 on 1 worker(s) (saved by 2" in line for line in log), log
    assert any("after epoch 2 on 3 worker(s) (saved by 1" in line for line in log), log
    hist = history(run_dir)
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    assert [h["train/samples"] for h in hist] == [rows] * 4
    assert "worker2/rss_mb" in hist[3] and "worker1/rss_mb" not in hist[2]
    assert report_test_auc(run_dir) > 0.65
