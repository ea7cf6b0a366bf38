"""Multi-valued (multi-hot) tables: a feature's ``max_len`` id columns (slots, -1 = padding) are pooled
into one vector, like ``nn.EmbeddingBag``, in the replicated and in the sharded collection."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from hamur_dist.config import EmbeddingConfig
from hamur_dist.embedding import ShardedEmbeddingCollection, plan_sharding
from hamur_dist.model.embedding import EmbeddingCollection, TableSpec
from tests.embedding import sharded_helpers as h

DIM = 4
SPECS = [TableSpec("tags", 12, DIM, max_len=3, pooling="sum"), TableSpec("user", 9, DIM),
         TableSpec("genre", 7, DIM, max_len=4, pooling="mean")]
# every placement at once: user row-wise multi-valued, item table-wise, cat replicated-sparse, small
# replicated dense, and a single-valued row-wise table between them
MIXED = [TableSpec("user", 23, DIM, max_len=3, pooling="sum"), TableSpec("item", 10, DIM, max_len=2),
         TableSpec("one", 7, DIM), TableSpec("cat", 6, DIM, max_len=4),
         TableSpec("small", 5, DIM, max_len=3, pooling="sum")]
MIXED_CONFIG = EmbeddingConfig(sharding="row_wise", overrides={"item": "table_wise", "cat": "replicated_sparse",
                                                               "small": "replicated"})
SEED = 11


def make_ids(specs, rows: int, seed: int) -> torch.Tensor:
    """Real ids of multi-valued tables in [1, vocab) (row 0 is touched only by pads), a random count of
    trailing pads per row; the first row is all pads in every multi-valued table."""
    gen = torch.Generator().manual_seed(seed)
    columns = []
    for s in specs:
        if s.max_len == 1:
            columns.append(torch.randint(s.num_rows, (rows, 1), generator=gen))
            continue
        ids = torch.randint(1, s.num_rows, (rows, s.max_len), generator=gen)
        used = torch.randint(s.max_len + 1, (rows, 1), generator=gen)
        used[:1] = 0
        columns.append(ids.masked_fill(torch.arange(s.max_len) >= used, -1))
    return torch.cat(columns, dim=1)


def bag_reference(weights: dict[str, torch.Tensor], specs, ids: torch.Tensor) -> torch.Tensor:
    """The same pooling with F.embedding_bag, one bag per row (pads left out)."""
    out, start = [], 0
    for s in specs:
        block = ids[:, start:start + s.max_len]
        start += s.max_len
        keep = block != -1
        flat = block[keep]
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), keep.sum(1).cumsum(0)[:-1]])
        out.append(F.embedding_bag(flat, weights[s.name], offsets, mode=s.pooling))
    return torch.stack(out, dim=1)


# ----- replicated -----
@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_pooling_matches_embedding_bag_and_pads_get_no_gradient(pooling):
    specs = [TableSpec(s.name, s.num_rows, s.dim, s.max_len, pooling) for s in SPECS]
    torch.manual_seed(0)
    emb = EmbeddingCollection(specs, init_std=0.5)
    assert emb.num_slots == 8 and emb.multi_valued and emb.output_dim == 3 * DIM
    ids = make_ids(specs, 9, seed=1)
    weights = {n: t.weight.detach().clone().requires_grad_() for n, t in emb.tables.items()}
    out = emb(ids)
    want = bag_reference(weights, specs, ids)
    assert out.shape == (9, 3, DIM)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-6)
    assert torch.equal(out[0, 0], torch.zeros(DIM)) and torch.equal(out[0, 2], torch.zeros(DIM))   # all pads
    assert torch.isfinite(out).all()
    loss_w = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * loss_w).sum().backward()
    (want * loss_w).sum().backward()
    for name, table in emb.tables.items():
        torch.testing.assert_close(table.weight.grad, weights[name].grad, atol=1e-6, rtol=1e-6)
    for name in ("tags", "genre"):     # row 0 is read only for pads
        assert torch.equal(emb.tables[name].weight.grad[0], torch.zeros(DIM))


def test_bad_ids_are_refused_naming_the_table():
    emb = EmbeddingCollection(SPECS)
    ids = make_ids(SPECS, 4, seed=3)
    cases = [(1, -2, r"table 'tags': id -2 outside \[0, 12\)"), (5, 7, r"table 'genre': id 7 outside \[0, 7\)"),
             (3, 9, r"table 'user': id 9 outside \[0, 9\)"),
             (3, -1, r"table 'user': id -1 outside")]          # -1 pads multi-valued tables only
    for col, value, message in cases:
        bad = ids.clone()
        bad[2, col] = value
        with pytest.raises(ValueError, match=message):
            emb(bad)
    with pytest.raises(ValueError, match=r"^expected ids of shape \(B, 8\), got \(4, 3\)$"):
        emb(ids[:, :3])


def test_single_valued_tables_take_the_unpooled_path():
    specs = [TableSpec("a", 5, DIM, max_len=1, pooling="sum"), TableSpec("b", 3, DIM)]
    emb = EmbeddingCollection(specs)
    assert not emb.multi_valued and emb.num_slots == 2
    ids = torch.tensor([[4, 0], [1, 2]])
    want = torch.stack([emb.tables["a"](ids[:, 0]), emb.tables["b"](ids[:, 1])], dim=1)
    torch.testing.assert_close(emb(ids), want, atol=0, rtol=0)
    with pytest.raises(IndexError):       # as before: nn.Embedding's own check, -1 is no pad here
        emb(torch.tensor([[-1, 0]]))


def test_table_spec_checks_max_len_and_pooling():
    with pytest.raises(ValueError, match="table 'x': max_len must be >= 1"):
        TableSpec("x", 3, 2, max_len=0)
    with pytest.raises(ValueError, match="table 'x': pooling must be one of"):
        TableSpec("x", 3, 2, max_len=2, pooling="max")


# ----- sharded -----
def reference_mixed() -> EmbeddingCollection:
    torch.manual_seed(SEED)
    return EmbeddingCollection(MIXED, init_std=0.5)


def mixed_batch(step: int, rank: int) -> torch.Tensor:
    rows = 0 if (rank == 1 and step == 1) else 6 + rank       # an empty batch still joins the exchange
    return make_ids(MIXED, rows, seed=100 * step + rank)


def check_mixed(rank: int, world_size: int) -> None:
    emb = ShardedEmbeddingCollection(MIXED, plan_sharding(MIXED, world_size, MIXED_CONFIG), rank, world_size)
    ref = reference_mixed()
    emb.load_full_state(ref.state_dict())
    exchanges = []
    count_exchange = emb.exchanger.exchange_counts
    emb.exchanger.exchange_counts = lambda counts: exchanges.append(1) or count_exchange(counts)
    for step in range(2):
        batches = [mixed_batch(step, r) for r in range(world_size)]
        weights = [torch.randn(b.shape[0], len(MIXED), DIM, generator=torch.Generator().manual_seed(r))
                   for r, b in enumerate(batches)]
        ref.zero_grad()
        sum((ref(b) * w).sum() for b, w in zip(batches, weights)).div(world_size).backward()
        exchanges.clear()
        out = emb(batches[rank])
        assert len(exchanges) == 1       # one exchange for every sharded table and slot
        torch.testing.assert_close(out, ref(batches[rank]), atol=1e-6, rtol=0)
        (out * weights[rank]).sum().backward()

        grads = emb.sparse_grads()
        assert set(grads) == {"user", "item", "one", "cat"}
        every = torch.cat(batches)
        for i, spec in enumerate(MIXED):
            start, end = emb.slot_ranges[i]
            full = ref.tables[spec.name].weight.grad
            if spec.name == "small":
                dense = emb.tables["small"].weight.grad
                dist.all_reduce(dense)
                torch.testing.assert_close(dense / world_size, full, atol=1e-6, rtol=0)
                emb.tables["small"].weight.grad = None
                continue
            real = torch.unique(every[:, start:end][every[:, start:end] >= 0])
            low, high = emb.local_row_range(spec.name)
            real = real[(real >= low) & (real < high)]
            got_ids, got_grads = grads[spec.name]
            extra = got_ids[~torch.isin(got_ids, real)]
            assert torch.isin(real, got_ids).all() and extra.tolist() in ([], [0]), (spec.name, got_ids, real)
            torch.testing.assert_close(got_grads, full[got_ids], atol=1e-6, rtol=0)
            if extra.numel():        # row 0 looked up for pads only: zero gradient
                assert not got_grads[got_ids == 0].any()
        emb.clear_grads()


def test_sharded_multi_valued_tables_match_the_replicated_collection():
    h.run_ranks(check_mixed, 2)


def test_sharded_single_process_refuses_bad_ids_naming_the_table():
    emb = ShardedEmbeddingCollection(MIXED, plan_sharding(MIXED, 1, MIXED_CONFIG), 0, 1)
    ref = reference_mixed()
    emb.load_full_state(ref.state_dict())
    ids = make_ids(MIXED, 5, seed=4)
    torch.testing.assert_close(emb(ids), ref(ids), atol=1e-6, rtol=0)
    for col, value, name in ((1, -2, "user"), (3, 10, "item"), (5, -1, "one"), (7, 6, "cat"), (11, -2, "small")):
        bad = ids.clone()
        bad[1, col] = value
        with pytest.raises(ValueError, match=f"table '{name}': id {value} outside"):
            emb(bad)
