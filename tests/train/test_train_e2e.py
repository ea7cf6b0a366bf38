"""End to end on the shared Ray instance: train, outputs, exactly-once, resume, artifact, bad inputs.

The first run (one epoch, 2 workers) and the tests that only read it are the fast tier's end-to-end
check; the tests that start more runs are in the full tier (``slow``)."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil

import pyarrow.parquet as pq
import pytest

from hamur_dist.data.manifest import load_manifest
from hamur_dist.train.trainer import train
from tests.helpers import history as read_history, small_experiment

RAY_FORWARDED = re.compile(r"^(\x1b\[[0-9;]*m)?\(\w+ pid=\d+")

@pytest.fixture(scope="module")
def first_run(ray_session, tiny_dataset, tmp_path_factory):
    """One epoch, 2 workers; Ray's checkpoints go to a URI storage (file://), hamur's files to a folder.
    What the run shows on the console is kept in ``root/console.txt``."""
    root = tmp_path_factory.mktemp("runs")
    cfg = small_experiment(tiny_dataset, f"file://{root / 'bucket'}", "train.epochs=1", "run.name=r1",
                           f"run.files_path={root / 'files'}", "train.log_every_steps=1")
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        result = train(cfg, log=lambda *_: None)
    (root / "console.txt").write_text(console.getvalue())
    return result, root


def test_the_console_shows_our_lines_and_ray_output_goes_to_the_run_log(first_run):
    result, root = first_run
    shown = (root / "console.txt").read_text()
    assert re.search(r"^\[hamur\] epoch 0: train loss [0-9.]+, [0-9,]+ samples/s, val AUC 0\.\d+ \(d0 ", shown, re.M), shown
    assert re.search(r"^\[hamur\] epoch 0: [0-9,]+/6,000 samples, loss ", shown, re.M), shown   # progress
    for noise in ("TrainingReport", "Warning", "WARNING", "pid=", "find_unused_parameters", "[hamur:"):
        assert noise not in shown, f"{noise!r} on the console:\n{shown}"
    log = (result.run_dir / "ray.log").read_text()
    assert "TrainingReport" in log and "[hamur:detail] epoch 0: worker memory MB" in log


def test_run_writes_every_output_and_learns(first_run, tiny_dataset):
    result, root = first_run
    d = result.run_dir
    assert d == root / "files" / "r1"
    assert list((root / "bucket" / "r1").glob("checkpoint_*"))     # Ray's checkpoints in the bucket
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "report.json", "report.md", "val_auc.png",
                 "model/model.pt", "model/manifest.json"):
        assert (d / name).is_file(), name
    assert any((d / "tb").iterdir())
    report = json.loads((d / "report.json").read_text())
    assert report["test"]["overall"]["auc"] > 0.65
    assert [e["count"] for e in report["test"]["domains"]] == load_manifest(tiny_dataset).splits["test"].rows_per_domain
    assert "| **all** |" in (d / "report.md").read_text()


def test_every_training_sample_seen_exactly_once_per_epoch(first_run, tiny_dataset):
    result, _ = first_run
    rows = load_manifest(tiny_dataset).splits["train"].rows
    for epoch in result.history:
        assert epoch["train/samples"] == rows


@pytest.mark.slow
def test_resume_continues_from_checkpoint(first_run, tiny_dataset):
    """From the run folder: the checkpoints are found in the URI storage its config names."""
    result, _ = first_run
    from hamur_dist.cli import main

    before = result.history[0]
    # lr_decay given on resume: epoch 1 trains at lr * 0.5**1, derived from the epoch number
    assert main(["train", "--resume", str(result.run_dir), "train.epochs=2", "train.lr_decay=0.5"]) == 0
    history = read_history(result.run_dir)
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[0]["train/loss"] == pytest.approx(before["train/loss"])  # epoch 0 was not redone
    assert history[1]["global_step"] > history[0]["global_step"]
    assert [h["train/lr"] for h in history] == pytest.approx([0.01, 0.005])
    assert history[1]["train/samples"] == load_manifest(tiny_dataset).splits["train"].rows


def test_artifact_loads_without_ray_and_evaluate_matches_report(first_run, tiny_dataset):
    import subprocess
    import sys

    result, _ = first_run
    code = ("import sys, json; from hamur_dist.infer.evaluate import evaluate_model; "
            f"r = evaluate_model({str(result.run_dir)!r}, {str(tiny_dataset)!r}, 'test'); "
            "assert 'ray' not in sys.modules, 'ray imported'; print(json.dumps(r['overall']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    overall = json.loads(out.stdout.strip().splitlines()[-1])
    report = json.loads((result.run_dir / "report.json").read_text())
    assert overall["auc"] == pytest.approx(report["test"]["overall"]["auc"], abs=1e-5)


@pytest.mark.parametrize("case", ["missing", "mismatch", "config"])
def test_bad_inputs_give_one_clear_line(tiny_dataset, tmp_path, capsys, case):
    from hamur_dist.cli import main

    empty = tmp_path / "empty.yaml"
    empty.write_text("train:\n  epochs: 1\n")
    if case == "missing":
        args = ["train", "--config", str(empty), f"data.path={tmp_path / 'nope'}", f"run.storage_path={tmp_path}"]
    if case == "mismatch":
        root = tmp_path / "ds"
        shutil.copytree(tiny_dataset, root)
        manifest = json.loads((root / "manifest.json").read_text())
        manifest["splits"]["val"]["shards"][0]["rows"] += 1
        (root / "manifest.json").write_text(json.dumps(manifest))
        args = ["train", "--config", str(empty), f"data.path={root}", f"run.storage_path={tmp_path}"]
    if case == "config":
        args = ["train", "--config", str(empty), f"data.path={tiny_dataset}", "train.epochz=3"]
    assert main(args) == 2
    # Ray's log monitor may forward other actors' lines "(Name pid=N) ..." into the same stderr
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if not RAY_FORWARDED.match(line))
    assert err.startswith("hamur train: error:") and "Traceback" not in err
    expected = {"missing": f"dataset directory not found: {tmp_path / 'nope'}",
                "mismatch": "val/part-00000.parquet: has", "config": "unknown config key 'train.epochz'"}[case]
    assert expected in err


def test_predict_scores_every_row_with_ray_data_actors(first_run, tiny_dataset, tmp_path):
    import numpy as np
    import torch

    from hamur_dist.model.artifact import load_artifact
    from hamur_dist.infer.predict import predict

    result, _ = first_run
    out = tmp_path / "scored"
    rows = predict(result.run_dir, tiny_dataset, out, split="test", batch_size=512, num_actors=1)
    assert rows == load_manifest(tiny_dataset).splits["test"].rows
    scored = pq.read_table(out).to_pandas()
    assert len(scored) == rows and scored["prediction"].between(0, 1).all()
    model = load_artifact(result.run_dir / "model")
    head = scored.head(50)
    sparse = torch.tensor(np.stack([head[c].to_numpy() for c in ("user", "item", "cat", "domain_id")], 1))
    with torch.no_grad():
        expected = torch.sigmoid(model(sparse, torch.tensor(head[["x"]].to_numpy()), torch.tensor(head["domain"].to_numpy())))
    assert np.allclose(head["prediction"].to_numpy(), expected.numpy(), atol=1e-6)
    with pytest.raises(FileExistsError):
        predict(result.run_dir, tiny_dataset, out)
