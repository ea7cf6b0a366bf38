"""The model library: plain PyTorch (never imports Ray).

    model = build_model(cfg.model, manifest.schema)       # -> CTRModel
    logits = model(sparse, dense, domain)                  # (B, F) int64, (B, Dn) float, (B,) int64 -> (B,)
"""
from hamur_dist.model.base import CTRModel, embedding_specs
from hamur_dist.model.build import MODELS, build_model, count_parameters
from hamur_dist.model.config import BACKBONES, BASELINES, HamurConfig, ModelConfig

__all__ = ["BACKBONES", "BASELINES", "CTRModel", "HamurConfig", "MODELS", "ModelConfig",
           "build_model", "count_parameters", "embedding_specs"]
