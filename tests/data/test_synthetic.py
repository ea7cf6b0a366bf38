"""The synthetic generator: schema, determinism, domain skew, Zipf ids, and a learnable per-domain signal."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from hamur_dist.data import prepare
from hamur_dist.data.reader import read_split
from hamur_dist.data.synthetic import ALI_CCP_DOMAIN_WEIGHTS, PlantedSignal, SyntheticSpec
from hamur_dist.data.validation import validate_batch, verify_dataset

SMALL = dict(vocab_sizes=[300, 2000, 50, 10], num_dense=3, signal=2.5, row_group_rows=5000)


def hashes(m):
    return {s: [sh.sha256 for sh in info.shards] for s, info in m.splits.items()}


def test_schema_and_default_skew(tmp_path):
    m = prepare("synthetic", tmp_path / "s", rows=100_000, shard_rows=30_000, workers=1, progress=False)
    verify_dataset(tmp_path / "s")
    assert [f.name for f in m.sparse][:2] == ["f00", "f01"] and m.sparse[-1].name == "domain_indicator"
    assert len(m.sparse) == 23 and len(m.dense) == 8 and m.user_column == "f00"
    assert {f.name: f.vocab_size for f in m.sparse}["f09"] == 500_000
    assert [m.splits[s].rows for s in ("train", "val", "test")] == [80_000, 10_000, 10_000]
    assert [i.rows for i in m.splits["train"].shards] == [30_000, 30_000, 20_000]
    share = np.sum([i.rows_per_domain for i in m.splits.values()], axis=0) / 100_000
    expected = np.asarray(ALI_CCP_DOMAIN_WEIGHTS) / sum(ALI_CCP_DOMAIN_WEIGHTS)
    assert np.allclose(share, expected, atol=0.01) and share[1] < 0.02
    val = read_split(tmp_path / "s", "val")
    validate_batch(val, m)
    for f in m.sparse[:-1]:
        ids = val[f.name]
        assert ids.min() >= 1 and ids.max() < f.vocab_size
    # Zipf: the most frequent user id is far more common than under a uniform draw
    counts = np.bincount(val["f00"])
    assert counts.max() / len(val["f00"]) > 50 / 200_000


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = prepare("synthetic", tmp_path / "a", rows=20_000, shard_rows=5000, workers=1, seed=5, progress=False, **SMALL)
    b = prepare("synthetic", tmp_path / "b", rows=20_000, shard_rows=5000, workers=2, seed=5, progress=False, **SMALL)
    c = prepare("synthetic", tmp_path / "c", rows=20_000, shard_rows=5000, workers=1, seed=6, progress=False, **SMALL)
    assert hashes(a) == hashes(b)
    assert all(x != y for x, y in zip(hashes(a)["train"], hashes(c)["train"]))


def test_huge_vocabulary_costs_no_memory(tmp_path):
    m = prepare("synthetic", tmp_path / "h", rows=5000, workers=1, vocab_sizes=[10**9, 10**8], num_dense=0,
                progress=False)
    ids = read_split(tmp_path / "h", "train", columns=["f00"])["f00"]
    assert m.sparse[0].vocab_size == 10**9 and ids.max() < 10**9 and ids.max() > 10**6


def _one_hot(data, names, vocabs):
    """Sparse one-hot design matrix of the ids (and the raw dense values)."""
    n = len(data["label"])
    blocks = [sp.csr_matrix((np.ones(n), (np.arange(n), data[name])), shape=(n, vocab))
              for name, vocab in zip(names, vocabs)]
    dense = [data[k][:, None] for k in sorted(data) if k.startswith("d") and k[1:].isdigit()]
    return sp.hstack(blocks + [sp.csr_matrix(np.hstack(dense))]).tocsr()


def test_planted_signal_is_learnable_and_differs_per_domain(tmp_path):
    m = prepare("synthetic", tmp_path / "p", rows=60_000, workers=1, domain_weights=[1, 1, 1],
                base_ctr=[0.2, 0.3, 0.4], progress=False, **SMALL)
    train, test = read_split(tmp_path / "p", "train"), read_split(tmp_path / "p", "test")
    names, vocabs = [f.name for f in m.sparse[:-1]], [f.vocab_size for f in m.sparse[:-1]]
    x_train, x_test = _one_hot(train, names, vocabs), _one_hot(test, names, vocabs)
    # per-domain positive rates follow the configured base rates
    rates = np.array(m.splits["train"].positives_per_domain) / np.array(m.splits["train"].rows_per_domain)
    assert rates[0] < rates[1] < rates[2]
    # one logistic regression on one-hot ids learns the signal
    model = LogisticRegression(C=0.5, max_iter=300).fit(x_train, train["label"])
    assert roc_auc_score(test["label"], model.predict_proba(x_test)[:, 1]) > 0.6
    # the oracle (the generator's own logit) bounds what a model can reach
    spec = SyntheticSpec(**m.source["spec"])
    oracle = PlantedSignal(spec).logit(test["domain"], [test[n] for n in names],
                                       np.stack([test[f"d{k}"] for k in range(spec.num_dense)], axis=1))
    assert roc_auc_score(test["label"], oracle) > 0.7
    # a model of domain 0 scores domain 0 better than domain 2; domain 2's own model beats it there
    per_domain = {d: LogisticRegression(C=0.5, max_iter=300).fit(x_train[train["domain"] == d],
                                                                  train["label"][train["domain"] == d])
                  for d in (0, 2)}
    auc = {(d, e): roc_auc_score(test["label"][test["domain"] == e],
                                 per_domain[d].predict_proba(x_test[test["domain"] == e])[:, 1])
           for d in (0, 2) for e in (0, 2)}
    assert auc[(0, 0)] > auc[(0, 2)] + 0.03
    assert auc[(2, 2)] > auc[(0, 2)] + 0.03


def test_bad_options_are_rejected(tmp_path):
    from hamur_dist.config_loader import ConfigError
    with pytest.raises(ConfigError, match="domain_weights needs 3 values"):
        prepare("synthetic", tmp_path / "x", rows=10, domain_weights=[1, 2], progress=False)
    with pytest.raises(ConfigError, match="unknown option"):
        prepare("synthetic", tmp_path / "x", rows=10, vocab=[5], progress=False)
    with pytest.raises(ConfigError, match="valid: source"):
        prepare("movielens-1m", tmp_path / "x", rows=10)
    assert not (tmp_path / "x").exists()
