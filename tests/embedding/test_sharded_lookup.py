"""Sharded lookups equal an unsharded EmbeddingCollection, forward and backward, across gloo processes."""
import pytest
import torch

from tests.embedding import sharded_helpers as h
from hamur_dist.config import EmbeddingConfig
from hamur_dist.embedding import ShardedEmbeddingCollection, plan_sharding
from hamur_dist.embedding.init_rows import init_rows


@pytest.mark.parametrize("world_size", [2, 3])
def test_forward_backward_match_unsharded(world_size):
    # duplicates, partition-boundary ids, a rank asking nothing of another's shard, B=0 on a rank,
    # a rank holding no rows of a table (world 3, table 'tiny'), all schemes in one collection
    h.run_ranks(h.check_forward_backward, world_size)


def test_single_process_matches_and_checks_ids():
    emb = h.build(0, 1)
    ref = h.reference_collection()
    batch = h.global_batch(0, 1)[0]
    torch.testing.assert_close(emb(batch), ref(batch), atol=0, rtol=0)
    bad = batch.clone()
    bad[0, 1] = 10          # item has 10 rows
    with pytest.raises(ValueError, match="table 'item': id 10 outside"):
        emb(bad)
    with pytest.raises(ValueError, match="expected ids of shape"):
        emb(batch[:, :2])


def test_sharded_rows_are_not_parameters():
    emb = h.build(0, 1)
    names = {n for n, _ in emb.named_parameters()}
    assert names == {"tables.cat.weight"}          # only the replicated table: DDP syncs nothing else
    assert set(emb.sharded_parameter_names()) == {"tables.user.weight", "tables.item.weight", "tables.tiny.weight"}
    assert not any("local_weight" in k for k in emb.state_dict())
    assert emb.local_bytes() == sum(s.num_rows for s in h.SPECS) * h.DIM * 4


def test_init_is_independent_of_world_size_and_local_bytes_shrink():
    specs = [h.TableSpec("big", 200_000, 8)]
    cfg = EmbeddingConfig(sharding="row_wise")
    whole = ShardedEmbeddingCollection(specs, plan_sharding(specs, 1, cfg), 0, 1, init_seed=3)
    # the rows a 3-worker layout would give each rank, drawn on their own, equal the 1-worker table
    plan3 = plan_sharding(specs, 3, cfg)
    for rank in range(3):
        start, end = plan3.placement("big").row_range(rank)
        part = torch.empty(end - start, 8)
        init_rows(part, "big", start, 1e-2, 3)
        torch.testing.assert_close(part, whole.local_table("big")[start:end], atol=0, rtol=0)
        assert plan3.bytes_on(rank) <= -(-200_000 // 3) * 8 * 4
    assert whole.local_table("big").std().item() == pytest.approx(1e-2, rel=0.02)


def test_module_casts_and_moves_reach_the_local_shard():
    emb = h.build(0, 1).double()
    assert emb.local_weight.dtype == torch.float64 and emb.tables["cat"].weight.dtype == torch.float64
    ref = h.reference_collection().double()
    batch = h.global_batch(0, 1)[0]
    torch.testing.assert_close(emb.to("cpu")(batch), ref(batch), atol=0, rtol=0)
