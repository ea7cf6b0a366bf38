"""A model over a schema with a multi-valued (multi_hot) sparse feature: ``sparse`` has max_len slot
columns for it (-1 = padding), the embedding pools them, the rest of the model is unchanged."""
from __future__ import annotations

import pytest
import torch

from hamur_dist.config import EmbeddingConfig, load_experiment
from hamur_dist.config_loader import ConfigError
from hamur_dist.data.manifest import DenseFeature, FeatureSchema, SparseFeature
from hamur_dist.embedding import ShardedEmbeddingCollection, plan_sharding
from hamur_dist.infer.export import check_against_eager, example_inputs, trace
from hamur_dist.model import ModelConfig, TableSpec, build_model, embedding_specs
from hamur_dist.model.config import HamurConfig

SCHEMA = FeatureSchema(sparse=[SparseFeature("user", 30), SparseFeature("tags", 20, multi_hot=True, max_len=3),
                               SparseFeature("cat", 5)],
                       dense=[DenseFeature("d0"), DenseFeature("d1")], num_domains=3)
HAMUR = HamurConfig(enabled=True, rank=4, hyper_hidden=[8], bottleneck=4)


def config(**kw) -> ModelConfig:
    return ModelConfig(name="mlp", hidden_dims=[16, 8], embed_dim=4, hamur=HAMUR, **kw)


def batch(rows: int = 12, seed: int = 0):
    """Tag ids in [1, 20) (row 0 of the table is read only for pads); row 0 has no tags, row 1 all three."""
    sparse, dense, domain = example_inputs(SCHEMA, rows, seed)
    tags = sparse[:, 1:4]
    tags[tags == 0] = 1
    tags[0], tags[1] = torch.tensor([-1, -1, -1]), torch.tensor([4, 4, 7])
    return sparse, dense, domain


def test_specs_carry_max_len_and_the_configured_pooling():
    assert embedding_specs(config(multi_hot_pooling="sum"), SCHEMA) == [
        TableSpec("user", 30, 4), TableSpec("tags", 20, 4, max_len=3, pooling="sum", multi_hot=True),
        TableSpec("cat", 5, 4)]


def test_per_domain_tables_offset_ids_but_not_pads():
    """PerDomain reads feature f of domain d at rows d * vocab_f + id; a pad must stay a pad."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="per_domain", hidden_dims=[8], embed_dim=4), SCHEMA).eval()
    sparse, dense, _ = batch()
    domain = torch.full((len(sparse),), 2)
    table = model.embedding.tables["tags"].weight
    with torch.no_grad():
        looked_up = model.lookup(sparse, domain).view(len(sparse), 3, 4)[:, 1]
    assert torch.equal(looked_up[0], torch.zeros(4))                      # no tags: pads only
    assert torch.allclose(looked_up[1], (2 * table[40 + 4] + table[40 + 7]) / 3)   # domain 2's rows
    model.train()(sparse, dense, domain).sum().backward()
    assert table.grad[:40].abs().sum() == 0                                # other domains' rows untouched
    with pytest.raises(IndexError, match="'tags' has an id outside"):
        bad = sparse.clone()
        bad[2, 2] = -2
        model(bad, dense, domain)


def test_a_multi_hot_feature_of_one_slot_may_be_empty():
    """max_len 1 (no row had two values) still allows an empty list: its slot is a pad, not an error."""
    schema = FeatureSchema(sparse=[SparseFeature("user", 30), SparseFeature("tags", 20, multi_hot=True, max_len=1)],
                           dense=[DenseFeature("d0")], num_domains=2)
    model = build_model(ModelConfig(name="mlp", hidden_dims=[8], embed_dim=4), schema).eval()
    sparse = torch.tensor([[3, -1], [4, 5]])
    with torch.no_grad():
        emb = model.embedding(sparse)
    assert torch.equal(emb[0, 1], torch.zeros(4))
    assert torch.equal(emb[1, 1], model.embedding.tables["tags"].weight[5])
    with pytest.raises(ValueError, match="table 'user'"):
        model.embedding(torch.tensor([[-1, 2]]))          # a pad in a single-valued column is an error


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_forward_and_backward_with_pads(pooling):
    torch.manual_seed(0)
    model = build_model(config(multi_hot_pooling=pooling), SCHEMA).train()
    assert model.input_dim == 3 * 4 + 2       # one vector per feature, not per slot
    sparse, dense, domain = batch()
    assert sparse.shape == (12, 5) and (sparse[:, 1:4] == -1).any()
    out = model(sparse, dense, domain)
    assert out.shape == (12,) and torch.isfinite(out).all()
    out.sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    tags = model.embedding.tables["tags"].weight.grad
    assert not tags[0].any() and tags[4].any()        # pads: no gradient
    with pytest.raises(ValueError, match=r"sparse must have shape \(B, 5\) .*max_len columns"):
        model(sparse[:, :3], dense, domain)


def test_slot_order_and_pad_positions_do_not_matter():
    torch.manual_seed(0)
    model = build_model(config(), SCHEMA).eval()
    sparse, dense, domain = batch()
    shuffled = sparse.clone()
    shuffled[:, 1:4] = sparse[:, 1:4].flip(1)     # pads first, ids reversed
    torch.testing.assert_close(model(shuffled, dense, domain), model(sparse, dense, domain), atol=1e-6, rtol=0)


def test_sharded_collection_is_a_drop_in_with_multi_valued_tables():
    cfg = config(multi_hot_pooling="sum")
    torch.manual_seed(0)
    plain = build_model(cfg, SCHEMA).eval()
    specs = embedding_specs(cfg, SCHEMA)
    plan = plan_sharding(specs, 1, EmbeddingConfig(sharding="row_wise", overrides={"cat": "replicated"}))
    sharded = ShardedEmbeddingCollection(specs, plan, 0, 1)
    sharded.load_full_state(plain.embedding.state_dict())
    model = build_model(cfg, SCHEMA, embedding=sharded).eval()
    model.load_state_dict(plain.state_dict(), strict=False)
    inputs = batch()
    torch.testing.assert_close(model(*inputs), plain(*inputs), atol=1e-6, rtol=0)


def test_export_traces_the_pooling():
    torch.manual_seed(0)
    model = build_model(config(), SCHEMA).eval()
    inputs = example_inputs(SCHEMA, 9)
    assert inputs[0].shape == (9, 5) and (inputs[0][:, 1:4] == -1).any()
    program = trace(model)
    assert check_against_eager(program, model) <= 1e-5
    bad = inputs[0].clone()
    bad[0, 2] = -2
    with pytest.raises(RuntimeError, match="outside its table"):    # an assertion in the graph
        program.module()(bad, *inputs[1:])


def test_the_pooling_is_checked_at_config_load(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  name: mlp\n  multi_hot_pooling: sum\n")
    assert load_experiment(path).model.multi_hot_pooling == "sum"
    path.write_text("model:\n  name: mlp\n  multi_hot_pooling: max\n")
    with pytest.raises(ValueError, match=r"model.multi_hot_pooling.*'max' is not one of \['mean', 'sum'\]"):
        load_experiment(path)
    bad = config()
    bad.multi_hot_pooling = "max"
    with pytest.raises(ConfigError, match="model.multi_hot_pooling"):
        bad.validate()
