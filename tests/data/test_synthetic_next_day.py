"""Next-day synthetic data (``prepare synthetic --like``): frozen or grown vocabularies, drifted signal,
fingerprints, lineage, seeds and determinism."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from hamur_dist.cli import main
from hamur_dist.config_loader import ConfigError
from hamur_dist.data import prepare
from hamur_dist.data.reader import read_split
from hamur_dist.data.synthetic import PlantedSignal, SyntheticSpec
from hamur_dist.data.validation import verify_dataset
from hamur_dist.data.vocabulary import identity_fingerprint, rule_fingerprint
from hamur_dist.infer.dataset_match import input_encoding_difference

VOCABS = [300, 2000, 50, 10]
RUN = dict(shard_rows=1500, row_group_rows=1000, workers=1, progress=False)
NAMES = [f"f{i:02d}" for i in range(len(VOCABS))]


def day_one(tmp_path, seed=3, name="day1"):
    m = prepare("synthetic", tmp_path / name, rows=3000, seed=seed, vocab_sizes=VOCABS, num_dense=2, **RUN)
    return m, tmp_path / name


def ids(root, name) -> np.ndarray:
    return np.concatenate([np.asarray(read_split(root, s, columns=[name])[name]) for s in ("train", "val", "test")])


def zeros(root, name) -> int:
    return int((ids(root, name) == 0).sum())


def max_id(root, name) -> int:
    return int(ids(root, name).max())


def hashes(m):
    return {s: [sh.sha256 for sh in info.shards] for s, info in m.splits.items()}


def signal(m) -> PlantedSignal:
    return PlantedSignal(SyntheticSpec(**m.source["spec"]))


def test_fresh_dataset_records_fingerprints_and_no_unknown_ids(tmp_path):
    m, _ = day_one(tmp_path)
    by_name = {f.name: f for f in m.sparse}
    assert [by_name[n].fingerprint for n in NAMES] == [identity_fingerprint(v) for v in VOCABS]
    rule = {"encoding": "domain", "mapping": [], "bins": [], "num_domains": 3}
    assert by_name["domain_indicator"].fingerprint == rule_fingerprint(rule)
    assert m.unknown_ids == dict.fromkeys(NAMES, 0) and not m.lineage


def test_frozen_next_day_keeps_the_encoding_and_counts_new_ids(tmp_path):
    parent, d1 = day_one(tmp_path)
    m = prepare("synthetic", tmp_path / "d2", like=d1, rows=3000, new_ids=0.1, **RUN)
    verify_dataset(tmp_path / "d2")
    assert [(f.name, f.vocab_size, f.fingerprint) for f in m.sparse] == \
        [(f.name, f.vocab_size, f.fingerprint) for f in parent.sparse]
    assert m.domain == parent.domain and m.source["spec"]["seed"] == 4        # default: the parent's seed + 1
    for name in NAMES:
        assert zeros(d1, name) == 0                                            # the parent has no unknown id
        assert m.unknown_ids[name] == zeros(tmp_path / "d2", name) > 0
        assert 0.05 < m.unknown_ids[name] / 3000 < 0.15                        # about the new_ids share
    assert input_encoding_difference(parent, m) is None
    digest = hashlib.sha256((d1 / "manifest.json").read_bytes()).hexdigest()
    assert m.lineage["parent_manifest_sha256"] == digest
    assert m.lineage["vocabularies"] == "frozen" and m.lineage["grown"] == {}


def test_grow_vocab_covers_the_new_ids(tmp_path):
    parent, d1 = day_one(tmp_path)
    m = prepare("synthetic", tmp_path / "d2", like=d1, grow_vocab=True, rows=3000, new_ids=0.1, **RUN)
    verify_dataset(tmp_path / "d2")
    sizes = {f.name: f.vocab_size for f in m.sparse}
    for name, old in zip(NAMES, VOCABS):
        top = max_id(tmp_path / "d2", name)
        assert top >= old and sizes[name] == top + 1 and zeros(tmp_path / "d2", name) == 0
        assert m.lineage["grown"][name] == [old, top + 1]
    assert {f.name: f.fingerprint for f in m.sparse}["f00"] == identity_fingerprint(sizes["f00"])
    assert m.unknown_ids == dict.fromkeys(NAMES, 0) and m.lineage["vocabularies"] == "grown"
    found = input_encoding_difference(parent, m)
    assert found is not None and found[0] in NAMES and "vocab_size" in found[1]
    # a next day of the grown day: new ids lie beyond the grown vocabularies
    m3 = prepare("synthetic", tmp_path / "d3", like=tmp_path / "d2", rows=1000, **RUN)
    assert [f.vocab_size for f in m3.sparse] == [f.vocab_size for f in m.sparse] and m3.source["spec"]["seed"] == 5
    assert all(m3.unknown_ids[n] == zeros(tmp_path / "d3", n) for n in NAMES)
    assert [step[0] for step in m3.source["spec"]["drift_steps"]] == [4, 5]


def test_seeds_and_options_are_checked(tmp_path):
    _, d1 = day_one(tmp_path)
    with pytest.raises(ConfigError, match="new draws"):
        prepare("synthetic", tmp_path / "x", like=d1, seed=3, **RUN)
    with pytest.raises(ConfigError, match="give --like"):
        prepare("synthetic", tmp_path / "x", rows=100, drift=0.2, **RUN)
    with pytest.raises(ConfigError, match="cannot be changed"):
        prepare("synthetic", tmp_path / "x", like=d1, vocab_sizes=[5], **RUN)
    with pytest.raises(ConfigError, match=r"--drift must be in \[0, 1\]"):
        prepare("synthetic", tmp_path / "x", like=d1, drift=1.5, **RUN)
    with pytest.raises(ConfigError, match=r"--new-ids must be in \[0, 1\)"):
        prepare("synthetic", tmp_path / "x", like=d1, new_ids=1.0, **RUN)
    assert not (tmp_path / "x").exists()


def test_next_day_is_deterministic_whatever_the_workers(tmp_path):
    _, d1 = day_one(tmp_path)
    a = prepare("synthetic", tmp_path / "a", like=d1, seed=9, rows=3000, **RUN)
    b = prepare("synthetic", tmp_path / "b", like=d1, seed=9, rows=3000, **{**RUN, "workers": 2})
    assert hashes(a) == hashes(b) and a.unknown_ids == b.unknown_ids and a.unknown_ids["f00"] > 0


def test_drift_moves_the_planted_weights_and_keeps_id_effects(tmp_path):
    parent, d1 = day_one(tmp_path)
    same = prepare("synthetic", tmp_path / "same", like=d1, drift=0.0, new_ids=0.0, rows=500, **RUN)
    moved = prepare("synthetic", tmp_path / "moved", like=d1, drift=0.5, rows=500, **RUN)
    base, kept, turned = signal(parent), signal(same), signal(moved)
    assert np.array_equal(base.w, kept.w) and np.array_equal(base.v, kept.v) and np.array_equal(base.bias, kept.bias)
    assert same.unknown_ids == dict.fromkeys(NAMES, 0)
    assert not np.allclose(base.w, turned.w) and not np.allclose(base.v, turned.v)
    cosine = (base.w * turned.w).sum() / np.sqrt((base.w ** 2).sum() * (turned.w ** 2).sum())
    assert 0.5 < cosine < 0.99                                   # about sqrt(1 - 0.5^2) = 0.87
    some, domain = np.arange(1, 400), np.zeros(399, dtype=np.int64)       # known and new ids of f00
    assert np.array_equal(base.effect(0, some, domain), turned.effect(0, some, domain))


def test_cli_next_day(tmp_path, capsys):
    _, d1 = day_one(tmp_path)
    code = main(["prepare", "synthetic", "--out", str(tmp_path / "d2"), "--like", str(d1), "--rows", "1000",
                 "--drift", "0.2", "--new-ids", "0.1", "--workers", "1"])
    text = capsys.readouterr().out
    m = verify_dataset(tmp_path / "d2")
    assert code == 0 and m.source["spec"]["drift_steps"] == [[4, 0.2]] and m.source["spec"]["new_ids"] == 0.1
    assert "encoded like" in text and "unknown ids" in text
