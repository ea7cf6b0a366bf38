"""The download cache: unpacked by content (sha256), never deleting a folder the tool did not make,
and every download the tool offers is checked against a pinned sha256. No network: file:// URLs
and local zips built here."""
from __future__ import annotations

import hashlib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from hamur_dist.data import movielens, prepare
from hamur_dist.data.download import EXTRACTED_MARKER, extract_zip
from hamur_dist.data.validation import DataError
from tests.data.conftest import write_grouplens


def grouplens_zip(folder: Path, n_ratings: int, seed: int) -> tuple[Path, int]:
    """``folder/ml-1m.zip`` holding a small GroupLens ML-1M layout; returns it and its rating count."""
    merged = write_grouplens(folder / "raw", n_ratings=n_ratings, seed=seed)
    archive = folder / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("ratings.dat", "users.dat", "movies.dat"):
            zf.write(folder / "raw" / name, f"ml-1m/{name}")
    return archive, len(merged)


def rows_of(manifest) -> int:
    return sum(s.rows for s in manifest.splits.values())


def sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_two_archives_with_one_name_are_not_mixed_up(tmp_path):
    first, first_rows = grouplens_zip(tmp_path / "a", 300, seed=1)
    second, second_rows = grouplens_zip(tmp_path / "b", 500, seed=2)
    cache = tmp_path / "cache"
    for out, archive, rows in (("u1", first, first_rows), ("u2", second, second_rows)):
        m = prepare("movielens-1m", tmp_path / out, source=archive.as_uri(), download_dir=str(cache), progress=False)
        assert rows_of(m) == rows
    for out, archive, rows in (("z1", first, first_rows), ("z2", second, second_rows)):   # local .zip paths
        m = prepare("movielens-1m", tmp_path / out, source=str(archive), download_dir=str(cache), progress=False)
        assert rows_of(m) == rows
    assert (cache / sha16(first)).is_dir() and (cache / sha16(second)).is_dir()


def test_a_user_folder_in_the_download_dir_is_never_deleted(tmp_path):
    archive, rows = grouplens_zip(tmp_path / "src", 300, seed=1)
    cache = tmp_path / "downloads"
    mine = cache / "ml-1m"                      # what the old cache layout would have unpacked into
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    m = prepare("movielens-1m", tmp_path / "out", source=str(archive), download_dir=str(cache), progress=False)
    assert rows_of(m) == rows and (mine / "notes.txt").read_text() == "mine"
    # a folder that happens to carry the cache's name but no marker is refused, not replaced
    other, _ = grouplens_zip(tmp_path / "src2", 200, seed=3)
    squatter = cache / sha16(other)
    squatter.mkdir()
    (squatter / "notes.txt").write_text("mine too")
    with pytest.raises(DataError, match=f"{squatter}: exists and was not unpacked by hamur"):
        extract_zip(other, cache)
    assert (squatter / "notes.txt").read_text() == "mine too"


def test_an_unpacked_archive_is_marked_and_reused(tmp_path, monkeypatch):
    archive, _ = grouplens_zip(tmp_path / "src", 200, seed=1)
    cache = tmp_path / "cache"
    stale = cache / f".{sha16(archive)}.unpacking-deadbeef"      # a killed run's half-unpacked folder
    stale.mkdir(parents=True)
    folder = extract_zip(archive, cache)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert folder == cache / digest[:16] and (folder / EXTRACTED_MARKER).read_text().strip() == digest
    assert (folder / "ml-1m" / "ratings.dat").is_file() and not stale.exists()
    monkeypatch.setattr(zipfile, "ZipFile", None)                 # a second call must not unpack again
    assert extract_zip(archive, cache) == folder


def test_a_member_leaving_the_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    with pytest.raises(DataError, match="would be written outside"):
        extract_zip(archive, tmp_path / "cache")
    cache = tmp_path / "cache"
    assert not (tmp_path / "escaped.txt").exists()
    assert not cache.exists() or [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_every_offered_download_is_checked_against_a_pinned_sha256(tmp_path, monkeypatch):
    fake, _ = grouplens_zip(tmp_path / "fake", 100, seed=1)      # what a compromised mirror might serve
    real_urlopen = urllib.request.urlopen
    fetched = []

    def urlopen(url, timeout=None):
        fetched.append(url)
        return real_urlopen(fake.as_uri(), timeout=timeout)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert movielens.ML1M_URL in movielens.OFFERED_URLS and movielens.ML100K_URL in movielens.OFFERED_URLS
    for url in movielens.OFFERED_URLS:
        cache = tmp_path / f"cache-{len(fetched)}"
        name = "movielens-1m" if "ml-1m" in url else "movielens-100k"
        with pytest.raises(DataError, match="does not match the expected|no verified sha256 is pinned"):
            prepare(name, tmp_path / "out", source=url, download_dir=str(cache), progress=False)
        assert not (tmp_path / "out").exists()
        if url in movielens.KNOWN_SHA256:
            assert len(movielens.KNOWN_SHA256[url]) == 64 and fetched[-1] == url
    # the defaults (no --source) are the offered URLs; ML-100K has no pinned hash, so nothing is fetched
    fetched.clear()
    with pytest.raises(DataError, match="no verified sha256 is pinned for this download"):
        prepare("movielens-100k", tmp_path / "out", download_dir=str(tmp_path / "c100k"), progress=False)
    with pytest.raises(DataError, match="does not match the expected " + movielens.KNOWN_SHA256[movielens.ML1M_URL]):
        prepare("movielens-1m", tmp_path / "out", download_dir=str(tmp_path / "c1m"), progress=False)
    assert fetched == [movielens.ML1M_URL]
