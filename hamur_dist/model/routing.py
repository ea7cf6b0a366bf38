"""Routing rows to their domain's parameters without a Python loop over samples.

The batch is reordered once so that each domain's rows are contiguous; per-domain parameters then
run on one slice (a view) per domain. A domain with no rows in the batch is skipped at evaluation;
in training it runs on its empty slice, so every parameter is in every step's graph (with a zero
gradient) and DDP need not search for unused parameters each step. The logits are put back in the
caller's order at the end.

``AllDomainsLayout`` is the same interface for export and serving: rows are sorted the same way,
but every domain's function runs on every row and each row keeps its own domain's output (a
gather). Nothing depends on the values of ``domain`` (no host sync, no data-dependent shape), so
``torch.export`` can trace it with a dynamic batch size; in eval mode it gives what ``DomainLayout``
gives, for up to ``num_domains`` times the work of the per-domain parts.
"""
from __future__ import annotations

from typing import Callable

import torch


def _domain_ids(domain: torch.Tensor) -> torch.Tensor:
    if domain.dim() != 1:
        raise ValueError(f"domain must be a 1-D tensor of domain ids, got shape {tuple(domain.shape)}")
    if domain.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"domain must hold integer ids, got {domain.dtype}")
    return domain.long()


class _SortedByDomain:
    """Rows sorted by domain (a stable argsort): ``sort`` puts tensors in that order, ``restore`` back."""

    def __init__(self, domain: torch.Tensor, num_domains: int):
        self.num_domains = num_domains
        self.perm = torch.argsort(domain, stable=True)
        self.domain = domain.index_select(0, self.perm)  # sorted domain ids

    def sort(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, self.perm)

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        """Sorted order -> the caller's order."""
        return torch.empty_like(y).index_copy(0, self.perm, y)


class DomainLayout(_SortedByDomain):
    """The rows of one batch grouped by domain: ``perm`` sorts them, ``counts`` sizes the groups."""

    def __init__(self, domain: torch.Tensor, num_domains: int):
        domain = _domain_ids(domain)
        if domain.numel() and int(domain.min()) < 0:
            raise ValueError(f"domain ids must be >= 0, got {int(domain.min())}")
        counts = torch.bincount(domain, minlength=num_domains)
        if counts.numel() > num_domains:
            raise ValueError(f"domain id {counts.numel() - 1} is out of range: the schema has "
                             f"{num_domains} domains (ids 0..{num_domains - 1})")
        self.counts: list[int] = counts.tolist()        # the one host sync per batch
        super().__init__(domain, num_domains)

    def groups(self, *tensors: torch.Tensor, include_empty: bool = False):
        """Yield ``(d, slices...)`` for each domain present (every domain with ``include_empty``);
        tensors are in sorted order."""
        parts = [t.split(self.counts) for t in tensors]
        for d, n in enumerate(self.counts):
            if n or include_empty:
                yield (d, *(p[d] for p in parts))

    def per_domain(self, fn: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
        """``fn(d, *slices)`` on every domain present (every domain when gradients are recorded),
        concatenated back in sorted order."""
        groups = self.groups(*tensors, include_empty=torch.is_grad_enabled())
        return torch.cat([fn(d, *slices) for d, *slices in groups], dim=0)


class AllDomainsLayout(_SortedByDomain):
    """``DomainLayout``'s interface without groups: ``per_domain`` runs ``fn`` for every domain on the
    whole batch, then each row keeps its own domain's output (a gather). Rows are still sorted by
    domain (a stable argsort, no host sync), so whole-batch reductions (reference-mode norm) add the
    rows in the order ``DomainLayout`` does. For evaluation and export only: in training, a
    BatchNorm inside ``fn`` would pool the rows of every domain."""

    def __init__(self, domain: torch.Tensor, num_domains: int):
        domain = _domain_ids(domain)
        # Checked on the device, without a host sync (kept as an assertion in an exported program).
        torch._assert_async(((domain >= 0) & (domain < num_domains)).all(),
                            f"domain ids must be in [0, {num_domains})")
        super().__init__(domain, num_domains)

    def per_domain(self, fn: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
        """``fn(d, *tensors)`` for every domain on all rows; row i keeps domain ``domain[i]``'s result."""
        outs = torch.stack([fn(d, *tensors) for d in range(self.num_domains)], dim=1)   # (B, D, ...)
        rest = outs.shape[2:]
        index = self.domain.view(-1, 1, *([1] * len(rest))).expand(-1, 1, *rest)
        return outs.gather(1, index).squeeze(1)
