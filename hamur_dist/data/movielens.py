"""MovieLens-1M and MovieLens-100K, with the features of the HAMUR reference code.

label = rating > 3; sparse user_id, movie_id, gender, occupation, zip, cate_id and domain_indicator;
cate_id is multi_hot, every genre of the movie (``genres="all"``, the default), or as in the reference
code the movie's first genre alone (``genres="first"``: the HAMUR dataset exactly); dense age (min-max scaled); domains by age: ML-1M's age codes {1, 18} -> 0,
{25} -> 1, {35, 45, 50, 56} -> 2, and the same ranges (< 25, 25-34, >= 35) on ML-100K's exact ages.

The ratings file streams through the ``table`` preparer; users and movies are small tables joined
to every chunk. Sources: the GroupLens folder (ratings.dat, users.dat, movies.dat; or ML-100K's
u.data, u.user, u.item), a ratings_reconstructed.csv.gz beside users.dat/movies.dat, a .zip, or a URL.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from hamur_dist.config_loader import ConfigError
from hamur_dist.data.download import default_cache_dir, download, extract_zip, find_file, is_url
from hamur_dist.data.manifest import Manifest
from hamur_dist.data.sources import Chunk, InputFile, ReadOptions
from hamur_dist.data.like import like_schema
from hamur_dist.data.table import prepare_table
from hamur_dist.data.table_inputs import check_like_options
from hamur_dist.data.table_schema import load_table_schema
from hamur_dist.data.validation import DataError

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# The downloads this tool offers, each verified against a pinned sha256 before it is unpacked.
# ml-1m.zip: 5,917,549 bytes, the archive whose published MD5 is c4d9eecf... . ml-100k.zip: no
# copy was at hand to hash, so none is pinned and that download is refused until one is (or
# --sha256 names the hash of a copy the user trusts).
KNOWN_SHA256 = {ML1M_URL: "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"}
KNOWN_SHA256[ML1M_URL.replace("https://", "http://")] = KNOWN_SHA256[ML1M_URL]
OFFERED_URLS = {url for base in (ML1M_URL, ML100K_URL) for url in (base, base.replace("https://", "http://"))}

ML1M_AGE_DOMAINS = {1: 0, 18: 0, 25: 1, 35: 2, 45: 2, 50: 2, 56: 2}
AGE_DOMAIN_NAMES = ["age under 25", "age 25-34", "age 35+"]
FEATURES = ["user_id", "movie_id", "gender", "occupation", "zip", "cate_id"]


def genre_mode(genres: str | None, parent) -> str:
    """``first`` or ``all``; by default the --like parent's (its cate_id multi_hot or not), else ``all``."""
    if genres is None:
        feature = parent.feature("cate_id") if parent is not None else None
        return "first" if feature is not None and not feature.multi_hot else "all"
    if genres not in ("first", "all"):
        raise ConfigError(f"movielens genres must be 'first' or 'all', got {genres!r}")
    return genres


def movielens_schema(name: str, domain: dict, split: str, seed: int, shuffle: bool, names=AGE_DOMAIN_NAMES,
                     genres: str = "all"):
    if split not in ("random", "time", "hash"):
        raise ConfigError(f"movielens split must be 'random', 'time' or 'hash', got {split!r}")
    features = [{"name": "cate_id", "multi_hot": True} if f == "cate_id" and genres == "all" else f for f in FEATURES]
    return load_table_schema({
        "name": name,
        "label": {"column": "rating", "threshold": 3},
        "domain": {**domain, "names": list(names)},
        "user": "user_id",
        "sparse": features,
        "dense": [{"name": "age", "scaling": "minmax"}],
        "split": {"method": split, "seed": seed, "shuffle": shuffle,
                  "time_column": "timestamp" if split == "time" else None,
                  "hash_columns": ["user_id", "movie_id"] if split == "hash" else []},
    })


def resolve_source(source, marker_files: tuple[str, ...], sha256: str | None, download_dir,
                   progress: bool | None) -> Path:
    """The folder holding the data: ``source`` itself, an unpacked .zip, or a downloaded + unpacked URL."""
    cache = Path(download_dir) if download_dir else default_cache_dir()
    if is_url(str(source)):
        expected = sha256 or KNOWN_SHA256.get(str(source))
        if expected is None and str(source) in OFFERED_URLS:
            raise DataError("no verified sha256 is pinned for this download, so it is not fetched: pass "
                            "--sha256 with the hash of a copy you trust, or --source a local folder or .zip",
                            file=source)
        archive = download(str(source), cache, expected, progress)
        folder = extract_zip(archive, cache)
    elif str(source).endswith(".zip"):
        if not Path(source).is_file():
            raise FileNotFoundError(f"MovieLens archive not found: {source}")
        folder = extract_zip(source, cache)
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"MovieLens folder not found: {source}")
    hit = find_file(folder, marker_files)
    if hit is None:
        raise DataError(f"none of {', '.join(marker_files)} found here (is this a MovieLens folder?)", file=folder)
    return hit.parent


