"""The trained-model artifact: loads with plain PyTorch (no Ray) for evaluation and serving.

    model/
      model.pt        {"format": 1, "model_config": {...}, "schema": {...}, "state_dict": {...}}
      manifest.json   the training dataset's manifest (feature vocabularies, domains)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from hamur_dist import config_loader
from hamur_dist.data.manifest import FeatureSchema, Manifest, SparseFeature, DenseFeature, write_manifest
from hamur_dist.model import build_model
from hamur_dist.model.config import ModelConfig
from hamur_dist.fileio import atomic_torch_save

FORMAT = 1


def save_artifact(directory: str | Path, model_cfg: ModelConfig, manifest: Manifest, state_dict: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model_config": config_loader.to_dict(model_cfg),
        "schema": dataclasses.asdict(manifest.schema),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    atomic_torch_save(payload, directory / "model.pt")
    write_manifest(directory, manifest)
    return directory


def load_artifact(directory: str | Path, map_location="cpu") -> torch.nn.Module:
    """The model in eval mode, with ``model.schema`` and ``model.model_config`` attached."""
    path = Path(directory) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no model artifact at {path} (expected RUN_DIR/model/model.pt)")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: artifact format {payload.get('format')} is not {FORMAT}")
    cfg = config_loader.build(ModelConfig, payload["model_config"], prefix="model")
    s = payload["schema"]
    schema = FeatureSchema(sparse=[SparseFeature(**f) for f in s["sparse"]],
                           dense=[DenseFeature(**f) for f in s["dense"]],
                           num_domains=s["num_domains"], domain_column=s["domain_column"], label=s["label"])
    model = build_model(cfg, schema)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    model.model_config = cfg
    return model
