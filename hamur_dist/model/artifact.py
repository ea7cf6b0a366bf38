"""The trained-model artifact: loads with plain PyTorch (no Ray) for evaluation and serving.

    model/
      model.pt        {"format": 1, "model_config": {...}, "schema": {...}, "state_dict": {...}}
      manifest.json   the training dataset's manifest: features, vocabulary fingerprints, dense
                      scaling, domains, and the table schema that encodes raw rows
      vocab/          the training dataset's vocabularies (value -> id), checked against the fingerprints
      config.yaml     the run's resolved experiment config

``model.pt`` is read with ``torch.load(weights_only=True)``: it holds only dicts, lists, numbers,
strings and tensors, so a file that asks the unpickler for anything else (code) is refused.
"""
from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path

import torch
import yaml

from hamur_dist import config_loader
from hamur_dist.data.manifest import (MANIFEST_NAME, DenseFeature, FeatureSchema, Manifest, SparseFeature,
                                      load_manifest, write_manifest)
from hamur_dist.model import build_model
from hamur_dist.model.config import ModelConfig
from hamur_dist.data.vocabulary import read_vocabulary, vocab_path
from hamur_dist.fileio import atomic_copy, atomic_torch_save, atomic_write_text

FORMAT = 1
MODEL_FILE = "model.pt"


class ArtifactError(ValueError):
    """A model artifact is unreadable, of another format, or holds more than plain data and tensors."""


def save_artifact(directory: str | Path, model_cfg: ModelConfig, manifest: Manifest, state_dict: dict,
                  dataset_root: str | Path | None = None, experiment: dict | None = None) -> Path:
    """Write the artifact; ``dataset_root``: the training dataset, whose vocabularies are copied (each
    checked against its fingerprint), so the model alone can encode raw rows."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if dataset_root is not None:
        for feature in manifest.sparse:
            if feature.name in manifest.source.get("vocab_files", {}):
                vocab = read_vocabulary(dataset_root, feature.name, feature.fingerprint)
                atomic_copy(vocab_path(dataset_root, feature.name), vocab_path(directory, feature.name))
                del vocab
    if experiment is not None:
        atomic_write_text(directory / "config.yaml", yaml.safe_dump(experiment, sort_keys=False))
    payload = {
        "format": FORMAT,
        "model_config": config_loader.to_dict(model_cfg),
        "schema": dataclasses.asdict(manifest.schema),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    atomic_torch_save(payload, directory / MODEL_FILE)
    write_manifest(directory, manifest)
    return directory


def model_dir(path: str | Path) -> Path:
    """Accept a run directory or its model/ folder."""
    path = Path(path).expanduser().absolute()
    return path / "model" if (path / "model" / MODEL_FILE).is_file() else path


def _refusal_reason(exc: pickle.UnpicklingError) -> str:
    """torch's one line that names what was refused (its message is a page of advice around it)."""
    for line in str(exc).splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(". Please use", 1)[0].strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def read_payload(directory: str | Path, map_location="cpu", mmap: bool = False) -> dict:
    """``model.pt``'s payload, loaded weights-only. ``mmap``: map tensors instead of reading them
    (a cheap check of a big artifact)."""
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no model artifact at {path} (expected RUN_DIR/model/model.pt)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True,
                             mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise ArtifactError(f"{path}: refused to load: it holds more than tensors and plain data, and loading "
                            f"it could run code ({_refusal_reason(exc)}). Use artifacts only from a run "
                            f"directory you trust; retrain or restore the file from your own copy") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable model artifact (truncated or corrupt?): "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ArtifactError(f"{path}: artifact format {found} is not {FORMAT}")
    return payload


def load_training_manifest(directory: str | Path) -> Manifest | None:
    """The manifest of the data the model was trained on (``model/manifest.json``), if the artifact has one."""
    return load_manifest(directory) if (Path(directory) / MANIFEST_NAME).is_file() else None


def payload_schema(payload: dict) -> FeatureSchema:
    """The feature schema the artifact's model was built for."""
    s = payload["schema"]
    return FeatureSchema(sparse=[SparseFeature(**f) for f in s["sparse"]], dense=[DenseFeature(**f) for f in s["dense"]],
                         num_domains=s["num_domains"], domain_column=s["domain_column"], label=s["label"])


def load_artifact(directory: str | Path, map_location="cpu") -> torch.nn.Module:
    """The model in eval mode, with ``model.schema``, ``model.model_config`` and
    ``model.training_manifest`` (None if the artifact lacks manifest.json) attached."""
    payload = read_payload(directory, map_location)
    path = Path(directory) / MODEL_FILE
    try:
        cfg = config_loader.build(ModelConfig, payload["model_config"], prefix="model")
        schema = payload_schema(payload)
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: malformed artifact ({type(exc).__name__}: {exc})") from None
    model = build_model(cfg, schema)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    model.model_config = cfg
    model.training_manifest = load_training_manifest(directory)
    return model
