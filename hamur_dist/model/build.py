"""Build any model of the library from its config section and the dataset's feature schema."""
from __future__ import annotations

from torch import nn

from hamur_dist.data.manifest import FeatureSchema
from hamur_dist.model.backbones import DCN, DCNv2, MLPTowers, SharedBottom, WideDeep
from hamur_dist.model.baselines import MMoE, PLE, PerDomain, Star
from hamur_dist.model.base import CTRModel
from hamur_dist.model.config import ModelConfig

MODELS: dict[str, type[CTRModel]] = {
    "mlp": MLPTowers,
    "shared_bottom": SharedBottom,
    "wide_deep": WideDeep,
    "dcn": DCN,
    "dcn_v2": DCNv2,
    "per_domain": PerDomain,
    "star": Star,
    "mmoe": MMoE,
    "ple": PLE,
}


def build_model(cfg: ModelConfig, schema: FeatureSchema, embedding: nn.Module | None = None) -> CTRModel:
    """The model ``cfg.name`` for ``schema``. ``embedding``: a pre-built module with the tables of
    ``embedding_specs(cfg, schema)`` (e.g. sharded across workers); default: plain local tables."""
    cfg.hamur.validate()
    cfg.validate()
    return MODELS[cfg.name](cfg, schema, embedding)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable values (each shared parameter counted once; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
