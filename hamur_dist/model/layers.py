"""Small building blocks shared by the backbones and baselines."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class GroupBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that also accepts the tiny groups routing produces.

    A domain's slice of a batch can hold one row or none. Training-mode statistics of one row are
    undefined (torch raises), so such a row is normalised with the running statistics, which are
    left untouched; an empty group passes through (through the affine parameters, so that they are
    in the step's graph: see ``routing``). Everything else is plain BatchNorm1d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return x if self.weight is None else x * self.weight + self.bias
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=False, momentum=0.0, eps=self.eps)
        return super().forward(x)


class BatchOnlyNorm(nn.Module):
    """The reference code's "DomainNorm": whole-batch mean and unbiased variance, no running
    statistics, also at evaluation, so an output depends on the rest of its batch."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] < 2:
            raise ValueError("reference-mode DomainNorm needs a batch of at least 2 rows (its unbiased "
                             "batch variance of one row is NaN); use model.hamur.mode=paper")
        mean = x.mean(dim=0)
        var = x.var(dim=0, unbiased=True)
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias


def dense_block(in_dim: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU (-> Dropout): one hidden layer."""
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim), GroupBatchNorm(out_dim), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


AfterLayer = Callable[[int, torch.Tensor], torch.Tensor]


class HiddenStack(nn.Module):
    """A stack of hidden layers; ``after(i, h)`` runs after layer i (where adapters plug in)."""

    def __init__(self, in_dim: int, dims: list[int], dropout: float = 0.0):
        super().__init__()
        self.in_dim = in_dim
        self.dims = list(dims)
        widths = [in_dim] + self.dims
        self.layers = nn.ModuleList(dense_block(a, b, dropout) for a, b in zip(widths, widths[1:]))

    @property
    def out_dim(self) -> int:
        return self.dims[-1] if self.dims else self.in_dim

    def forward(self, x: torch.Tensor, after: AfterLayer | None = None, offset: int = 0) -> torch.Tensor:
        """``offset`` numbers this stack's layers after those of an earlier stack (shared bottom)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if after is not None:
                x = after(offset + i, x)
        return x


class CrossNetV1(nn.Module):
    """DCN cross network: x_{l+1} = x0 * (x_l . w_l) + b_l + x_l."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.w = nn.ModuleList(nn.Linear(dim, 1, bias=False) for _ in range(num_layers))
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.w, self.b):
            x = x0 * w(x) + b + x
        return x


class CrossNetV2(nn.Module):
    """DCN-v2 cross network: x_{l+1} = x0 * (W_l x_l + b_l) + x_l (full-rank W_l)."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x
