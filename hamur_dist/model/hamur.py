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


def _output_layers(kind: str, width: int) -> list[nn.Module]:
    """What follows the hyper-network's last Linear (``model.hamur.hyper_output``)."""
    return {"linear": [], "relu": [nn.ReLU()], "tanh": [nn.Tanh()], "sigmoid": [nn.Sigmoid()],
            "batchnorm_relu": [GroupBatchNorm(width), nn.ReLU()]}[kind]


class HyperNetwork(nn.Module):
    """Instance vector e (B, in) -> I(x) (B, K, K), shared by all domains.

    Hidden layers are Linear -> BatchNorm -> ReLU, then a Linear to K*K and ``output`` (the
    reference code: BatchNorm and ReLU, so I >= 0; the paper: nothing).
    """

    def __init__(self, in_dim: int, hidden: list[int], rank: int, output: str):
        super().__init__()
        self.rank = rank
        layers: list[nn.Module] = []
        width = in_dim
        for out in hidden:
            layers += [nn.Linear(width, out), GroupBatchNorm(out), nn.ReLU()]
            width = out
        layers.append(nn.Linear(width, rank * rank))
        layers += _output_layers(output, rank * rank)
        self.net = nn.Sequential(*layers)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.net(e).view(-1, self.rank, self.rank)


def _norm(kind: str, width: int) -> nn.Module:
    return {"batch": lambda: GroupBatchNorm(width), "whole_batch": lambda: BatchOnlyNorm(width),
            "layer": lambda: nn.LayerNorm(width), "none": nn.Identity}[kind]()


class AdapterCell(nn.Module):
    """t = sigmoid(h U1 I V1 + b1); t = dropout(t) U2 I V2 + b2; out = h + Norm(t).

    Factors ``init``: "normal" keeps each product near unit scale, "ones" is the reference code's.
    ``norm``: "batch" (running statistics), "whole_batch" (the reference code's, batch-dependent),
    "layer" or "none"; ``norm_gain`` is the norm's initial scale (near 0: the cell starts as identity).
    """

    def __init__(self, width: int, bottleneck: int, rank: int, *, norm: str = "batch", init: str = "normal",
                 norm_gain: float = 1.0, dropout: float = 0.0, materialise: bool = False):
        super().__init__()
        m, s, k = width, bottleneck, rank
        self.u1 = nn.Parameter(torch.empty(m, k))
        self.v1 = nn.Parameter(torch.empty(k, s))
        self.b1 = nn.Parameter(torch.zeros(s))
        self.u2 = nn.Parameter(torch.empty(s, k))
        self.v2 = nn.Parameter(torch.empty(k, m))
        self.b2 = nn.Parameter(torch.zeros(m))
        self.norm = _norm(norm, m)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.project = materialised_projection if materialise else factored_projection
        if init == "ones":
            for p in (self.u1, self.v1, self.u2, self.v2):
                nn.init.ones_(p)
        else:
            # U ~ N(0, 1/fan_in); V absorbs the K-wide sum over I.
            nn.init.normal_(self.u1, std=1.0 / math.sqrt(m))
            nn.init.normal_(self.u2, std=1.0 / math.sqrt(s))
            nn.init.normal_(self.v1, std=1.0 / k)
            nn.init.normal_(self.v2, std=1.0 / k)
        gain = getattr(self.norm, "weight", None)
        if isinstance(gain, nn.Parameter):
            nn.init.constant_(gain, norm_gain)
        elif norm_gain != 1.0:          # no norm: scale the up-projection instead
            with torch.no_grad():
                self.v2.mul_(norm_gain)

    def forward(self, h: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.project(h, self.u1, inst, self.v1) + self.b1)
        t = self.project(self.dropout(t), self.u2, inst, self.v2) + self.b2
        return h + self.norm(t)


class HamurAdapters(nn.Module):
    """The hyper-network plus one adapter slot per chosen hidden layer of a backbone.

    Per-domain cells (paper) send each row through its own domain's cell of a slot; shared cells
    (reference) are one per slot. The hyper-network reads the instance vector (one network) or,
    with ``hyper_input: hidden``, the adapter's own input (one network per slot).
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
        choice = cfg.resolved()
        self.per_domain_cells = choice["cells"] == "per_domain"
        self.reads_hidden = cfg.hyper_input == "hidden"
        self.needs_batch_statistics = choice["adapter_norm"] == "whole_batch"

        def hyper(width: int) -> HyperNetwork:
            return HyperNetwork(width, cfg.hyper_hidden, cfg.rank, choice["hyper_output"])
        self.hyper = (nn.ModuleDict({str(i): hyper(hidden_widths[i]) for i in self.slots}) if self.reads_hidden
                      else hyper(in_dim))
        copies = num_domains if self.per_domain_cells else 1
        self.cells = nn.ModuleDict({
            str(i): nn.ModuleList(
                AdapterCell(hidden_widths[i], cfg.bottleneck, cfg.rank, norm=choice["adapter_norm"],
                            init=choice["factor_init"], norm_gain=cfg.norm_gain, dropout=cfg.adapter_dropout,
                            materialise=cfg.naive_materialise) for _ in range(copies))
            for i in self.slots})

    def instance_matrix(self, e: torch.Tensor) -> torch.Tensor | None:
        """I(x) from the instance vector; None when each slot's hyper-network reads its hidden layer."""
        return None if self.reads_hidden else self.hyper(e)

    def _matrix(self, layer: int, h: torch.Tensor, inst: torch.Tensor | None) -> torch.Tensor:
        return self.hyper[str(layer)](h) if self.reads_hidden else inst

    def adapt(self, layer: int, h: torch.Tensor, inst: torch.Tensor | None, domain: int) -> torch.Tensor:
        """Inside domain ``domain``'s own tower (rows h, matrices inst of that tower's input)."""
        if str(layer) not in self.cells:
            return h
        cells = self.cells[str(layer)]
        return cells[domain if self.per_domain_cells else 0](h, self._matrix(layer, h, inst))

    def adapt_shared_layer(self, layer: int, h: torch.Tensor, inst: torch.Tensor | None,
                           layout: DomainLayout) -> torch.Tensor:
        """After a hidden layer shared by all domains (rows in ``layout``'s sorted order)."""
        if str(layer) not in self.cells:
            return h
        cells, inst = self.cells[str(layer)], self._matrix(layer, h, inst)
        if not self.per_domain_cells:
            return cells[0](h, inst)
        return layout.per_domain(lambda d, hd, id_: cells[d](hd, id_), h, inst)
