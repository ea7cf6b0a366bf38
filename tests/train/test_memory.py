"""A worker's memory figures (hamur_dist/train/memory.py) and the freed memory it hands back."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from hamur_dist.train.memory import MEMORY_KEYS, memory_mb, release_freed_memory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")


@linux_only
def test_figures_are_consistent():
    figures = dict(zip(MEMORY_KEYS, memory_mb()))
    assert len(figures) == len(memory_mb()) == 5
    assert figures["rss_mb"] == pytest.approx(figures["private_rss_mb"] + figures["shared_rss_mb"])
    assert figures["peak_rss_mb"] >= figures["rss_mb"] > 0
    assert 0 <= figures["store_rss_mb"] <= figures["shared_rss_mb"]


@linux_only
def test_freed_heap_memory_goes_back_to_the_os():
    from hamur_dist.train import memory

    if memory._LIBC is None:
        pytest.skip("needs glibc's malloc_trim")
    # 160 MB of 64 KiB chunks (below glibc's mmap threshold: they live in the heap); the last one stays,
    # so the heap's top cannot shrink on free and the freed chunks stay resident until trimmed.
    chunks = [bytearray(b"x" * 65536) for _ in range(2500)]
    keep = chunks[-1]
    before = memory_mb()[MEMORY_KEYS.index("private_rss_mb")]
    del chunks
    held = memory_mb()[MEMORY_KEYS.index("private_rss_mb")]
    release_freed_memory()
    after = memory_mb()[MEMORY_KEYS.index("private_rss_mb")]
    assert held > before - 40, (before, held)      # freeing alone kept most of it
    assert after < held - 100, (held, after)       # the release gave it back
    assert keep[0] == ord("x")


@linux_only
def test_object_store_pages_a_worker_reads_are_counted_as_store(ray_session):
    ray = ray_session
    block = ray.put(np.ones(10_000_000))            # 80 MB in the object store

    @ray.remote(num_cpus=0)
    def read(x):
        before = memory_mb()[MEMORY_KEYS.index("store_rss_mb")]
        assert float(x.sum()) == 10_000_000         # touches every page of the block
        figures = dict(zip(MEMORY_KEYS, memory_mb()))
        return before, figures

    before, figures = ray.get(read.remote(block))
    assert figures["store_rss_mb"] - before > 70, (before, figures)
    assert figures["shared_rss_mb"] >= figures["store_rss_mb"]


def test_workers_of_the_local_ray_run_with_few_malloc_arenas(ray_session):
    import os

    from hamur_dist.ray_connection import WORKER_ENV

    @ray_session.remote(num_cpus=0)
    def arena_max():
        return os.environ.get("MALLOC_ARENA_MAX")

    assert ray_session.get(arena_max.remote()) == WORKER_ENV["MALLOC_ARENA_MAX"]
    # the image that runs every Ray process on Kubernetes sets the same
    from pathlib import Path

    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert f"ENV MALLOC_ARENA_MAX={WORKER_ENV['MALLOC_ARENA_MAX']}" in dockerfile
