"""Day two through the trainer: a run warm-started from another (``train.init_from``) on logs prepared
``--like`` its data, with grown vocabularies and an added domain trained alone (``trainable: new_domains``),
on another world size and with a sharded table."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from hamur_dist.config_loader import ConfigError
from hamur_dist.data import prepare
from hamur_dist.data.reader import read_split
from hamur_dist.model.artifact import load_artifact
from hamur_dist.train.trainer import train
from tests.helpers import small_experiment

pytestmark = pytest.mark.slow

SCHEMA = {"name": "surfaces", "label": {"column": "clicked"}, "user": "user",
          "domain": {"column": "surface", "mapping": {"home": 0, "search": 1}, "names": ["home", "search"]},
          "sparse": ["user", "item"], "dense": [{"name": "price", "scaling": "minmax"}]}


def logs(n: int, users: int, surfaces: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    effect = np.random.default_rng(99).normal(size=(400, 3))
    user, item = rng.integers(0, users, n), rng.integers(0, 80, n)
    surface = rng.choice(surfaces, n)
    d = pd.Series(surface).map({"home": 0, "search": 1, "video": 2}).to_numpy()
    score = effect[user, 0] + effect[item, 1] * np.where(d == 2, -1.0, 1.0) + effect[item, 2] * (d == 1)
    return pd.DataFrame({"user": [f"u{u}" for u in user], "item": item, "surface": surface,
                         "price": rng.random(n), "clicked": (rng.random(n) < 1 / (1 + np.exp(-2 * score))).astype(int)})


@pytest.fixture(scope="module")
def day_one(ray_session, tmp_path_factory):
    """Two surfaces, trained on 2 workers with the user table sharded row-wise."""
    base = tmp_path_factory.mktemp("days")
    (base / "logs1").mkdir()
    logs(4000, 150, ["home", "search"], 1).to_csv(base / "logs1" / "day1.csv", index=False)
    prepare("table", base / "d1", schema=SCHEMA, source=base / "logs1", seed=1)
    cfg = small_experiment(base / "d1", base / "runs", "run.name=day1", "train.epochs=1", "train.num_workers=2",
                           "embedding.overrides={user: row_wise}")
    return base, train(cfg, log=lambda *_: None)


def test_a_new_surface_trains_alone_and_old_predictions_stay_bit_for_bit(day_one):
    base, first = day_one
    (base / "logs2").mkdir()
    logs(4000, 200, ["home", "search", "video"], 2).to_csv(base / "logs2" / "day2.csv", index=False)
    grown = prepare("table", base / "d2", source=base / "logs2", like=base / "d1", grow_vocab=True, add_domains=True)
    assert grown.domain.names == ["home", "search", "video"] and "user" in grown.lineage["grown"]
    lines = []
    cfg = small_experiment(base / "d2", base / "runs", "run.name=day2", "train.epochs=1", "train.num_workers=1",
                           f"train.init_from={first.run_dir}", "train.trainable=new_domains",
                           "embedding.overrides={user: row_wise}")
    second = train(cfg, log=lines.append)
    assert any("optimiser state of" in line and "checkpoint_" in line for line in lines), lines

    old, new = load_artifact(first.run_dir / "model"), load_artifact(second.run_dir / "model")
    old_user = old.state_dict()["embedding.tables.user.weight"]
    new_user = new.state_dict()["embedding.tables.user.weight"]
    assert new_user.shape[0] > old_user.shape[0]                       # grown, sharded on 2 then 1 worker
    assert torch.equal(new_user[:old_user.shape[0]], old_user)          # frozen: every old row as it was
    test = read_split(base / "d1", "test")
    names = [f.name for f in old.schema.sparse]
    sparse = torch.tensor(np.stack([np.asarray(test[n]) for n in names], axis=1))
    dense = torch.tensor(np.asarray(test["price"]), dtype=torch.float32).unsqueeze(1)
    domain = torch.tensor(np.asarray(test["domain"]))
    with torch.no_grad():
        assert torch.equal(old(sparse, dense, domain), new(sparse, dense, domain))
    report = json.loads((second.run_dir / "report.json").read_text())
    assert [d["name"] for d in report["test"]["domains"]] == ["home", "search", "video"]
    assert [d["name"] for d in report["previous_model"]["test"]["domains"]] == ["home", "search"]
    assert 0.5 < report["test"]["domains"][2]["auc"] <= 1


def test_a_dataset_that_does_not_continue_the_old_encoding_is_refused(day_one, tmp_path):
    base, first = day_one
    (tmp_path / "logs").mkdir()
    logs(500, 150, ["home", "search"], 3).to_csv(tmp_path / "logs" / "x.csv", index=False)
    prepare("table", tmp_path / "fresh", schema=SCHEMA, source=tmp_path / "logs")   # its own vocabularies
    cfg = small_experiment(tmp_path / "fresh", tmp_path / "runs", f"train.init_from={first.run_dir}")
    with pytest.raises(ConfigError, match="does not continue"):
        train(cfg, log=lambda *_: None)
    cfg = small_experiment(base / "d1", tmp_path / "runs", f"train.init_from={first.run_dir}",
                           "train.trainable=new_domains")
    with pytest.raises(ConfigError, match="adds no domain"):
        train(cfg, log=lambda *_: None)
