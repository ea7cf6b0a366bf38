"""Raw log rows -> a model's inputs, with the vocabularies, scaling and domains the model was trained with.

The artifact (``model/``) keeps its training data's manifest, the table schema that made it and the
vocabularies, so raw rows (CSV or Parquet with the raw columns of that schema) can be scored without
a prepare step. Unknown values become id 0, as in ``prepare --like``; an unknown domain is an error:
a model has no parameters for a domain it never saw. A multi_hot column (text joined by the schema's
separator, or a list column) becomes the model's padded layout: max_len columns, -1 where unused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from hamur_dist.data.batches import InputDataError
from hamur_dist.data.like import Parent, parent_schema
from hamur_dist.data.multi_hot import ListValueError, list_parts, pad
from hamur_dist.data.table_rows import TableRows
from hamur_dist.data.validation import DataError
from hamur_dist.model.artifact import load_training_manifest

PATH_COLUMN = "path"      # the file a row came from (Ray Data's include_paths)


class RawEncoder:
    """Encodes raw rows exactly as ``hamur prepare --like`` the model's training data would."""

    def __init__(self, model_path: str | Path):
        model_path = Path(model_path)
        trained = load_training_manifest(model_path)
        if trained is None:
            raise DataError("the model has no manifest.json, so raw rows cannot be encoded for it", file=model_path)
        model = Parent(model_path, trained, "")    # the artifact holds vocab/ like a dataset does
        try:
            schema = parent_schema(model)
        except Exception as exc:   # noqa: BLE001 - said plainly: this model cannot read raw rows
            raise DataError(f"this model cannot score raw logs ({exc}); prepare them with `hamur prepare "
                            f"--like` its training dataset and pass --data", file=model_path) from None
        self.manifest, self.schema = trained, schema
        self.rows = TableRows(schema, "fail", model)
        self.rows.finish()

    def raw_columns(self) -> list[str]:
        s = self.schema
        return list(dict.fromkeys([f.source for f in s.sparse] + [f.source for f in s.dense] + [s.domain.column]))

    def column_types(self) -> dict[str, pa.DataType]:
        """How to read each raw column from CSV, so a vocabulary's values match (zip codes stay strings)."""
        types = {}
        for f in self.schema.sparse:
            encoder = self.rows.sparse[f.name]
            if f.multi_hot:
                types[f.source] = pa.string()     # "a|b": split by the encoder, values cast there
            elif getattr(encoder, "values", None) is not None:
                types[f.source] = encoder.values.type
            elif f.encoding == "identity":
                types[f.source] = pa.int64()
            elif f.dtype == "string":
                types[f.source] = pa.string()
        types.update({f.source: pa.float64() for f in self.schema.dense})
        mapping = self.schema.domain.mapping
        if mapping:
            types[self.schema.domain.column] = pa.int64() if isinstance(next(iter(mapping)), int) else pa.string()
        return types

    def tensors(self, table: pa.Table) -> dict[str, torch.Tensor]:
        missing = [c for c in self.raw_columns() if c not in table.column_names]
        if missing:
            raise InputDataError(f"raw rows lack column(s) {missing} of the schema the model was trained on "
                                 f"(has {table.column_names})")
        try:
            cols = self.rows.encode_features(table)
        except ListValueError as exc:
            where = (f"{table.column(PATH_COLUMN)[exc.row].as_py()}: "
                     if PATH_COLUMN in table.column_names and exc.row is not None else "")
            raise InputDataError(f"{where}column '{exc.column}': {exc.message}"
                                 f"{'' if exc.row is None else f' (batch row {exc.row})'}") from None
        domain = cols["domain"]
        if (domain < 0).any():
            i = int(np.flatnonzero(domain < 0)[0])
            value = table.column(self.schema.domain.column)[i].as_py()
            where = f"{table.column(PATH_COLUMN)[i].as_py()}: " if PATH_COLUMN in table.column_names else ""
            raise InputDataError(f"{where}column '{self.schema.domain.column}': domain value {value!r} is not one "
                                 f"the model was trained on ({', '.join(map(str, self.schema.domain.mapping or []))})")
        dense = [cols[f.name] for f in self.manifest.dense]
        for f, values in zip(self.manifest.dense, dense):
            if not np.isfinite(values).all():
                i = int(np.flatnonzero(~np.isfinite(values))[0])
                raise InputDataError(f"column '{f.name}': dense value at batch row {i} is null or not finite")
        sparse = [pad(*list_parts(cols[f.name]), f.max_len) if f.multi_hot else cols[f.name][:, None]
                  for f in self.manifest.sparse]
        return {"sparse": torch.from_numpy(np.concatenate(sparse, axis=1)),
                "dense": torch.from_numpy(np.stack(dense, axis=1)) if dense else torch.zeros(len(domain), 0),
                "domain": torch.from_numpy(domain)}
