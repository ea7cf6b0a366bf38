"""Model config section (plain dataclasses; no Ray, no torch)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hamur_dist.config_loader import ConfigError

BACKBONES = ("mlp", "wide_deep", "dcn", "dcn_v2", "shared_bottom")
BASELINES = ("per_domain", "star", "mmoe", "ple")


@dataclass
class HamurConfig:
    enabled: bool = False
    mode: Literal["paper", "reference"] = "paper"
    rank: int = 32                                        # K: the hyper-network emits a K x K matrix
    hyper_hidden: list[int] = field(default_factory=lambda: [64])
    bottleneck: int = 32                                  # s
    insert_after: list[int] = field(default_factory=lambda: [-1])   # hidden-layer indices (0-based, -1 = last)

    def validate(self) -> None:
        if self.rank < 1 or self.bottleneck < 1:
            raise ConfigError("model.hamur.rank and model.hamur.bottleneck must be >= 1")


@dataclass
class ModelConfig:
    name: str = "mlp"                    # one of BACKBONES or BASELINES
    embed_dim: int = 16
    embed_init_std: float = 1e-2
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])   # MLP towers / deep part
    dropout: float = 0.0
    cross_layers: int = 2                # DCN / DCN-v2
    num_experts: int = 4                 # MMoE / PLE (shared experts for PLE)
    specific_experts: int = 1            # PLE: experts per domain
    expert_dims: list[int] = field(default_factory=lambda: [256, 128])
    tower_dims: list[int] = field(default_factory=lambda: [64])
    hamur: HamurConfig = field(default_factory=HamurConfig)

    def validate(self) -> None:
        if self.name not in BACKBONES + BASELINES:
            raise ConfigError(f"model.name: '{self.name}' is not one of {list(BACKBONES + BASELINES)}")
        if self.embed_dim < 1:
            raise ConfigError("model.embed_dim must be >= 1")
