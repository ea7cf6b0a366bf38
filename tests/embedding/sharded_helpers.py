"""Helpers for the sharded-embedding tests: a gloo process launcher, deterministic data that every
process (and the test itself) can rebuild, an unsharded reference, and the per-rank worker bodies
(module-level so they can be pickled when the processes are spawned)."""
from __future__ import annotations

import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hamur_dist.config import EmbeddingConfig
from hamur_dist.embedding import (ShardedEmbeddingCollection, SparseRowOptimizer, load_shards, plan_sharding,
                                  save_shard)
from hamur_dist.model.embedding import EmbeddingCollection, TableSpec

DIM = 4
# user: row-wise (partition boundaries matter); item: table-wise; cat: replicated; tiny: row-wise with
# fewer rows than 3 workers, so rank 2 holds none of it.
SPECS = [TableSpec("user", 23, DIM), TableSpec("item", 10, DIM), TableSpec("cat", 6, DIM), TableSpec("tiny", 2, DIM)]
CONFIG = EmbeddingConfig(sharding="row_wise", overrides={"item": "table_wise", "cat": "replicated"})
SEED = 7


# ----- process launcher -----
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, fn, args) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_ranks(fn, world_size: int, *args) -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes; a failing rank fails the test."""
    # forkserver (Linux): one clean server process imports torch and these helpers once, and every
    # worker is forked from it: no torch import per test (seconds on a busy 2-core box), and unlike
    # plain fork it works after this process has run autograd on a CUDA build of torch.
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    if method == "forkserver":
        mp.set_forkserver_preload(["torch", "torch.distributed", __name__])
    mp.start_processes(_entry, args=(world_size, _free_port(), fn, args), nprocs=world_size, join=True,
                       start_method=method)


# ----- deterministic data -----
def global_batch(step: int, world_size: int) -> list[torch.Tensor]:
    """The ids of every rank at ``step`` (list index = rank). Duplicates are frequent (small tables);
    rank 0 always gets the ids at the row-wise partition boundaries and only the user ids of its own
    block; the last rank gets an empty batch on odd steps."""
    gen = torch.Generator().manual_seed(1000 * step + world_size)
    batches = []
    for rank in range(world_size):
        size = 0 if (rank == world_size - 1 and step % 2 == 1) else 5 + rank
        ids = torch.stack([torch.randint(0, s.num_rows, (size,), generator=gen) for s in SPECS], dim=1)
        if rank == 0:
            block = -(-SPECS[0].num_rows // world_size)
            ids[:, 0] = ids[:, 0] % block
            edges = torch.tensor([[0, 0, 0, 0], [block - 1, 9, 5, 1], [block - 1, 0, 1, 1]])
            edges[:, 0] = edges[:, 0].clamp(max=block - 1)
            ids = torch.cat([ids, edges])
        if rank == 1 and size:
            block = -(-SPECS[0].num_rows // world_size)
            ids = torch.cat([ids, torch.tensor([[block, 3, 2, 0], [SPECS[0].num_rows - 1, 9, 0, 1]])])
        batches.append(ids)
    return batches


def loss_weights(step: int, batch: torch.Tensor, rank: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5000 + 31 * step + rank)
    return torch.randn(batch.shape[0], len(SPECS), DIM, generator=gen)


def reference_collection() -> EmbeddingCollection:
    torch.manual_seed(SEED)
    return EmbeddingCollection(SPECS)


def reference_backward(ref: EmbeddingCollection, step: int, world_size: int) -> list[torch.Tensor]:
    """Global loss = mean over ranks of sum(out_r * w_r), the loss DDP averaging trains; returns the outputs."""
    outs = []
    loss = 0.0
    for rank, batch in enumerate(global_batch(step, world_size)):
        out = ref(batch)
        loss = loss + (out * loss_weights(step, batch, rank)).sum() / world_size
        outs.append(out.detach())
    loss.backward()
    return outs


def reference_sparse_step(weight: torch.Tensor, grad: torch.Tensor, touched: torch.Tensor, state: dict,
                          kind: str, lr: float, wd: float, decoupled: bool, betas=(0.9, 0.999), eps=None) -> None:
    """Row by row, the textbook form of the lazy row-sparse Adam / Adagrad (per-row step counts)."""
    eps = (1e-8 if kind == "adam" else 1e-10) if eps is None else eps
    with torch.no_grad():
        for i in touched.tolist():
            g = grad[i].clone()
            w = weight[i].clone()
            if wd and not decoupled:
                g = g + wd * w
            if wd and decoupled:
                w = w * (1 - lr * wd)
            if kind == "adagrad":
                state.setdefault("sum", torch.zeros_like(weight))[i] += g * g
                w = w - lr * g / (state["sum"][i].sqrt() + eps)
            else:
                b1, b2 = betas
                t = int(state.setdefault("step", torch.zeros(weight.shape[0], dtype=torch.int32))[i]) + 1
                state["step"][i] = t
                m = state.setdefault("exp_avg", torch.zeros_like(weight))
                v = state.setdefault("exp_avg_sq", torch.zeros_like(weight))
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                w = w - lr * (m[i] / (1 - b1 ** t)) / ((v[i] / (1 - b2 ** t)).sqrt() + eps)
            weight[i] = w


TRAIN = {"kind": "adam", "lr": 0.05, "wd": 0.01, "decoupled": False, "dense_lr": 0.1}


def assert_full_tables_match(full: dict, ref) -> None:
    """Assembled checkpoint tables (``assemble_full_state``) equal the reference run's tables."""
    for spec in SPECS:
        torch.testing.assert_close(full[f"tables.{spec.name}.weight"], ref.tables[spec.name].weight.detach(),
                                   atol=1e-6, rtol=1e-5)


