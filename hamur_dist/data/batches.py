"""Manifest rows -> the model's tensors, checked on the way; and finding the bad row when one breaks.

``BatchCollator`` runs in Ray Data's prefetch thread (training) or in a plain loop (evaluation,
scoring). It applies ``validation.value_checks``, the same checks ``validate_batch`` runs, and a
broken value raises ``InputDataError`` naming the column; ``locate_bad_row`` then rescans the
shards to name file and row.
"""
from __future__ import annotations

import numpy as np
import torch

from hamur_dist.data.manifest import Manifest
from hamur_dist.data.validation import DataError, validate_batch, value_checks


class InputDataError(ValueError):
    """A batch read at training or scoring time breaks the manifest's contract."""


class BatchCollator:
    """Arrow batch -> {"sparse": (B,F) int64, "dense": (B,Dn) f32, "domain": (B,), "label": (B,)[, "user"]}."""

    def __init__(self, manifest: Manifest, with_user: bool = False, validate: bool = True):
        self.sparse = [f.name for f in manifest.sparse]
        self.dense = [f.name for f in manifest.dense]
        self.domain = manifest.domain.column
        self.label = manifest.label
        self.user = manifest.user_column if with_user else None
        self.checks = {c.column: c for c in value_checks(manifest, with_user=with_user)} if validate else {}

    def _column(self, batch, name: str) -> np.ndarray:
        try:
            col = batch[name] if isinstance(batch, dict) else batch.column(name)
        except KeyError:
            raise InputDataError(f"column '{name}' is missing from the input shards") from None
        col = col if isinstance(col, np.ndarray) else col.to_numpy()
        check = self.checks.get(name)
        bad = check.first_bad(col) if check is not None else None
        if bad is not None:
            raise InputDataError(f"column '{name}': {check.message(col[bad])}")
        return col

    def __call__(self, batch) -> dict[str, torch.Tensor]:
        """``batch``: a pyarrow Table, or a dict of numpy arrays (what Ray Data hands a plain callable)."""
        domain = self._column(batch, self.domain)
        n = len(domain)
        sparse = np.empty((n, len(self.sparse)), dtype=np.int64)
        for i, name in enumerate(self.sparse):
            sparse[:, i] = self._column(batch, name)
        dense = np.empty((n, len(self.dense)), dtype=np.float32)
        for j, name in enumerate(self.dense):
            dense[:, j] = self._column(batch, name)
        label = self._column(batch, self.label)
        # copies: Arrow hands out read-only views, which torch refuses to wrap without a warning
        out = {"sparse": torch.from_numpy(sparse), "dense": torch.from_numpy(dense),
               "domain": torch.from_numpy(np.array(domain, dtype=np.int64)),
               "label": torch.from_numpy(np.array(label, dtype=np.float32))}
        if self.user:
            out["user"] = torch.from_numpy(np.array(self._column(batch, self.user), dtype=np.int64))
        return out


def locate_bad_row(files: list[str], manifest: Manifest) -> str:
    """Slow path after an ``InputDataError``: scan the shards and name file, row and column."""
    import pyarrow.parquet as pq

    for path in files:
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=manifest.columns):
            try:
                validate_batch(batch, manifest, file=path, row_offset=offset)
            except DataError as exc:
                return str(exc)
            offset += batch.num_rows
    return "the bad row could not be located again (did the files change during the run?)"
