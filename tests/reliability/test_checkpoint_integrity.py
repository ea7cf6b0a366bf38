"""Checkpoint integrity without Ray: content hashes catch truncation and bit flips, a missing
worker's part, and a checkpoint of another config is refused naming the field that differs."""
from __future__ import annotations

import json

import pytest
import torch

from hamur_dist.fileio import atomic_torch_save
from hamur_dist.train import checkpoint as ckpt

FINGERPRINT = {"model": json.dumps({"name": "mlp", "hidden_dims": [32, 16]}, sort_keys=True),
               "data_layout": "abc123", "sharded_tables": ""}


def make_checkpoint(directory, epoch: int, fingerprint=FINGERPRINT, world: int = 1, sharded: bool = False):
    directory.mkdir(parents=True)
    atomic_torch_save({"epoch": epoch, "model": {"w": torch.full((4,), float(epoch))}}, directory / ckpt.STATE)
    ranks = world if sharded else 1
    for rank in range(1, ranks):
        torch.save({"rows": torch.arange(3) + rank}, directory / f"shard-rank{rank}-of{world}.pt")
        ckpt.seal(directory, fingerprint, rank, world, ranks)
    ckpt.seal(directory, fingerprint, 0, world, ranks)
    return str(directory)


def test_a_sealed_checkpoint_verifies_and_loads(tmp_path):
    d = make_checkpoint(tmp_path / "c0", epoch=3)
    assert ckpt.verify(d) == FINGERPRINT
    assert ckpt.load_state(d, FINGERPRINT)["epoch"] == 3


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "delete"])
def test_damaged_state_file_is_detected(tmp_path, damage):
    d = make_checkpoint(tmp_path / "c0", epoch=1)
    state = tmp_path / "c0" / ckpt.STATE
    data = bytearray(state.read_bytes())
    if damage == "truncate":
        state.write_bytes(bytes(data[: len(data) // 3]))
    elif damage == "flip_byte":
        data[len(data) // 2] ^= 0x01
        state.write_bytes(bytes(data))
    else:
        state.unlink()
    expected = "state.pt is missing" if damage == "delete" else "state.pt is corrupt (content hash differs)"
    with pytest.raises(ckpt.CheckpointError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        ckpt.load_state(d, FINGERPRINT)


def test_a_missing_worker_part_makes_the_checkpoint_incomplete(tmp_path):
    d = make_checkpoint(tmp_path / "c0", epoch=1, world=3, sharded=True)
    assert ckpt.verify(d) == FINGERPRINT
    (tmp_path / "c0" / "CHECKSUMS.rank2.json").unlink()   # rank 2 died before sealing its part
    with pytest.raises(ckpt.CheckpointError, match="2 of 3 workers' checksum files"):
        ckpt.verify(d)
    (tmp_path / "c0" / "shard-rank1-of3.pt").write_bytes(b"garbage")
    (tmp_path / "c0" / "CHECKSUMS.rank2.json").write_text('{"files": {}}')
    with pytest.raises(ckpt.CheckpointError, match="shard-rank1-of3.pt is corrupt"):
        ckpt.verify(d)


def test_incompatible_config_is_refused_naming_the_field(tmp_path):
    d = make_checkpoint(tmp_path / "c0", epoch=0)
    other = dict(FINGERPRINT, model=json.dumps({"name": "mlp", "hidden_dims": [64, 32]}, sort_keys=True))
    with pytest.raises(ckpt.IncompatibleCheckpointError) as err:
        ckpt.load_state(d, other)
    msg = str(err.value)
    assert "incompatible" in msg
    assert "model.hidden_dims: checkpoint has [32, 16], this run has [64, 32]" in msg
    assert "model.name" not in msg                     # only what differs is named
    relaid = dict(FINGERPRINT, data_layout="ffff")
    with pytest.raises(ckpt.CheckpointError, match="data_layout: checkpoint has 'abc123', this run has 'ffff'"):
        ckpt.load_state(d, relaid)


def test_worker_model_fingerprints_differ_exactly_where_the_configs_do(fault_dataset):
    """The fingerprint a real worker computes names the changed model field (the restore path: test_resume.py)."""
    from hamur_dist.config import load_experiment
    from hamur_dist.data.manifest import load_manifest
    from hamur_dist.train.worker_model import WorkerModel

    manifest = load_manifest(fault_dataset)
    prints = [WorkerModel(load_experiment(None, [f"model.hidden_dims={dims}"]), manifest, 0, 1).fingerprint()
              for dims in ("[32,16]", "[32]")]
    with pytest.raises(ckpt.CheckpointError, match=r"model.hidden_dims: checkpoint has \[32, 16\], this run has \[32\]"):
        ckpt.check_fingerprint(prints[0], prints[1])


@pytest.mark.parametrize("body", ['[1, 2]', '{"files": ["state.pt"]}', '{"files": {"state.pt": 7}}', '{"no": 1}',
                                  '{"files": {}, "ranks_with_files": "2"}'])
def test_checksums_of_the_wrong_shape_are_a_corrupt_checkpoint(tmp_path, body):
    d = make_checkpoint(tmp_path / "c0", epoch=0)
    (tmp_path / "c0" / ckpt.CHECKSUMS).write_text(body)
    with pytest.raises(ckpt.CheckpointError, match="CHECKSUMS.json is corrupt") as err:
        ckpt.verify(d)
    assert not isinstance(err.value, ckpt.IncompatibleCheckpointError)


class Planted:
    """Unpickling this runs code: what a hostile state.pt would carry."""

    def __reduce__(self):
        return (print, ("code from a checkpoint ran",))


def test_a_checkpoint_that_would_run_code_is_refused_not_executed(tmp_path, capsys):
    d = make_checkpoint(tmp_path / "c0", epoch=0)
    torch.save({"epoch": 0, "model": {}, "payload": Planted()}, tmp_path / "c0" / ckpt.STATE)
    ckpt.seal(d, FINGERPRINT)                      # hashes match: only the loader stands in the way
    with pytest.raises(ckpt.CheckpointError, match="refused"):
        ckpt.load_state(d, FINGERPRINT)
    assert "code from a checkpoint ran" not in capsys.readouterr().out
