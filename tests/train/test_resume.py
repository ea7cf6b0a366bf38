"""The restore path a worker runs (``hamur_dist.train.resume``) against a stand-in for ``ray.train``:
fall back past corrupt checkpoints, refuse an incompatible config, load the best epoch for the test."""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hamur_dist.config import load_experiment
from hamur_dist.data.manifest import load_manifest
from hamur_dist.train import checkpoint as ckpt
from hamur_dist.train import resume
from hamur_dist.train.loop_state import LoopState
from hamur_dist.train.worker_model import WorkerModel
from tests.helpers import events


class FakeTrain:
    """What the worker code uses of ``ray.train``: report, Checkpoint, get_checkpoint, get_all_reported_checkpoints."""

    def __init__(self, storage: Path):
        self.storage, self.results = storage, []
        self.view: dict[str, str] = {}          # path -> where this worker finds it (storage seen differently)
        fake = self

        class Checkpoint:
            def __init__(self, path):
                self.path = str(path)

            @classmethod
            def from_directory(cls, directory):
                copy = fake.storage / f"checkpoint_{len(fake.results):03d}"
                shutil.copytree(directory, copy)
                return cls(copy)

            @contextlib.contextmanager
            def as_directory(self):
                yield fake.view.get(self.path, self.path)

        self.Checkpoint = Checkpoint

    def report(self, metrics, checkpoint=None):
        if checkpoint is not None:
            self.results.append(SimpleNamespace(checkpoint=checkpoint, metrics=metrics))

    def get_checkpoint(self):
        return self.results[-1].checkpoint if self.results else None

    def get_all_reported_checkpoints(self):
        return list(self.results)


def worker(dataset, *overrides) -> WorkerModel:
    cfg = load_experiment(None, ["model.hidden_dims=[16]", *overrides])
    return WorkerModel(cfg, load_manifest(dataset), 0, 1)


def save_epochs(api, wm, epochs: int) -> list[dict]:
    """Report ``epochs`` checkpoints; the weights differ per epoch so a load can be told apart."""
    saved = []
    state = LoopState.fresh(3)
    for epoch in range(epochs):
        with torch.no_grad():
            for p in wm.model.parameters():
                p.fill_(epoch + 1)
        state.record(epoch, 0.5 + epoch / 100, {"overall": {}}, {"epoch": epoch}, patience=3)
        resume.report(api, wm, state, {"epoch": epoch, "val/auc": 0.5}, wm.fingerprint(), with_checkpoint=True)
        saved.append(LoopState.from_checkpoint(state.to_checkpoint()))
    return saved


def first_weight(wm) -> float:
    return next(wm.model.parameters()).flatten()[0].item()


def test_restore_falls_back_past_corrupt_checkpoints_and_notes_it(tiny_dataset, tmp_path):
    api, wm = FakeTrain(tmp_path), worker(tiny_dataset)
    saved = save_epochs(api, wm, 3)
    newest, middle = (Path(r.checkpoint.path) for r in api.results[:0:-1])
    (newest / ckpt.STATE).write_bytes(b"\0" * 10)           # newest: corrupt
    (middle / ckpt.CHECKSUMS).unlink()                      # next: never sealed
    fresh = worker(tiny_dataset)
    state, saved_by = resume.restore_latest(api, fresh, fresh.fingerprint(), tmp_path)
    assert state == saved[0] and saved_by == 1 and first_weight(fresh) == 1.0
    skipped = events(tmp_path)
    assert len(skipped) == 2 and "state.pt is corrupt" in skipped[0] and "CHECKSUMS.json is missing" in skipped[1]
    (Path(api.results[0].checkpoint.path) / ckpt.STATE).write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint of this run verifies"):
        resume.restore_latest(api, fresh, fresh.fingerprint(), tmp_path)


def test_a_run_without_checkpoints_starts_fresh(tiny_dataset, tmp_path):
    wm = worker(tiny_dataset)
    assert resume.restore_latest(FakeTrain(tmp_path), wm, wm.fingerprint(), tmp_path) is None


