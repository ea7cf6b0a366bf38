"""The stall watchdog: a worker that stops making progress is named, on two real gloo ranks."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from hamur_dist.config import load_experiment
from hamur_dist.config_loader import ConfigError
from hamur_dist.train.steps import aligned_batches
from hamur_dist.train.watchdog import STALL_NOTE, WAITING, StallWatchdog, stall_note


def train_with_a_hung_read_on_rank1(rank: int, world: int, run_dir: str, out: str) -> None:
    def stop(message: str) -> None:
        Path(out, f"rank{rank}").write_text(message)
        os._exit(0)      # what the real watchdog does (with a failing code): the main thread is blocked

    watch = StallWatchdog(run_dir, rank, world, stall_timeout_s=2.0, on_stall=stop, publish_every_s=0.2)

    def batches():
        yield from range(3)
        if rank == 1:
            time.sleep(120)      # a read that never returns (a hung filesystem)
        yield from range(3)

    for _batch, _real in aligned_batches(batches(), torch.device("cpu"), 0, watch):
        dist.all_reduce(torch.ones(1))    # the step's own collective (DDP's gradient all-reduce)
    Path(out, f"rank{rank}").write_text("finished without a stall")


def test_a_stuck_worker_is_named_by_every_rank(tmp_path):
    from tests.embedding.sharded_helpers import run_ranks

    out = tmp_path / "out"
    out.mkdir()
    start = time.monotonic()
    run_ranks(train_with_a_hung_read_on_rank1, 2, str(tmp_path), str(out))
    assert time.monotonic() - start < 60, "the watchdog did not stop the ranks"
    for rank in (0, 1):
        message = (out / f"rank{rank}").read_text()
        assert "no training step completed for" in message and "train.stall_timeout_s=2" in message, message
        assert "stuck rank(s) [1] (rank 1: reading its input)" in message, message


def test_progress_files_say_who_waits_and_the_default_stop_notes_the_run(tmp_path):
    watch = StallWatchdog(tmp_path, 0, 3, stall_timeout_s=0)        # 0: no thread; driven by hand
    (tmp_path / ".progress" / "rank1.json").write_text(f'{{"phase": "{WAITING}"}}')
    watch.phase = "computing a step"
    watch._publish()
    message = watch.describe(12)
    assert "stuck rank(s) [0] (rank 0: computing a step); no progress file from rank(s) [2]" in message
    since = time.time() - 1
    assert stall_note(tmp_path, since) is None
    (tmp_path / ".progress" / STALL_NOTE).write_text(message)
    assert stall_note(tmp_path, since) == message and stall_note(tmp_path, time.time() + 60) is None


@pytest.mark.parametrize("overrides, message", [
    (["train.stall_timeout_s=900"], "train.stall_timeout_s must be 0 \\(off\\) or in \\(0, train.collective_timeout_s=600\\)"),
    (["train.collective_timeout_s=0"], "train.collective_timeout_s must be >= 1"),
])
def test_the_watchdog_must_fire_before_a_collective_times_out(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(None, overrides)
    assert load_experiment(None, ["train.stall_timeout_s=0"]).train.stall_timeout_s == 0
