"""``hamur export``: a trained model as a ``torch.export`` program that plain PyTorch loads.

    DIR/
      model.pt2       torch.export.load(path).module()(sparse, dense, domain) -> probabilities (B,)
      encoding.json   the input contract: column order, vocabulary sizes, scaling, domains
      vocab/<f>.csv   value,id for each sparse feature whose vocabulary the artifact holds

The program needs neither hamur_dist nor Ray. It routes with ``AllDomainsLayout`` (every domain's
parameters run on every row, each row keeps its own domain's output), which has no data-dependent
shape, so the batch size is dynamic. Everything is written to a hidden sibling folder that is
renamed into place at the end; an existing DIR is refused, never replaced.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import torch
from torch import nn

from hamur_dist.fileio import fsync_tree, rename_no_replace, sha256_file
from hamur_dist.model.artifact import MODEL_FILE, ArtifactError, load_artifact, model_dir

PROGRAM_FILE = "model.pt2"
ENCODING_FILE = "encoding.json"
VOCAB_DIR = "vocab"
TRACE_ROWS = 7          # example batch for tracing (any size >= 2: torch specialises sizes 0 and 1)
CHECK_ROWS = 13         # a batch of another size, scored by both programs as a self-check
CHECK_TOLERANCE = 1e-4  # max |exported - eager| accepted on the self-check batch

SIGNATURE = ("forward(sparse: int64 (B, S) slots (max_len columns per feature, in input order; -1 = padding "
             "of a multi_hot feature), dense: float32 (B, Dn), domain: int64 (B,)) "
             "-> float32 (B,) probabilities (sigmoid of the logit)")
HASHING = ("hashed features: id = pandas.util.hash_array(raw values, in the dtype the preparer read them) "
           "% (vocab_size - 1) + 1 (as uint64; hamur_dist.data.encoders.HashEncoder); a missing value is id 0")
SCALING = {"none": "x", "minmax": "(x - min) / (max - min), 0 when max == min",
           "log1p_minmax": "(log1p(x) - min) / (max - min), 0 when max == min (min, max of log1p(x))",
           "standard": "(x - mean) / std (std 0 -> 1)"}


class Scorer(nn.Module):
    """The exported signature: encoded inputs -> probabilities (B,)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.min_rows = min_batch(model)

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        if self.min_rows > 1:
            # The exported program does not check a dynamic size's minimum of 2 (torch checks only
            # minimums above 2); a tensor assertion stays in the graph and refuses a batch of one row.
            torch._assert_async(torch.scalar_tensor(sparse.shape[0]) >= self.min_rows,
                                f"this model (reference mode) normalises over the batch: it needs at least "
                                f"{self.min_rows} rows")
        return torch.sigmoid(self.model(sparse, dense, domain))


