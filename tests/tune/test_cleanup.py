"""Placement groups that a stopped trial's training run left behind are removed by the search driver."""
from __future__ import annotations

from hamur_dist.tune.cleanup import RECORD, remove_recorded_placement_groups


def test_recorded_placement_groups_are_removed_once(ray_session, tmp_path):
    ray = ray_session
    pg = ray.util.placement_group([{"CPU": 0.5}])
    ray.get(pg.ready(), timeout=120)
    unknown = "ab" * 18   # an id from an earlier Ray session (a resumed search): skipped
    (tmp_path / RECORD).write_text(f"{pg.id.hex()}\n{unknown}\n{pg.id.hex()}\n")
    assert ray.util.placement_group_table(pg)["state"] == "CREATED"

    assert remove_recorded_placement_groups(tmp_path) == 1
    assert ray.util.placement_group_table(pg)["state"] == "REMOVED"
    assert remove_recorded_placement_groups(tmp_path) == 0
    assert remove_recorded_placement_groups(tmp_path / "no-such-run") == 0
