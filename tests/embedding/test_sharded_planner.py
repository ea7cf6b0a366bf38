import pytest

from hamur_dist.config import EmbeddingConfig
from hamur_dist.embedding import plan_sharding
from hamur_dist.model.embedding import TableSpec

SPECS = [TableSpec("user", 50_000_000, 16), TableSpec("item", 2_000_000, 16), TableSpec("domain", 3, 16),
         TableSpec("city", 900, 16)]


def test_auto_row_wise_for_big_replicated_for_small():
    plan = plan_sharding(SPECS, 2, EmbeddingConfig(sharding="auto", auto_row_wise_min_rows=1_000_000))
    assert [t.scheme for t in plan.tables] == ["row_wise", "row_wise", "replicated", "replicated"]
    user = plan.placement("user")
    assert [user.row_range(r) for r in range(2)] == [(0, 25_000_000), (25_000_000, 50_000_000)]
    # each worker: half of each big table plus the small tables whole
    assert plan.bytes_on(0) == (25_000_000 + 1_000_000 + 3 + 900) * 16 * 4
    plan = plan_sharding(SPECS, 2, EmbeddingConfig(sharding="auto", auto_row_wise_min_rows=10_000_000))
    assert plan.placement("item").scheme == "replicated"


def test_overrides_win_and_table_wise_balances_bytes():
    cfg = EmbeddingConfig(sharding="table_wise", overrides={"domain": "replicated", "user": "row_wise"})
    plan = plan_sharding(SPECS, 3, cfg)
    assert [t.scheme for t in plan.tables] == ["row_wise", "table_wise", "replicated", "table_wise"]
    assert plan.placement("item").owner != plan.placement("city").owner
    assert [plan.placement("item").rows_on(r) for r in range(3)].count(2_000_000) == 1
    # uneven last block: 50M over 3 workers
    assert [plan.placement("user").rows_on(r) for r in range(3)] == [16_666_667, 16_666_667, 16_666_666]


def test_describe_prints_rows_and_bytes_per_worker():
    text = plan_sharding(SPECS, 2, EmbeddingConfig(sharding="auto")).describe()
    assert "user" in text and "row_wise" in text and "25,000,000" in text
    assert "1.5 GiB" in text                                  # 25M x 16 x 4 bytes per worker
    assert "worker 0:" in text and "worker 1:" in text
    assert "bytes/worker" in text.splitlines()[0]


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="embedding.overrides.nope: no such table"):
        plan_sharding(SPECS, 2, EmbeddingConfig(overrides={"nope": "row_wise"}))
    with pytest.raises(ValueError, match="embedding.overrides.user: 'column_wise'"):
        plan_sharding(SPECS, 2, EmbeddingConfig(overrides={"user": "column_wise"}))
    with pytest.raises(ValueError, match="world_size"):
        plan_sharding(SPECS, 0, EmbeddingConfig())
