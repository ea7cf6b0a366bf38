"""MovieLens preparers: the real ML-1M / ML-100K numbers, the GroupLens layout, the download path."""
from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from hamur_dist.data import movielens, prepare
from hamur_dist.data.manifest import load_manifest
from hamur_dist.data.reader import read_split, shard_files
from hamur_dist.data.validation import DataError, validate_batch, verify_dataset

ML1M_ROWS = 1_000_209
ML1M_DOMAINS = [210_747, 395_556, 393_906]
ML1M_VOCABS = {"user_id": 6041, "movie_id": 3707, "gender": 3, "occupation": 22, "zip": 3440,
               "cate_id": 19, "domain_indicator": 4}


def _totals(manifest):
    rows = sum(s.rows for s in manifest.splits.values())
    per_domain = np.sum([s.rows_per_domain for s in manifest.splits.values()], axis=0)
    positives = sum(sum(s.positives_per_domain) for s in manifest.splits.values())
    return rows, per_domain.tolist(), positives


def test_ml1m_matches_the_published_numbers(ml1m_dataset):
    m = verify_dataset(ml1m_dataset)
    rows, per_domain, positives = _totals(m)
    assert rows == ML1M_ROWS
    assert per_domain == ML1M_DOMAINS
    assert round(positives / rows, 4) == 0.5752
    for split, fraction in zip(("train", "val", "test"), (0.8, 0.1, 0.1)):
        assert abs(m.splits[split].rows - fraction * ML1M_ROWS) <= 1
    assert {f.name: f.vocab_size for f in m.sparse} == ML1M_VOCABS
    assert [(f.name, f.scaling, f.params) for f in m.dense] == [("age", "minmax", {"min": 1.0, "max": 56.0})]
    assert m.user_column == "user_id" and m.domain.num_domains == 3 and m.label == "label"
    assert len(m.splits["train"].shards) >= 4 and len(m.splits["val"].shards) >= 2


def test_ml1m_shards_hold_the_features_of_the_reference(ml1m_dataset):
    m = load_manifest(ml1m_dataset)
    first = pq.ParquetFile(shard_files(ml1m_dataset, "train")[0])
    assert first.metadata.num_rows == 100_000 and first.metadata.num_row_groups == 2
    val = read_split(ml1m_dataset, "val")
    validate_batch(val, m)
    assert set(np.unique(val["domain"])) == {0, 1, 2}
    assert np.array_equal(val["domain_indicator"], val["domain"] + 1)
    # age code -> domain as in HAMUR: {1,18}->0, {25}->1, {35,45,50,56}->2 (age is min-max scaled)
    ages = np.rint(val["age"] * 55 + 1).astype(int)
    expected = np.select([np.isin(ages, [1, 18]), ages == 25], [0, 1], 2)
    assert np.array_equal(val["domain"], expected)
    # the user column is the user_id feature; ids are 1..6040 (0 is reserved)
    assert val["user_id"].min() >= 1 and val["user_id"].max() <= 6040


@pytest.mark.ray
def test_ml1m_shards_stream_through_ray_data(ml1m_dataset, ray_session):
    files = shard_files(ml1m_dataset, "train")
    assert ray_session.data.read_parquet(files).count() == load_manifest(ml1m_dataset).splits["train"].rows


def test_ml100k_random_split(shared_data, tmp_path):
    m = prepare("movielens-100k", tmp_path / "ml100k", source=str(shared_data / "movielens-100k"), progress=False)
    rows, per_domain, positives = _totals(m)
    assert rows == 100_000 and per_domain == [26_551, 35_444, 38_005]
    assert round(positives / rows, 3) == 0.554
    assert [m.splits[s].rows for s in ("train", "val", "test")] == [80_000, 10_000, 10_000]
    assert {f.name: f.vocab_size for f in m.sparse}["user_id"] == 944
    assert {f.name: f.vocab_size for f in m.sparse}["movie_id"] == 1683


