"""Routing: a row only touches its own domain's parameters; empty and tiny domains are fine."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from hamur_dist.model import BACKBONES, BASELINES, HamurConfig, ModelConfig, build_model, embedding_specs
from hamur_dist.model.embedding import EmbeddingCollection
from tests.model.model_helpers import fake_schema, random_batch

SCHEMA = fake_schema([40, 25, 4], num_dense=2, num_domains=4)
OWNED_LIST = re.compile(r"(?:^|\.)(?:towers|heads|gates|specific)\.(\d+)\.|(?:^|\.)cells\.\d+\.(\d+)\.|norms\.\d+\.norms\.(\d+)\.")
OWNED_ROWS = re.compile(r"(?:^|\.)(?:domain_weight|domain_bias|domain_gamma|domain_beta)$|^domain_embedding\.weight$")


def _cfg(name, hamur=True, schema_domains=4):
    return ModelConfig(name=name, hidden_dims=[16, 8], expert_dims=[8], tower_dims=[8], num_experts=2,
                       hamur=HamurConfig(enabled=hamur and name in BACKBONES, rank=3, bottleneck=4,
                                         hyper_hidden=[8], insert_after=[0, 1]))


def owned_slices(model, num_domains):
    """(name, domain, grad-of-that-domain's-part) for every domain-specific parameter."""
    for name, p in model.named_parameters():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        match = OWNED_LIST.search(name)
        if match:
            yield name, int(next(g for g in match.groups() if g is not None)), grad
        elif OWNED_ROWS.search(name):
            for d in range(num_domains):
                yield f"{name}[{d}]", d, grad[d]
        elif name.startswith("embedding.") and model.cfg.name == "per_domain":
            vocab = p.shape[0] // num_domains
            for d in range(num_domains):
                yield f"{name}[{d}]", d, grad[d * vocab:(d + 1) * vocab]


@pytest.mark.parametrize("name,hamur", [(n, True) for n in BACKBONES] + [(n, False) for n in BACKBONES + BASELINES])
def test_a_row_gets_gradient_only_into_its_own_domain(name, hamur):
    torch.manual_seed(0)
    model = build_model(_cfg(name, hamur), SCHEMA).eval()   # eval: no batch statistics couple rows
    sparse, dense, domain = random_batch(SCHEMA, 40, seed=1)
    row = int((domain == 2).nonzero()[0])
    model(sparse, dense, domain)[row].backward()
    owned = list(owned_slices(model, 4))
    assert owned, "no domain-specific parameters found"
    leaks = [n for n, d, g in owned if d != 2 and g.abs().max() > 0]
    assert not leaks, f"row of domain 2 reached other domains' parameters: {leaks}"
    assert any(g.abs().max() > 0 for n, d, g in owned if d == 2)


@pytest.mark.parametrize("name", BACKBONES)
def test_paper_mode_towers_and_adapters_are_private_in_training_too(name):
    torch.manual_seed(0)
    model = build_model(_cfg(name), SCHEMA).train()
    sparse, dense, _ = random_batch(SCHEMA, 40, seed=1)
    domain = torch.tensor([0, 1, 3] * 13 + [0])
    model(sparse, dense, domain)[domain == 1].sum().backward()
    if name == "mlp":   # elsewhere a shared layer's batch statistics follow a per-domain adapter
        assert not [n for n, d, g in owned_slices(model, 4) if d != 1 and g.abs().max() > 0]
    # a domain absent from the batch gets no gradient at all, in any backbone
    assert not [n for n, d, g in owned_slices(model, 4) if d == 2 and g.abs().max() > 0]


@pytest.mark.parametrize("name", BACKBONES + BASELINES)
def test_absent_and_single_row_domains_train_without_nan(name):
    schema = fake_schema([30, 7], num_dense=0, num_domains=12)
    torch.manual_seed(0)
    model = build_model(_cfg(name), schema)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sparse, dense, _ = random_batch(schema, 33)
    domain = torch.tensor([0] * 20 + [5] * 12 + [11])       # 9 domains absent, one with a single row
    for _ in range(3):
        out = model(sparse, dense, domain)
        torch.nn.functional.binary_cross_entropy_with_logits(out, torch.rand(33).round()).backward()
        assert torch.isfinite(out).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        opt.zero_grad()
    model.eval()
    assert torch.isfinite(model(*random_batch(schema, 50))).all()


def test_many_domains():
    schema = fake_schema([30, 7, 100], num_dense=1, num_domains=100)
    model = build_model(_cfg("mlp"), schema)
    out = model(*random_batch(schema, 256))
    out.sum().backward()
    assert out.shape == (256,) and torch.isfinite(out).all()


@pytest.mark.parametrize("bad", [-1, 4])
def test_domain_out_of_range_is_a_clear_error(bad):
    model = build_model(_cfg("mlp"), SCHEMA)
    sparse, dense, domain = random_batch(SCHEMA, 8)
    domain[3] = bad
    with pytest.raises(ValueError, match="domain id"):
        model(sparse, dense, domain)


def test_input_shapes_are_checked():
    model = build_model(_cfg("mlp"), SCHEMA)
    sparse, dense, domain = random_batch(SCHEMA, 8)
    with pytest.raises(ValueError, match=r"sparse must have shape \(B, 3\)"):
        model(sparse[:, :2], dense, domain)
    with pytest.raises(ValueError, match="dense must have shape"):
        model(sparse, dense[:, :1], domain)
    with pytest.raises(ValueError, match="domain must have shape"):
        model(sparse, dense, domain[:4])


def test_prebuilt_embedding_module_is_used_and_checked():
    cfg = _cfg("per_domain")
    specs = embedding_specs(cfg, SCHEMA)
    assert [s.num_rows for s in specs] == [40 * 4, 25 * 4, 4 * 4]
    table = EmbeddingCollection(specs)
    model = build_model(cfg, SCHEMA, embedding=table)
    assert model.embedding is table
    assert torch.isfinite(model(*random_batch(SCHEMA, 8))).all()
    with pytest.raises(ValueError, match="do not match"):
        build_model(_cfg("mlp"), SCHEMA, embedding=table)


def test_per_domain_rejects_ids_that_would_read_another_domains_rows():
    model = build_model(_cfg("per_domain"), SCHEMA)
    sparse, dense, domain = random_batch(SCHEMA, 8)
    sparse[0, 1] = 25
    with pytest.raises(IndexError, match="s1"):
        model(sparse, dense, domain)


def test_model_package_never_imports_ray():
    code = ("import sys, hamur_dist.model, hamur_dist.model.build; "
            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
