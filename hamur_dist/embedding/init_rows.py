"""Initial table values that do not depend on which worker holds a row, nor on the world size."""
from __future__ import annotations

import zlib

import torch

INIT_CHUNK_ROWS = 1 << 16


def init_rows(out: torch.Tensor, table: str, row_start: int, std: float, seed: int) -> None:
    """Fill ``out`` with rows ``row_start..`` of ``table``'s N(0, std) initialisation.

    Rows are drawn in fixed chunks, each from its own generator seeded by (seed, table, chunk), so a
    row gets the same value whichever worker holds it and whatever the world size.
    """
    end = row_start + out.shape[0]
    if end == row_start:
        return
    first, last = row_start // INIT_CHUNK_ROWS, (end - 1) // INIT_CHUNK_ROWS
    gen = torch.Generator(device=out.device)
    for chunk in range(first, last + 1):
        gen.manual_seed((seed * 1_000_003 + zlib.crc32(table.encode()) * 8_191 + chunk) % (2**63))
        lo = chunk * INIT_CHUNK_ROWS
        values = torch.empty(INIT_CHUNK_ROWS, out.shape[1], device=out.device).normal_(0.0, std, generator=gen)
        a, b = max(lo, row_start), min(lo + INIT_CHUNK_ROWS, end)
        out[a - row_start:b - row_start] = values[a - lo:b - lo]
