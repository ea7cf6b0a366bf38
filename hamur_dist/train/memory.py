"""A training worker's memory: what it holds, measured once an epoch, and freed memory handed back.

Ray's own guidance measures a worker's heap as RSS minus shared memory: the object store is shared
memory every worker maps, and the OS counts the pages a worker has read in that worker's RSS too.
So RSS is split here into
  private  RssAnon: what the process itself allocated (tensors, optimiser state, Python objects);
           a leak grows it.
  store    resident pages of Ray's object store mapping (/dev/shm/plasma*). They grow as the worker
           reads blocks at new offsets of the store, up to the store's size, and belong to the store.
  shared   everything shared, the store included (mapped libraries, shared memory).
A sampling thread also keeps the highest private memory between two reports: a leak that only
shows at an epoch's peak (evaluation, checkpointing) is seen too.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
import threading

# MemoryMonitor.report's order. private_peak: the highest private memory sampled since the last report
# (an epoch's evaluation and checkpoint included), where peak_rss is the lifetime peak of all of RSS.
MEMORY_KEYS = ("rss_mb", "peak_rss_mb", "private_rss_mb", "shared_rss_mb", "store_rss_mb", "private_peak_rss_mb")


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None   # glibc only (not musl)
    except OSError:
        return None


_LIBC = _libc()


def release_freed_memory() -> None:
    """Hand memory already freed back to the OS: Arrow's pool (Ray Data's batches) and glibc's heaps.

    glibc keeps freed chunks of an epoch's transient peaks (evaluation, checkpoint) in its arenas,
    so retained memory drifts up although nothing is live (docs/design-notes.md). Costs milliseconds."""
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:   # no pyarrow, or a pool without the call: nothing to release there
        pass
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _store_kib() -> int:
    """Resident KiB of the object store mappings (Ray's plasma file, in /dev/shm or its fallback dir)."""
    total, in_store = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=6)
            if len(head) >= 5 and "-" in head[0] and ":" in head[3]:   # a mapping's header line
                in_store = len(head) >= 6 and "/plasma" in head[5]
            elif in_store and head[0] == "Rss:":
                total += int(head[1])
    return total


def _rss_kib() -> dict[str, int]:
    """RssAnon, RssFile and RssShmem of /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f) if k.startswith("Rss")}


def _private_kib() -> int | None:
    try:
        return _rss_kib()["RssAnon"]
    except (OSError, KeyError, ValueError):
        return None


def memory_mb() -> tuple[float, ...]:
    """This process's memory in MB: (rss, peak rss, private, shared, store), MEMORY_KEYS' first five.
    Off Linux only the peak is known; it stands in for the others."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
    try:
        kib = _rss_kib()
        current, private = kib["RssAnon"] + kib["RssFile"] + kib["RssShmem"], kib["RssAnon"]
        store = _store_kib()
    except (OSError, KeyError, ValueError):
        return peak, peak, peak, 0.0, 0.0
    return current / 1024, max(peak, current / 1024), private / 1024, (current - private) / 1024, store / 1024


class MemoryMonitor:
    """Samples private memory every ``interval_s`` in a daemon thread; ``report`` gives every figure
    of MEMORY_KEYS and starts the next peak window."""

    def __init__(self, interval_s: float = 0.25):
        self._peak_kib = _private_kib() or 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval_s,), name="hamur-memory", daemon=True)
        if sys.platform.startswith("linux"):
            self._thread.start()

    def _sample(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            kib = _private_kib()
            if kib is not None:
                with self._lock:
                    self._peak_kib = max(self._peak_kib, kib)

    def report(self) -> tuple[float, ...]:
        figures = memory_mb()
        now_kib = figures[2] * 1024
        with self._lock:
            peak_kib, self._peak_kib = max(self._peak_kib, now_kib), now_kib
        return (*figures, peak_kib / 1024)

    def close(self) -> None:
        self._stop.set()
