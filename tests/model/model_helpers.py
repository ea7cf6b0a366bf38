"""Helpers for the model tests: a minimal ML-1M loader, a tiny trainer, fake schemas."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hamur_dist.data.manifest import DenseFeature, FeatureSchema, SparseFeature

ML1M_SPARSE = ["user_id", "movie_id", "gender", "occupation", "zip", "cate_id", "domain"]
AGE_DOMAINS = {1: 0, 18: 0, 25: 1, 35: 2, 45: 2, 50: 2, 56: 2}


@dataclass
class Split:
    sparse: torch.Tensor
    dense: torch.Tensor
    domain: torch.Tensor
    label: torch.Tensor

    def __len__(self) -> int:
        return len(self.label)


@dataclass
class Dataset:
    schema: FeatureSchema
    train: Split
    test: Split


def load_ml1m_subset(folder: Path, rows: int = 100_000, seed: int = 0) -> Dataset:
    """Features as the HAMUR reference: label rating > 3, domain by age group, sparse ids label-encoded
    from 1 (0 = unknown), dense age min-max scaled; a random 80/10/10 split (val unused here)."""
    ratings = pd.read_csv(folder / "ratings_reconstructed.csv.gz", nrows=rows)
    users = pd.read_csv(folder / "users.dat", sep="::", engine="python", encoding="latin-1",
                        names=["user_id", "gender", "age", "occupation", "zip"])
    movies = pd.read_csv(folder / "movies.dat", sep="::", engine="python", encoding="latin-1",
                         names=["movie_id", "title", "genres"])
    df = ratings.merge(users, on="user_id").merge(movies, on="movie_id")
    df["cate_id"] = df["genres"].str.split("|").str[0]
    df["domain"] = df["age"].map(AGE_DOMAINS)
    sparse = np.stack([pd.factorize(df[c], sort=True)[0] + 1 for c in ML1M_SPARSE], axis=1)
    schema = FeatureSchema(
        sparse=[SparseFeature(c, int(sparse[:, i].max()) + 1) for i, c in enumerate(ML1M_SPARSE)],
        dense=[DenseFeature("age", scaling="minmax")], num_domains=3)
    age = df["age"].to_numpy(np.float32)
    age = (age - age.min()) / (age.max() - age.min())
    order = np.random.default_rng(seed).permutation(len(df))
    cut_train, cut_val = int(0.8 * len(df)), int(0.9 * len(df))

    def split(idx) -> Split:
        return Split(torch.from_numpy(sparse[idx]).long(), torch.from_numpy(age[idx, None]),
                     torch.from_numpy(df["domain"].to_numpy()[idx]).long(),
                     torch.from_numpy((df["rating"].to_numpy()[idx] > 3).astype(np.float32)))

    return Dataset(schema, split(order[:cut_train]), split(order[cut_val:]))


def fit(model: torch.nn.Module, data: Dataset, steps: int = 300, batch: int = 1024, lr: float = 3e-3,
        seed: int = 0) -> list[float]:
    """Adam + BCEWithLogits for ``steps`` random batches; returns the losses."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    tr = data.train
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(tr), (batch,), generator=gen)
        loss = loss_fn(model(tr.sparse[idx], tr.dense[idx], tr.domain[idx]), tr.label[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, batch: int = 8192) -> torch.Tensor:
    model.eval()
    return torch.cat([model(split.sparse[i:i + batch], split.dense[i:i + batch], split.domain[i:i + batch])
                      for i in range(0, len(split), batch)])


def fake_schema(vocab: list[int], num_dense: int, num_domains: int) -> FeatureSchema:
    return FeatureSchema(sparse=[SparseFeature(f"s{i}", v) for i, v in enumerate(vocab)],
                         dense=[DenseFeature(f"d{i}") for i in range(num_dense)], num_domains=num_domains)


def random_batch(schema: FeatureSchema, batch: int, seed: int = 0, domains=None):
    gen = torch.Generator().manual_seed(seed)
    sparse = torch.stack([torch.randint(f.vocab_size, (batch,), generator=gen) for f in schema.sparse], 1)
    dense = torch.rand(batch, len(schema.dense), generator=gen)
    domain = (torch.randint(schema.num_domains, (batch,), generator=gen) if domains is None
              else torch.as_tensor(domains).long())
    return sparse, dense, domain
