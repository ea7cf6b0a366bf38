"""Starting a local Ray on a busy machine: a start that times out is tried again, other errors are not."""
from __future__ import annotations

import pytest

from hamur_dist.ray_connection import STARTUP_TRIES, _start_local


class FakeRay:
    def __init__(self, failures: list[Exception]):
        self.failures, self.inits, self.shutdowns = list(failures), 0, 0

    def init(self, **kwargs):
        self.inits += 1
        if self.failures:
            raise self.failures.pop(0)

    def shutdown(self):
        self.shutdowns += 1


TIMEOUT = Exception("The current node timed out during startup. This could happen because ...")


def test_a_start_that_timed_out_is_tried_again():
    ray, lines = FakeRay([TIMEOUT]), []
    _start_local(ray, 4, 256, lines.append)
    assert (ray.inits, ray.shutdowns) == (2, 1)
    assert "starting it again (2/3)" in lines[0]


def test_it_gives_up_after_the_last_try_and_other_errors_are_not_retried():
    ray = FakeRay([TIMEOUT] * STARTUP_TRIES)
    with pytest.raises(Exception, match="timed out during startup"):
        _start_local(ray, 4, 256, lambda _: None)
    assert ray.inits == STARTUP_TRIES
    ray = FakeRay([ValueError("bad object store size")])
    with pytest.raises(ValueError):
        _start_local(ray, 4, 256, lambda _: None)
    assert ray.inits == 1
