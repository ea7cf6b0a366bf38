"""A self-contained artifact (vocabularies, config, fingerprints) and ``predict --source RAW``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hamur_dist.config import ExperimentConfig
from hamur_dist.data import prepare
from hamur_dist.data.batches import InputDataError
from hamur_dist.data.reader import read_split
from hamur_dist.data.validation import DataError
from hamur_dist.infer.evaluate import check_dataset_encoding
from hamur_dist.infer.raw_encoding import RawEncoder
from hamur_dist.model import build_model
from hamur_dist.model.artifact import load_artifact, load_training_manifest, save_artifact

SCHEMA = {
    "name": "clicks", "label": {"column": "clicked"},
    "domain": {"column": "surface", "mapping": {"home": 0, "search": 1}, "names": ["home", "search"]},
    "user": "user", "sparse": ["user", {"name": "zip", "dtype": "string"}, {"name": "shop", "encoding": "identity"}],
    "dense": [{"name": "price", "scaling": "minmax"}], "drop": ["rid"],
}


def raw_logs(n: int, seed: int, surfaces=("home", "search")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"rid": np.arange(n), "user": rng.choice(["a", "b", "c", "d", "e"], n),
                         "zip": rng.choice(["00501", "02134", "94110"], n), "surface": rng.choice(surfaces, n),
                         "shop": rng.integers(0, 6, n), "price": rng.random(n) * 10, "clicked": rng.integers(0, 2, n)})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An untrained model saved as a run's artifact of a dataset made from day-one logs."""
    base = tmp_path_factory.mktemp("raw")
    (base / "day1").mkdir()
    raw_logs(300, 0).to_csv(base / "day1" / "logs.csv", index=False)
    manifest = prepare("table", base / "d1", schema=SCHEMA, source=base / "day1")
    cfg = ExperimentConfig()
    cfg.model.hidden_dims = [8]
    torch.manual_seed(0)
    model = build_model(cfg.model, manifest.schema)
    model.eval()
    save_artifact(base / "run" / "model", cfg.model, manifest, model.state_dict(), dataset_root=base / "d1",
                  experiment={"model": {"name": "mlp"}})
    return base, base / "run" / "model"


def test_the_artifact_carries_vocabularies_config_and_fingerprints(trained):
    base, model_dir = trained
    assert sorted(p.name for p in (model_dir / "vocab").iterdir()) == ["user.parquet", "zip.parquet"]
    assert (model_dir / "config.yaml").is_file()
    manifest = load_training_manifest(model_dir)
    assert all(f.fingerprint for f in manifest.sparse)
    (base / "copy").mkdir()
    (model_dir / "vocab" / "user.parquet").rename(base / "copy" / "user.parquet")
    try:
        with pytest.raises(DataError, match="user"):
            RawEncoder(model_dir)
    finally:
        (base / "copy" / "user.parquet").rename(model_dir / "vocab" / "user.parquet")


def test_raw_rows_encode_exactly_like_prepare_like(trained, tmp_path):
    base, model_dir = trained
    day2 = raw_logs(200, 1)
    day2.loc[3, "user"], day2.loc[5, "zip"] = "zz", "99999"          # unknown values -> id 0
    (tmp_path / "day2").mkdir()
    day2.to_csv(tmp_path / "day2" / "logs.csv", index=False)
    schema = dict(SCHEMA, split={"shuffle": False, "fractions": [1.0, 0.0, 0.0]})
    prepared = prepare("table", tmp_path / "d2", schema=schema, source=tmp_path / "day2", like=base / "d1")
    check_dataset_encoding(load_training_manifest(model_dir), prepared, tmp_path / "d2", model_dir)
    encoder = RawEncoder(model_dir)
    import pyarrow.csv as csv
    table = csv.read_csv(tmp_path / "day2" / "logs.csv",
                         convert_options=csv.ConvertOptions(column_types=encoder.column_types()))
    t = encoder.tensors(table)
    train = read_split(tmp_path / "d2", "train")
    for i, f in enumerate(prepared.sparse):
        assert np.array_equal(t["sparse"][:, i].numpy(), np.asarray(train[f.name])), f.name
    assert np.array_equal(t["dense"][:, 0].numpy(), np.asarray(train["price"]))
    assert t["sparse"][3, 0] == 0 and t["sparse"][5, 1] == 0 and t["sparse"][4, 1] > 0   # "00501" kept a string


def test_an_unknown_domain_in_raw_rows_is_named(trained):
    _, model_dir = trained
    table = pa.Table.from_pandas(raw_logs(20, 2, surfaces=("home", "video")), preserve_index=False)
    table = table.append_column("path", pa.array(["/logs/today.csv"] * 20))
    with pytest.raises(InputDataError, match=r"today.csv.*surface.*'video'"):
        RawEncoder(model_dir).tensors(table)


def test_predict_source_scores_raw_logs_through_ray(trained, tmp_path, ray_session):
    from hamur_dist.infer.predict import predict_raw

    base, model_dir = trained
    logs = raw_logs(500, 3)
    (tmp_path / "in").mkdir()
    logs.iloc[:250].to_csv(tmp_path / "in" / "a.csv", index=False)
    pq.write_table(pa.Table.from_pandas(logs.iloc[250:], preserve_index=False), tmp_path / "b.parquet")
    rows = predict_raw(model_dir, tmp_path / "in", tmp_path / "out", batch_size=64, num_actors=1)
    assert rows == 250
    scored = pq.read_table(tmp_path / "out").to_pandas().sort_values("rid")
    assert "path" not in scored.columns and list(scored.columns[:-1]) == list(logs.columns)
    encoder, model = RawEncoder(model_dir), load_artifact(model_dir)
    t = encoder.tensors(pa.Table.from_pandas(logs.iloc[:250], preserve_index=False))
    with torch.no_grad():
        expected = torch.sigmoid(model(t["sparse"], t["dense"], t["domain"])).numpy()
    assert np.abs(scored["prediction"].to_numpy() - expected).max() < 1e-6
    assert predict_raw(model_dir, tmp_path / "b.parquet", tmp_path / "out2", num_actors=1) == 250
