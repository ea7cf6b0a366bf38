"""Sharded embedding tables: a planner, a collection that looks rows up across workers with
all-to-all (an ``EmbeddingCollectionInterface``, so any model takes it), a row-sparse optimiser for
the sharded rows, and per-worker checkpoints that reshard.

    plan = plan_sharding(specs, world_size, cfg.embedding)
    print(plan.describe())
    emb = ShardedEmbeddingCollection(specs, plan, rank, world_size, device=device)
    sparse_opt = SparseRowOptimizer.from_config(emb, cfg.embedding, cfg.train)
    # dense part: DDP + its own optimiser; emb's sharded rows are no parameters, DDP never sees them
"""
from hamur_dist.embedding.checkpoint import (assemble_full_optimizer_state, assemble_full_state, load_shards,
                                             save_shard)
from hamur_dist.embedding.collection import ShardedEmbeddingCollection
from hamur_dist.embedding.optimizer import SparseRowOptimizer
from hamur_dist.embedding.planner import SCHEMES, ShardingPlan, TablePlacement, plan_sharding

__all__ = ["plan_sharding", "ShardingPlan", "TablePlacement", "SCHEMES", "ShardedEmbeddingCollection",
           "SparseRowOptimizer", "save_shard", "load_shards", "assemble_full_state",
           "assemble_full_optimizer_state"]
