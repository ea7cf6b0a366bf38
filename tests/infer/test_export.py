"""`hamur export`: a torch.export program that plain torch loads scores like the eager model.

Small artifacts of several model families (BatchNorm with running statistics from a few training
forward passes) are exported and compared with the eager model (DomainLayout routing) on batches
of other sizes than the traced one; the program is also loaded in a subprocess that imports only
torch. Reference mode normalises over the batch given, in both; an existing --out is refused.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hamur_dist.cli import main
from hamur_dist.data.manifest import DenseFeature, DomainInfo, Manifest, SparseFeature
from hamur_dist.fileio import rename_no_replace
from hamur_dist.infer.export import TRACE_ROWS, export_model
from hamur_dist.model import build_model
from hamur_dist.model.artifact import load_artifact, save_artifact
from hamur_dist.model.config import HamurConfig, ModelConfig
from tests.model.model_helpers import random_batch

TOLERANCE = 1e-5


def paper(**kw) -> HamurConfig:
    return HamurConfig(enabled=True, rank=4, hyper_hidden=[8], bottleneck=4, **kw)


FAMILIES = {
    "mlp+hamur": dict(name="mlp", hamur=paper()),
    "wide_deep+hamur": dict(name="wide_deep", hamur=paper()),
    "shared_bottom+hamur": dict(name="shared_bottom", hamur=paper(insert_after=[0, 2])),
    "dcn": dict(name="dcn"),
    "dcn_v2+hamur": dict(name="dcn_v2", hamur=paper()),
    "star": dict(name="star"),
    "star+hamur, variants": dict(name="star", hamur=paper(hyper_input="hidden", adapter_norm="layer",
                                                          adapter_dropout=0.1, cells="shared")),
    "mmoe": dict(name="mmoe"),
    "ple": dict(name="ple"),
    "per_domain": dict(name="per_domain"),
    "shared_bottom": dict(name="shared_bottom"),
}


def tiny_manifest() -> Manifest:
    return Manifest(
        name="export-test",
        sparse=[SparseFeature("user", 40), SparseFeature("item", 64, hashed=True, fingerprint="ab" * 32),
                SparseFeature("cat", 6)],
        dense=[DenseFeature("x", "minmax", {"min": 0.0, "max": 5.0}), DenseFeature("y")],
        domain=DomainInfo("domain", 3, ["home", "search", "feed"]), label="label", splits={})


def make_artifact(run_dir, **model_kw):
    """RUN_DIR/model of a small model whose BatchNorm layers hold non-trivial running statistics."""
    cfg = ModelConfig(embed_dim=4, hidden_dims=[16, 8], tower_dims=[8], expert_dims=[8], num_experts=2,
                      **model_kw)
    manifest = tiny_manifest()
    torch.manual_seed(0)
    model = build_model(cfg, manifest.schema).train()
    with torch.no_grad():
        for step in range(4):
            sparse, dense, domain = random_batch(manifest.schema, 300, seed=step)
            model(sparse, dense * 3 + step, domain)     # shift the dense inputs: running stats move
    return save_artifact(run_dir / "model", cfg, manifest, model.state_dict())


def every_domain_batch(rows: int, seed: int):
    sparse, dense, _ = random_batch(tiny_manifest().schema, rows, seed=seed)
    domain = (torch.arange(rows) % 3)[torch.randperm(rows, generator=torch.Generator().manual_seed(seed))]
    return sparse, dense, domain


@torch.no_grad()
def eager(artifact, *inputs) -> torch.Tensor:
    return torch.sigmoid(load_artifact(artifact)(*inputs))


@torch.no_grad()
def exported(out, *inputs) -> torch.Tensor:
    return torch.export.load(out / "model.pt2").module()(*inputs)


@pytest.fixture(scope="module")
def mlp_export(tmp_path_factory):
    """(artifact, exported folder) of mlp + hamur paper mode, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("mlp")
    artifact = make_artifact(root / "run", **FAMILIES["mlp+hamur"])
    return artifact, export_model(root / "run", root / "exported")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_exported_program_matches_eager(family, tmp_path):
    artifact = make_artifact(tmp_path / "run", **FAMILIES[family])
    out = export_model(artifact, tmp_path / "exported")
    program = torch.export.load(out / "model.pt2").module()
    worst = 0.0
    for rows, seed in ((50, 1), (2 * TRACE_ROWS + 3, 2), (2, 3), (1, 4)):
        inputs = every_domain_batch(rows, seed)
        with torch.no_grad():
            got = program(*inputs)
        want = eager(artifact, *inputs)
        assert got.shape == (rows,) and got.dtype == torch.float32
        worst = max(worst, (got - want).abs().max().item())
    print(f"\n{family}: max |exported - eager| = {worst:.3g}")
    assert worst <= TOLERANCE


