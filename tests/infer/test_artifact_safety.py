"""model.pt is loaded weights-only: a planted pickle that would run code is refused, naming the file."""
from __future__ import annotations

import builtins
import pickle

import numpy as np
import pytest
import torch

from hamur_dist.model import artifact as artifact_module
from hamur_dist.model.artifact import load_artifact


class PlantedCode:
    """Unpickling this runs ``exec``: it writes ``marker`` if the loader trusts the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def plant(model_dir, marker, how: str) -> None:
    payload = {"format": 1, "model_config": PlantedCode(marker), "schema": {}, "state_dict": {}}
    path = model_dir / "model.pt"
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))


def test_artifact_round_trips_weights_only(artifact, tiny_root, monkeypatch):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw) or real_load(*a, **kw))
    model = load_artifact(artifact)
    assert calls and all(kw.get("weights_only") is True for kw in calls)
    assert model.training_manifest.name == "tiny" and not model.training
    sparse = torch.tensor([[0, 0, 0, 0], [199, 299, 11, 2]])
    prob = torch.sigmoid(model(sparse, torch.tensor([[0.5], [0.1]]), torch.tensor([0, 2])))
    assert prob.shape == (2,) and np.isfinite(prob.detach().numpy()).all()


@pytest.mark.parametrize("how", ["torch.save", "plain pickle"])
def test_planted_pickle_is_refused_not_executed(model_copy, tmp_path, how):
    marker = tmp_path / "pwned"
    plant(model_copy, marker, how)
    with pytest.raises(Exception) as err:
        load_artifact(model_copy)
    assert not marker.exists(), "loading model.pt ran the code planted in it"
    assert isinstance(err.value, artifact_module.ArtifactError)
    message = str(err.value)
    assert str(model_copy / "model.pt") in message and "refused to load" in message and "exec" in message


def test_evaluate_and_predict_refuse_a_planted_pickle(model_copy, dataset, tmp_path, capsys):
    from hamur_dist.cli import main
    from hamur_dist.infer.evaluate import evaluate_model
    from hamur_dist.infer.predict import predict

    marker = tmp_path / "pwned"
    plant(model_copy, marker, "torch.save")
    run_dir = model_copy.parent
    with pytest.raises(artifact_module.ArtifactError, match="refused to load"):
        evaluate_model(run_dir, dataset)
    with pytest.raises(artifact_module.ArtifactError, match="refused to load"):
        predict(run_dir, dataset, tmp_path / "scored")   # refused on the driver, before Ray reads anything
    assert main(["evaluate", "--model", str(run_dir), "--data", str(dataset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hamur evaluate: error:") and "Traceback" not in err and str(model_copy / "model.pt") in err
    assert not marker.exists()


def test_truncated_artifact_is_a_clear_error(model_copy):
    path = model_copy / "model.pt"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(artifact_module.ArtifactError, match="truncated or corrupt") as err:
        load_artifact(model_copy)
    assert str(path) in str(err.value)
