"""Per-worker checkpoints: exact round trips across world sizes (2 -> 1 -> 3 -> 2), optimiser state
included, assembly into a plain EmbeddingCollection, atomic writes and clear errors."""
import pytest
import torch

from tests.embedding import sharded_helpers as h
from hamur_dist.embedding import (SparseRowOptimizer, assemble_full_optimizer_state, assemble_full_state,
                                  load_shards, save_shard)
from hamur_dist.model.embedding import EmbeddingCollection


def _assert_same_checkpoint(a, b):
    full_a, full_b = assemble_full_state(a), assemble_full_state(b)
    assert full_a.keys() == full_b.keys() == {f"tables.{s.name}.weight" for s in h.SPECS}
    for key in full_a:
        assert torch.equal(full_a[key], full_b[key]), key
    opt_a, opt_b = assemble_full_optimizer_state(a), assemble_full_optimizer_state(b)
    assert opt_a.keys() == opt_b.keys() == {"user", "item", "tiny"}      # the sharded tables
    for name in opt_a:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_a[name][key], opt_b[name][key]), (name, key)


def test_resharding_round_trips_are_exact(tmp_path):
    two, one, three, back = (tmp_path / d for d in ("w2", "w1", "w3", "w2-again"))
    world_of_step = lambda step: 2 if step < 3 else 3          # noqa: E731

    # 2 workers train 3 steps and save; the files hold exactly the unsharded run's tables and state
    h.run_ranks(h.train_and_save, 2, None, str(two), range(3))
    assert sorted(p.name for p in two.iterdir()) == ["shard-rank0-of2.pt", "shard-rank1-of2.pt"]
    ref, states = h.reference_training(range(3), world_of_step)
    full = assemble_full_state(two)
    h.assert_full_tables_match(full, ref)
    saved_state = assemble_full_optimizer_state(two)
    assert torch.equal(saved_state["user"]["step"], states["user"]["step"])

    # 2 -> 1 (in this process) and save again: identical checkpoint
    emb = h.build(0, 1)
    opt = SparseRowOptimizer(emb, "adam", lr=h.TRAIN["lr"], weight_decay=h.TRAIN["wd"])
    load_shards(emb, opt, two)
    for spec in h.SPECS:
        assert torch.equal(emb.local_table(spec.name), full[f"tables.{spec.name}.weight"])
    save_shard(emb, opt, one)
    _assert_same_checkpoint(two, one)

    # 1 -> 3, then two more steps on 3 workers: they continue the unsharded run (moments, step counts);
    # then 3 -> 2 (two of the processes, as a subgroup) without training
    h.run_ranks(h.train_and_save, 3, str(one), str(three), range(3, 5), str(back))
    ref, states = h.reference_training(range(3, 5), world_of_step, ref=ref, states=states)
    full = assemble_full_state(three)
    h.assert_full_tables_match(full, ref)
    assert torch.equal(assemble_full_optimizer_state(three)["user"]["step"], states["user"]["step"])

    assert sorted(p.name for p in back.iterdir()) == ["shard-rank0-of2.pt", "shard-rank1-of2.pt"]
    _assert_same_checkpoint(three, back)

    # the single-process model for evaluation / export takes the assembled tables as they are
    plain = EmbeddingCollection(h.SPECS)
    plain.load_state_dict(assemble_full_state(back))
    batch = h.global_batch(0, 1)[0]
    torch.testing.assert_close(plain(batch), ref(batch), atol=1e-6, rtol=1e-5)


def test_writes_are_atomic(tmp_path, monkeypatch):
    emb = h.build(0, 1)
    save_shard(emb, None, tmp_path)
    good = (tmp_path / "shard-rank0-of1.pt").read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with torch.no_grad():
        emb.local_weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_shard(emb, None, tmp_path)
    assert (tmp_path / "shard-rank0-of1.pt").read_bytes() == good     # the old checkpoint is intact


def test_loading_errors_name_the_problem(tmp_path):
    emb = h.build(0, 1)
    with pytest.raises(FileNotFoundError, match="no shard-rank"):
        load_shards(emb, None, tmp_path)
    save_shard(emb, None, tmp_path)
    (tmp_path / "shard-rank1-of2.pt").write_bytes((tmp_path / "shard-rank0-of1.pt").read_bytes())
    with pytest.raises(ValueError, match="mixes shard files of world sizes"):
        load_shards(emb, None, tmp_path)
    (tmp_path / "shard-rank0-of1.pt").unlink()
    with pytest.raises(FileNotFoundError, match="missing.*shard-rank0-of2.pt"):
        assemble_full_state(tmp_path)
    # an optimiser saved as adam cannot fill an adagrad optimiser
    adam_dir = tmp_path / "adam"
    save_shard(emb, SparseRowOptimizer(emb, "adam"), adam_dir)
    with pytest.raises(ValueError, match="optimiser state is 'adam'"):
        load_shards(emb, SparseRowOptimizer(emb, "adagrad"), adam_dir)
    # saved without optimiser state: loads, warns that the state starts fresh
    plain_dir = tmp_path / "plain"
    save_shard(emb, None, plain_dir)
    with pytest.warns(UserWarning, match="starts fresh"):
        load_shards(emb, SparseRowOptimizer(emb, "adam"), plain_dir)
