"""Fixtures of the data tests: small GroupLens-format data (ML-1M prepared once: tests/conftest.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest



def write_grouplens(folder, n_ratings: int = 600, seed: int = 0) -> pd.DataFrame:
    """A small made-up dataset in the GroupLens ML-1M layout ('::', latin-1); returns the merged ratings."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ages = [1, 18, 25, 35, 45, 50, 56]
    users = pd.DataFrame({"user_id": np.arange(1, 41), "gender": rng.choice(["F", "M"], 40),
                          "age": rng.choice(ages, 40), "occupation": rng.integers(0, 21, 40),
                          "zip": [f"{z:05d}" for z in rng.integers(10000, 10030, 40)]})
    genres = ["Action", "Comedy", "Drama", "Film-Noir", "Children's"]
    movies = pd.DataFrame({"movie_id": np.arange(10, 40),
                           "title": [f"Movie: Part {i} (19{i % 90:02d})" for i in range(30)],
                           "genres": ["|".join(rng.choice(genres, rng.integers(1, 3), replace=False))
                                      for _ in range(30)]})
    ratings = pd.DataFrame({"user_id": rng.integers(1, 41, n_ratings), "movie_id": rng.integers(10, 40, n_ratings),
                            "rating": rng.integers(1, 6, n_ratings),
                            "timestamp": 978300000 + rng.permutation(n_ratings) * 7})
    with open(folder / "users.dat", "w", encoding="latin-1") as fh:
        for r in users.itertuples():
            fh.write(f"{r.user_id}::{r.gender}::{r.age}::{r.occupation}::{r.zip}\n")
    with open(folder / "movies.dat", "w", encoding="latin-1") as fh:
        for r in movies.itertuples():
            fh.write(f"{r.movie_id}::{r.title}::{r.genres}\n")
    with open(folder / "ratings.dat", "w", encoding="latin-1") as fh:
        for r in ratings.itertuples():
            fh.write(f"{r.user_id}::{r.movie_id}::{r.rating}::{r.timestamp}\n")
    merged = ratings.merge(users, on="user_id", how="left").merge(movies, on="movie_id", how="left")
    merged["cate_id"] = merged["genres"].str.split("|").str[0]
    return merged


@pytest.fixture
def grouplens_dir(tmp_path):
    folder = tmp_path / "ml-1m"
    merged = write_grouplens(folder)
    return folder, merged
