"""train.unfreeze: the hyper-network may train with a new domain's parts (old predictions then move)."""
from __future__ import annotations

import pytest

from hamur_dist.model import build_model
from tests.model.test_grow_freeze import make_cfg, make_schema


def test_unfreezing_the_hyper_network_trains_it_in_train_mode():
    from hamur_dist.config import TrainConfig
    from hamur_dist.config_loader import ConfigError
    from hamur_dist.model.freeze import freeze_all_but_new_domains as freeze

    model = build_model(make_cfg("mlp", hamur=True), make_schema(3))
    frozen = freeze(model, 2)
    assert not any(p.requires_grad for p in model.hamur.hyper.parameters())
    names = frozen.unfreeze("hamur.hyper")
    assert names and all(p.requires_grad for p in model.hamur.hyper.parameters())
    assert {n for n, _ in frozen.named_trainable_parameters()} >= set(names)
    frozen.train_mode(model)
    assert model.hamur.hyper.training and not model.towers[0].training
    with pytest.raises(ConfigError, match="unfreeze"):
        TrainConfig(unfreeze=["hyper_network"]).validate()
