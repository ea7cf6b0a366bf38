"""The quick start's console, as a newcomer sees it: `hamur train` in its own process, its own local Ray."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOISE = ("TrainingReport", "Warning", "WARNING", "warn", "pid=", "core_worker", "find_unused_parameters",
         "Progress bars", "[hamur:")


@pytest.mark.slow
def test_the_quick_start_console_shows_progress_epochs_and_one_table(tiny_dataset, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1", RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")   # as `make train` runs it
    # the quick start's own config and defaults, on the tiny dataset, one epoch
    cmd = [sys.executable, "-m", "hamur_dist.cli", "train", f"data.path={tiny_dataset}", "data.prepare=null",
           "train.epochs=1", "data.batch_size=256", f"run.storage_path={tmp_path}", "run.name=qs",
           "ray.num_cpus=4", "ray.object_store_mb=256"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    console = out.stdout + out.stderr
    assert out.returncode == 0, console[-5000:]
    for noise in NOISE:
        assert noise not in console, f"{noise!r} on the console:\n{console}"
    assert [int(e) for e in re.findall(r"^\[hamur\] epoch (\d): train loss", console, re.M)] == [0], console
    assert console.count("| **all** |") == 1, console                      # the test table, once
    assert f"run directory: {tmp_path / 'qs'} (Ray's own output: {tmp_path / 'qs' / 'ray.log'})" in console
    log = (tmp_path / "qs" / "ray.log").read_text()
    assert "TrainingReport" in log and "Progress bars disabled" in log   # kept, not lost
