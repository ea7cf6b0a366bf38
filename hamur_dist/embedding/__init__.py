"""Sharded and sparse-update embedding tables: a planner (placement and dense/sparse update per
table), a collection that looks rows up across workers with all-to-all or locally for replicated
tables (an ``EmbeddingCollectionInterface``, so any model takes it), a row-sparse optimiser for the
sparse-update rows, and per-worker checkpoints that reshard.

    plan = plan_sharding(specs, world_size, cfg.embedding, batch_size=cfg.data.batch_size)
    print(plan.describe())
    emb = ShardedEmbeddingCollection(specs, plan, rank, world_size, device=device)
    sparse_opt = SparseRowOptimizer.from_config(emb, cfg.embedding, cfg.train)
    # dense part: DDP + its own optimiser; emb's sparse-update rows are no parameters, DDP never sees them
    # (needed when plan.any_sparse; sparse_opt.step() is a collective with replicated-sparse tables)
"""
from hamur_dist.embedding.checkpoint import (assemble_full_optimizer_state, assemble_full_state, load_shards,
                                             save_shard)
from hamur_dist.embedding.collection import ShardedEmbeddingCollection
from hamur_dist.embedding.optimizer import SparseRowOptimizer
from hamur_dist.embedding.planner import MODES, SCHEMES, ShardingPlan, TablePlacement, plan_sharding

__all__ = ["plan_sharding", "ShardingPlan", "TablePlacement", "SCHEMES", "MODES", "ShardedEmbeddingCollection",
           "SparseRowOptimizer", "save_shard", "load_shards", "assemble_full_state",
           "assemble_full_optimizer_state"]
