"""HAMUR: a hyper-network shared by all domains that emits a K x K matrix I(x) per instance,
and adapter cells whose weights U · I(x) · V are generated from it.

The per-instance weights are never built: ``h · U · I(x) · V`` is computed as ((h U) I(x)) V,
three small products per row, instead of a B x m x s tensor (``materialised_projection`` is the
naive form, kept for tests and benchmarks).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from hamur_dist.config_loader import ConfigError
from hamur_dist.model.config import HamurConfig
from hamur_dist.model.layers import BatchOnlyNorm, GroupBatchNorm
from hamur_dist.model.routing import DomainLayout


def factored_projection(h: torch.Tensor, u: torch.Tensor, inst: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """h (B, m) · U (m, K) · I (B, K, K) · V (K, n) -> (B, n) without any B x m x n tensor."""
    hu = (h @ u).unsqueeze(1)                      # (B, 1, K)
    return torch.bmm(hu, inst).squeeze(1) @ v      # (B, K) @ (K, n)


def materialised_projection(h: torch.Tensor, u: torch.Tensor, inst: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The reference code's form: build W(x) = U I(x) V as a (B, m, n) tensor, then h · W(x)."""
    weights = torch.einsum("mi,bij,jn->bmn", u, inst, v)
    return torch.einsum("bm,bmn->bn", h, weights)


class HyperNetwork(nn.Module):
    """Instance vector e (B, in) -> I(x) (B, K, K), shared by all domains.

    Hidden layers are Linear -> BatchNorm -> ReLU. reference mode ends with BatchNorm and ReLU too
    (so I >= 0, as the reference code); paper mode ends with a plain Linear.
    """

    def __init__(self, in_dim: int, hidden: list[int], rank: int, reference: bool):
        super().__init__()
        self.rank = rank
        layers: list[nn.Module] = []
        width = in_dim
        for out in hidden:
            layers += [nn.Linear(width, out), GroupBatchNorm(out), nn.ReLU()]
            width = out
        layers.append(nn.Linear(width, rank * rank))
        if reference:
            layers += [GroupBatchNorm(rank * rank), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.net(e).view(-1, self.rank, self.rank)


class AdapterCell(nn.Module):
    """t = sigmoid(h U1 I V1 + b1); t = t U2 I V2 + b2; out = h + Norm(t).

    paper: random factors, BatchNorm with running statistics (one cell per domain).
    reference: factors initialised to ones, whole-batch norm without running statistics.
    """

    def __init__(self, width: int, bottleneck: int, rank: int, reference: bool, materialise: bool = False):
        super().__init__()
        m, s, k = width, bottleneck, rank
        self.u1 = nn.Parameter(torch.empty(m, k))
        self.v1 = nn.Parameter(torch.empty(k, s))
        self.b1 = nn.Parameter(torch.zeros(s))
        self.u2 = nn.Parameter(torch.empty(s, k))
        self.v2 = nn.Parameter(torch.empty(k, m))
        self.b2 = nn.Parameter(torch.zeros(m))
        self.norm: nn.Module = BatchOnlyNorm(m) if reference else GroupBatchNorm(m)
        self.project = materialised_projection if materialise else factored_projection
        if reference:
            for p in (self.u1, self.v1, self.u2, self.v2):
                nn.init.ones_(p)
        else:
            # Keep each product near unit scale: U ~ N(0, 1/fan_in); V absorbs the K-wide sum over I.
            nn.init.normal_(self.u1, std=1.0 / math.sqrt(m))
            nn.init.normal_(self.u2, std=1.0 / math.sqrt(s))
            nn.init.normal_(self.v1, std=1.0 / k)
            nn.init.normal_(self.v2, std=1.0 / k)

    def forward(self, h: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.project(h, self.u1, inst, self.v1) + self.b1)
        t = self.project(t, self.u2, inst, self.v2) + self.b2
        return h + self.norm(t)


class HamurAdapters(nn.Module):
    """The hyper-network plus one adapter slot per chosen hidden layer of a backbone.

    paper mode keeps ``num_domains`` cells per slot and sends each row through its own domain's
    cell; reference mode keeps one cell per slot, shared by all domains.
    """

    def __init__(self, cfg: HamurConfig, in_dim: int, hidden_widths: list[int], num_domains: int):
        super().__init__()
        self.reference = cfg.mode == "reference"
        n = len(hidden_widths)
        slots = []
        for i in cfg.insert_after:
            if not -n <= i < n:
                raise ConfigError(f"model.hamur.insert_after: hidden layer {i} does not exist "
                                 f"(this backbone has {n} hidden layers: 0..{n - 1}, or -1..-{n})")
            slots.append(i % n)
        if len(set(slots)) != len(slots):
            raise ConfigError(f"model.hamur.insert_after names a layer twice: {cfg.insert_after}")
        self.slots = sorted(slots)
        self.hyper = HyperNetwork(in_dim, cfg.hyper_hidden, cfg.rank, self.reference)
        copies = 1 if self.reference else num_domains
        self.cells = nn.ModuleDict({
            str(i): nn.ModuleList(AdapterCell(hidden_widths[i], cfg.bottleneck, cfg.rank, self.reference,
                                              cfg.naive_materialise) for _ in range(copies))
            for i in self.slots})

    def instance_matrix(self, e: torch.Tensor) -> torch.Tensor:
        return self.hyper(e)

    def adapt(self, layer: int, h: torch.Tensor, inst: torch.Tensor, domain: int) -> torch.Tensor:
        """Inside domain ``domain``'s own tower (rows h, matrices inst of that tower's input)."""
        cells = self.cells[str(layer)] if str(layer) in self.cells else None
        if cells is None:
            return h
        return cells[0 if self.reference else domain](h, inst)

    def adapt_shared_layer(self, layer: int, h: torch.Tensor, inst: torch.Tensor,
                           layout: DomainLayout) -> torch.Tensor:
        """After a hidden layer shared by all domains (rows in ``layout``'s sorted order)."""
        cells = self.cells[str(layer)] if str(layer) in self.cells else None
        if cells is None:
            return h
        if self.reference:
            return cells[0](h, inst)
        return layout.per_domain(lambda d, hd, id_: cells[d](hd, id_), h, inst)
