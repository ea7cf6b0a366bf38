"""A `hamur` command run in its own process with its own local Ray, killed (SIGKILL) and resumed: the
pieces the Tune and comparison resume tests share."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ray_pids(marker: str) -> list[int]:
    """Processes of the subprocess's own Ray: they inherit its RAY_TMPDIR (Ray workers start their own
    process groups and retitle themselves ``ray::...``, so neither the group nor the command line finds them)."""
    pids = []
    needle = f"RAY_TMPDIR={marker}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def kill_ray(marker: str, wait_s: float = 30) -> None:
    deadline = time.time() + wait_s
    while (pids := ray_pids(marker)) and time.time() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def wait_for(condition, timeout_s: float, proc, what: str, log: Path):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the command exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


class KilledCommand:
    """``hamur SUBCOMMAND`` with a private Ray (its own RAY_TMPDIR): ``start`` it, ``kill`` it with its
    Ray, ``resume`` it to the end. Use as a context manager: whatever is left of its Ray is killed."""

    def __init__(self, subcommand: str, log: Path):
        self.cli = [sys.executable, "-m", "hamur_dist.cli", subcommand]
        self.log = log
        self.ray_tmp = tempfile.mkdtemp(prefix="hrk-", dir="/tmp")   # short: Ray's socket paths must fit 107 bytes
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(OMP_NUM_THREADS="1", RAY_AUTH_MODE="disabled", RAY_TMPDIR=self.ray_tmp,
                        RAY_USAGE_STATS_ENABLED="0")
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        kill_ray(self.ray_tmp)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)

    def start(self, *args: str) -> None:
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([*self.cli, *args], cwd=REPO, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(self, condition, what: str, timeout_s: float = 900):
        return wait_for(condition, timeout_s, self.proc, what, self.log)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        kill_ray(self.ray_tmp)
        assert not ray_pids(self.ray_tmp)

    def resume(self, experiment_dir: Path) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.cli, "--resume", str(experiment_dir)], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=900, start_new_session=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done


killed_command = KilledCommand
