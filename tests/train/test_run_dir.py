"""A run directory belongs to one run: claimed atomically, never shared by two launches."""
from __future__ import annotations

import threading

import pytest

from hamur_dist.config_loader import ConfigError
from hamur_dist.train.trainer import claim_run_dir


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
