"""jobs/*.py: each runs one ``hamur`` subcommand on the cluster it is submitted to."""
from __future__ import annotations

import os
import runpy
import subprocess
import sys

import pytest

from tests.deploy.deploy_paths import REPO

JOBS = REPO / "jobs"
SCRIPTS = ["prepare", "train", "tune", "compare", "evaluate", "predict"]


def test_every_job_script_is_a_cli_subcommand():
    from hamur_dist.cli import SUBCOMMANDS
    found = sorted(p.stem for p in JOBS.glob("*.py") if not p.stem.startswith("_"))
    assert found == sorted(SCRIPTS)
    assert set(found) <= set(SUBCOMMANDS)


@pytest.fixture
def fake_cli(monkeypatch):
    """Replace hamur_dist.cli.main with a recorder returning 3, and make jobs/ importable."""
    from hamur_dist import cli
    calls = []

    def main(argv):
        calls.append((list(argv), os.environ.get("RAY_ADDRESS")))
        return 3

    monkeypatch.setattr(cli, "main", main)
    monkeypatch.syspath_prepend(str(JOBS))
    return calls


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_passes_its_arguments_to_its_subcommand(name, fake_cli, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(sys, "argv", [f"jobs/{name}.py", "--config", "configs/x.yaml", "run.name=a b"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(JOBS / f"{name}.py"), run_name="__main__")
    assert stop.value.code == 3
    # no RAY_ADDRESS (run outside `ray job submit`): join the local cluster, never start a private one
    assert fake_cli == [([name, "--config", "configs/x.yaml", "run.name=a b"], "auto")]


def test_predict_passes_options_through_unchanged(fake_cli, monkeypatch):
    """The script knows no option of its own: a new `hamur predict` option (say --source) works as is."""
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    argv = ["--model", "/mnt/hamur/runs/r", "--source", "/mnt/hamur/raw/logs", "--out", "/o", "--some-new-flag"]
    monkeypatch.setattr(sys, "argv", ["jobs/predict.py", *argv])
    with pytest.raises(SystemExit):
        runpy.run_path(str(JOBS / "predict.py"), run_name="__main__")
    assert fake_cli == [(["predict", *argv], "10.0.0.5:6379")]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_reaches_its_subcommand_of_the_real_cli(name, monkeypatch, capsys):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")      # so the script leaves os.environ alone
    monkeypatch.syspath_prepend(str(JOBS))
    monkeypatch.setattr(sys, "argv", [f"jobs/{name}.py", "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(JOBS / f"{name}.py"), run_name="__main__")
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: hamur {name}")


def test_address_set_by_ray_job_submit_is_kept(fake_cli, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    monkeypatch.setattr(sys, "argv", ["jobs/train.py"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(JOBS / "train.py"), run_name="__main__")
    assert fake_cli == [(["train"], "10.0.0.5:6379")]


def test_clear_message_when_the_package_is_not_installed():
    # -S: no site-packages, so hamur_dist (and everything else installed) is out of reach
    out = subprocess.run([sys.executable, "-S", "jobs/train.py", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "cannot import the hamur_dist package" in out.stderr and "docs/deploy.md" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_runs_the_real_cli():
    out = subprocess.run([sys.executable, "jobs/train.py", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: hamur train")
