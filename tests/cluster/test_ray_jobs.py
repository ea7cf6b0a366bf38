"""Ray Jobs on a real two-node Ray cluster: submit jobs/train.py as in docs/deploy.md, check the run.

The cluster is two ``ray start`` nodes on this machine (see multinode_cluster.py). Every node
declares 3 logical CPUs and each training worker asks for 2, so no node holds two workers: the two
workers must run on different nodes, and each node keeps 1 CPU for Ray Data's read tasks (a
node with no CPU left for them hangs the job; ray-stack-notes §2).
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from hamur_dist.data.manifest import load_manifest
from tests.helpers import history
from tests.cluster.multinode_cluster import VENV_BIN, LocalRayCluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NODE_CPUS = 3
CPUS_PER_WORKER = 2
# Ray honours .gitignore when it packs the working dir; excludes make sure no data or results go up.
EXCLUDES = [".venv", "runs", "datasets", ".git"]
# A busy 2-core machine needs minutes for what takes seconds elsewhere (every Ray actor is a process).
JOB_TIMEOUT_S = 1200


def job_env(cluster: LocalRayCluster) -> dict[str, str]:
    return {
        "RAY_AUTH_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        # Several Ray instances on this machine: name ours (see multinode_cluster.py).
        "RAY_ADDRESS": cluster.gcs_address,
        # Ray 2.60's Parquet reader starts 32 footer-reading actors for every execution of a
        # read (each split, each epoch); one is plenty for a few files and saves minutes here.
        "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1",
    }


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as mp, LocalRayCluster() as c:
        mp.setenv("RAY_AUTH_MODE", "disabled")  # the clients in this process; the nodes get it in their env
        mp.delenv("RAY_ADDRESS", raising=False)
        c.start_head(num_cpus=NODE_CPUS)
        c.add_node(num_cpus=NODE_CPUS)
        nodes = c.wait_for_nodes(2)
        assert len(nodes) == 2, f"expected 2 alive nodes, got {nodes}"
        yield c


def job_failure(client, job_id: str) -> str:
    """Everything Ray says about a job: status message (runtime env errors land there) and driver logs."""
    info = client.get_job_info(job_id)
    return f"job {job_id} {info.status}: {info.message}\nlogs:\n{client.get_job_logs(job_id)}"


def wait_for_job(client, job_id: str, timeout_s: float = JOB_TIMEOUT_S):
    """The job's final status; on a timeout the job is stopped and the test fails with its logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return status
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            pytest.fail(f"still running after {timeout_s} s: {job_failure(client, job_id)}")
        time.sleep(2)


def test_training_job_runs_workers_on_two_nodes(cluster, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient
    from ray.util.state import list_actors

    dataset, storage = tmp_path / "ds", tmp_path / "runs"
    entrypoint = " ".join([
        "python jobs/train.py --config configs/quickstart.yaml",
        f"data.path={dataset}", "data.prepare.args.rows=20000", "train.epochs=1", "train.num_workers=2",
        f"train.cpus_per_worker={CPUS_PER_WORKER}", "train.log_every_steps=0",
        f"run.storage_path={storage}", "run.name=job1",
    ])
    client = JobSubmissionClient(cluster.dashboard_url)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env={
        "working_dir": str(REPO), "excludes": EXCLUDES, "env_vars": job_env(cluster)})
    status = wait_for_job(client, job_id)
    assert status == JobStatus.SUCCEEDED, job_failure(client, job_id)
    logs = client.get_job_logs(job_id)

    # The run lies on the shared (here: local) filesystem at the absolute storage path.
    run_dir = storage / "job1"
    assert f"run directory: {run_dir}" in logs
    for noise in ("TrainingReport", "RayDeprecationWarning", "find_unused_parameters"):   # in ray.log only
        assert noise not in logs, f"{noise!r} in the job's logs:\n{logs}"
    for name in ("config.yaml", "metrics.jsonl", "report.json", "model/model.pt", "model/manifest.json"):
        assert (run_dir / name).is_file(), f"{name} missing from {run_dir}; logs:\n{logs}"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["world_size"] == 2
    assert 0.0 < report["test"]["overall"]["auc"] < 1.0
    epochs = history(run_dir)
    assert [e["epoch"] for e in epochs] == [0]
    assert epochs[0]["train/samples"] == load_manifest(dataset).splits["train"].rows  # the job prepared it

    # Ray Train's worker actors (dead by now; the GCS keeps them) ran one on each node.
    nodes = {n.node_id for n in cluster.wait_for_nodes(2)}
    workers = list_actors(address=cluster.dashboard_url, filters=[("class_name", "=", "RayTrainWorker")],
                          raise_on_missing_output=False)
    worker_nodes = {w.node_id for w in workers}
    assert len(workers) == 2 and len(worker_nodes) == 2, workers
    assert worker_nodes <= nodes, (workers, nodes)


def test_cli_submit_no_wait(cluster):
    """The CLI form of docs/deploy.md: ``ray job submit --no-wait --working-dir . --runtime-env-json ...``."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    job_id = f"hamur-cli-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [str(VENV_BIN / "ray"), "job", "submit", "--no-wait", "--submission-id", job_id,
         "--working-dir", ".", "--runtime-env-json", json.dumps({"excludes": EXCLUDES, "env_vars": job_env(cluster)}),
         "--", "python", "jobs/train.py", "--help"],
        cwd=REPO, env={**cluster.env, "RAY_ADDRESS": cluster.dashboard_url},
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert job_id in out.stdout + out.stderr
    client = JobSubmissionClient(cluster.dashboard_url)
    status = wait_for_job(client, job_id, timeout_s=600)
    assert status == JobStatus.SUCCEEDED, job_failure(client, job_id)
    assert "usage: hamur train" in client.get_job_logs(job_id)
