"""Every model learns: a few hundred steps on 80k real MovieLens-1M rows, AUC on held-out rows."""
from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from hamur_dist.model import BACKBONES, BASELINES, HamurConfig, ModelConfig, build_model, count_parameters
from tests.model.model_helpers import fit, predict

CASES = ([(n, False, "paper") for n in BACKBONES] + [(n, True, "paper") for n in BACKBONES]
         + [("mlp", True, "reference"), ("wide_deep", True, "reference")]
         + [(n, False, "paper") for n in BASELINES])


@pytest.mark.parametrize("name,hamur,mode", CASES, ids=lambda v: str(v))
def test_model_learns_movielens(ml1m_small, name, hamur, mode):
    torch.manual_seed(0)
    # Smaller than the reference configs (those are checked in test_model_params) to stay fast.
    cfg = ModelConfig(name=name, embed_init_std=1e-4, hidden_dims=[64, 32], expert_dims=[32], tower_dims=[16],
                      num_experts=2, hamur=HamurConfig(enabled=hamur, mode=mode, rank=8, bottleneck=8,
                                                       hyper_hidden=[32], insert_after=[-1]))
    model = build_model(cfg, ml1m_small.schema)
    losses = fit(model, ml1m_small, steps=200, batch=1024, lr=5e-3)
    scores = predict(model, ml1m_small.test)
    auc = roc_auc_score(ml1m_small.test.label.numpy(), scores.numpy())
    print(f"{name} hamur={hamur} {mode}: {count_parameters(model):,} parameters, test AUC {auc:.4f}, "
          f"loss {sum(losses[:10]) / 10:.3f} -> {sum(losses[-10:]) / 10:.3f}")
    assert torch.isfinite(scores).all()
    assert auc > 0.70
