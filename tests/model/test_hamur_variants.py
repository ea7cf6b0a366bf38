"""The HAMUR settings an ablation varies (model.hamur.*): each builds what it says and trains."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hamur_dist.config import load_experiment
from hamur_dist.config_loader import ConfigError
from hamur_dist.model import HamurConfig, ModelConfig, build_model
from hamur_dist.model.domain_parts import domain_parts
from hamur_dist.model.hamur import AdapterCell, HamurAdapters
from hamur_dist.model.layers import BatchOnlyNorm, GroupBatchNorm
from tests.model.model_helpers import fake_schema, random_batch

SCHEMA = fake_schema([40, 25, 4], num_dense=2, num_domains=3)
HOSTS = ["mlp", "shared_bottom", "wide_deep", "dcn", "star"]


def _model(name="mlp", **hamur):
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, hidden_dims=[16, 8], tower_dims=[8],
                      hamur=HamurConfig(enabled=True, rank=3, bottleneck=4, hyper_hidden=[8],
                                        insert_after=[0, -1], **hamur))
    return build_model(cfg, SCHEMA)


def _step_moves(model: nn.Module, prefix: str) -> bool:
    """One training step: did every parameter under ``prefix`` get a nonzero gradient?"""
    sparse, dense, domain = random_batch(SCHEMA, 64, seed=1)
    model.train()
    model(sparse, dense, domain).square().mean().backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
    return bool(grads) and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", HOSTS)
def test_hyper_network_reading_the_hidden_layer_is_one_network_per_slot_and_learns(name):
    model = _model(name, hyper_input="hidden")
    hamur = model.hamur
    assert isinstance(hamur.hyper, nn.ModuleDict) and sorted(hamur.hyper) == [str(s) for s in hamur.slots]
    assert len(hamur.slots) == 2
    # each slot's hyper-network reads that hidden layer's width
    widths = {k: net.net[0].in_features for k, net in hamur.hyper.items()}
    assert widths == {str(s): model.hidden_widths[s] for s in hamur.slots}
    assert hamur.instance_matrix(torch.randn(5, model.input_dim)) is None
    assert _step_moves(model, "hamur.hyper")
    model.eval()
    sparse, dense, domain = random_batch(SCHEMA, 7, seed=2)
    with torch.no_grad():
        assert torch.isfinite(model(sparse, dense, domain)).all()


@pytest.mark.parametrize("output,low,high", [("tanh", -1, 1), ("sigmoid", 0, 1), ("relu", 0, None)])
def test_hyper_output_bounds_the_instance_matrix(output, low, high):
    adapters = HamurAdapters(HamurConfig(enabled=True, rank=4, hyper_hidden=[8], hyper_output=output), 10, [6], 2)
    inst = adapters.instance_matrix(torch.randn(256, 10) * 10)
    assert (inst >= low).all() and (high is None or (inst <= high).all())
    linear = HamurAdapters(HamurConfig(enabled=True, rank=4, hyper_hidden=[]), 10, [6], 2)
    assert isinstance(linear.hyper.net[-1], nn.Linear) and len(linear.hyper.net) == 1   # no hidden layer


def test_cells_override_the_modes_choice_and_domain_parts_follow():
    shared = _model(cells="shared")
    assert [len(c) for c in shared.hamur.cells.values()] == [1, 1]
    assert not any(name.startswith("hamur") for name in domain_parts(shared).lists)
    per_domain = _model(mode="reference", cells="per_domain")
    assert [len(c) for c in per_domain.hamur.cells.values()] == [3, 3]
    assert "hamur.cells.0" in domain_parts(per_domain).lists
    star = _model("star")
    assert {"hamur.cells.0", "hamur.cells.1"} <= set(domain_parts(star).lists)


@pytest.mark.parametrize("norm,cls", [("batch", GroupBatchNorm), ("layer", nn.LayerNorm), ("none", nn.Identity)])
def test_adapter_norm_choices_and_a_zero_gain_start_as_identity(norm, cls):
    torch.manual_seed(0)
    cell = AdapterCell(12, 4, 3, norm=norm, norm_gain=0.0)
    assert isinstance(cell.norm, cls)
    h, inst = torch.randn(16, 12), torch.randn(16, 3, 3)
    torch.testing.assert_close(cell(h, inst), h)          # out = h + 0
    moved = AdapterCell(12, 4, 3, norm=norm)
    assert not torch.allclose(moved(h, inst), h)


def test_reference_norm_and_ones_init_can_be_chosen_in_either_direction():
    ref_norm = _model(mode="reference", adapter_norm="batch", factor_init="normal").hamur.cells["0"][0]
    assert isinstance(ref_norm.norm, GroupBatchNorm) and not torch.equal(ref_norm.u1, torch.ones_like(ref_norm.u1))
    ones = _model(factor_init="ones").hamur.cells["0"][0]
    assert torch.equal(ones.u1, torch.ones_like(ones.u1)) and isinstance(ones.norm, GroupBatchNorm)
    assert isinstance(_model(mode="reference").hamur.cells["0"][0].norm, BatchOnlyNorm)


def test_adapter_dropout_acts_in_training_only():
    torch.manual_seed(0)
    cell = AdapterCell(12, 6, 3, dropout=0.5)
    h, inst = torch.randn(32, 12), torch.randn(32, 3, 3)
    cell.train()
    assert not torch.allclose(cell(h, inst), cell(h, inst))
    cell.eval()
    torch.testing.assert_close(cell(h, inst), cell(h, inst))
    assert isinstance(AdapterCell(12, 6, 3).dropout, nn.Identity)


def test_star_with_adapters_routes_and_trains():
    model = _model("star")
    assert _step_moves(model, "hamur.cells.1")       # every domain's cell is in the step
    plain = build_model(ModelConfig(name="star", hidden_dims=[16, 8]), SCHEMA)
    assert not hasattr(plain, "hamur") or plain.hamur is None


@pytest.mark.parametrize("override,message", [
    ("model.hamur.adapter_norm=whole_batch", "whole_batch needs mode reference"),
    ("model.hamur.adapter_dropout=1.0", "adapter_dropout"),
    ("model.hamur.lr_scale=0", "lr_scale"),
    ("model.hamur.weight_decay_scale=-1", "weight_decay_scale"),
    ("model.hamur.norm_gain=-0.5", "norm_gain"),
    ("model.hamur.hyper_output=softmax", "hyper_output"),
    ("model.hamur.cells=global", "cells"),
])
def test_bad_variant_values_are_refused_when_the_config_is_loaded(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(None, ["model.hamur.enabled=true", override])


def test_adapters_plug_into_star_in_paper_mode_only_and_into_no_other_baseline():
    assert load_experiment(None, ["model.name=star", "model.hamur.enabled=true"]).model.name == "star"
    with pytest.raises(ConfigError, match="need mode paper"):
        load_experiment(None, ["model.name=star", "model.hamur.enabled=true", "model.hamur.mode=reference"])
    with pytest.raises(ConfigError, match="not into the baseline 'mmoe'"):
        load_experiment(None, ["model.name=mmoe", "model.hamur.enabled=true"])