def _read_lines(path: Path, separator: str, fields: int) -> list[list[str]]:
    if not path.is_file():
        raise DataError("file not found (needed beside the ratings)", file=path)
    rows = []
    for i, line in enumerate(path.read_text(encoding="latin-1").splitlines()):
        if not line.strip():
            continue
        parts = line.split(separator)
        if len(parts) < fields:
            raise DataError(f"has {len(parts)} fields, expected {fields}", file=path, row=i)
        rows.append(parts)
    return rows


def _int(text: str, path: Path, row: int, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{text!r} is not an integer", file=path, row=row, column=column) from None


def _users(path: Path, separator: str, order: tuple[str, ...]) -> pa.Table:
    rows = _read_lines(path, separator, 5)
    cols = {name: [r[i].strip() for r in rows] for i, name in enumerate(order)}
    ints = ("user_id", "age", "occupation") if separator == "::" else ("user_id", "age")
    table = {name: pa.array([_int(v, path, i, name) for i, v in enumerate(cols[name])], pa.int64())
             if name in ints else pa.array(cols[name], pa.string()) for name in order}
    return pa.table(table)


def _movies(path: Path, rows: list[list[str]], genres: list[list[str]], mode: str) -> pa.Table:
    """movie_id and cate_id: the genres of each movie as a list (``all``), or the first one (``first``)."""
    cate = (pa.array([g[0] if g and g[0] else None for g in genres], pa.string()) if mode == "first"
            else pa.array([[x for x in g if x] for g in genres], pa.list_(pa.string())))
    return pa.table({"movie_id": pa.array([_int(r[0], path, i, "movie_id") for i, r in enumerate(rows)], pa.int64()),
                     "cate_id": cate})


def _movies_1m(path: Path, mode: str = "first") -> pa.Table:
    rows = _read_lines(path, "::", 3)   # MovieID::Title::Genre1|Genre2|...
    return _movies(path, rows, [r[-1].split("|") for r in rows], mode)


def _movies_100k(path: Path, mode: str = "first") -> pa.Table:
    genre_file = path.with_name("u.genre")
    names = [r[0] for r in _read_lines(genre_file, "|", 2)]
    rows = _read_lines(path, "|", 5 + len(names))    # ... then one 0/1 flag per genre, in u.genre order
    genres = [[names[g] for g, flag in enumerate(r[5:5 + len(names)]) if flag == "1"] for r in rows]
    return _movies(path, rows, genres, mode)


class JoinUsersMovies:
    """Adds the user columns and the movie's genre(s) to a chunk of ratings (order kept); with
    ``keep_ages``, only the ratings of users of those ages are kept (a dataset of some domains)."""

    def __init__(self, users: pa.Table, movies: pa.Table, keep_ages: set[int] | None = None):
        self.users, self.movies = users, movies
        self.keep_ages = pa.array(sorted(keep_ages), pa.int64()) if keep_ages is not None else None

    def __call__(self, chunk: Chunk) -> pa.Table:
        table = chunk.table
        user_rows = pc.index_in(table.column("user_id"), value_set=self.users.column("user_id"))
        movie_rows = pc.index_in(table.column("movie_id"), value_set=self.movies.column("movie_id"))
        columns = {name: table.column(name) for name in table.column_names}
        for name in ("gender", "age", "occupation", "zip"):
            columns[name] = self.users.column(name).take(user_rows)
        columns["cate_id"] = self.movies.column("cate_id").take(movie_rows)
        joined = pa.table(columns)
        if self.keep_ages is None:
            return joined
        return joined.filter(pc.fill_null(pc.is_in(joined.column("age"), value_set=self.keep_ages), False))


def ml1m_domains(domains: list[int] | None) -> tuple[dict[int, int], list[str]]:
    """The age -> domain mapping and names, kept to ``domains`` (a prefix 0..k-1, so that a dataset
    of the others can later add the rest with --add-domains and every id keeps its meaning)."""
    if not domains:
        return dict(ML1M_AGE_DOMAINS), list(AGE_DOMAIN_NAMES)
    if sorted(domains) != list(range(len(domains))) or len(domains) > len(AGE_DOMAIN_NAMES):
        raise ConfigError(f"--domains must be 0..k-1 of {list(range(len(AGE_DOMAIN_NAMES)))} "
                          f"({', '.join(AGE_DOMAIN_NAMES)}), got {domains}")
    return ({age: d for age, d in ML1M_AGE_DOMAINS.items() if d in domains},
            AGE_DOMAIN_NAMES[:len(domains)])


def prepare_movielens_1m(out, source: str | Path = ML1M_URL, split: str = "random", seed: int = 2022,
                         shard_rows: int = 100_000, row_group_rows: int = 50_000, chunk_rows: int = 262_144,
                         bad_rows: str = "fail", overwrite: bool = False, shuffle: bool = True,
                         sha256: str | None = None, download_dir=None, progress: bool | None = None,
                         like=None, grow_vocab: bool = False, add_domains: bool = False,
                         domains: list[int] | None = None, genres: str | None = None) -> Manifest:
    """``genres``: ``all`` (cate_id multi_hot), ``first`` (the reference dataset); default all, or the --like
    dataset's."""
    parent = check_like_options(like, grow_vocab, add_domains, "movielens-1m")
    genres = genre_mode(genres, parent)
    mapping, names = ml1m_domains(domains)
    folder = resolve_source(source, ("ratings.dat", "ratings_reconstructed.csv.gz"), sha256, download_dir, progress)
    users = _users(folder / "users.dat", "::", ("user_id", "gender", "age", "occupation", "zip"))
    movies = _movies_1m(folder / "movies.dat", genres)
    if (folder / "ratings.dat").is_file():
        # UserID::MovieID::Rating::Timestamp: splitting on ':' gives empty fields between the values
        ratings = folder / "ratings.dat"
        read = ReadOptions(columns={"user_id": "int", "movie_id": "int", "rating": "numeric", "timestamp": "int"},
                           drop=("_1", "_2", "_3"), delimiter=":", header=False, encoding="latin-1",
                           column_names=("user_id", "_1", "movie_id", "_2", "rating", "_3", "timestamp"))
    else:
        if split == "time":
            raise ConfigError(f"{folder}: ratings_reconstructed.csv.gz has no timestamps; use split random")
        ratings = folder / "ratings_reconstructed.csv.gz"
        read = ReadOptions(columns={"user_id": "int", "movie_id": "int", "rating": "numeric"})
    schema = movielens_schema("movielens-1m", {"column": "age", "mapping": mapping}, split, seed, shuffle, names,
                              genres)
    if parent is not None:
        schema = like_schema(parent, schema)
    keep = set(mapping) if domains else None
    return prepare_table(schema, [InputFile(ratings)], out, read=read, transform=JoinUsersMovies(users, movies, keep),
                         shard_rows=shard_rows, row_group_rows=row_group_rows, chunk_rows=chunk_rows,
                         bad_rows=bad_rows, overwrite=overwrite, progress=progress, parent=parent,
                         source_info={"preparer": "movielens-1m", "source": str(source), "ratings": ratings.name,
                                      "genres": genres, **({"domains": list(domains)} if domains else {})})


def prepare_movielens_100k(out, source: str | Path = ML100K_URL, split: str = "random", seed: int = 2022,
                           shard_rows: int = 25_000, row_group_rows: int = 25_000, chunk_rows: int = 262_144,
                           bad_rows: str = "fail", overwrite: bool = False, shuffle: bool = True,
                           sha256: str | None = None, download_dir=None, progress: bool | None = None,
                           like=None, grow_vocab: bool = False, add_domains: bool = False,
                           genres: str | None = None) -> Manifest:
    parent = check_like_options(like, grow_vocab, add_domains, "movielens-100k")
    genres = genre_mode(genres, parent)
    if add_domains:
        raise ConfigError("movielens-100k: its age domains are bins, which cover every age: nothing to add")
    folder = resolve_source(source, ("u.data", "u.data.gz"), sha256, download_dir, progress)
    ratings = folder / "u.data" if (folder / "u.data").is_file() else folder / "u.data.gz"
    users = _users(folder / "u.user", "|", ("user_id", "age", "gender", "occupation", "zip"))
    movies = _movies_100k(folder / "u.item", genres)
    read = ReadOptions(columns={"user_id": "int", "movie_id": "int", "rating": "numeric", "timestamp": "int"},
                       drop=("timestamp",) if split != "time" else (), delimiter="\t", header=False,
                       column_names=("user_id", "movie_id", "rating", "timestamp"))
    if split != "time":
        read.columns.pop("timestamp")
    schema = movielens_schema("movielens-100k", {"column": "age", "bins": [25, 35]}, split, seed, shuffle,
                              genres=genres)
    if parent is not None:
        schema = like_schema(parent, schema)
    return prepare_table(schema, [InputFile(ratings)], out, read=read, transform=JoinUsersMovies(users, movies),
                         shard_rows=shard_rows, row_group_rows=row_group_rows, chunk_rows=chunk_rows,
                         bad_rows=bad_rows, overwrite=overwrite, progress=progress, parent=parent,
                         source_info={"preparer": "movielens-100k", "source": str(source), "ratings": ratings.name,
                                      "genres": genres})
