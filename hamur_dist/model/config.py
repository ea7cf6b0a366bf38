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
    # paper: per-domain adapters and norm (running statistics), each sample routed through its own
    #        domain's tower only. reference: the reference code's behaviour (shared factors initialised
    #        to ones, whole-batch norm without running statistics, every tower run on every sample).
    #        The mode also picks the routing of the plain backbones; baselines always route.
    mode: Literal["paper", "reference"] = "paper"
    rank: int = 32                                        # K: the hyper-network emits a K x K matrix
    hyper_hidden: list[int] = field(default_factory=lambda: [64])
    bottleneck: int = 32                                  # s
    insert_after: list[int] = field(default_factory=lambda: [-1])   # hidden-layer indices (0-based, -1 = last)
    # What the hyper-network reads: the instance vector (the method) or each adapter's own input.
    hyper_input: Literal["embeddings", "hidden"] = "embeddings"
    # The choices below default (null) to the mode's: paper | reference.
    hyper_output: Literal["linear", "relu", "tanh", "sigmoid", "batchnorm_relu"] | None = None   # linear | batchnorm_relu
    cells: Literal["per_domain", "shared"] | None = None                     # per_domain | shared
    adapter_norm: Literal["batch", "whole_batch", "layer", "none"] | None = None   # batch | whole_batch
    factor_init: Literal["normal", "ones"] | None = None                     # normal | ones
    norm_gain: float = 1.0            # initial scale of the adapter norm (near 0: cells start as identity)
    adapter_dropout: float = 0.0      # on the bottleneck, between the down- and up-projection
    # The hyper-network's and adapter cells' learning rate and weight decay: train.lr and
    # train.weight_decay times these (their own optimiser parameter group when not 1).
    lr_scale: float = 1.0
    weight_decay_scale: float = 1.0
    # Benchmarks and tests only: build the B x m x s per-instance weights like the reference code
    # instead of the factored ((h U) I) V product. Same numbers, ~30x the work and memory.
    naive_materialise: bool = False

    def resolved(self) -> dict[str, str]:
        """The mode-dependent choices, with the mode's default wherever one is left null."""
        ref = self.mode == "reference"
        defaults = {"hyper_output": "batchnorm_relu" if ref else "linear", "cells": "shared" if ref else "per_domain",
                    "adapter_norm": "whole_batch" if ref else "batch", "factor_init": "ones" if ref else "normal"}
        return {k: getattr(self, k) or v for k, v in defaults.items()}

    def validate(self) -> None:
        if not 0.0 <= self.adapter_dropout < 1.0:
            raise ConfigError(f"model.hamur.adapter_dropout must be in [0, 1), got {self.adapter_dropout}")
        if self.lr_scale <= 0 or self.weight_decay_scale < 0:
            raise ConfigError(f"model.hamur.lr_scale must be > 0 and weight_decay_scale >= 0, got "
                              f"{self.lr_scale} and {self.weight_decay_scale}")
        if self.norm_gain < 0:
            raise ConfigError(f"model.hamur.norm_gain must be >= 0, got {self.norm_gain}")
        if self.resolved()["adapter_norm"] == "whole_batch" and self.mode != "reference":
            raise ConfigError("model.hamur.adapter_norm: whole_batch needs mode reference (paper mode routes each "
                              "domain's rows through its own cells, and a domain's slice can hold one row)")
        if self.rank < 1 or self.bottleneck < 1:
            raise ConfigError("model.hamur.rank and model.hamur.bottleneck must be >= 1")
        if any(d < 1 for d in self.hyper_hidden):
            raise ConfigError(f"model.hamur.hyper_hidden: every width must be >= 1, got {self.hyper_hidden}")
        if self.enabled and not self.insert_after:
            raise ConfigError("model.hamur.insert_after: name at least one hidden layer when hamur is enabled")


@dataclass
class ModelConfig:
    name: str = "mlp"                    # one of BACKBONES or BASELINES
    embed_dim: int = 16
    embed_init_std: float = 1e-2
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])   # MLP towers / deep part / bottom
    dropout: float = 0.0
    cross_layers: int = 2                # DCN / DCN-v2
    num_experts: int = 4                 # MMoE / PLE (shared experts for PLE)
    specific_experts: int = 1            # PLE: experts per domain
    ple_levels: int = 2                  # PLE: extraction levels (1 = CGC)
    expert_dims: list[int] = field(default_factory=lambda: [256, 128])
    tower_dims: list[int] = field(default_factory=lambda: [64])   # shared-bottom/MMoE/PLE towers, STAR aux net
    # Wide & Deep: the wide (linear) part reads the dense features and the deep part the sparse
    # embeddings, as in the reference code; "all" feeds the whole instance vector to both.
    wide_inputs: Literal["dense", "all"] = "dense"
    multi_hot_pooling: Literal["mean", "sum"] = "mean"   # how a multi-valued feature's id embeddings are pooled
    hamur: HamurConfig = field(default_factory=HamurConfig)

    def validate(self) -> None:
        if self.name not in BACKBONES + BASELINES:
            raise ConfigError(f"model.name: '{self.name}' is not one of {list(BACKBONES + BASELINES)}")
        if self.embed_dim < 1:
            raise ConfigError("model.embed_dim must be >= 1")
        if self.multi_hot_pooling not in ("mean", "sum"):
            raise ConfigError(f"model.multi_hot_pooling: {self.multi_hot_pooling!r} is not one of ['mean', 'sum']")
        if self.embed_init_std <= 0:
            raise ConfigError("model.embed_init_std must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        for key in ("hidden_dims", "expert_dims", "tower_dims"):
            dims = getattr(self, key)
            if any(d < 1 for d in dims):
                raise ConfigError(f"model.{key}: every width must be >= 1, got {dims}")
        if not self.hidden_dims and self.name in BACKBONES + ("per_domain", "star"):
            raise ConfigError(f"model.hidden_dims: model '{self.name}' needs at least one hidden layer")
        if not self.expert_dims and self.name in ("mmoe", "ple"):
            raise ConfigError(f"model.expert_dims: model '{self.name}' needs at least one expert layer")
        if self.cross_layers < 0:
            raise ConfigError("model.cross_layers must be >= 0")
        if self.num_experts < 1 or self.specific_experts < 0 or self.ple_levels < 1:
            raise ConfigError("model.num_experts and model.ple_levels must be >= 1, model.specific_experts >= 0")
        if self.hamur.enabled and self.name in BASELINES and self.name != "star":
            raise ConfigError(f"model.hamur.enabled: adapters plug into the backbones {list(BACKBONES)} and "
                              f"STAR, not into the baseline '{self.name}'")
        if self.hamur.enabled and self.name == "star" and self.hamur.mode != "paper":
            raise ConfigError("model.hamur.mode: adapters on STAR need mode paper (STAR routes each row "
                              "through its own domain; the reference code has no STAR)")
        if self.hamur.enabled:
            n = self.hidden_layer_count()
            missing = [i for i in self.hamur.insert_after if not -n <= i < n]
            if missing:
                raise ConfigError(f"model.hamur.insert_after: hidden layer {missing[0]} does not exist (model "
                                  f"'{self.name}' has {n} hidden layers: 0..{n - 1}, or -1..-{n})")

    def hidden_layer_count(self) -> int:
        """Hidden layers an adapter can follow: the towers' (or deep part's); shared-bottom's bottom and towers."""
        return len(self.hidden_dims) + (len(self.tower_dims) if self.name == "shared_bottom" else 0)
