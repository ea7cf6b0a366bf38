"""model.hamur.lr_scale / weight_decay_scale: the HAMUR parameters get an optimiser group of their own,
the lr schedule keeps the ratio, and a checkpoint's optimiser state loads back (resume, warm start)."""
from __future__ import annotations

import torch

from hamur_dist.config import load_experiment
from hamur_dist.data.manifest import load_manifest
from hamur_dist.model.grow import GrowthReport, grow_optimizer_state
from hamur_dist.train.worker_model import WorkerModel

HAMUR = ["model.hidden_dims=[16]", "model.hamur.enabled=true", "model.hamur.rank=4", "model.hamur.hyper_hidden=[8]",
         "train.lr=0.01", "train.weight_decay=0.001", "train.lr_decay=0.5"]


def _worker(dataset, *overrides) -> WorkerModel:
    return WorkerModel(load_experiment(None, [*HAMUR, *overrides]), load_manifest(dataset), 0, 1)


def _step(wm: WorkerModel) -> None:
    wm.train()
    batch = wm.dummy_batch(rows=8)
    batch["domain"] = torch.arange(8) % wm.model.num_domains
    wm.backward_step(wm.forward(batch).square().mean())


def test_scaled_adapters_train_in_their_own_group_on_the_same_schedule(tiny_dataset):
    wm = _worker(tiny_dataset, "model.hamur.lr_scale=0.1", "model.hamur.weight_decay_scale=0")
    base, adapters = wm.optimizer.param_groups
    names = [n for n, _ in wm.optimizer_named_parameters()]
    split = len(base["params"])
    assert names[split:] and all(n.startswith("hamur.") for n in names[split:])
    assert not any(n.startswith("hamur.") for n in names[:split])
    assert [p for _, p in wm.optimizer_named_parameters()] == base["params"] + adapters["params"]
    assert base["lr"] == 0.01 and base["weight_decay"] == 0.001
    assert abs(adapters["lr"] - 0.001) < 1e-12 and adapters["weight_decay"] == 0.0
    wm.set_epoch_lr(2)
    assert abs(base["lr"] - 0.0025) < 1e-12 and abs(adapters["lr"] - 0.00025) < 1e-12


def test_unscaled_keeps_one_group_in_model_order(tiny_dataset):
    wm = _worker(tiny_dataset)
    assert len(wm.optimizer.param_groups) == 1
    assert [n for n, _ in wm.optimizer_named_parameters()] == [n for n, _ in wm.model.named_parameters()]


def test_a_scaled_runs_optimizer_state_resumes_and_warm_starts_an_unscaled_run(tiny_dataset):
    scaled = _worker(tiny_dataset, "model.hamur.lr_scale=0.1")
    _step(scaled)
    state, names = scaled.optimizer.state_dict(), [n for n, _ in scaled.optimizer_named_parameters()]
    resumed = _worker(tiny_dataset, "model.hamur.lr_scale=0.1")
    resumed.optimizer.load_state_dict(state)                     # resume: same config, same groups
    assert resumed.optimizer.param_groups[1]["lr_scale"] == 0.1
    plain = _worker(tiny_dataset)                                # warm start: matched by name
    plain.optimizer.load_state_dict(grow_optimizer_state(state, names, plain.optimizer,
                                                         plain.optimizer_named_parameters(), GrowthReport(3, 3)))
    hyper = dict(plain.model.named_parameters())["hamur.hyper.net.0.weight"]
    old = dict(scaled.model.named_parameters())["hamur.hyper.net.0.weight"]
    torch.testing.assert_close(plain.optimizer.state[hyper]["exp_avg"], scaled.optimizer.state[old]["exp_avg"])