def test_ml100k_time_split_orders_by_time(shared_data, tmp_path):
    src = shared_data / "movielens-100k"
    m = prepare("movielens-100k", tmp_path / "t", source=str(src), split="time", progress=False)
    sizes = [m.splits[s].rows for s in ("train", "val", "test")]
    assert sum(sizes) == 100_000 and all(abs(a - b) < 50 for a, b in zip(sizes, [80_000, 10_000, 10_000]))
    # the split is by timestamp: recompute the cut-off from the raw file
    import pandas as pd
    raw = pd.read_csv(src / "u.data.gz", sep="\t", names=["u", "i", "r", "t"])
    ts = np.sort(raw["t"].to_numpy())
    cut = ts[80_000 - 1]
    assert sizes[0] == int((raw["t"] <= cut).sum())


def test_grouplens_layout_matches_pandas_reference(grouplens_dir, tmp_path):
    folder, merged = grouplens_dir
    # genres first: cate_id is the movie's first genre, the reference code's feature (all: test_multi_hot.py)
    m = prepare("movielens-1m", tmp_path / "out", source=str(folder), shard_rows=200, progress=False, genres="first")
    rows, per_domain, positives = _totals(m)
    domain = merged["age"].map(movielens.ML1M_AGE_DOMAINS)
    assert rows == len(merged)
    assert per_domain == np.bincount(domain, minlength=3).tolist()
    assert positives == int((merged["rating"] > 3).sum())
    vocab = {f.name: f.vocab_size for f in m.sparse}
    for column in ("user_id", "movie_id", "gender", "occupation", "zip", "cate_id"):
        assert vocab[column] == merged[column].nunique() + 1, column
    # ids follow the sorted raw values (as a label encoder + 1 does)
    train = read_split(tmp_path / "out", "train")
    sorted_cates = sorted(merged["cate_id"].unique())
    assert set(np.unique(train["cate_id"])) <= set(range(1, len(sorted_cates) + 1))


def test_grouplens_time_split(grouplens_dir, tmp_path):
    folder, merged = grouplens_dir
    m = prepare("movielens-1m", tmp_path / "out", source=str(folder), split="time", progress=False)
    assert m.splits["train"].rows == int((merged["timestamp"] <= np.sort(merged["timestamp"])[479]).sum())


def _serve(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_from_a_url_with_checksum(grouplens_dir, tmp_path, monkeypatch):
    folder, merged = grouplens_dir
    www = tmp_path / "www"
    www.mkdir()
    with zipfile.ZipFile(www / "ml-1m.zip", "w") as zf:
        for name in ("ratings.dat", "users.dat", "movies.dat"):
            zf.write(folder / name, f"ml-1m/{name}")
    digest = hashlib.sha256((www / "ml-1m.zip").read_bytes()).hexdigest()
    server = _serve(www)
    url = f"http://127.0.0.1:{server.server_address[1]}/ml-1m.zip"
    try:
        cache = tmp_path / "cache"
        m = prepare("movielens-1m", tmp_path / "ok", source=url, sha256=digest, download_dir=str(cache),
                    progress=False)
        assert _totals(m)[0] == len(merged)
        assert (cache / "ml-1m.zip").is_file() and not list(cache.glob("*.part"))
        # a wrong checksum: clear error, nothing kept, no dataset
        with pytest.raises(DataError, match="sha256"):
            prepare("movielens-1m", tmp_path / "bad", source=url, sha256="0" * 64,
                    download_dir=str(tmp_path / "cache2"), progress=False)
        assert not (tmp_path / "bad").exists() and not list((tmp_path / "cache2").glob("ml-1m.zip*"))
        # a known URL is verified even without --sha256
        monkeypatch.setitem(movielens.KNOWN_SHA256, url, "1" * 64)
        with pytest.raises(DataError, match="does not match"):
            prepare("movielens-1m", tmp_path / "bad2", source=url, download_dir=str(tmp_path / "cache3"),
                    progress=False)
    finally:
        server.shutdown()
