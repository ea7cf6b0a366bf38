"""Worker bodies for the replicated-sparse tests (module-level so spawned processes can import them).
Tables as in ``sharded_helpers``: user row-wise, item and tiny replicated-sparse, cat replicated dense
(the reference trains cat with SGD and the others with the row-sparse optimiser)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from tests.embedding import sharded_helpers as h
from hamur_dist.config import EmbeddingConfig
from hamur_dist.embedding import SparseRowOptimizer, load_shards, save_shard

CONFIG = EmbeddingConfig(sharding="replicated_sparse", overrides={"user": "row_wise", "cat": "replicated"})
REPLICATED_SPARSE = ["item", "tiny"]


def make_optimizer(emb, train=h.TRAIN) -> SparseRowOptimizer:
    return SparseRowOptimizer(emb, train["kind"], lr=train["lr"], weight_decay=train["wd"],
                              decoupled_weight_decay=train["decoupled"])


def assert_matches_reference(emb, ref, msg="") -> None:
    for spec in h.SPECS:
        start, end = emb.local_row_range(spec.name)
        torch.testing.assert_close(emb.local_table(spec.name), ref.tables[spec.name].weight[start:end].detach(),
                                   atol=1e-6, rtol=1e-5, msg=f"{msg} table {spec.name} rank {emb.rank}")


def assert_replicas_identical(emb, opt) -> None:
    """Every rank holds bitwise the same replicated-sparse tables and optimiser state."""
    for name in REPLICATED_SPARSE:
        for label, mine in [("weight", emb.local_table(name))] + sorted(opt.table_state(name).items()):
            mine = mine.contiguous()
            everyone = [torch.empty_like(mine) for _ in range(emb.world_size)]
            dist.all_gather(everyone, mine)
            for rank, theirs in enumerate(everyone):
                assert torch.equal(theirs, mine), f"{name} {label}: rank {rank} differs from rank {emb.rank}"


def check_gradients(rank: int, world_size: int) -> None:
    """After backward, every rank sees the same averaged gradients of the global loss for the
    replicated-sparse tables, covering the rows any rank touched (a rank may have an empty batch)."""
    emb = h.build(rank, world_size, CONFIG)
    assert sorted(emb.sparse_table_names()) == ["item", "tiny", "user"]
    assert {n for n, _ in emb.named_parameters()} == {"tables.cat.weight"}
    for step in range(3):
        ref = h.reference_collection()
        ref_outs = h.reference_backward(ref, step, world_size)
        batch = h.global_batch(step, world_size)[rank]
        out = emb(batch)
        torch.testing.assert_close(out, ref_outs[rank], atol=0, rtol=0)
        (out * h.loss_weights(step, batch, rank)).sum().backward()
        emb.tables["cat"].weight.grad = None
        grads = emb.sparse_grads()
        all_ids = torch.cat(h.global_batch(step, world_size))
        for name in REPLICATED_SPARSE:
            col = [s.name for s in h.SPECS].index(name)
            ids, got = grads[name]
            assert torch.equal(ids, torch.unique(all_ids[:, col])), (name, rank, ids)
            torch.testing.assert_close(got, ref.tables[name].weight.grad[ids], atol=1e-6, rtol=0)
        emb.clear_grads()


def check_training(rank: int, world_size: int, trains: list[dict]) -> None:
    for train in trains:
        emb = h.build(rank, world_size, CONFIG)
        opt = make_optimizer(emb, train)
        h.train_steps(emb, opt, range(4), train)
        ref, _ = h.reference_training(range(4), lambda s: world_size, train)
        assert_matches_reference(emb, ref, str(train))
        assert_replicas_identical(emb, opt)


def train_and_save(rank: int, world_size: int, load_dir: str | None, save_dir: str, steps: range) -> None:
    emb = h.build(rank, world_size, CONFIG)
    opt = make_optimizer(emb)
    if load_dir is not None:
        load_shards(emb, opt, load_dir)
    h.train_steps(emb, opt, steps)
    if world_size > 1:
        assert_replicas_identical(emb, opt)
    save_shard(emb, opt, save_dir)
