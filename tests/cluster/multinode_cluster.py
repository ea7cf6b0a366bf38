"""A real multi-node Ray cluster on this machine, made of ``ray start`` processes, that removes itself.

    with LocalRayCluster() as cluster:
        cluster.start_head(num_cpus=3)
        cluster.add_node(num_cpus=3)
        JobSubmissionClient(cluster.dashboard_url).submit_job(...)

Each node is a separate raylet with its own resources, joined to the head's GCS, exactly as on
several machines (Ray maps 127.0.0.1 to this machine's routable IP, so every node reports that IP).

Isolation from any other Ray on the machine (a test session's own ``ray.init``, other clusters):
* a private temp dir (short, under /tmp: Ray's unix socket paths have a length limit), with one
  ``--temp-dir`` per node inside it;
* free ports picked for every listening service that has a fixed default (GCS 6379, dashboard
  8265, client server 10001, dashboard agent 52365); the rest default to random ports;
* ``stop()`` ends only this cluster's processes, never ``ray stop``, which ends every Ray
  instance of the user. Ray rewrites its processes' titles (and with them /proc/PID/environ), so
  they are found by what survives that: a command line naming the temp dir, an open file under it
  (every Ray process logs there), or a parent that is one of them;
* ``RAY_AUTH_MODE=disabled`` set explicitly: otherwise token auth depends on ~/.ray/auth_token.

The nodes run with the test interpreter's bin directory first on PATH (as an activated venv), so a
job entrypoint ``python jobs/train.py`` gets the interpreter where hamur_dist and torch are installed.

Jobs on such a cluster should carry ``RAY_ADDRESS=cluster.gcs_address`` in their runtime env:
with several Ray instances on one machine, Ray-internal actors that look the cluster up by
themselves (Ray Train's PlacementGroupCleaner) fail with "Found multiple active Ray instances".
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray  # noqa: F401 - puts Ray's bundled psutil on sys.path

import psutil  # noqa: E402

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    def __init__(self, object_store_bytes: int = 300 * 1024**2, start_timeout_s: float = 180):
        self.temp_dir = tempfile.mkdtemp(prefix="hrjob-", dir="/tmp")
        self.object_store_bytes = object_store_bytes
        self.start_timeout_s = start_timeout_s
        self._dirs_used = 0
        self.gcs_address: str | None = None
        self.dashboard_url: str | None = None
        self.env = self._cluster_env()

    @staticmethod
    def _cluster_env() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
        env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
                   PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}")
        return env

    def _ray_start(self, node_args, attempts: int = 3) -> str:
        """Run ``ray start`` with ``node_args()`` (fresh ports each try); returns the node's temp dir.

        ``ray start`` gives a raylet a fixed 30 s to register with the GCS, which a busy machine can
        miss: then this node's leftovers are ended and it is started again from scratch.
        """
        errors = []
        for _ in range(attempts):
            # Each node its own temp dir (under ours): its log monitor then forwards only its own
            # node's logs, instead of every node re-publishing each line of one shared log folder.
            node_dir = os.path.join(self.temp_dir, f"n{self._dirs_used}")
            self._dirs_used += 1
            cmd = [str(VENV_BIN / "ray"), "start", f"--temp-dir={node_dir}", "--disable-usage-stats",
                   f"--object-store-memory={self.object_store_bytes}",
                   f"--dashboard-agent-listen-port={free_port()}", *node_args()]
            out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=self.start_timeout_s)
            if out.returncode == 0:
                return node_dir
            errors.append(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
            self._end(self._processes_under(node_dir))
        raise RuntimeError("\n\n".join(errors))

    def start_head(self, num_cpus: int, resources: dict | None = None) -> str:
        """Start the head (GCS, dashboard with the Jobs API on 127.0.0.1); returns the dashboard URL."""
        ports = {}

        def head_args():
            ports.update(gcs=free_port(), dashboard=free_port())
            args = ["--head", f"--port={ports['gcs']}", f"--num-cpus={num_cpus}", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={ports['dashboard']}", f"--ray-client-server-port={free_port()}"]
            return args + ([f"--resources={json.dumps(resources)}"] if resources else [])

        head_dir = self._ray_start(head_args)
        # The address as Ray itself names it: 127.0.0.1 is replaced by this machine's routable IP.
        self.gcs_address = (Path(head_dir) / "ray_current_cluster").read_text().split()[0]
        self.dashboard_url = f"http://127.0.0.1:{ports['dashboard']}"
        return self.dashboard_url

    def add_node(self, num_cpus: int, resources: dict | None = None) -> None:
        """Start one more raylet (a worker node with its own resources) joined to the head."""
        if self.gcs_address is None:
            raise RuntimeError("start_head() first")
        args = [f"--address={self.gcs_address}", f"--num-cpus={num_cpus}"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        self._ray_start(lambda: args)

    def wait_for_nodes(self, count: int, timeout_s: float = 120) -> list:
        """The alive nodes (state API) once ``count`` of them have registered."""
        from ray.util.state import list_nodes

        deadline = time.monotonic() + timeout_s
        while True:
            nodes = [n for n in list_nodes(address=self.dashboard_url) if n.state == "ALIVE"]
            if len(nodes) >= count or time.monotonic() > deadline:
                return nodes
            time.sleep(1)

    # --- teardown ----------------------------------------------------------------------------
    @staticmethod
    def _processes_under(path: str) -> list[psutil.Process]:
        """Processes whose command line names ``path`` or that hold a file under it, with their descendants."""
        def names(text: str) -> bool:
            return text == path or text.endswith("=" + path) or path + os.sep in text

        roots = []
        for proc in psutil.process_iter():
            if proc.pid == os.getpid():
                continue
            try:
                if any(names(arg) for arg in proc.cmdline()) or any(names(f.path) for f in proc.open_files()):
                    roots.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        found = {p.pid: p for p in roots}
        for proc in roots:
            try:
                found.update({c.pid: c for c in proc.children(recursive=True)})
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    @staticmethod
    def _end(procs: list[psutil.Process], grace_s: float = 8) -> None:
        """SIGTERM, then SIGKILL what is still alive after ``grace_s``."""
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)

    def stop(self) -> None:
        """End every process of this cluster and delete its temp dir."""
        for _ in range(3):  # a dying raylet may still spawn a worker: look again until none is left
            procs = self._processes_under(self.temp_dir)
            if not procs:
                break
            self._end(procs)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
