"""``prepare --like``: new logs encoded like an existing dataset (frozen, grown, new domains), lineage."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hamur_dist.config_loader import ConfigError
from hamur_dist.data import prepare
from hamur_dist.data.reader import read_split
from hamur_dist.data.validation import DataError
from hamur_dist.data.vocabulary import read_vocabulary
from hamur_dist.infer.dataset_match import input_encoding_difference

SCHEMA = {
    "name": "clicks", "label": {"column": "clicked"},
    "domain": {"column": "surface", "mapping": {"home": 0, "search": 1}, "names": ["home", "search"]},
    "user": "user", "sparse": ["user", "item", {"name": "shop", "encoding": "identity"}],
    "dense": [{"name": "price", "scaling": "standard"}],
    "split": {"shuffle": False, "fractions": [0.5, 0.25, 0.25]},
}


def logs(users, items, surfaces, shops, seed=0) -> pd.DataFrame:
    n = len(users)
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user": users, "item": items, "surface": surfaces, "shop": shops,
                         "price": rng.random(n) * 10, "clicked": rng.integers(0, 2, n)})


def day_one(tmp_path):
    folder = tmp_path / "day1"
    folder.mkdir()
    logs(["a", "b", "c", "a"] * 10, [1, 2, 3, 4] * 10, ["home", "search"] * 20, [0, 1, 2, 3] * 10) \
        .to_csv(folder / "logs.csv", index=False)
    return prepare("table", tmp_path / "d1", schema=SCHEMA, source=folder), tmp_path / "d1"


def day_two(tmp_path, surfaces=None, name="day2"):
    folder = tmp_path / name
    folder.mkdir()
    users = ["a", "d", "d", "b", "e"] * 8
    logs(users, [1, 5, 2, 9, 9] * 8, surfaces or ["home", "search"] * 20, [0, 7, 1, 2, 9] * 8, seed=1) \
        .to_csv(folder / "logs.csv", index=False)
    return folder


def column(root, split, name):
    return np.concatenate([np.asarray(read_split(root, s)[name]) for s in ("train", "val", "test")]) \
        if split is None else np.asarray(read_split(root, split)[name])


def test_frozen_encoding_counts_unknown_ids_and_records_lineage(tmp_path):
    parent, d1 = day_one(tmp_path)
    m = prepare("table", tmp_path / "d2", source=day_two(tmp_path), like=d1)
    assert [f.vocab_size for f in m.sparse] == [f.vocab_size for f in parent.sparse]
    assert [f.fingerprint for f in m.sparse] == [f.fingerprint for f in parent.sparse]
    assert m.dense[0].params == parent.dense[0].params          # scaled with day one's statistics
    # users d and e (3 of every 5 rows), items 5 and 9, shops 7 and 9 are unknown
    assert m.unknown_ids == {"user": 24, "item": 24, "shop": 16}
    users = column(tmp_path / "d2", None, "user")
    assert (users == 0).sum() == 24
    vocab = read_vocabulary(d1, "user").column("value").to_pylist()
    assert vocab == ["a", "b", "c"]                                     # 'a' -> 1, 'b' -> 2 in both
    assert set(users[users > 0]) == {1, 2}
    digest = hashlib.sha256((d1 / "manifest.json").read_bytes()).hexdigest()
    assert m.lineage["parent_manifest_sha256"] == digest
    assert m.lineage["vocabularies"] == "frozen" and m.lineage["grown"] == {}
    assert input_encoding_difference(parent, m) is None


def test_grow_vocab_appends_new_ids_after_the_old_ones(tmp_path):
    parent, d1 = day_one(tmp_path)
    m = prepare("table", tmp_path / "d2", source=day_two(tmp_path), like=d1, grow_vocab=True)
    sizes = {f.name: f.vocab_size for f in m.sparse}
    assert sizes["user"] == 6 and sizes["item"] == 7 and sizes["shop"] == 10    # + d, e; + 5, 9; ids up to 9
    assert read_vocabulary(tmp_path / "d2", "user").column("value").to_pylist() == ["a", "b", "c", "d", "e"]
    assert m.lineage["grown"] == {"user": [4, 6], "item": [5, 7], "shop": [4, 10]}
    assert m.unknown_ids == {"user": 0, "item": 0, "shop": 0}
    diff = input_encoding_difference(parent, m)
    assert diff is not None and diff[0] == "user"          # a grown vocabulary is another encoding


def test_unknown_domain_is_an_error_naming_file_row_and_value(tmp_path):
    _, d1 = day_one(tmp_path)
    folder = day_two(tmp_path, surfaces=["home"] * 13 + ["video"] + ["home"] * 26)
    with pytest.raises(DataError) as err:
        prepare("table", tmp_path / "d2", source=folder, like=d1)
    text = str(err.value)
    assert "logs.csv" in text and "row 13" in text and "'video'" in text and "surface" in text
    assert not (tmp_path / "d2").exists()


def test_add_domains_gives_new_values_ids_after_the_old_ones(tmp_path):
    parent, d1 = day_one(tmp_path)
    folder = day_two(tmp_path, surfaces=["video", "home", "search", "ads"] * 10)
    m = prepare("table", tmp_path / "d2", source=folder, like=d1, add_domains=True)
    assert m.domain.names == ["home", "search", "ads", "video"] and m.domain.num_domains == 4
    assert m.lineage["added_domains"] == ["ads", "video"]
    indicator = {f.name: f for f in m.sparse}["domain_indicator"]
    assert indicator.vocab_size == 5 and m.lineage["grown"]["domain_indicator"] == [3, 5]
    raw = pd.read_csv(folder / "logs.csv")["surface"]
    assert sorted(set(column(tmp_path / "d2", None, "domain"))) == [0, 1, 2, 3]
    counts = dict(zip(*np.unique(column(tmp_path / "d2", None, "domain"), return_counts=True)))
    assert counts[3] == (raw == "video").sum() and counts[0] == (raw == "home").sum()


def test_like_options_are_checked(tmp_path):
    _, d1 = day_one(tmp_path)
    with pytest.raises(ConfigError, match="give --like"):
        prepare("table", tmp_path / "x", schema=SCHEMA, source=tmp_path / "day1", grow_vocab=True)
    other = dict(SCHEMA, dense=[{"name": "price", "scaling": "minmax"}])
    with pytest.raises(ConfigError, match="price"):
        prepare("table", tmp_path / "x", schema=other, source=day_two(tmp_path), like=d1)
    with pytest.raises(ConfigError, match="table"):
        prepare("movielens-1m", tmp_path / "x", source=tmp_path / "day1", like=d1)


def test_separately_prepared_data_of_equal_sizes_is_another_encoding(tmp_path):
    parent, _ = day_one(tmp_path)
    folder = tmp_path / "other"
    folder.mkdir()
    # the same users, items and shops, but other values: equal vocabulary sizes, other ids
    logs(["x", "y", "z", "x"] * 10, [11, 12, 13, 14] * 10, ["home", "search"] * 20, [0, 1, 2, 3] * 10) \
        .to_csv(folder / "logs.csv", index=False)
    other = prepare("table", tmp_path / "o", schema=SCHEMA, source=folder)
    assert [f.vocab_size for f in other.sparse] == [f.vocab_size for f in parent.sparse]
    feature, how = input_encoding_difference(parent, other)
    assert feature == "user" and "fingerprint" in how


def test_movielens_domains_then_add_the_held_out_one(tmp_path, grouplens_dir):
    folder, merged = grouplens_dir
    two = prepare("movielens-1m", tmp_path / "two", source=folder, domains=[0, 1])
    assert two.domain.names == ["age under 25", "age 25-34"]
    kept = merged["age"].isin([1, 18, 25]).sum()
    assert sum(s.rows for s in two.splits.values()) == kept and not two.skipped_rows
    with pytest.raises(DataError, match="unknown domain"):
        prepare("movielens-1m", tmp_path / "x", source=folder, like=tmp_path / "two")
    three = prepare("movielens-1m", tmp_path / "three", source=folder, like=tmp_path / "two", add_domains=True)
    assert three.domain.names == ["age under 25", "age 25-34", "age 35+"]
    assert three.lineage["added_domains"] == ["age 35+"]
    assert sum(s.rows for s in three.splits.values()) == len(merged)
    shard = pq.read_table(tmp_path / "three" / three.splits["train"].shards[0].path).to_pandas()
    assert set(shard["domain_indicator"] - shard["domain"]) == {1}


def test_hash_split_keeps_every_rating_in_its_split_when_a_domain_is_held_out(tmp_path, grouplens_dir):
    folder, merged = grouplens_dir
    two = prepare("movielens-1m", tmp_path / "two", source=folder, domains=[0, 1], split="hash")
    three = prepare("movielens-1m", tmp_path / "three", source=folder, like=tmp_path / "two", add_domains=True,
                    grow_vocab=True, split="hash")

    def pairs(root, split, domains):
        users = read_vocabulary(root, "user_id").column("value").to_pylist()
        movies = read_vocabulary(root, "movie_id").column("value").to_pylist()
        table = read_split(root, split)
        keep = np.isin(np.asarray(table["domain"]), domains)
        return {(users[u - 1], movies[m - 1]) for u, m in
                zip(np.asarray(table["user_id"])[keep], np.asarray(table["movie_id"])[keep])}

    for split in ("train", "val", "test"):
        assert pairs(tmp_path / "two", split, [0, 1]) == pairs(tmp_path / "three", split, [0, 1])
    rows = [three.splits[s].rows for s in ("train", "val", "test")]
    assert sum(rows) == len(merged) and rows[0] > rows[1] > 0 and rows[2] > 0
    assert "user_id" in three.lineage["grown"]             # the new domain's users get their own ids
