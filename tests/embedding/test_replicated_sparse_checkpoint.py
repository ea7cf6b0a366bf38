"""Checkpoints of replicated-sparse tables: written once (rank 0) with their optimiser state,
assembled into full tables, and resumed exactly on another world size or under another plan."""
import torch

from tests.embedding import replicated_helpers as rh
from tests.embedding import sharded_helpers as h
from hamur_dist.embedding import (SparseRowOptimizer, assemble_full_optimizer_state, assemble_full_state,
                                  load_shards, save_shard)


def test_round_trip_across_world_sizes_and_plans(tmp_path):
    two, one, three, other = (tmp_path / d for d in ("w2", "w1", "w3", "other-plan"))
    world_of_step = lambda step: 2 if step < 3 else 3          # noqa: E731

    h.run_ranks(rh.train_and_save, 2, None, str(two), range(3))
    rank1 = torch.load(two / "shard-rank1-of2.pt", weights_only=True)["tables"]
    assert set(rank1) == {"user"}                    # replicated tables: rank 0 writes them once
    ref, states = h.reference_training(range(3), world_of_step)
    full = assemble_full_state(two)
    h.assert_full_tables_match(full, ref)
    saved_state = assemble_full_optimizer_state(two)
    assert set(saved_state) == {"user", "item", "tiny"}
    for name in rh.REPLICATED_SPARSE:
        assert torch.equal(saved_state[name]["step"], states[name]["step"])
        torch.testing.assert_close(saved_state[name]["exp_avg"], states[name]["exp_avg"], atol=1e-6, rtol=1e-5)

    # 2 -> 1 in this process: every table and its state load; saving again gives the same checkpoint
    emb = h.build(0, 1, rh.CONFIG)
    opt = rh.make_optimizer(emb)
    load_shards(emb, opt, two)
    for name in rh.REPLICATED_SPARSE:
        assert torch.equal(emb.local_table(name), full[f"tables.{name}.weight"])
        assert torch.equal(opt.table_state(name)["exp_avg_sq"], saved_state[name]["exp_avg_sq"])
    save_shard(emb, opt, one)
    for key, value in assemble_full_state(one).items():
        assert torch.equal(value, full[key]), key

    # 1 -> 3, two more steps: they continue the reference run (moments and per-row step counts)
    h.run_ranks(rh.train_and_save, 3, str(one), str(three), range(3, 5))
    ref, states = h.reference_training(range(3, 5), world_of_step, ref=ref, states=states)
    full = assemble_full_state(three)
    h.assert_full_tables_match(full, ref)
    assert torch.equal(assemble_full_optimizer_state(three)["item"]["step"], states["item"]["step"])

    # another plan (item table-wise, tiny row-wise) takes the replicated-sparse tables and their state
    emb = h.build(0, 1)
    opt = SparseRowOptimizer(emb, "adam")
    load_shards(emb, opt, three)
    assert torch.equal(emb.local_table("item"), full["tables.item.weight"])
    assert torch.equal(opt.table_state("tiny")["step"], states["tiny"]["step"])
    save_shard(emb, opt, other)
    assert torch.equal(assemble_full_optimizer_state(other)["item"]["exp_avg"],
                       assemble_full_optimizer_state(three)["item"]["exp_avg"])