def example_inputs(schema, rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Valid random inputs: ids in range (a multi_hot feature: its max_len slots, each row's last
    0..max_len of them -1 pads), dense in [0, 1), domains cycling so each appears."""
    gen = torch.Generator().manual_seed(seed)
    columns = []
    for f in schema.sparse:
        slots = getattr(f, "max_len", 1)
        ids = torch.randint(f.vocab_size, (rows, slots), generator=gen)
        if slots > 1:
            used = torch.randint(slots + 1, (rows, 1), generator=gen)
            ids = ids.masked_fill(torch.arange(slots) >= used, -1)
        columns.append(ids)
    sparse = torch.cat(columns, dim=1)
    dense = torch.rand(rows, len(schema.dense), generator=gen)
    domain = torch.arange(rows) % schema.num_domains
    return sparse, dense, domain


def min_batch(model) -> int:
    """Reference-mode adapters normalise over the batch, which needs at least 2 rows."""
    return 2 if model.needs_batch_statistics else 1


@torch.no_grad()
def trace(model) -> torch.export.ExportedProgram:
    """``model`` (eval mode) as an exported program with a dynamic batch dimension."""
    model.route_every_domain = True
    try:
        batch = torch.export.Dim("batch", min=min_batch(model))
        shapes = ({0: batch}, {0: batch}, {0: batch})
        return torch.export.export(Scorer(model).eval(), example_inputs(model.schema, TRACE_ROWS),
                                   dynamic_shapes=shapes)
    finally:
        model.route_every_domain = False


@torch.no_grad()
def check_against_eager(program: torch.export.ExportedProgram, model) -> float:
    """Max |exported - eager| on a batch of another size than the traced one (eager: DomainLayout)."""
    inputs = example_inputs(model.schema, CHECK_ROWS, seed=1)
    diff = (program.module()(*inputs) - torch.sigmoid(model(*inputs))).abs().max().item()
    if not diff <= CHECK_TOLERANCE:
        raise RuntimeError(f"the exported program's probabilities differ from the model's by {diff:.3g} "
                           f"(> {CHECK_TOLERANCE}) on a check batch; not writing it")
    return diff


def _features(model) -> dict:
    """The inputs, in column order: from the artifact's manifest.json, else from the model's schema."""
    schema, manifest = model.schema, model.training_manifest
    source = manifest if manifest is not None else schema
    if [(f.name, f.vocab_size) for f in source.sparse] != [(f.name, f.vocab_size) for f in schema.sparse] \
            or [f.name for f in source.dense] != schema.dense_names:
        raise ArtifactError("the artifact's manifest.json lists other features than the model was built with")
    sparse = [{"name": f.name, "vocab_size": f.vocab_size, "hashed": f.hashed,
               **({"source": f.source} if f.source else {}),
               **({"fingerprint": f.fingerprint} if f.fingerprint else {}),
               **({"multi_hot": True, "max_len": f.max_len} if getattr(f, "multi_hot", False) else {})}
              for f in source.sparse]
    dense = [{"name": f.name, "scaling": f.scaling, "params": f.params} for f in source.dense]
    names = manifest.domain.names if manifest is not None else None
    domain = {"column": schema.domain_column, "num_domains": schema.num_domains, "names": names}
    return {"sparse": sparse, "dense": dense, "domain": domain}


def encoding(model, artifact: Path, vocab_files: dict[str, str], check_diff: float) -> dict:
    cfg = model.model_config
    inputs = _features(model)
    for f in inputs["sparse"]:
        if f["name"] in vocab_files:
            f["vocab_file"] = vocab_files[f["name"]]
    batch_dependent = model.needs_batch_statistics
    return {
        "format": 1,
        "program": PROGRAM_FILE,
        "load": f"torch.export.load('{PROGRAM_FILE}').module()",
        "signature": SIGNATURE,
        "inputs": inputs,
        "ids": "sparse ids are in [0, vocab_size); id 0 = unknown / rare / missing. " + HASHING,
        "dense_scaling": {k: v for k, v in SCALING.items() if any(f["scaling"] == k for f in inputs["dense"])},
        "min_batch": min_batch(model),
        "batch_dependent": batch_dependent,
        "batch_note": ("reference mode: adapter outputs are normalised over the batch given, so a row's "
                       "score depends on the other rows (score whole batches as in evaluation)"
                       if batch_dependent else "each row's score depends on that row only"),
        "model": {"name": cfg.name, "hamur_enabled": cfg.hamur.enabled, "hamur_mode": cfg.hamur.mode,
                  "artifact_sha256": sha256_file(artifact / MODEL_FILE)},
        "torch_version": torch.__version__,
        "check_max_abs_diff": check_diff,
    }


def write_vocabularies(artifact: Path, out: Path) -> dict[str, str]:
    """artifact/vocab/<f>.parquet (value, id, count) -> out/vocab/<f>.csv (value,id); {feature: path}."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    written = {}
    for path in sorted((artifact / VOCAB_DIR).glob("*.parquet")):
        table = pq.read_table(path, columns=["value", "id"])
        (out / VOCAB_DIR).mkdir(exist_ok=True)
        with open(out / VOCAB_DIR / f"{path.stem}.csv", "wb") as f:
            f.write(b"value,id\n")
            pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
        written[path.stem] = f"{VOCAB_DIR}/{path.stem}.csv"
    return written


def export_model(model_path: str | Path, out_dir: str | Path) -> Path:
    """Export the artifact at ``model_path`` (a run directory or its model/ folder) to ``out_dir``."""
    out = Path(out_dir).absolute()
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"output {out} exists; choose another --out (export never replaces a folder)")
    artifact = model_dir(model_path)
    model = load_artifact(artifact)
    program = trace(model)
    diff = check_against_eager(program, model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        torch.export.save(program, tmp / PROGRAM_FILE)
        vocab_files = write_vocabularies(artifact, tmp)
        doc = encoding(model, artifact, vocab_files, diff)
        (tmp / ENCODING_FILE).write_text(json.dumps(doc, indent=2) + "\n")
        fsync_tree(tmp)
        rename_no_replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
