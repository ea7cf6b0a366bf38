"""DDP without ``find_unused_parameters`` while the workers' batches hold different domains."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hamur_dist.model import HamurConfig, ModelConfig, build_model
from tests.embedding.sharded_helpers import run_ranks
from tests.model.model_helpers import fake_schema, random_batch

SCHEMA = fake_schema([40, 25, 4], num_dense=2, num_domains=3)


def _steps_on_one_domain_each(rank: int, world: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(name="mlp", hidden_dims=[16, 8], hamur=HamurConfig(enabled=True, mode="paper", rank=3,
                                                                         bottleneck=4, hyper_hidden=[8]))
    model = DistributedDataParallel(build_model(cfg, SCHEMA), find_unused_parameters=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):   # a parameter left out of a step makes the *next* step fail
        sparse, dense, _ = random_batch(SCHEMA, 6, seed=10 * step + rank)
        domain = torch.full((6,), rank, dtype=torch.long)   # rank 0: domain 0 only, rank 1: domain 1 only
        opt.zero_grad()
        model(sparse, dense, domain).square().mean().backward()
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    assert torch.equal(gathered[0], gathered[1]), "replicas diverged"


def test_ddp_steps_with_different_domains_per_worker_without_the_unused_parameter_search():
    run_ranks(_steps_on_one_domain_each, 2)
