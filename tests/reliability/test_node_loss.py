"""Losing a node of a real two-node Ray cluster mid-run (``ray start`` processes on this machine, see
tests/cluster/multinode_cluster.py): with ``train.min_workers`` still placeable the run continues on
the surviving node (Ray Train V2 elastic worker group); otherwise it stops with a clear error after
``run.worker_wait_s`` and leaves a checkpoint that resumes on the smaller cluster.

Every node declares 3 logical CPUs and a worker asks for 2: one worker per node, one CPU per node
left for Ray Data's read tasks. The driver (``hamur train --address``) runs in a subprocess: this
test process may already be connected to the shared test Ray.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TRAIN_OVERRIDES, checkpoint_dirs, events, history, report_test_auc
from tests.reliability.faults import WorkerKiller
from hamur_dist.data.manifest import load_manifest
from hamur_dist.train import checkpoint as ckpt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cluster"))
from tests.cluster.multinode_cluster import VENV_BIN, LocalRayCluster  # noqa: E402

import psutil  # noqa: E402  (Ray's bundled copy, importable once ray is imported)

pytestmark = pytest.mark.slow

NODE_CPUS = 3
# Streaming input (no materialized blocks that could live in the lost node's object store).
COMMON = [*TRAIN_OVERRIDES, "train.num_workers=2", "train.cpus_per_worker=2", "data.materialize=false", "train.epochs=2",
          "run.max_failures=1"]
MARKER = f"hamur_fault_{os.getpid()}"   # a custom resource that names a node's raylet on the command line
RUN_TIMEOUT_S = 900


class NodeKiller(WorkerKiller):
    """Kills every process of the node started with resource ``marker`` once epoch 0's checkpoint is in."""

    def __init__(self, run_dir: Path, marker: str):
        super().__init__(run_dir, after_epoch=0)
        self.marker = marker

    def kill(self) -> int:
        return kill_node(self.marker)


def kill_node(marker: str) -> int:
    """SIGKILL the raylet whose command line declares resource ``marker`` and all its children (the
    node's workers and agents): to the cluster it looks like a machine that vanished."""
    raylets = [p for p in psutil.process_iter(["cmdline"])
               if any(marker in arg for arg in (p.info["cmdline"] or [])) and "raylet" in " ".join(p.info["cmdline"])]
    assert len(raylets) == 1, [p.info["cmdline"] for p in raylets]
    victims = [raylets[0], *raylets[0].children(recursive=True)]
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    return raylets[0].pid


def hamur_train(cluster: LocalRayCluster, *args: str) -> subprocess.CompletedProcess:
    env = {**cluster.env, "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "20"}
    return subprocess.run([str(VENV_BIN / "hamur"), "train", "--address", cluster.gcs_address, *args],
                          env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as mp, LocalRayCluster() as c:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.delenv("RAY_ADDRESS", raising=False)
        # The GCS declares a node dead after this many failed health checks this far apart (Ray's
        # defaults, 5 x 3 s, make each loss here wait 15 s): a SIGKILLed raylet fails them at once.
        c.env.update(RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
        c.start_head(num_cpus=NODE_CPUS)
        yield c


def add_node(cluster: LocalRayCluster, marker: str, count: int) -> None:
    cluster.add_node(num_cpus=NODE_CPUS, resources={marker: 1})
    assert len(cluster.wait_for_nodes(count)) >= count


def train_losing_a_node(cluster, dataset: Path, storage: Path, name: str, marker: str, *extra: str):
    run_dir = storage / name
    killer = NodeKiller(run_dir, marker)
    killer.start()
    out = hamur_train(cluster, f"data.path={dataset}", f"run.storage_path={storage}", f"run.name={name}",
                      *COMMON, *extra)
    killer.join(timeout=5)
    assert killer.killed, killer.error or f"the run ended before the node was lost:\n{out.stdout[-3000:]}"
    return run_dir, out


def test_losing_a_node_continues_on_the_rest_or_stops_resumably(cluster, fault_dataset, tmp_path):
    rows = load_manifest(fault_dataset).splits["train"].rows

    # 1. min_workers=1: the run shrinks to the head node's one worker and finishes.
    add_node(cluster, f"{MARKER}_b", 2)
    run_dir, out = train_losing_a_node(cluster, fault_dataset, tmp_path, "elastic", f"{MARKER}_b",
                                       "train.min_workers=1")
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-5000:]
    log = events(run_dir)
    assert any("worker group failed" in line and "restart 1 of run.max_failures=1" in line for line in log), log
    assert any("starting the worker group again on 1 worker(s)" in line for line in log), log
    assert any("resumed from the checkpoint after epoch 0 on 1 worker(s) (saved by 2" in line for line in log), log
    assert [(h["epoch"], h["train/samples"]) for h in history(run_dir)] == [(e, rows) for e in range(2)]
    assert report_test_auc(run_dir) > 0.65

    # 2. min_workers=2 no longer fits after the loss: a clear error, then a resume on what is left.
    add_node(cluster, f"{MARKER}_c", 2)
    run_dir, out = train_losing_a_node(cluster, fault_dataset, tmp_path, "strict", f"{MARKER}_c",
                                       "train.min_workers=2", "run.worker_wait_s=8")
    assert out.returncode == 1, out.stdout[-5000:]
    assert "ClusterTooSmallError: the cluster could not place 2 worker(s) of {'CPU': 2.0}" in out.stdout, \
        out.stdout[-5000:]
    assert f"hamur train --resume {run_dir}" in out.stdout
    assert "stopping: the cluster could not place 2 worker(s)" in events(run_dir)[-1]
    assert [ckpt.verify(d) for d in checkpoint_dirs(run_dir)], "no checkpoint to resume from"
    resumed = hamur_train(cluster, "--resume", str(run_dir), "train.num_workers=1", "train.min_workers=0")
    assert resumed.returncode == 0, resumed.stdout[-5000:]
    assert [(h["epoch"], h["train/samples"]) for h in history(run_dir)] == [(e, rows) for e in range(2)]
