"""The backbones HAMUR plugs into: per-domain MLP towers, shared-bottom, Wide & Deep, DCN, DCN-v2.

Every backbone numbers its hidden layers 0..n-1 (``hidden_widths``); ``model.hamur.insert_after``
picks the layers an adapter cell follows. Routing (``model.hamur.mode``):
  * paper: each row runs through its own domain's parameters only (rows sorted by domain, one
    slice per domain); W&D and DCN get one output layer per domain.
  * reference: as the reference code, every domain tower runs on the whole batch and each row's
    own domain's output is picked afterwards; W&D and DCN are one shared network.
Not reproduced from the reference code, because the outputs are the same: it recomputes the
hyper-network (and the shared W&D / DCN network) once per domain inside its loop; here they run once
per batch (so the hyper-network's BatchNorm running statistics get one update per step, not D).
In paper mode, BatchNorm of a shared layer that follows a per-domain adapter still pools the rows of
all domains in training (at evaluation every row is independent).
"""
from __future__ import annotations

import torch
from torch import nn

from hamur_dist.data.manifest import FeatureSchema
from hamur_dist.model.base import CTRModel, select_domain_output
from hamur_dist.model.config import ModelConfig
from hamur_dist.model.hamur import HamurAdapters
from hamur_dist.model.layers import CrossNetV1, CrossNetV2, HiddenStack
from hamur_dist.model.routing import DomainLayout


