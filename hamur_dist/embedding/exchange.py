"""All-to-all exchanges of ids and embedding rows between the workers.

``Exchanger`` wraps ``dist.all_to_all_single`` (gloo on CPU, NCCL on GPU) with a shortcut for a
single worker and counters for the benchmark (bytes sent to other workers, seconds spent).
``exchange_rows`` is the autograd-aware step: forward sends looked-up rows from their owners back
to the workers that asked for them, backward sends the gradients of those rows to the owners the
same way, so every worker must run backward through it once per forward (it is a collective).
``all_gather_row_sums`` sums the touched rows' gradients of replicated-sparse tables over the workers.
"""
from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist


class Exchanger:
    def __init__(self, rank: int, world_size: int, process_group=None, device: torch.device | None = None):
        self.rank = rank
        self.world_size = world_size
        self.group = process_group
        self.device = device or torch.device("cpu")
        # one worker without a process group: plain copies (with one, even a 1-rank group runs the
        # real collective, which lets a single GPU exercise the NCCL path)
        self.local_only = world_size == 1 and not dist.is_initialized()
        self.bytes_sent = 0        # bytes sent to other workers (ids, counts, rows, gradients)
        self.seconds = 0.0         # wall time inside the collectives (GPU: synchronised first)

    def reset_stats(self) -> None:
        self.bytes_sent = 0
        self.seconds = 0.0

    def all_to_all(self, x: torch.Tensor, in_splits: list[int], out_splits: list[int]) -> torch.Tensor:
        """Send ``x[rows of in_splits[r]]`` to rank ``r``; receive ``out_splits[r]`` rows from rank ``r``."""
        x = x.contiguous()
        out = x.new_empty((sum(out_splits),) + tuple(x.shape[1:]))
        if self.local_only:
            return out.copy_(x)
        row_bytes = x.element_size() * math.prod(x.shape[1:])
        self.bytes_sent += (sum(in_splits) - in_splits[self.rank]) * row_bytes
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        dist.all_to_all_single(out, x, output_split_sizes=out_splits, input_split_sizes=in_splits,
                               group=self.group)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        self.seconds += time.perf_counter() - start
        return out

    def exchange_counts(self, send_counts: torch.Tensor) -> torch.Tensor:
        """Each rank tells every other rank how many items it will send it."""
        return self.all_to_all(send_counts, [1] * self.world_size, [1] * self.world_size)


class _ExchangeRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows, exchanger: Exchanger, owned_splits: list[int], wanted_splits: list[int],
                grad_scale: float):
        ctx.exchanger, ctx.owned_splits, ctx.wanted_splits, ctx.grad_scale = (
            exchanger, owned_splits, wanted_splits, grad_scale)
        return exchanger.all_to_all(rows, owned_splits, wanted_splits)

    @staticmethod
    def backward(ctx, grad):
        if ctx.grad_scale != 1.0:
            grad = grad * ctx.grad_scale
        back = ctx.exchanger.all_to_all(grad, ctx.wanted_splits, ctx.owned_splits)
        return back, None, None, None, None


def exchange_rows(rows: torch.Tensor, exchanger: Exchanger, owned_splits: list[int], wanted_splits: list[int],
                  grad_scale: float = 1.0) -> torch.Tensor:
    """Owners -> requesters: ``rows`` holds ``owned_splits[r]`` rows asked for by rank ``r``; the result
    holds ``wanted_splits[r]`` rows owned by rank ``r``. Gradients travel back, times ``grad_scale``."""
    return _ExchangeRows.apply(rows, exchanger, owned_splits, wanted_splits, grad_scale)


def all_gather_row_sums(exchanger: Exchanger, rows: torch.Tensor, grads: torch.Tensor,
                        scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Replicated-sparse gradients: each rank gives its (unique, sorted row ids, gradient rows); every
    rank gets back the same (sorted union of the ids, sum of their gradients over the ranks x scale).

    A collective (two all-to-alls: counts, then ids and gradients in one message), even with no rows.
    Every rank receives the same bytes in rank order and adds them rank by rank; inside one rank's
    part the ids are unique, so no row takes two adds in one ``index_add_`` (atomics on GPU) and the
    sums are bitwise the same on every rank: the replicas stay identical.
    """
    world, n = exchanger.world_size, rows.numel()
    counts = exchanger.exchange_counts(torch.full((world,), n, dtype=torch.int64, device=rows.device)).tolist()
    width = 8 // grads.element_size()      # int64 ids ride bit for bit in `width` gradient-typed columns
    payload = torch.cat([rows.contiguous().view(grads.dtype).view(n, width), grads], dim=1)
    got = exchanger.all_to_all(payload.repeat(world, 1), [n] * world, counts)
    ids = got[:, :width].contiguous().view(torch.int64).view(-1)
    union, inverse = torch.unique(ids, sorted=True, return_inverse=True)
    summed = torch.zeros(union.numel(), grads.shape[1], dtype=grads.dtype, device=grads.device)
    start = 0
    for count in counts:
        summed.index_add_(0, inverse[start:start + count], got[start:start + count, width:])
        start += count
    if scale != 1.0:
        summed.mul_(scale)
    return union, summed
