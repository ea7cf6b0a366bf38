"""paper vs reference behaviour: batch (in)dependence, batch of one, tower routing of BatchNorm."""
from __future__ import annotations

import pytest
import torch

from hamur_dist.model import BACKBONES, BASELINES, HamurConfig, ModelConfig, build_model
from tests.model.model_helpers import fake_schema, random_batch

SCHEMA = fake_schema([40, 25, 4], num_dense=2, num_domains=3)


def _cfg(name, mode="paper", hamur=True):
    return ModelConfig(name=name, hidden_dims=[16, 8], expert_dims=[8], tower_dims=[8], num_experts=2,
                       hamur=HamurConfig(enabled=hamur and name in BACKBONES, mode=mode, rank=3,
                                         bottleneck=4, hyper_hidden=[8], insert_after=[0, -1]))


def _trained(cfg, steps=3):
    """A model after a few training steps (so running statistics are not their initial values)."""
    torch.manual_seed(0)
    model = build_model(cfg, SCHEMA)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        sparse, dense, domain = random_batch(SCHEMA, 64, seed=step)
        model(sparse, dense, domain).square().mean().backward()
        opt.step()
        opt.zero_grad()
    return model


ALL = [(n, True) for n in BACKBONES] + [(n, False) for n in BACKBONES + BASELINES]


@pytest.mark.parametrize("name,hamur", ALL)
def test_paper_mode_eval_does_not_depend_on_the_rest_of_the_batch(name, hamur):
    model = _trained(_cfg(name, hamur=hamur)).eval()
    sparse, dense, domain = random_batch(SCHEMA, 32, seed=10)
    other_sparse, other_dense, other_domain = random_batch(SCHEMA, 32, seed=11)
    with torch.no_grad():
        full = model(sparse, dense, domain)
        mixed = model(torch.cat([sparse[:5], other_sparse[5:]]), torch.cat([dense[:5], other_dense[5:]]),
                      torch.cat([domain[:5], other_domain[5:]]))
        alone = torch.stack([model(sparse[i:i + 1], dense[i:i + 1], domain[i:i + 1])[0] for i in range(5)])
        shuffled = model(sparse.flip(0), dense.flip(0), domain.flip(0)).flip(0)
    torch.testing.assert_close(mixed[:5], full[:5], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone, full[:5], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shuffled, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,hamur", ALL)
def test_paper_mode_trains_on_a_batch_of_one(name, hamur):
    model = _trained(_cfg(name, hamur=hamur))
    sparse, dense, domain = random_batch(SCHEMA, 1, seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    out = model(sparse, dense, domain)
    out.sum().backward()
    assert out.shape == (1,) and torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # one row has no batch statistics: it is normalised with the running ones, left unchanged
    after = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", BACKBONES)
def test_reference_mode_prediction_depends_on_the_batch(name):
    """The reference code normalises adapter outputs with whole-batch statistics, also at evaluation."""
    model = _trained(_cfg(name, mode="reference")).eval()
    sparse, dense, domain = random_batch(SCHEMA, 32, seed=10)
    other_sparse, other_dense, other_domain = random_batch(SCHEMA, 32, seed=11)
    with torch.no_grad():
        full = model(sparse, dense, domain)
        mixed = model(torch.cat([sparse[:5], other_sparse[5:]]), torch.cat([dense[:5], other_dense[5:]]),
                      torch.cat([domain[:5], other_domain[5:]]))
    assert (mixed[:5] - full[:5]).abs().max() > 1e-4


@pytest.mark.parametrize("train", [True, False])
def test_reference_mode_rejects_a_batch_of_one_with_a_clear_error(train):
    model = _trained(_cfg("mlp", mode="reference")).train(train)
    sparse, dense, domain = random_batch(SCHEMA, 1)
    with pytest.raises(ValueError, match="batch of one"):
        model(sparse, dense, domain)
    assert torch.isfinite(model(*random_batch(SCHEMA, 2))).all()


def test_reference_mode_without_adapters_accepts_a_batch_of_one():
    model = _trained(_cfg("mlp", mode="reference", hamur=False)).eval()
    assert torch.isfinite(model(*random_batch(SCHEMA, 1))).all()


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_which_towers_see_a_batch(mode):
    """reference: every tower runs on every row (its BatchNorm statistics move for a domain absent
    from the batch); paper: a tower only sees its own domain's rows."""
    torch.manual_seed(0)
    model = build_model(_cfg("mlp", mode=mode), SCHEMA).train()
    stats = model.towers[2].layers[0][1].running_mean
    before = stats.clone()
    sparse, dense, _ = random_batch(SCHEMA, 16)
    model(sparse, dense, torch.tensor([0, 1] * 8))
    assert torch.equal(stats, before) == (mode == "paper")


def test_reference_mode_matches_an_explicit_run_all_towers_then_select():
    model = _trained(_cfg("mlp", mode="reference")).eval()
    sparse, dense, domain = random_batch(SCHEMA, 24, seed=5)
    with torch.no_grad():
        got = model(sparse, dense, domain)
        x = torch.cat([model.embedding(sparse).flatten(1), dense], 1)
        inst = model.hamur.instance_matrix(x)
        outs = [model._tower(d, x, inst) for d in range(3)]
        want = torch.stack([outs[int(d)][i] for i, d in enumerate(domain)])
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("mode", ["paper", "reference"])
@pytest.mark.parametrize("name,hamur", ALL)
def test_a_batch_of_one_domain_gives_every_parameter_a_gradient(name, hamur, mode):
    """What lets DDP run without searching the graph for unused parameters every step: a domain
    absent from the batch still puts its parameters in the graph (with zero gradients)."""
    torch.manual_seed(0)
    model = build_model(_cfg(name, mode=mode, hamur=hamur), SCHEMA).train()
    sparse, dense, _ = random_batch(SCHEMA, 8)
    model(sparse, dense, torch.zeros(8, dtype=torch.long)).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