def test_encoding_describes_the_inputs(mlp_export):
    _, out = mlp_export
    doc = json.loads((out / "encoding.json").read_text())
    sparse, dense, domain = doc["inputs"]["sparse"], doc["inputs"]["dense"], doc["inputs"]["domain"]
    assert [f["name"] for f in sparse] == ["user", "item", "cat"]
    assert [f["vocab_size"] for f in sparse] == [40, 64, 6]
    assert [f["hashed"] for f in sparse] == [False, True, False] and sparse[1]["fingerprint"] == "ab" * 32
    assert dense == [{"name": "x", "scaling": "minmax", "params": {"min": 0.0, "max": 5.0}},
                     {"name": "y", "scaling": "none", "params": {}}]
    assert domain == {"column": "domain", "num_domains": 3, "names": ["home", "search", "feed"]}
    assert "torch.export.load" in doc["load"] and "hash_array" in doc["ids"] and "id 0" in doc["ids"]
    assert doc["min_batch"] == 1 and doc["batch_dependent"] is False
    assert not (out / "vocab").exists()      # the artifact has no vocabularies
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]   # no temporary left


def test_plain_torch_loads_it_without_hamur_or_ray(mlp_export, tmp_path):
    artifact, out = mlp_export
    inputs = every_domain_batch(37, seed=5)
    torch.save(dict(zip(("sparse", "dense", "domain"), inputs)), tmp_path / "inputs.pt")
    script = textwrap.dedent("""
        import sys, torch
        program = torch.export.load(sys.argv[1]).module()
        x = torch.load(sys.argv[2], weights_only=True)
        with torch.inference_mode():
            prob = program(x["sparse"], x["dense"], x["domain"])
        torch.save(prob.clone(), sys.argv[3])
        loaded = [m for m in sys.modules if m.split(".")[0].startswith(("hamur_dist", "ray"))]
        assert not loaded, loaded
    """)
    subprocess.run([sys.executable, "-c", script, str(out / "model.pt2"), str(tmp_path / "inputs.pt"),
                    str(tmp_path / "prob.pt")], cwd=tmp_path, check=True, timeout=120,
                   env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    prob = torch.load(tmp_path / "prob.pt", weights_only=True)
    assert (prob - eager(artifact, *inputs)).abs().max().item() <= TOLERANCE


def test_reference_mode_normalises_over_the_batch_given(tmp_path):
    artifact = make_artifact(tmp_path / "run", name="mlp", hamur=HamurConfig(
        enabled=True, mode="reference", rank=4, hyper_hidden=[8], bottleneck=4))
    out = export_model(artifact, tmp_path / "exported")
    assert json.loads((out / "encoding.json").read_text())["batch_dependent"] is True
    sparse, dense, domain = every_domain_batch(40, seed=6)
    whole = exported(out, sparse, dense, domain)
    diff = (whole - eager(artifact, sparse, dense, domain)).abs().max().item()
    print(f"\nmlp+hamur reference: max |exported - eager| = {diff:.3g}")
    assert diff <= TOLERANCE
    part = exported(out, sparse[:10], dense[:10], domain[:10])     # the same rows in another batch
    assert (part - eager(artifact, sparse[:10], dense[:10], domain[:10])).abs().max().item() <= TOLERANCE
    assert (part - whole[:10]).abs().max().item() > 1e-4           # scores depend on the batch
    with pytest.raises(RuntimeError, match="at least 2 rows"):      # one row has no batch statistics
        exported(out, sparse[:1], dense[:1], domain[:1])


def test_vocabularies_become_csv_files(tmp_path):
    artifact = make_artifact(tmp_path / "run", name="dcn")
    (artifact / "vocab").mkdir()
    values = {"user": ["alice", "bob, jr", 'say "hi"'], "cat": [3, 17]}
    for feature, vals in values.items():
        pq.write_table(pa.table({"value": vals, "id": list(range(1, len(vals) + 1)),
                                 "count": [5] * len(vals)}), artifact / "vocab" / f"{feature}.parquet")
    out = export_model(tmp_path / "run", tmp_path / "exported")
    assert sorted(p.name for p in (out / "vocab").iterdir()) == ["cat.csv", "user.csv"]
    for feature, vals in values.items():
        with open(out / "vocab" / f"{feature}.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["value", "id"]
        assert rows[1:] == [[str(v), str(i)] for i, v in enumerate(vals, start=1)]
    doc = json.loads((out / "encoding.json").read_text())
    assert [f.get("vocab_file") for f in doc["inputs"]["sparse"]] == ["vocab/user.csv", None, "vocab/cat.csv"]


def test_an_existing_out_is_refused_and_left_alone(mlp_export, tmp_path):
    artifact, _ = mlp_export
    full, empty = tmp_path / "full", tmp_path / "empty"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    empty.mkdir()
    for out in (full, empty):
        with pytest.raises(FileExistsError, match="exists"):
            export_model(artifact, out)
    assert [p.name for p in full.iterdir()] == ["keep.txt"] and (full / "keep.txt").read_text() == "mine"
    assert list(empty.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full"]
    # the final rename never replaces a folder that appeared meanwhile, even an empty one
    (tmp_path / "src").mkdir()
    with pytest.raises(FileExistsError):
        rename_no_replace(tmp_path / "src", empty)
    assert empty.is_dir() and (tmp_path / "src").is_dir()


def test_cli_exports_a_run(mlp_export, tmp_path, capsys):
    artifact, _ = mlp_export
    run_dir = artifact.parent
    assert main(["export", "--model", str(run_dir), "--out", str(tmp_path / "served")]) == 0
    printed = capsys.readouterr().out
    assert "model.pt2" in printed and "encoding.json" in printed
    inputs = every_domain_batch(9, seed=7)
    assert (exported(tmp_path / "served", *inputs) - eager(artifact, *inputs)).abs().max().item() <= TOLERANCE
    assert main(["export", "--model", str(run_dir), "--out", str(tmp_path / "served")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_bad_ids_are_refused_by_the_program(tmp_path):
    """per_domain shares one table across domains: an id past its feature's vocabulary would read
    another domain's rows, so the program keeps the check (an assertion, not a host-side branch)."""
    out = export_model(make_artifact(tmp_path / "run", name="per_domain"), tmp_path / "exported")
    sparse, dense, domain = every_domain_batch(5, seed=8)
    with pytest.raises(RuntimeError, match="outside its feature's vocabulary"):
        exported(out, sparse.clone().index_fill_(1, torch.tensor([2]), 6), dense, domain)   # cat has 6 ids
    with pytest.raises(RuntimeError, match="domain ids must be in"):
        exported(out, sparse, dense, domain.clone().fill_(3))
    assert exported(out, sparse[:0], dense[:0], domain[:0]).shape == (0,)