def test_an_incompatible_config_is_fatal_not_skipped(tiny_dataset, tmp_path):
    api = FakeTrain(tmp_path)
    save_epochs(api, worker(tiny_dataset), 2)
    other = worker(tiny_dataset, "model.hidden_dims=[8]")
    with pytest.raises(ckpt.IncompatibleCheckpointError, match=r"model.hidden_dims: checkpoint has \[16\]"):
        resume.restore_latest(api, other, other.fingerprint(), tmp_path)
    assert events(tmp_path) == []


def test_a_path_that_says_incompatible_does_not_make_corruption_fatal(tiny_dataset, tmp_path):
    storage = tmp_path / "runs-incompatible-ablation"
    storage.mkdir()
    api, wm = FakeTrain(storage), worker(tiny_dataset)
    saved = save_epochs(api, wm, 2)
    (Path(api.results[-1].checkpoint.path) / ckpt.STATE).write_bytes(b"\0")
    state, _ = resume.restore_latest(api, wm, wm.fingerprint(), storage)
    assert state == saved[0]


def test_the_test_split_uses_the_best_epochs_newest_checkpoint_that_verifies(tiny_dataset, tmp_path):
    api, wm = FakeTrain(tmp_path), worker(tiny_dataset)
    save_epochs(api, wm, 3)
    best = resume.load_best(api, wm, 1, wm.fingerprint())
    assert best.path == api.results[1].checkpoint.path and first_weight(wm) == 2.0
    (Path(best.path) / ckpt.STATE).write_bytes(b"\0")
    assert resume.load_best(api, wm, 1, wm.fingerprint()) is None
    assert resume.load_best(api, wm, -1, wm.fingerprint()) is None


def resume_on_two_ranks(rank: int, world: int, dataset: str, storage: str, listed: list, rank1_sees: dict,
                        out: str) -> None:
    """One rank of a 2-worker resume. Rank 1's view of storage differs: ``rank1_sees`` maps a
    checkpoint path to what rank 1 finds there (None: not listed at all)."""
    api = FakeTrain(Path(storage))
    entries = [(rank1_sees.get(path, path) if rank == 1 else path, metrics) for path, metrics in listed]
    api.results = [SimpleNamespace(checkpoint=api.Checkpoint(path), metrics=metrics)
                   for path, metrics in entries if path is not None]
    if rank == 1:
        api.view = {path: seen for path, seen in rank1_sees.items() if seen is not None}
    cfg = load_experiment(None, ["model.hidden_dims=[16]"])
    wm = WorkerModel(cfg, load_manifest(dataset), rank, world)
    try:
        restored = resume.restore_latest(api, wm, wm.fingerprint(), Path(storage))
        Path(out, f"rank{rank}").write_text(f"{restored[0].last_epoch} {first_weight(wm)}")
    except ckpt.CheckpointError as exc:
        Path(out, f"rank{rank}").write_text(f"error: {exc}")


def test_every_rank_resumes_from_the_checkpoint_rank_0_chose(tiny_dataset, tmp_path):
    from tests.embedding.sharded_helpers import run_ranks

    api = FakeTrain(tmp_path)
    save_epochs(api, worker(tiny_dataset), 3)
    listed = [(r.checkpoint.path, r.metrics) for r in api.results]
    newest = listed[-1][0]
    out = tmp_path / "out"
    out.mkdir()
    # rank 1 does not see the newest checkpoint in its listing: it still loads rank 0's choice
    run_ranks(resume_on_two_ranks, 2, str(tiny_dataset), str(tmp_path), listed, {newest: None}, str(out))
    assert (out / "rank0").read_text() == (out / "rank1").read_text() == "2 3.0"
    # what rank 1 finds at that path does not verify: every rank stops, naming rank 1
    damaged = tmp_path / "rank1-view"
    shutil.copytree(newest, damaged)
    (damaged / ckpt.STATE).write_bytes(b"\0")
    run_ranks(resume_on_two_ranks, 2, str(tiny_dataset), str(tmp_path), listed, {newest: str(damaged)}, str(out))
    for rank in (0, 1):
        assert (out / f"rank{rank}").read_text().startswith(f"error: rank(s) [1] could not verify checkpoint {newest}")
