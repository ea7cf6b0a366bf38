"""Parameter counts of the reference configs, against the architecture written out as formulas."""
from __future__ import annotations

from pathlib import Path

import pytest

from hamur_dist.config import load_experiment
from hamur_dist.model import build_model, count_parameters
from tests.model.model_helpers import fake_schema

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "models"
# Vocabularies of the full datasets (ids from 1, 0 = unknown); the Ali-CCP ones are stand-ins.
ML1M = fake_schema([6040 + 1, 3706 + 1, 2 + 1, 21 + 1, 3439 + 1, 18 + 1, 3 + 1], num_dense=1, num_domains=3)
ALICCP = fake_schema([1000 + 37 * i for i in range(24)], num_dense=8, num_domains=3)


def linear(i, o):
    return i * o + o


def hidden(i, dims):
    """Linear + BatchNorm (weight, bias) per layer."""
    total = 0
    for o in dims:
        total += linear(i, o) + 2 * o
        i = o
    return total


def adapter(m, s, k):
    """U1 (m,K) V1 (K,s) b1, U2 (s,K) V2 (K,m) b2, DomainNorm weight and bias."""
    return m * k + k * s + s + s * k + k * m + m + 2 * m


def expected(cfg, schema):
    e, f, dn, nd = cfg.embed_dim, len(schema.sparse), len(schema.dense), schema.num_domains
    x = f * e + dn
    ref = cfg.hamur.mode == "reference"
    heads = 1 if ref else nd
    dims = cfg.hidden_dims
    total = e * sum(s.vocab_size for s in schema.sparse)
    if cfg.name == "mlp":
        total += nd * (hidden(x, dims) + linear(dims[-1], 1))
    elif cfg.name == "wide_deep":
        total += linear(dn, 1) + hidden(f * e, dims) + heads * linear(dims[-1], 1)
    elif cfg.name == "dcn":
        total += cfg.cross_layers * 2 * x + hidden(x, dims) + heads * linear(x + dims[-1], 1)
    h = cfg.hamur
    if h.enabled:
        k2 = h.rank ** 2
        total += hidden(x, h.hyper_hidden) + linear(h.hyper_hidden[-1], k2) + (2 * k2 if ref else 0)
        total += (1 if ref else nd) * sum(adapter(dims[i], h.bottleneck, h.rank) for i in h.insert_after)
    return total


@pytest.mark.parametrize("mode", ["reference", "paper"])
@pytest.mark.parametrize("path", sorted(CONFIGS.glob("ml1m/*.yaml")) + sorted(CONFIGS.glob("aliccp/*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_reference_config_parameter_count(path, mode):
    cfg = load_experiment(path, [f"model.hamur.mode={mode}"]).model
    schema = ML1M if path.parent.name == "ml1m" else ALICCP
    got = count_parameters(build_model(cfg, schema))
    emb = cfg.embed_dim * sum(s.vocab_size for s in schema.sparse)
    print(f"{path.parent.name}/{path.stem} [{mode}]: {got:,} parameters ({got - emb:,} without embeddings)")
    assert got == expected(cfg, schema)


def test_the_reference_configs_hold_the_reference_settings():
    mlp = load_experiment(CONFIGS / "aliccp" / "mlp_hamur.yaml").model
    assert (mlp.hidden_dims, mlp.hamur.rank, mlp.hamur.insert_after) == ([1024, 512, 512, 256, 256, 64, 64], 65, [5, 6])
    assert mlp.embed_init_std == 1e-4 and mlp.hamur.mode == "reference"
    wd = load_experiment(CONFIGS / "ml1m" / "wide_deep_hamur.yaml").model
    assert (wd.hidden_dims, wd.dropout, wd.hamur.rank, wd.hamur.hyper_hidden) == ([256, 128], 0.2, 45, [128])
    dcn = load_experiment(CONFIGS / "aliccp" / "dcn_hamur.yaml").model
    assert (dcn.cross_layers, dcn.hamur.rank, dcn.hamur.bottleneck) == (7, 25, 32)
