"""The adapter cell: factored form equals the materialised one; mode-specific construction."""
from __future__ import annotations

import pytest
import torch

from hamur_dist.model.config import HamurConfig
from hamur_dist.model.hamur import (AdapterCell, HamurAdapters, HyperNetwork, factored_projection,
                                    materialised_projection)
from hamur_dist.model.layers import BatchOnlyNorm, GroupBatchNorm


def _explicit(h, u, inst, v):
    """Per instance: W_b = U @ I_b @ V built with a Python loop, then h_b @ W_b."""
    return torch.stack([h[b] @ (u @ inst[b] @ v) for b in range(h.shape[0])])


@pytest.mark.parametrize("batch,m,k,n", [(7, 13, 5, 3), (16, 64, 35, 32), (5, 32, 65, 9), (1, 4, 2, 11)])
def test_factored_projection_equals_materialised(batch, m, k, n):
    gen = torch.Generator().manual_seed(batch * 1000 + m)
    h, u = torch.randn(batch, m, generator=gen, dtype=torch.float64), torch.randn(m, k, generator=gen, dtype=torch.float64)
    inst = torch.randn(batch, k, k, generator=gen, dtype=torch.float64)
    v = torch.randn(k, n, generator=gen, dtype=torch.float64)
    fact = factored_projection(h, u, inst, v)
    assert fact.shape == (batch, n)
    for other in (materialised_projection(h, u, inst, v), _explicit(h, u, inst, v)):
        rel = (fact - other).norm() / other.norm()
        assert rel < 1e-10, rel


def _cell(m, s, k, reference: bool, **kw) -> AdapterCell:
    """The cell each mode builds by default."""
    return AdapterCell(m, s, k, norm="whole_batch" if reference else "batch",
                       init="ones" if reference else "normal", **kw)


@pytest.mark.parametrize("reference", [False, True])
def test_adapter_cell_factored_equals_materialised_cell(reference):
    torch.manual_seed(0)
    m, s, k, batch = 24, 7, 11, 9
    fact = _cell(m, s, k, reference).double()
    naive = _cell(m, s, k, reference, materialise=True).double()
    naive.load_state_dict(fact.state_dict())
    with torch.no_grad():   # random factors (reference ones would make the check weak)
        for p in fact.parameters():
            p.normal_(std=0.3)
    naive.load_state_dict(fact.state_dict())
    h, inst = torch.randn(batch, m, dtype=torch.float64), torch.randn(batch, k, k, dtype=torch.float64)
    a, b = fact(h, inst), naive(h, inst)
    assert ((a - b).norm() / b.norm()) < 1e-10
    # the residual: the cell adds a normalised bottleneck output to its input
    assert a.shape == h.shape and not torch.allclose(a, h)


def test_modes_build_the_documented_cells():
    paper = HamurAdapters(HamurConfig(enabled=True), 8, [16], 2).cells["0"][0]
    ref = HamurAdapters(HamurConfig(enabled=True, mode="reference"), 8, [16], 2).cells["0"][0]
    assert all(torch.equal(p, torch.ones_like(p)) for p in (ref.u1, ref.v1, ref.u2, ref.v2))
    assert isinstance(ref.norm, BatchOnlyNorm) and isinstance(paper.norm, GroupBatchNorm)
    assert paper.norm.track_running_stats
    assert not torch.equal(paper.u1, torch.ones_like(paper.u1))


def test_reference_hypernetwork_ends_in_batchnorm_relu():
    torch.manual_seed(0)
    ref = HamurAdapters(HamurConfig(enabled=True, mode="reference", hyper_hidden=[8], rank=4), 10, [6], 2).hyper
    paper = HamurAdapters(HamurConfig(enabled=True, hyper_hidden=[8], rank=4), 10, [6], 2).hyper
    x = torch.randn(32, 10)
    assert ref(x).shape == (32, 4, 4) and (ref(x) >= 0).all()
    assert (paper(x) < 0).any()


def test_adapters_one_cell_per_domain_in_paper_mode_shared_in_reference():
    widths, domains = [32, 16, 8], 5
    paper = HamurAdapters(HamurConfig(enabled=True, insert_after=[0, -1]), 20, widths, domains)
    ref = HamurAdapters(HamurConfig(enabled=True, mode="reference", insert_after=[-1, 0]), 20, widths, domains)
    assert paper.slots == ref.slots == [0, 2]
    assert [len(paper.cells[str(i)]) for i in paper.slots] == [domains, domains]
    assert [len(ref.cells[str(i)]) for i in ref.slots] == [1, 1]


def test_insert_after_out_of_range_names_the_key():
    with pytest.raises(ValueError, match="model.hamur.insert_after"):
        HamurAdapters(HamurConfig(enabled=True, insert_after=[3]), 20, [32, 16], 3)


def test_batch_only_norm_uses_the_unbiased_batch_variance():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])
    norm = BatchOnlyNorm(2, eps=0.0)
    expected = (x - x.mean(0)) / x.std(0, unbiased=True)
    assert torch.allclose(norm(x), expected)
    with pytest.raises(ValueError, match="at least 2"):
        norm(x[:1])