def reference_training(steps: range, world_size_of_step, train=TRAIN, ref=None, states=None):
    """Unsharded run of ``steps``: sparse optimiser on the sharded tables, SGD on the replicated one."""
    ref = ref or reference_collection()
    states = states if states is not None else {s.name: {} for s in SPECS}
    for step in steps:
        world = world_size_of_step(step)
        ref.zero_grad()
        reference_backward(ref, step, world)
        ids = torch.cat(global_batch(step, world))
        for col, spec in enumerate(SPECS):
            table = ref.tables[spec.name].weight
            if spec.name == "cat":
                with torch.no_grad():
                    table -= train["dense_lr"] * table.grad
                continue
            reference_sparse_step(table.data, table.grad, torch.unique(ids[:, col]), states[spec.name],
                                  train["kind"], train["lr"], train["wd"], train["decoupled"])
    return ref, states


# ----- worker bodies -----
def build(rank: int, world_size: int, config=CONFIG, device="cpu") -> ShardedEmbeddingCollection:
    plan = plan_sharding(SPECS, world_size, config)
    emb = ShardedEmbeddingCollection(SPECS, plan, rank, world_size, device=device)
    emb.load_full_state(reference_collection().state_dict())
    return emb


def train_steps(emb, opt, steps: range, train=TRAIN) -> None:
    """Sharded training: sparse optimiser for sharded rows; replicated grads averaged like DDP, then SGD."""
    rank, world = emb.rank, emb.world_size
    for step in steps:
        batch = global_batch(step, world)[rank]
        out = emb(batch)
        (out * loss_weights(step, batch, rank).to(out.device)).sum().backward()
        for table in emb.tables.values():
            dist.all_reduce(table.weight.grad)
            with torch.no_grad():
                table.weight -= train["dense_lr"] * table.weight.grad / world
            table.weight.grad = None
        opt.step()


def check_forward_backward(rank: int, world_size: int) -> None:
    emb = build(rank, world_size)
    ref = reference_collection()
    for step in range(3):
        ref.zero_grad()
        ref_outs = reference_backward(ref, step, world_size)
        batch = global_batch(step, world_size)[rank]
        out = emb(batch)
        assert out.shape == (batch.shape[0], len(SPECS), DIM)
        torch.testing.assert_close(out, ref_outs[rank], atol=1e-6, rtol=0)
        (out * loss_weights(step, batch, rank)).sum().backward()

        grads = emb.sparse_grads()
        all_ids = torch.cat(global_batch(step, world_size))
        for col, spec in enumerate(SPECS):
            if spec.name == "cat":
                replicated = emb.tables["cat"].weight.grad
                dist.all_reduce(replicated)
                torch.testing.assert_close(replicated / world_size, ref.tables["cat"].weight.grad, atol=1e-6, rtol=0)
                emb.tables["cat"].weight.grad = None
                continue
            start, end = emb.local_row_range(spec.name)
            wanted = torch.unique(all_ids[:, col])
            wanted = wanted[(wanted >= start) & (wanted < end)]
            got_ids, got_grads = grads[spec.name]
            assert torch.equal(got_ids, wanted), (spec.name, rank, got_ids, wanted)
            torch.testing.assert_close(got_grads, ref.tables[spec.name].weight.grad[wanted], atol=1e-6, rtol=0)
        emb.clear_grads()
    # evaluation: no grad, nothing kept for the optimiser
    with torch.no_grad():
        emb(global_batch(0, world_size)[rank])
    assert emb.coalesced_grads()[0].numel() == 0


def check_training(rank: int, world_size: int, trains: list[dict]) -> None:
    for train in trains:
        emb = build(rank, world_size)
        opt = SparseRowOptimizer(emb, train["kind"], lr=train["lr"], weight_decay=train["wd"],
                                 decoupled_weight_decay=train["decoupled"])
        train_steps(emb, opt, range(4), train)
        ref, _ = reference_training(range(4), lambda s: world_size, train)
        for spec in SPECS:
            start, end = emb.local_row_range(spec.name)
            torch.testing.assert_close(emb.local_table(spec.name), ref.tables[spec.name].weight[start:end].detach(),
                                       atol=1e-6, rtol=1e-5, msg=f"{train} table {spec.name} rank {rank}")


def train_and_save(rank: int, world_size: int, load_dir: str | None, save_dir: str, steps: range,
                   reshard_dir: str | None = None) -> None:
    """Optionally load a checkpoint (any saved world size), train ``steps``, save this rank's shard.
    With ``reshard_dir``: then ranks 0 and 1 alone (a 2-rank subgroup) load that save and write it
    again as a 2-worker checkpoint."""
    emb = build(rank, world_size)
    opt = SparseRowOptimizer(emb, TRAIN["kind"], lr=TRAIN["lr"], weight_decay=TRAIN["wd"])
    if load_dir is not None:
        load_shards(emb, opt, load_dir)
    train_steps(emb, opt, steps)
    save_shard(emb, opt, save_dir)
    if reshard_dir is None:
        return
    pair = dist.new_group([0, 1])          # every rank must take part in creating it
    dist.barrier()                         # every shard file is written
    if rank < 2:
        plan = plan_sharding(SPECS, 2, CONFIG)
        emb = ShardedEmbeddingCollection(SPECS, plan, rank, 2, process_group=pair)
        opt = SparseRowOptimizer(emb, TRAIN["kind"], lr=TRAIN["lr"])
        load_shards(emb, opt, save_dir)
        emb(global_batch(0, 2)[rank]).sum().backward()      # the subgroup exchange works
        opt.zero_grad()
        save_shard(emb, opt, reshard_dir)
