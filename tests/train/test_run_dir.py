"""A run directory belongs to one run: claimed atomically, never shared by two launches."""
from __future__ import annotations

import threading

import pytest

from hamur_dist.config_loader import ConfigError
from hamur_dist.train.run_location import claim_run_dir, resolve_run, resume_config, stored_run_exists


def test_a_named_run_directory_is_refused_once_taken(tmp_path):
    assert claim_run_dir(tmp_path / "r1", auto_named=False) == tmp_path / "r1"
    with pytest.raises(ConfigError, match=r"run directory .*r1 exists: pass --resume"):
        claim_run_dir(tmp_path / "r1", auto_named=False)


def test_an_empty_leftover_directory_can_be_claimed(tmp_path):
    (tmp_path / "r1").mkdir()
    assert claim_run_dir(tmp_path / "r1", auto_named=False) == tmp_path / "r1"


def test_launches_in_the_same_second_get_directories_of_their_own(tmp_path):
    claimed, barrier = [], threading.Barrier(8)

    def launch():
        barrier.wait()
        claimed.append(claim_run_dir(tmp_path / "quickstart-20261202-101500", auto_named=True))

    threads = [threading.Thread(target=launch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(claimed)) == 8
    assert sorted(p.name for p in claimed)[:2] == ["quickstart-20261202-101500", "quickstart-20261202-101500-2"]
    assert all((p / "config.yaml").is_file() for p in claimed)


def test_a_run_in_a_uri_storage_is_found_and_resumed_there(tmp_path):
    from hamur_dist.config import load_experiment
    from hamur_dist.train.outputs import RunOutputs
    from hamur_dist.config import to_dict

    bucket = f"file://{tmp_path / 'bucket'}"
    cfg = load_experiment(None, [f"run.storage_path={bucket}", f"run.files_path={tmp_path / 'local'}", "run.name=r1"])
    name, storage, run_dir = resolve_run(cfg, None)
    assert (name, storage, run_dir) == ("r1", bucket, tmp_path / "local" / "r1")
    assert not stored_run_exists(storage, "r1")
    (tmp_path / "bucket" / "r1").mkdir(parents=True)
    assert stored_run_exists(storage, "r1")
    RunOutputs(run_dir).write_config(to_dict(cfg))
    moved = tmp_path / "elsewhere" / "r1"
    run_dir.rename(tmp_path / "local" / "x")
    moved.parent.mkdir()
    (tmp_path / "local" / "x").rename(moved)
    resumed = resume_config(moved, ["train.epochs=3"])
    # the checkpoints stay in the bucket; hamur's files are where the folder is now
    assert (resumed.run.storage_path, resumed.run.files_path, resumed.run.name) == (bucket, str(moved.parent), "r1")
    assert resumed.run.resume and resumed.train.epochs == 3
    assert resolve_run(resumed, None)[2] == moved


def test_a_local_run_resumes_beside_its_files(tmp_path):
    from hamur_dist.config import load_experiment, to_dict
    from hamur_dist.train.outputs import RunOutputs

    cfg = load_experiment(None, [f"run.storage_path={tmp_path / 'old-place'}", "run.name=r1"])
    RunOutputs(tmp_path / "new-place" / "r1").write_config(to_dict(cfg))
    resumed = resume_config(tmp_path / "new-place" / "r1")
    assert resumed.run.storage_path == str(tmp_path / "new-place")


def test_a_fresh_run_refuses_a_name_taken_in_the_bucket(tiny_dataset, tmp_path):
    from hamur_dist.train.trainer import train
    from tests.helpers import small_experiment

    (tmp_path / "bucket" / "r1").mkdir(parents=True)      # another run's checkpoints live there
    cfg = small_experiment(tiny_dataset, f"file://{tmp_path / 'bucket'}", "run.name=r1",
                           f"run.files_path={tmp_path / 'local'}")
    with pytest.raises(ConfigError, match=r"run 'r1' already exists in file://.*bucket: resume it with"):
        train(cfg, log=lambda *_: None)
    assert not (tmp_path / "local").exists()
