"""Ali-CCP samples (both variants), and the ali-ccp table YAML giving the very same shards."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hamur_dist.data import prepare
from hamur_dist.data.aliccp import DENSE, SPARSE
from hamur_dist.data.reader import read_split
from hamur_dist.data.validation import verify_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("variant, train_domains, train_clicks", [
    ("hamur", [100, 0, 0], [7, 0, 0]),
    ("scenario-wise-rec", [69, 19, 12], [6, 1, 0]),
])
def test_aliccp_samples_keep_splits_and_map_domains(shared_data, tmp_path, variant, train_domains, train_clicks):
    src = shared_data / "ali-ccp" / variant
    prepare("ali-ccp", tmp_path / variant, source=str(src), progress=False)
    m = verify_dataset(tmp_path / variant)
    assert [m.splits[s].rows for s in ("train", "val", "test")] == [100, 50, 50]
    assert m.splits["train"].rows_per_domain == train_domains
    assert m.splits["train"].positives_per_domain == train_clicks
    assert m.label == "label" and m.extra_labels == ["purchase"] and m.user_column == "101"
    assert [f.name for f in m.sparse] == SPARSE + ["domain_indicator"]
    assert [f.name for f in m.dense] == DENSE and all(f.scaling == "none" for f in m.dense)

    raw = pd.read_csv(src / "ali_ccp_train_sample.csv")
    train = read_split(tmp_path / variant, "train")
    vocab = {f.name: f.vocab_size for f in m.sparse}
    for column in ("101", "205", "301", "150_14"):
        # ids are kept as given (order is shuffled within the split)
        assert sorted(train[column].tolist()) == sorted(raw[column].tolist())
        all_raw = pd.concat([pd.read_csv(p) for p in sorted(src.glob("*.csv"))])
        assert vocab[column] == all_raw[column].max() + 1
    assert sorted(train["D853"].tolist()) == pytest.approx(sorted(raw["D853"].astype("float32").tolist()))
    assert train["purchase"].sum() == raw["purchase"].sum()
    assert np.array_equal(np.sort(train["domain"]), np.sort(raw["301"].map({1: 0, 2: 1, 3: 2}).to_numpy()))


def test_aliccp_yaml_is_the_same_dataset(shared_data, tmp_path):
    src = str(shared_data / "ali-ccp" / "scenario-wise-rec")
    a = prepare("ali-ccp", tmp_path / "a", source=src, progress=False)
    b = prepare("table", tmp_path / "b", schema=str(REPO / "configs" / "datasets" / "ali-ccp.yaml"), source=src,
                progress=False)
    hashes = lambda m: {s: [sh.sha256 for sh in info.shards] for s, info in m.splits.items()}  # noqa: E731
    assert hashes(a) == hashes(b)
    assert a.sparse == b.sparse and a.dense == b.dense and a.domain == b.domain


def test_aliccp_like_freezes_identity_ids_and_grow_vocab_covers_them(shared_data, tmp_path):
    """Day two of Ali-CCP: the other sample encoded like the first (ids past its tables -> 0, counted)."""
    first = prepare("ali-ccp", tmp_path / "one", source=str(shared_data / "ali-ccp" / "hamur"), progress=False)
    other = shared_data / "ali-ccp" / "scenario-wise-rec"
    frozen = prepare("ali-ccp", tmp_path / "two", source=str(other), like=tmp_path / "one", progress=False)
    assert [f.vocab_size for f in frozen.sparse] == [f.vocab_size for f in first.sparse]
    raw = pd.concat([pd.read_csv(p) for p in sorted(other.glob("*.csv"))])
    sizes = {f.name: f.vocab_size for f in first.sparse}
    expected = {name: int((raw[name] >= sizes[name]).sum()) for name in SPARSE}
    assert frozen.unknown_ids == expected and sum(expected.values()) > 0
    grown = prepare("ali-ccp", tmp_path / "three", source=str(other), like=tmp_path / "one", grow_vocab=True,
                    progress=False)
    for name in SPARSE:
        assert {f.name: f.vocab_size for f in grown.sparse}[name] == max(sizes[name], raw[name].max() + 1)
    assert grown.lineage["parent_manifest_sha256"] and not any(grown.unknown_ids.values())