class HamurBackbone(CTRModel):
    """A CTRModel with adaptable hidden layers; builds the adapters once the widths are known."""

    hidden_widths: list[int]

    def _build_adapters(self) -> None:
        cfg = self.cfg.hamur
        self.hamur = (HamurAdapters(cfg, self.input_dim, self.hidden_widths, self.num_domains)
                      if cfg.enabled else None)

    def _instance_matrix(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.hamur.instance_matrix(x) if self.hamur is not None else None

    def _shared_after(self, inst, layout):
        """Callback for a hidden stack shared by all domains."""
        if self.hamur is None:
            return None
        return lambda i, h: self.hamur.adapt_shared_layer(i, h, inst, layout)

    def _tower_after(self, inst, domain: int):
        """Callback for domain ``domain``'s own tower."""
        if self.hamur is None:
            return None
        return lambda i, h: self.hamur.adapt(i, h, inst, domain)

    def _per_domain(self, fn, layout: DomainLayout, *tensors) -> torch.Tensor:
        """Run ``fn(d, *tensors)`` for every domain: on its own rows (paper) or on all rows
        followed by picking each row's domain (reference). ``None`` tensors pass through."""
        present = [t for t in tensors if t is not None]

        def call(d, *parts):
            it = iter(parts)
            return fn(d, *(next(it) if t is not None else None for t in tensors))

        if self.reference:
            outs = torch.stack([call(d, *present) for d in range(self.num_domains)], dim=1)
            return select_domain_output(outs, layout)
        return layout.per_domain(call, *present)


class MLPTowers(HamurBackbone):
    """One tower per domain: (Linear -> BatchNorm -> ReLU) x n, then Linear -> 1."""

    def __init__(self, cfg: ModelConfig, schema: FeatureSchema, embedding: nn.Module | None = None):
        super().__init__(cfg, schema, embedding)
        self.hidden_widths = list(cfg.hidden_dims)
        self.towers = nn.ModuleList(HiddenStack(self.input_dim, cfg.hidden_dims, cfg.dropout)
                                    for _ in range(self.num_domains))
        self.heads = nn.ModuleList(nn.Linear(cfg.hidden_dims[-1], 1) for _ in range(self.num_domains))
        self._build_adapters()

    def _tower(self, d: int, x: torch.Tensor, inst: torch.Tensor | None) -> torch.Tensor:
        h = self.towers[d](x, after=self._tower_after(inst, d))
        return self.heads[d](h).squeeze(1)

    def body(self, sparse_emb, dense, layout):
        x = self.instance_vector(sparse_emb, dense)
        return self._per_domain(self._tower, layout, x, self._instance_matrix(x))


class SharedBottom(HamurBackbone):
    """A shared bottom MLP (hidden_dims), then one tower per domain (tower_dims) -> 1.
    Hidden layers are numbered bottom first, then tower."""

    def __init__(self, cfg: ModelConfig, schema: FeatureSchema, embedding: nn.Module | None = None):
        super().__init__(cfg, schema, embedding)
        self.bottom = HiddenStack(self.input_dim, cfg.hidden_dims, cfg.dropout)
        self.towers = nn.ModuleList(HiddenStack(self.bottom.out_dim, cfg.tower_dims, cfg.dropout)
                                    for _ in range(self.num_domains))
        self.heads = nn.ModuleList(nn.Linear(self.towers[0].out_dim, 1) for _ in range(self.num_domains))
        self.hidden_widths = list(cfg.hidden_dims) + list(cfg.tower_dims)
        self._build_adapters()

    def _tower(self, d: int, h: torch.Tensor, inst: torch.Tensor | None) -> torch.Tensor:
        h = self.towers[d](h, after=self._tower_after(inst, d), offset=len(self.bottom.dims))
        return self.heads[d](h).squeeze(1)

    def body(self, sparse_emb, dense, layout):
        x = self.instance_vector(sparse_emb, dense)
        inst = self._instance_matrix(x)
        h = self.bottom(x, after=self._shared_after(inst, layout))
        return self._per_domain(self._tower, layout, h, inst)


class _SharedDeepWithHeads(HamurBackbone):
    """A shared network ending in a linear output: one per domain (paper) or one shared (reference)."""

    def _build_heads(self, width: int) -> None:
        self.heads = nn.ModuleList(nn.Linear(width, 1) for _ in range(1 if self.reference else self.num_domains))

    def _head(self, z: torch.Tensor, layout: DomainLayout) -> torch.Tensor:
        if self.reference:
            return self.heads[0](z).squeeze(1)
        return layout.per_domain(lambda d, zd: self.heads[d](zd).squeeze(1), z)


class WideDeep(_SharedDeepWithHeads):
    """Wide (linear) part + deep MLP, summed into the logit. As the reference code: the wide part
    reads the dense values and the deep part the sparse embeddings (``wide_inputs: all`` feeds the
    instance vector to both). Without dense features the wide part is left out."""

    def __init__(self, cfg: ModelConfig, schema: FeatureSchema, embedding: nn.Module | None = None):
        super().__init__(cfg, schema, embedding)
        every = cfg.wide_inputs == "all"
        wide_in = self.input_dim if every else self.num_dense
        self.deep_uses_all = every
        self.wide = nn.Linear(wide_in, 1) if wide_in else None
        self.deep = HiddenStack(self.input_dim if every else self.sparse_dim, cfg.hidden_dims, cfg.dropout)
        self.hidden_widths = list(cfg.hidden_dims)
        self._build_heads(self.deep.out_dim)
        self._build_adapters()

    def body(self, sparse_emb, dense, layout):
        x = self.instance_vector(sparse_emb, dense)
        inst = self._instance_matrix(x)
        h = self.deep(x if self.deep_uses_all else sparse_emb, after=self._shared_after(inst, layout))
        logits = self._head(h, layout)
        if self.wide is not None:
            logits = logits + self.wide(x if self.deep_uses_all else dense).squeeze(1)
        return logits


class DCN(_SharedDeepWithHeads):
    """Deep & Cross: a cross network beside a deep MLP on the instance vector, concatenated,
    then Linear -> 1. ``version`` 1 is DCN (rank-one cross weights), 2 is DCN-v2 (full matrices)."""

    version = 1

    def __init__(self, cfg: ModelConfig, schema: FeatureSchema, embedding: nn.Module | None = None):
        super().__init__(cfg, schema, embedding)
        cross = CrossNetV1 if self.version == 1 else CrossNetV2
        self.cross = cross(self.input_dim, cfg.cross_layers)
        self.deep = HiddenStack(self.input_dim, cfg.hidden_dims, cfg.dropout)
        self.hidden_widths = list(cfg.hidden_dims)
        self._build_heads(self.input_dim + self.deep.out_dim)
        self._build_adapters()

    def body(self, sparse_emb, dense, layout):
        x = self.instance_vector(sparse_emb, dense)
        inst = self._instance_matrix(x)
        h = self.deep(x, after=self._shared_after(inst, layout))
        return self._head(torch.cat([self.cross(x), h], dim=1), layout)


class DCNv2(DCN):
    version = 2
