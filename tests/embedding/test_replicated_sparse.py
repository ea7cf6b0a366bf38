"""Replicated tables with a row-sparse update: lookups, averaged gradients and training equal to an
unreplicated reference on 1, 2 and 3 workers, replicas bitwise identical, no exchange on one worker."""
import pytest
import torch
from torch import nn

from tests.embedding import replicated_helpers as rh
from tests.embedding import sharded_helpers as h
from hamur_dist.config import EmbeddingConfig
from hamur_dist.embedding import ShardedEmbeddingCollection, SparseRowOptimizer, plan_sharding
from hamur_dist.embedding import collection as collection_module
from hamur_dist.model.embedding import TableSpec


def test_single_worker_trains_like_the_reference_without_any_exchange(monkeypatch):
    def no_exchange(*args, **kwargs):
        raise AssertionError("a single worker must not exchange gradients")
    monkeypatch.setattr(collection_module, "all_gather_row_sums", no_exchange)
    emb = h.build(0, 1, rh.CONFIG)
    assert [emb.plan.placement(n).mode for n in ("user", "item", "cat", "tiny")] == [
        "row_wise", "replicated_sparse", "replicated", "replicated_sparse"]
    assert {n for n, _ in emb.named_parameters()} == {"tables.cat.weight"}    # DDP sees only the dense table
    assert emb.local_bytes() == sum(s.num_rows for s in h.SPECS) * h.DIM * 4
    opt = rh.make_optimizer(emb)
    for step in range(4):
        batch = h.global_batch(step, 1)[0]
        out = emb(batch)
        (out * h.loss_weights(step, batch, 0)).sum().backward()
        with torch.no_grad():
            emb.tables["cat"].weight -= h.TRAIN["dense_lr"] * emb.tables["cat"].weight.grad
        emb.tables["cat"].weight.grad = None
        assert opt.step() > 0
    assert emb.exchanger.bytes_sent == 0
    ref, states = h.reference_training(range(4), lambda s: 1)
    rh.assert_matches_reference(emb, ref)
    assert torch.equal(opt.table_state("item")["step"], states["item"]["step"])    # per-row step counts
    with torch.no_grad():                                                          # evaluation keeps nothing
        emb(h.global_batch(0, 1)[0])
    assert opt.step() == 0


def test_equals_torch_sparse_adagrad_on_replicated_tables():
    torch.manual_seed(0)
    specs = [TableSpec("a", 30, 4), TableSpec("b", 50, 4)]
    emb = ShardedEmbeddingCollection(specs, plan_sharding(specs, 1, EmbeddingConfig(sharding="replicated_sparse")),
                                     0, 1, init_seed=1)
    tables = {s.name: nn.Embedding(s.num_rows, s.dim, sparse=True) for s in specs}
    with torch.no_grad():
        for name, t in tables.items():
            t.weight.copy_(emb.local_table(name))
    opt = SparseRowOptimizer(emb, "adagrad", lr=0.1)
    torch_opt = torch.optim.Adagrad([t.weight for t in tables.values()], lr=0.1)
    for _ in range(5):
        ids = torch.stack([torch.randint(0, s.num_rows, (7,)) for s in specs], 1)
        w = torch.randn(7, 2, 4)
        (emb(ids) * w).sum().backward()
        opt.step()
        torch_opt.zero_grad()
        (torch.stack([tables[s.name](ids[:, i]) for i, s in enumerate(specs)], 1) * w).sum().backward()
        with torch.sparse.check_sparse_tensor_invariants(enable=True):   # checked (torch warns when unsaid)
            torch_opt.step()
    for name, t in tables.items():
        torch.testing.assert_close(emb.local_table(name), t.weight.detach(), atol=1e-6, rtol=1e-5)


def test_ids_are_checked():
    emb = h.build(0, 1, rh.CONFIG)
    bad = h.global_batch(0, 1)[0].clone()
    bad[0, 3] = 2                      # tiny has 2 rows
    with pytest.raises(ValueError, match="table 'tiny': id 2 outside"):
        emb(bad)


@pytest.mark.parametrize("world_size", [2, 3])
def test_gradients_are_averaged_over_workers(world_size):
    h.run_ranks(rh.check_gradients, world_size)


def test_training_matches_reference_and_replicas_stay_identical_two_ranks():
    trains = [dict(h.TRAIN), dict(h.TRAIN, kind="adagrad", lr=0.1), dict(h.TRAIN, decoupled=True, wd=0.1)]
    h.run_ranks(rh.check_training, 2, trains)


def test_training_matches_reference_three_ranks():
    h.run_ranks(rh.check_training, 3, [dict(h.TRAIN)])
