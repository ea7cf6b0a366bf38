"""Multi-domain baselines, with domains as tasks: one model per domain, STAR, MMoE and PLE.

Each row is routed through its own domain's parameters only (rows sorted by domain, one slice per
domain present); ``model.hamur.mode`` does not apply to them. HAMUR adapters plug into STAR only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hamur_dist.data.manifest import FeatureSchema
from hamur_dist.model.backbones import MLPTowers
from hamur_dist.model.base import CTRModel
from hamur_dist.model.embedding import PAD, pooled_feature
from hamur_dist.model.config import ModelConfig
from hamur_dist.model.hamur import HamurAdapters
from hamur_dist.model.layers import GroupBatchNorm, HiddenStack


class PerDomain(MLPTowers):
    """One model per domain: private embedding tables and a private MLP tower for each domain.

    The tables live in one embedding module (so it can be sharded like any other): feature f of
    domain d uses rows ``d * vocab_f + id``.
    """

    def __init__(self, cfg: ModelConfig, schema: FeatureSchema, embedding: nn.Module | None = None):
        super().__init__(cfg, schema, embedding)
        self.reference = False
        # one entry per id column (a multi-valued feature has max_len columns; its pads stay -1)
        slots = [f.vocab_size for f in schema.sparse for _ in range(getattr(f, "max_len", 1))]
        pooled = [pooled_feature(f) for f in schema.sparse for _ in range(getattr(f, "max_len", 1))]
        self.register_buffer("vocab", torch.tensor(slots), persistent=False)
        self.register_buffer("may_pad", torch.tensor(pooled), persistent=False)

    def lookup(self, sparse: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        pad = (sparse == PAD) & self.may_pad
        outside = ((sparse < 0) | (sparse >= self.vocab)) & ~pad
        if torch.compiler.is_exporting():   # no host sync in a traced program: an assertion in the graph
            torch._assert_async(~outside.any(), "a sparse id is outside its feature's vocabulary")
        elif bool(outside.any()):   # would silently read another domain's rows
            bad = int(outside.any(0).nonzero()[0])
            feature = self.embedding.specs[self.embedding.slot_tables[bad]].name
            raise IndexError(f"sparse feature '{feature}' has an id outside [0, {int(self.vocab[bad])})")
        return self.embedding(torch.where(pad, sparse, sparse + domain.unsqueeze(1) * self.vocab)).flatten(1)


class _Routed(CTRModel):
    def __init__(self, cfg, schema, embedding=None):
        super().__init__(cfg, schema, embedding)
        self.reference = False


class StarLayer(nn.Module):
    """STAR fully-connected layer: domain d uses W * W_d and b + b_d (W_d starts at ones)."""

    def __init__(self, in_dim: int, out_dim: int, num_domains: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.domain_weight = nn.Parameter(torch.ones(num_domains, in_dim, out_dim))
        self.domain_bias = nn.Parameter(torch.zeros(num_domains, out_dim))

    def forward(self, x: torch.Tensor, d: int) -> torch.Tensor:
        return x @ (self.weight * self.domain_weight[d]) + (self.bias + self.domain_bias[d])


class PartitionedNorm(nn.Module):
    """STAR's partitioned normalisation: per-domain statistics, affine (gamma * gamma_d, beta + beta_d)."""

    def __init__(self, width: int, num_domains: int):
        super().__init__()
        self.norms = nn.ModuleList(GroupBatchNorm(width, affine=False) for _ in range(num_domains))
        self.gamma = nn.Parameter(torch.ones(width))
        self.beta = nn.Parameter(torch.zeros(width))
        self.domain_gamma = nn.Parameter(torch.ones(num_domains, width))
        self.domain_beta = nn.Parameter(torch.zeros(num_domains, width))

    def forward(self, x: torch.Tensor, d: int) -> torch.Tensor:
        return self.gamma * self.domain_gamma[d] * self.norms[d](x) + self.beta + self.domain_beta[d]


