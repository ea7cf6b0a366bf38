"""Both embedding collections implement one EmbeddingCollectionInterface: models accept only such
modules, the shared checks behave the same in both, and the plain collection's state is unchanged."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hamur_dist.config import EmbeddingConfig
from hamur_dist.embedding import ShardedEmbeddingCollection, plan_sharding
from hamur_dist.model import (EmbeddingCollection, EmbeddingCollectionInterface, ModelConfig, TableSpec,
                              build_model, embedding_specs)
from tests.model.model_helpers import fake_schema, random_batch

SPECS = [TableSpec("a", 30, 4), TableSpec("b", 8, 4), TableSpec("c", 5, 4)]
SCHEMA = fake_schema([40, 25, 4], num_dense=2, num_domains=3)
CFG = ModelConfig(name="mlp", hidden_dims=[16, 8], embed_dim=4)


def _sharded(specs=SPECS):
    cfg = EmbeddingConfig(sharding="row_wise", overrides={specs[-1].name: "replicated"})
    return ShardedEmbeddingCollection(specs, plan_sharding(specs, 1, cfg), 0, 1, init_seed=1)


def _both(specs=SPECS):
    return [EmbeddingCollection(specs), _sharded(specs)]


def test_both_collections_implement_the_interface():
    for emb in _both():
        assert isinstance(emb, EmbeddingCollectionInterface)
        assert emb.specs == SPECS and emb.dim == 4 and emb.output_dim == 12
        assert emb(torch.zeros(5, 3, dtype=torch.int64)).shape == (5, 3, 4)


def test_interface_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        EmbeddingCollectionInterface(SPECS)

    class NoLookup(EmbeddingCollectionInterface):
        pass

    with pytest.raises(TypeError, match="_embed"):
        NoLookup(SPECS)


def test_shared_checks_give_the_same_errors():
    for emb in _both():
        with pytest.raises(ValueError) as err:
            emb(torch.zeros(5, 2, dtype=torch.int64))
        assert str(err.value) == "expected ids of shape (B, 3), got (5, 2)"
        with pytest.raises(ValueError, match=r"expected ids of shape \(B, 3\), got \(5,\)"):
            emb(torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="^EmbeddingCollection needs at least one table$"):
        EmbeddingCollection([])
    with pytest.raises(ValueError, match="^ShardedEmbeddingCollection needs at least one table$"):
        ShardedEmbeddingCollection([], plan_sharding([], 1, EmbeddingConfig()), 0, 1)
    mixed = [TableSpec("a", 30, 4), TableSpec("b", 8, 8)]
    with pytest.raises(ValueError, match=r"^EmbeddingCollection: all tables must share one dim .* \[4, 8\]"):
        EmbeddingCollection(mixed)
    with pytest.raises(ValueError, match=r"^ShardedEmbeddingCollection: all tables must share one dim"):
        _sharded(mixed)


def test_module_with_only_a_specs_attribute_is_refused():
    class LooksLikeOne(nn.Module):
        def __init__(self, specs):
            super().__init__()
            self.specs = specs

        def forward(self, ids):
            return torch.zeros(*ids.shape, 4)

    fake = LooksLikeOne(embedding_specs(CFG, SCHEMA))
    with pytest.raises(TypeError, match="must subclass EmbeddingCollectionInterface.*got LooksLikeOne"):
        build_model(CFG, SCHEMA, embedding=fake)
    with pytest.raises(TypeError, match="EmbeddingCollectionInterface"):
        build_model(CFG, SCHEMA, embedding=nn.Embedding(40, 4))


def test_sharded_collection_is_a_drop_in_for_the_plain_one():
    torch.manual_seed(0)
    plain = build_model(CFG, SCHEMA).eval()
    sharded = _sharded(embedding_specs(CFG, SCHEMA))
    sharded.load_full_state(plain.embedding.state_dict())
    model = build_model(CFG, SCHEMA, embedding=sharded).eval()
    model.load_state_dict(plain.state_dict(), strict=False)     # dense part; sharded rows are no parameters
    batch = random_batch(SCHEMA, 16)
    torch.testing.assert_close(model(*batch), plain(*batch), atol=0, rtol=0)


def test_plain_collection_keeps_its_state_names_and_initialisation():
    torch.manual_seed(3)
    emb = EmbeddingCollection(SPECS, init_std=0.05)
    torch.manual_seed(3)
    # the construction before the interface existed: every nn.Embedding, then normal_ on each
    expected = {f"tables.{s.name}.weight": nn.Embedding(s.num_rows, s.dim).weight for s in SPECS}
    for weight in expected.values():
        nn.init.normal_(weight, mean=0.0, std=0.05)
    assert list(emb.state_dict()) == list(expected)
    for key, weight in emb.state_dict().items():
        torch.testing.assert_close(weight, expected[key], atol=0, rtol=0)
    model = build_model(CFG, SCHEMA)
    assert [k for k in model.state_dict() if k.startswith("embedding.")] == \
        ["embedding.tables.s0.weight", "embedding.tables.s1.weight", "embedding.tables.s2.weight"]
