"""Multi-valued (multi_hot) sparse features: CSV cells and Parquet lists -> list<int64> shards -> padded batches."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hamur_dist.config_loader import ConfigError
from hamur_dist.data import prepare
from hamur_dist.data.batches import BatchCollator, InputDataError
from hamur_dist.data.manifest import DomainInfo, Manifest, SparseFeature, sparse_width
from hamur_dist.data.reader import read_split
from hamur_dist.data.validation import DataError, validate_batch, verify_dataset
from hamur_dist.data.vocabulary import read_vocabulary
from hamur_dist.infer.raw_encoding import RawEncoder

IN_ORDER = {"method": "random", "fractions": [1.0, 0.0, 0.0], "shuffle": False}
SCHEMA = {"name": "mh", "label": "y", "domain": {"column": "d", "mapping": {"a": 0, "b": 1}},
          "sparse": ["uid", {"name": "tags", "multi_hot": True}], "split": IN_ORDER}
TAGS = ["x|y", "", "y|z|x", "z", "x| y", "w|w|y"]


def write_csv(path, tags, extra: str = ""):
    lines = ["y,d,uid,tags"] + [f"{i % 2},{'ab'[i % 2]},{i},{t}" for i, t in enumerate(tags)]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def tags_of(root, feature="tags"):
    """The prepared lists decoded back to raw values (0 -> None)."""
    values = [None] + read_vocabulary(root, feature).column("value").to_pylist()
    return [[values[i] for i in row] for row in read_split(root, "train")[feature]]


def test_csv_cells_become_list_columns_of_vocabulary_ids(tmp_path):
    m = prepare("table", tmp_path / "out", schema=SCHEMA, source=write_csv(tmp_path / "in.csv", TAGS), progress=False)
    tags = {f.name: f for f in m.sparse}["tags"]
    assert tags.multi_hot and tags.max_len == 3 and tags.vocab_size == 5          # w x y z, 0 = unknown
    assert not {f.name: f for f in m.sparse}["uid"].multi_hot
    verify_dataset(tmp_path / "out")
    shard = pq.read_table(m.shard_paths(tmp_path / "out", "train")[0])
    assert shard.schema.field("tags").type == pa.list_(pa.int64()) and shard.schema.field("uid").type == pa.int64()
    assert shard.column("tags").to_pylist() == [[2, 3], [], [3, 4, 2], [4], [2, 3], [1, 1, 3]]
    assert tags_of(tmp_path / "out") == [["x", "y"], [], ["y", "z", "x"], ["z"], ["x", "y"], ["w", "w", "y"]]
    assert read_vocabulary(tmp_path / "out", "tags").column("count").to_pylist() == [2, 3, 4, 2]   # occurrences


def test_min_count_counts_occurrences_and_max_len_keeps_the_first_values(tmp_path):
    src = write_csv(tmp_path / "in.csv", ["a|a|q", "b|c|q", "c", "a|b|q|q"])
    schema = dict(SCHEMA, sparse=["uid", {"name": "tags", "multi_hot": True, "min_count": 2, "max_len": 2}])
    m = prepare("table", tmp_path / "out", schema=schema, source=src, progress=False)
    assert {f.name: f for f in m.sparse}["tags"].max_len == 2
    # a: 3 occurrences (twice in one row), b: 2, c: 2; q only ever past max_len: not counted, not kept
    assert read_vocabulary(tmp_path / "out", "tags").column("value").to_pylist() == ["a", "b", "c"]
    assert tags_of(tmp_path / "out") == [["a", "a"], ["b", "c"], ["c"], ["a", "b"]]
    assert m.source["truncated_lists"] == {"tags": {"max_len": 2, "rows": 3}}


def test_parquet_list_columns_with_vocab_hash_and_identity(tmp_path):
    raw = pa.table({"y": [1, 0, 1, 0], "d": ["a", "b", "a", "b"], "uid": [1, 2, 3, 4],
                    "tags": pa.array([["x", "y"], None, [], ["y"]], pa.list_(pa.string())),
                    "cats": pa.array([[3, 1], [0], None, [7, 7, 2]], pa.list_(pa.int32())),
                    "words": pa.array([["p"], ["q", "p"], [], None], pa.list_(pa.string()))})
    pq.write_table(raw, tmp_path / "in.parquet")
    schema = dict(SCHEMA, sparse=["uid", {"name": "tags", "multi_hot": True},
                                  {"name": "cats", "multi_hot": True, "encoding": "identity"},
                                  {"name": "words", "multi_hot": True, "encoding": "hash", "buckets": 1000}])
    m = prepare("table", tmp_path / "out", schema=schema, source=tmp_path / "in.parquet", progress=False)
    f = {f.name: f for f in m.sparse}
    assert (f["tags"].max_len, f["cats"].max_len, f["words"].max_len) == (2, 3, 2)
    assert f["cats"].vocab_size == 8 and f["words"].hashed
    data = read_split(tmp_path / "out", "train")
    assert [list(r) for r in data["tags"]] == [[1, 2], [], [], [2]]     # a null list is no values
    assert [list(r) for r in data["cats"]] == [[3, 1], [0], [], [7, 7, 2]]
    words = [list(r) for r in data["words"]]
    assert words[0][0] == words[1][1] and len({words[0][0], words[1][0]}) == 2 and words[2:] == [[], []]
    assert all(0 < i < 1000 for r in words for i in r)


@pytest.mark.parametrize("cell, reason", [("x||y", "null value in a list"), ("x|", "null value in a list")])
def test_a_null_element_names_file_row_and_column(tmp_path, cell, reason):
    src = write_csv(tmp_path / "in.csv", TAGS[:3] + [cell] + TAGS[3:])
    with pytest.raises(DataError) as err:
        prepare("table", tmp_path / "out", schema=SCHEMA, source=src, chunk_rows=2, progress=False)
    e = err.value
    assert (e.file, e.row, e.column) == (str(src), 3, "tags") and reason in str(e) and repr(cell) in str(e)
    assert not (tmp_path / "out").exists()
    m = prepare("table", tmp_path / "out", schema=SCHEMA, source=src, bad_rows="skip", progress=False)
    assert m.skipped_rows == {reason: 1} and m.splits["train"].rows == len(TAGS)


def test_bad_parquet_element_and_non_integer_ids_are_named(tmp_path):
    raw = pa.table({"y": [1, 0, 1], "d": ["a", "b", "a"], "uid": [1, 2, 3],
                    "tags": pa.array([["x"], ["y", None], ["z"]], pa.list_(pa.string()))})
    pq.write_table(raw, tmp_path / "in.parquet")
    with pytest.raises(DataError) as err:
        prepare("table", tmp_path / "out", schema=SCHEMA, source=tmp_path / "in.parquet", progress=False)
    assert (err.value.row, err.value.column) == (1, "tags") and "null value in a list" in str(err.value)
    src = write_csv(tmp_path / "in.csv", ["1|2", "3", "4|x5"])
    schema = dict(SCHEMA, sparse=["uid", {"name": "tags", "multi_hot": True, "dtype": "int"}])
    with pytest.raises(DataError) as err:
        prepare("table", tmp_path / "o2", schema=schema, source=src, progress=False)
    assert (err.value.file, err.value.row, err.value.column) == (str(src), 2, "tags")
    assert "'x5'" in str(err.value) and "int64" in str(err.value)


@pytest.mark.parametrize("spec, message", [
    ({"name": "tags", "multi_hot": True, "separator": ""}, "separator"),
    ({"name": "tags", "multi_hot": True, "max_len": -1}, "max_len"),
    ({"name": "tags", "max_len": 3}, "multi_hot features only"),
])
def test_schema_checks_the_multi_hot_options(spec, message):
    from hamur_dist.data.table_schema import load_table_schema

    with pytest.raises(ConfigError, match=message):
        load_table_schema(dict(SCHEMA, sparse=["uid", spec]))
    with pytest.raises(ConfigError, match="user"):
        load_table_schema(dict(SCHEMA, user="tags", sparse=["uid", {"name": "tags", "multi_hot": True}]))


# --- batches ---------------------------------------------------------------------------------------
def small_manifest() -> Manifest:
    sparse = [SparseFeature("a", 10), SparseFeature("tags", 6, multi_hot=True, max_len=3), SparseFeature("c", 5)]
    return Manifest(name="m", sparse=sparse, dense=[], domain=DomainInfo("domain", 2, ["x", "y"]), label="label",
                    splits={})


def batch(tags) -> dict:
    return {"a": np.array([1, 2, 3]), "tags": tags, "c": np.array([4, 0, 1]), "domain": np.array([0, 1, 0]),
            "label": np.array([1.0, 0.0, 1.0], dtype=np.float32)}


EXPECTED = np.array([[1, 5, -1, -1, 4], [2, 1, 2, 3, 0], [3, -1, -1, -1, 1]])


@pytest.mark.parametrize("form", ["arrow", "object", "lists"])
def test_collator_layout_pads_unused_slots_with_minus_one(form):
    m = small_manifest()
    assert sparse_width(m.sparse) == 5 and m.schema.sparse_width == 5
    rows = [[5], [1, 2, 3], []]
    if form == "arrow":
        data = pa.table({k: pa.array(v) for k, v in batch(pa.array(rows, pa.list_(pa.int64()))).items()})
    elif form == "object":       # how Ray Data hands a list column in a numpy batch
        data = batch(np.array([np.array(r, dtype=np.int64) for r in rows], dtype=object))
    else:
        data = batch(np.array([list(r) for r in rows], dtype=object))
    out = BatchCollator(m)(data)
    assert out["sparse"].dtype == torch_long() and out["sparse"].tolist() == EXPECTED.tolist()
    validate_batch(data, m)


def test_collator_takes_a_2d_array_of_equal_length_lists():
    out = BatchCollator(small_manifest())(batch(np.array([[5, 1], [1, 2], [0, 3]])))
    assert out["sparse"][:, 1:4].tolist() == [[5, 1, -1], [1, 2, -1], [0, 3, -1]]


@pytest.mark.parametrize("tags, message, row", [
    (np.array([np.array([1]), None, np.array([2])], dtype=object), "null list", 1),
    (np.array([np.array([1]), np.array([]), np.array([2.0, np.nan])], dtype=object), "null value in a list", 2),
    (pa.array([[1], [2, None], []], pa.list_(pa.int64())), "null value in a list", 1),
    (pa.array([[1], None, []], pa.list_(pa.int64())), "null list", 1),
    (np.array([np.array([1]), np.array([0, 6]), np.array([])], dtype=object), "out of vocabulary", 1),
    (np.array([np.array([1]), np.array([]), np.array([-1])], dtype=object), "negative id", 2),
    (np.array([np.array([1, 2, 3, 4]), np.array([]), np.array([])], dtype=object), "more than max_len 3", 0),
])
def test_bad_lists_are_refused_naming_the_column_and_row(tags, message, row):
    m = small_manifest()
    with pytest.raises(InputDataError, match=f"column 'tags': .*{message}"):
        BatchCollator(m)(batch(tags))
    with pytest.raises(DataError, match=message) as err:
        validate_batch(batch(tags), m, file="f.parquet", row_offset=100)
    assert (err.value.row, err.value.column, err.value.file) == (100 + row, "tags", "f.parquet")


def test_another_layout_is_another_encoding():
    import dataclasses

    from hamur_dist.data.continuation import continuation_problem
    from hamur_dist.infer.dataset_match import input_encoding_difference

    old = small_manifest()
    new = small_manifest()
    new.sparse[1] = dataclasses.replace(new.sparse[1], max_len=4)
    assert input_encoding_difference(old, new) == ("tags", "max_len: the dataset has 4, the model was trained with 3")
    assert "max_len" in continuation_problem(old, "/nowhere", new, "/nowhere")
    assert input_encoding_difference(old, small_manifest()) is None


def torch_long():
    import torch

    return torch.int64


# --- --like and raw scoring -------------------------------------------------------------------------
def test_like_keeps_vocabulary_and_max_len_and_cuts_longer_lists(tmp_path, capsys):
    prepare("table", tmp_path / "p", schema=SCHEMA, source=write_csv(tmp_path / "p.csv", TAGS), progress=False)
    src = write_csv(tmp_path / "c.csv", ["x|new", "y|z|x|w", ""])
    child = prepare("table", tmp_path / "c", source=src, like=tmp_path / "p", progress=False)
    parent = {f.name: f for f in verify_dataset(tmp_path / "p").sparse}["tags"]
    tags = {f.name: f for f in child.sparse}["tags"]
    assert (tags.max_len, tags.vocab_size, tags.fingerprint) == (3, parent.vocab_size, parent.fingerprint)
    assert tags_of(tmp_path / "c") == [["x", None], ["y", "z", "x"], []]          # unknown -> 0, cut to 3
    assert child.unknown_ids["tags"] == 1 and child.source["truncated_lists"] == {"tags": {"max_len": 3, "rows": 1}}
    from hamur_dist.data.cli_prepare import summary

    line = summary(child, tmp_path / "c", 1.0)
    assert "tags(5, multi-hot <= 3)" in line and "tags: 1 rows over 3" in line
    with pytest.raises(ConfigError, match="single-valued here, multi-valued"):
        prepare("table", tmp_path / "x", schema=dict(SCHEMA, sparse=["uid", "tags"]), source=src, like=tmp_path / "p")


def test_raw_rows_score_in_the_padded_layout(tmp_path):
    prepare("table", tmp_path / "p", schema=SCHEMA, source=write_csv(tmp_path / "p.csv", TAGS), progress=False)
    encoder = RawEncoder(tmp_path / "p")           # a dataset folder holds what a model artifact keeps
    assert encoder.column_types()["tags"] == pa.string()
    table = pa.table({"d": ["a", "b", "a"], "uid": [1, 2, 99], "tags": ["x|new", None, "y| z|x|w"]})
    t = encoder.tensors(table)
    # uid, tags (3 slots: x=2, y=3, z=4, unknown=0, -1 unused), domain_indicator
    assert t["sparse"].tolist() == [[2, 2, 0, -1, 1], [3, -1, -1, -1, 2], [0, 3, 4, 2, 1]]
    listed = table.set_column(2, "tags", pa.array([["x", "new"], [], ["y", "z", "x", "w"]]))
    assert encoder.tensors(listed)["sparse"].tolist() == t["sparse"].tolist()
    bad = table.set_column(2, "tags", pa.array(["x", "y||z", "z"])).append_column("path", pa.array(["l.csv"] * 3))
    with pytest.raises(InputDataError, match=r"l.csv: column 'tags': null value in a list \(batch row 1\)"):
        encoder.tensors(bad)


# --- MovieLens ---------------------------------------------------------------------------------------
def test_movielens_genres_all_is_multi_hot_and_first_is_the_reference_feature(grouplens_dir, tmp_path):
    from hamur_dist.cli import main

    folder, merged = grouplens_dir
    genres = dict(zip(merged["movie_id"], merged["genres"].str.split("|")))
    seen = {}
    for mode in ("all", "first"):
        assert main(["prepare", "movielens-1m", "--out", str(tmp_path / mode), "--source", str(folder),
                     "--genres", mode, "--shard-rows", "1000"]) == 0
        m = verify_dataset(tmp_path / mode)
        cate = {f.name: f for f in m.sparse}["cate_id"]
        movies = read_vocabulary(tmp_path / mode, "movie_id").column("value").to_pylist()
        names = read_vocabulary(tmp_path / mode, "cate_id").column("value").to_pylist()
        rows = []
        for split in ("train", "val", "test"):
            data = read_split(tmp_path / mode, split)
            for movie, cates in zip(data["movie_id"], data["cate_id"]):
                got = [names[i - 1] for i in np.atleast_1d(cates)]
                want = genres[movies[movie - 1]] if mode == "all" else genres[movies[movie - 1]][:1]
                rows.append(got == want)
        assert all(rows) and len(rows) == len(merged)
        seen[mode] = (cate.multi_hot, cate.max_len, m.source["genres"])
    assert seen == {"all": (True, 2, "all"), "first": (False, 1, "first")}
    # --like follows the parent's choice unless told otherwise
    child = prepare("movielens-1m", tmp_path / "c", source=folder, like=tmp_path / "first", progress=False)
    assert not {f.name: f for f in child.sparse}["cate_id"].multi_hot and child.source["genres"] == "first"
    with pytest.raises(ConfigError, match="genres"):
        prepare("movielens-1m", tmp_path / "x", source=folder, genres="some")
