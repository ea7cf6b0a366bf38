"""The table preparer: YAML schema on CSV and Parquet, vocabularies (min_count), hashing, scaling, splits."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from hamur_dist.config_loader import ConfigError
from hamur_dist.data import prepare
from hamur_dist.data.reader import read_split
from hamur_dist.data.table_schema import load_table_schema
from hamur_dist.data.validation import verify_dataset

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "datasets" / "example-table.yaml"


def click_logs(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    """Made-up logs with the columns of configs/datasets/example-table.yaml."""
    rng = np.random.default_rng(seed)
    query = rng.choice(["shoes", "red dress", "phone case", "lamp", None], n).astype(object)
    return pd.DataFrame({
        "clicked": rng.integers(0, 2, n), "converted": rng.integers(0, 2, n),
        "surface": rng.choice(["home", "search", "detail"], n, p=[0.5, 0.3, 0.2]),
        "user_id": rng.zipf(1.5, n) % 5000, "item_id": rng.integers(100, 400, n),
        "query": query, "device": rng.choice(["ios", "android", "web"], n),
        "category_id": rng.integers(0, 12, n), "price": rng.exponential(30.0, n),
        "age": rng.integers(16, 70, n), "dwell_seconds": rng.normal(40, 12, n),
        "event_time": pd.date_range("2024-01-01", periods=n, freq="min").astype(str),
        "session_id": [f"s{i}" for i in rng.integers(0, 500, n)],
    })


def in_order(schema: dict) -> dict:
    """The same schema with every row in train, in input order (so rows line up with the raw data)."""
    schema = copy.deepcopy(schema)
    schema["split"] = {"method": "random", "fractions": [1.0, 0.0, 0.0], "shuffle": False}
    return schema


@pytest.fixture
def example_schema() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_every_dataset_yaml_loads():
    for path in sorted((REPO / "configs" / "datasets").glob("*.yaml")):
        assert load_table_schema(path).name, path


def test_example_yaml_prepares_csv(tmp_path, example_schema):
    raw = click_logs()
    src = tmp_path / "src"
    src.mkdir()
    raw.iloc[:1800].to_csv(src / "day1.csv", index=False)
    raw.iloc[1800:].to_csv(src / "day2.csv.gz", index=False)
    m = prepare("table", tmp_path / "out", schema=str(EXAMPLE), source=str(src), shard_rows=1000,
                row_group_rows=256, chunk_rows=700, progress=False)
    verify_dataset(tmp_path / "out")
    assert [m.splits[s].rows for s in ("train", "val", "test")] == [2400, 300, 300]
    assert len(m.splits["train"].shards) == 3
    total_domains = np.sum([m.splits[s].rows_per_domain for s in m.splits], axis=0)
    assert total_domains.tolist() == raw["surface"].map({"home": 0, "search": 1, "detail": 2}).value_counts() \
        .sort_index().tolist()
    vocab = {f.name: f for f in m.sparse}
    counts = raw["user_id"].value_counts()
    assert vocab["user_id"].vocab_size == int((counts >= 2).sum()) + 1
    assert vocab["query"].hashed and vocab["query"].vocab_size == 1000003
    assert vocab["category"].vocab_size == 12 and vocab["category"].source == "category_id"
    assert m.extra_labels == ["converted"] and m.user_column == "user_id"


def test_encodings_and_scalings_row_by_row(tmp_path, example_schema):
    raw = click_logs()
    raw.to_csv(tmp_path / "logs.csv", index=False)
    prepare("table", tmp_path / "out", schema=in_order(example_schema), source=str(tmp_path / "logs.csv"),
            chunk_rows=500, progress=False)
    out = read_split(tmp_path / "out", "train")
    # vocabulary with min_count 2: sorted values seen twice get 1..n, the rest 0
    counts = raw["user_id"].value_counts()
    kept = sorted(counts[counts >= 2].index)
    expected = raw["user_id"].map({v: i + 1 for i, v in enumerate(kept)}).fillna(0).astype(int)
    assert np.array_equal(out["user_id"], expected.to_numpy())
    assert np.array_equal(out["device"], raw["device"].map({"android": 1, "ios": 2, "web": 3}).to_numpy())
    # hashing: missing -> 0, equal values -> equal ids, ids inside the buckets
    q = raw["query"]
    assert np.all(out["query"][q.isna().to_numpy()] == 0)
    ids = pd.Series(out["query"][q.notna().to_numpy()]).groupby(q.dropna().to_numpy()).nunique()
    assert (ids == 1).all() and out["query"].max() < 1000003 and len(set(out["query"]) - {0}) == 4
    assert np.array_equal(out["category"], raw["category_id"].to_numpy())
    # scalings
    lp = np.log1p(raw["price"].to_numpy())
    assert np.allclose(out["price"], (lp - lp.min()) / (lp.max() - lp.min()), atol=1e-6)
    age = raw["age"].to_numpy()
    assert np.allclose(out["age"], (age - age.min()) / (age.max() - age.min()), atol=1e-6)
    assert abs(out["dwell_seconds"].mean()) < 1e-4 and abs(out["dwell_seconds"].std() - 1) < 1e-3
    assert np.array_equal(out["domain"], raw["surface"].map({"home": 0, "search": 1, "detail": 2}).to_numpy())
    assert np.array_equal(out["domain_indicator"], out["domain"] + 1)
    assert np.array_equal(out["label"], raw["clicked"].to_numpy()) and out["label"].dtype == np.float32
    assert np.array_equal(out["converted"], raw["converted"].to_numpy())


def test_csv_and_parquet_inputs_give_identical_shards(tmp_path, example_schema):
    raw = click_logs(2000)
    (tmp_path / "csv").mkdir()
    (tmp_path / "pq").mkdir()
    raw.to_csv(tmp_path / "csv" / "logs.csv", index=False)
    raw.to_parquet(tmp_path / "pq" / "logs.parquet", index=False)
    hashes = []
    for kind in ("csv", "pq"):
        m = prepare("table", tmp_path / f"out-{kind}", schema=example_schema, source=str(tmp_path / kind),
                    chunk_rows=600, shard_rows=500, progress=False)
        hashes.append({s: [sh.sha256 for sh in i.shards] for s, i in m.splits.items()})
    assert hashes[0] == hashes[1]


def test_same_seed_same_split_other_seed_other_split(tmp_path, example_schema):
    raw = click_logs(1000)
    raw.to_parquet(tmp_path / "logs.parquet", index=False)
    def shard_hashes(name, seed):  # noqa: E306
        m = prepare("table", tmp_path / name, schema=example_schema, source=str(tmp_path / "logs.parquet"),
                    seed=seed, progress=False)
        return [sh.sha256 for sh in m.splits["train"].shards]
    assert shard_hashes("a", 1) == shard_hashes("b", 1) != shard_hashes("c", 2)


def test_time_split_and_hash_only_schema(tmp_path):
    n = 1000
    rng = np.random.default_rng(3)
    raw = pd.DataFrame({"y": rng.integers(0, 2, n), "d": rng.integers(0, 2, n), "ts": rng.permutation(n) * 10,
                        "big_id": rng.integers(0, 10**12, n)})
    raw.to_parquet(tmp_path / "t.parquet", index=False)
    schema = {"name": "t", "label": "y", "domain": {"column": "d", "num_domains": 2, "sparse_feature": None},
              "sparse": [{"name": "big_id", "encoding": "hash", "buckets": 97}],
              "split": {"method": "time", "time_column": "ts", "shuffle": False}}
    m = prepare("table", tmp_path / "out", schema=schema, source=str(tmp_path / "t.parquet"), progress=False)
    assert [m.splits[s].rows for s in ("train", "val", "test")] == [800, 100, 100]
    assert [f.name for f in m.sparse] == ["big_id"] and m.sparse[0].vocab_size == 97
    train = pq.read_table(tmp_path / "out" / "train" / "part-00000.parquet").to_pandas()
    assert train["big_id"].between(1, 96).all()
    test_ids = read_split(tmp_path / "out", "test")["big_id"]
    expected_test = raw[raw["ts"] >= 9000]["big_id"]
    assert len(test_ids) == len(expected_test)


def test_schema_mistakes_name_the_key(tmp_path):
    base = {"name": "x", "label": "y", "domain": {"column": "d", "num_domains": 2}, "sparse": ["a"]}
    with pytest.raises(ConfigError, match="sparse.*hash.*buckets"):
        load_table_schema({**base, "sparse": [{"name": "a", "encoding": "hash"}]})
    with pytest.raises(ConfigError, match="unknown config key 'domain.colum'"):
        load_table_schema({**base, "domain": {"colum": "d", "num_domains": 2}})
    with pytest.raises(ConfigError, match="exactly one of mapping, bins, num_domains"):
        load_table_schema({**base, "domain": {"column": "d", "num_domains": 2, "bins": [1.0]}})
    with pytest.raises(ConfigError, match="user"):
        load_table_schema({**base, "user": "nobody"})
    with pytest.raises(ConfigError, match="fractions"):
        load_table_schema({**base, "split": {"fractions": [0.5, 0.1]}})