class Star(_Routed):
    """STAR (Sheng et al., CIKM 2021): star-topology FCN (hidden_dims) with partitioned norm,
    plus an auxiliary network (tower_dims) on the domain embedding and the instance vector.
    With ``model.hamur.enabled`` HAMUR adapters follow the chosen hidden layers of the star FCN."""

    def __init__(self, cfg: ModelConfig, schema: FeatureSchema, embedding: nn.Module | None = None):
        super().__init__(cfg, schema, embedding)
        widths = [self.input_dim] + list(cfg.hidden_dims)
        self.layers = nn.ModuleList(StarLayer(a, b, self.num_domains) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(PartitionedNorm(b, self.num_domains) for b in widths[1:])
        self.out = StarLayer(widths[-1], 1, self.num_domains)
        self.dropout = nn.Dropout(cfg.dropout)
        self.domain_embedding = nn.Embedding(self.num_domains, cfg.embed_dim)
        nn.init.normal_(self.domain_embedding.weight, std=cfg.embed_init_std)
        self.aux = HiddenStack(cfg.embed_dim + self.input_dim, cfg.tower_dims, cfg.dropout)
        self.aux_head = nn.Linear(self.aux.out_dim, 1)
        self.hidden_widths = list(cfg.hidden_dims)
        self.hamur = (HamurAdapters(cfg.hamur, self.input_dim, self.hidden_widths, self.num_domains)
                      if cfg.hamur.enabled else None)

    def _star(self, d: int, x: torch.Tensor, inst: torch.Tensor | None = None) -> torch.Tensor:
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            x = self.dropout(F.relu(norm(layer(x, d), d)))
            if self.hamur is not None:
                x = self.hamur.adapt(i, x, inst, d)
        return self.out(x, d).squeeze(1)

    def body(self, sparse_emb, dense, layout):
        x = self.instance_vector(sparse_emb, dense)
        aux_in = torch.cat([self.domain_embedding(layout.domain), x], dim=1)
        inst = self.hamur.instance_matrix(x) if self.hamur is not None else None
        star = layout.per_domain(self._star, x, inst) if inst is not None else layout.per_domain(self._star, x)
        return star + self.aux_head(self.aux(aux_in)).squeeze(1)


def _towers(cfg: ModelConfig, in_dim: int, count: int) -> tuple[nn.ModuleList, nn.ModuleList]:
    towers = nn.ModuleList(HiddenStack(in_dim, cfg.tower_dims, cfg.dropout) for _ in range(count))
    heads = nn.ModuleList(nn.Linear(towers[0].out_dim, 1) for _ in range(count))
    return towers, heads


def _mix(gate_logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """softmax gate (n, E) over expert outputs (n, E, w) -> (n, w)."""
    return torch.bmm(gate_logits.softmax(dim=1).unsqueeze(1), experts).squeeze(1)


class MMoE(_Routed):
    """MMoE (Ma et al., KDD 2018) with one task per domain: shared experts (expert_dims), one
    softmax gate and one tower (tower_dims) per domain."""

    def __init__(self, cfg: ModelConfig, schema: FeatureSchema, embedding: nn.Module | None = None):
        super().__init__(cfg, schema, embedding)
        self.experts = nn.ModuleList(HiddenStack(self.input_dim, cfg.expert_dims, cfg.dropout)
                                     for _ in range(cfg.num_experts))
        self.gates = nn.ModuleList(nn.Linear(self.input_dim, cfg.num_experts) for _ in range(self.num_domains))
        self.towers, self.heads = _towers(cfg, cfg.expert_dims[-1], self.num_domains)

    def _task(self, d: int, x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        return self.heads[d](self.towers[d](_mix(self.gates[d](x), experts))).squeeze(1)

    def body(self, sparse_emb, dense, layout):
        x = self.instance_vector(sparse_emb, dense)
        experts = torch.stack([e(x) for e in self.experts], dim=1)      # (B, E, w)
        return layout.per_domain(self._task, x, experts)


class PLE(_Routed):
    """PLE (Tang et al., RecSys 2020) with one task per domain: ``ple_levels`` extraction levels of
    shared experts (num_experts) and per-domain experts (specific_experts), per-domain gates, then
    one tower per domain.

    Domain experts run on their own domain's rows only, so the shared gate of a row mixes the shared
    experts and its own domain's experts (the multi-task original mixes every task's experts, which
    would run every domain's experts on every row).
    """

    def __init__(self, cfg: ModelConfig, schema: FeatureSchema, embedding: nn.Module | None = None):
        super().__init__(cfg, schema, embedding)
        width, n_mix = cfg.expert_dims[-1], cfg.num_experts + cfg.specific_experts
        self.levels = nn.ModuleList()
        for level in range(cfg.ple_levels):
            in_dim = self.input_dim if level == 0 else width
            last = level == cfg.ple_levels - 1

            def experts(count):
                return nn.ModuleList(HiddenStack(in_dim, cfg.expert_dims, cfg.dropout) for _ in range(count))
            self.levels.append(nn.ModuleDict({
                "shared": experts(cfg.num_experts),
                "specific": nn.ModuleList(experts(cfg.specific_experts) for _ in range(self.num_domains)),
                "gates": nn.ModuleList(nn.Linear(in_dim, n_mix) for _ in range(self.num_domains)),
                **({} if last else {"shared_gate": nn.Linear(in_dim, n_mix)}),
            }))
        self.towers, self.heads = _towers(cfg, width, self.num_domains)

    def _extract(self, level: nn.ModuleDict, d: int, task: torch.Tensor, shared_in: torch.Tensor,
                 shared_out: torch.Tensor) -> torch.Tensor:
        own = [e(task) for e in level["specific"][d]]
        experts = torch.cat([torch.stack(own, dim=1), shared_out], dim=1) if own else shared_out
        out = _mix(level["gates"][d](task), experts)
        if "shared_gate" in level:
            out = torch.cat([out, _mix(level["shared_gate"](shared_in), experts)], dim=1)
        return out

    def body(self, sparse_emb, dense, layout):
        task = shared = self.instance_vector(sparse_emb, dense)
        for level in self.levels:
            shared_out = torch.stack([e(shared) for e in level["shared"]], dim=1)
            out = layout.per_domain(lambda d, t, s, so: self._extract(level, d, t, s, so), task, shared, shared_out)
            task, shared = (out.chunk(2, dim=1) if "shared_gate" in level else (out, None))
        return layout.per_domain(lambda d, t: self.heads[d](self.towers[d](t)).squeeze(1), task)
