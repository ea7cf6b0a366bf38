"""The auto planner's cost model: dense update for tiny tables, replicated-sparse within the memory
budget, row-wise beyond it; explicit modes and overrides; the printed plan; config validation."""
import pytest

from hamur_dist.config import ConfigError, EmbeddingConfig, load_experiment
from hamur_dist.embedding import TablePlacement, plan_sharding
from hamur_dist.embedding.planner import replicated_bytes
from hamur_dist.model.embedding import TableSpec

SPECS = [TableSpec("domain", 4, 16), TableSpec("city", 10_000, 16), TableSpec("shop", 300_000, 16),
         TableSpec("item", 2_000_000, 16), TableSpec("user", 20_000_000, 16)]
MB = 2**20


def modes(plan):
    return {t.name: t.mode for t in plan.tables}


def test_tiny_dense_fitting_replicated_sparse_over_budget_row_wise():
    # per worker, sparse Adam: 16 x 4 x 3 + 4 = 196 bytes a row -> shop 56 MiB, item 374 MiB, user 3.7 GiB
    plan = plan_sharding(SPECS, 2, EmbeddingConfig(replicated_max_mb=1024), batch_size=4096)
    assert modes(plan) == {"domain": "replicated", "city": "replicated", "shop": "replicated_sparse",
                           "item": "replicated_sparse", "user": "row_wise"}
    assert [t.update for t in plan.tables] == ["dense", "dense", "sparse", "sparse", "sparse"]
    assert plan.any_sparse
    # a smaller budget: the smaller table is replicated first, the bigger one goes row-wise
    plan = plan_sharding(SPECS, 2, EmbeddingConfig(replicated_max_mb=100), batch_size=4096)
    assert (plan.placement("shop").mode, plan.placement("item").mode) == ("replicated_sparse", "row_wise")
    assert replicated_bytes(SPECS[2], "sparse", "adam") == 300_000 * 196


def test_rows_touched_per_step_decide_dense_or_sparse():
    # 10,000 rows: with batch 4096 a step may touch 41% of them (dense); with batch 256, 2.6% (sparse)
    by_rows = EmbeddingConfig(dense_max_kb=0)
    assert plan_sharding(SPECS, 1, by_rows, batch_size=4096).placement("city").update == "dense"
    assert plan_sharding(SPECS, 1, by_rows, batch_size=256).placement("city").update == "sparse"
    assert plan_sharding(SPECS, 1, EmbeddingConfig(dense_rows_factor=0, dense_max_kb=0), batch_size=4096).placement(
        "domain").update == "sparse"


def test_a_small_table_stays_dense_whatever_share_a_step_touches():
    # city: 10,000 x 16 x 4 bytes = 625 KiB, within the default 1 MiB; a step of 256 touches 2.6% of it
    plan = plan_sharding(SPECS, 2, EmbeddingConfig(), batch_size=256)
    assert plan.placement("city").update == "dense" and plan.placement("city").reason.startswith("small: 625.0 KiB")
    assert plan.placement("shop").update == "sparse"
    assert plan_sharding(SPECS, 2, EmbeddingConfig(dense_max_kb=512), batch_size=256).placement("city").update == "sparse"
    # the update choice does not depend on the worker count (a resume on other workers keeps it)
    updates = {w: [t.update for t in plan_sharding(SPECS, w, EmbeddingConfig()).tables] for w in (1, 2, 8)}
    assert updates[1] == updates[2] == updates[8]


def test_one_worker_replicates_everything_the_budget_would_shard():
    plan = plan_sharding(SPECS, 1, EmbeddingConfig(replicated_max_mb=1))
    assert plan.placement("user").mode == "replicated_sparse"
    assert "1 worker" in plan.placement("user").reason


def test_explicit_modes_overrides_and_row_count_threshold():
    dense = plan_sharding(SPECS, 2, EmbeddingConfig(sharding="replicated"))
    assert set(modes(dense).values()) == {"replicated"} and not dense.any_sparse
    sparse = plan_sharding(SPECS, 2, EmbeddingConfig(sharding="replicated_sparse"))
    assert set(modes(sparse).values()) == {"replicated_sparse"} and sparse.any_sparse
    cfg = EmbeddingConfig(replicated_max_mb=400, overrides={"domain": "row_wise", "user": "replicated_sparse",
                                                            "city": "table_wise"})
    plan = plan_sharding(SPECS, 2, cfg)
    assert modes(plan) == {"domain": "row_wise", "city": "table_wise", "shop": "row_wise", "item": "row_wise",
                           "user": "replicated_sparse"}     # the overridden user table uses up the budget
    assert plan.placement("user").reason == "override"
    plan = plan_sharding(SPECS, 2, EmbeddingConfig(auto_row_wise_min_rows=1_000_000))
    assert (plan.placement("item").mode, plan.placement("shop").mode) == ("row_wise", "replicated_sparse")


def test_describe_shows_update_and_reason():
    text = plan_sharding(SPECS, 2, EmbeddingConfig(replicated_max_mb=1024)).describe()
    header, _, *rows = text.splitlines()
    assert header.split()[:3] == ["table", "scheme", "update"] and header.split()[-1] == "why"
    lines = {line.split()[0]: line for line in rows if line and not line.startswith("worker")}
    assert "replicated  dense" in lines["domain"] and "small" in lines["domain"]
    assert "replicated  sparse" in lines["shop"] and "fits replicated_max_mb" in lines["shop"]
    assert "row_wise    sparse" in lines["user"] and "of replicated_max_mb left" in lines["user"]


def test_bad_values_are_rejected_when_the_config_loads():
    assert load_experiment(None, []).embedding.sharding == "auto"
    for override, message in [("embedding.replicated_max_mb=-1", "replicated_max_mb must be >= 0"),
                              ("embedding.dense_rows_factor=-2", "dense_rows_factor must be >= 0"),
                              ("embedding.dense_max_kb=-1", "dense_max_kb must be >= 0"),
                              ("embedding.overrides={user: sparse}", "overrides.user: 'sparse' is not one of"),
                              ("embedding.sharding=sparse", "embedding.sharding"),
                              ("embedding.auto_row_wise_min_rows=0", "auto_row_wise_min_rows must be >= 1")]:
        with pytest.raises(ConfigError, match=message):
            load_experiment(None, [override])
    with pytest.raises(ValueError, match="batch_size"):
        plan_sharding(SPECS, 2, EmbeddingConfig(), batch_size=0)
    with pytest.raises(ValueError, match="does not go with scheme 'row_wise'"):
        TablePlacement("t", 10, 4, "row_wise", 2, update="dense")
