"""What the deployment tests read from the rendered k8s/ objects: Ray clusters, their groups, RayJobs
and their entrypoints."""
from __future__ import annotations

import shlex

from tests.deploy.deploy_paths import kustomization_dirs

OVERLAYS = sorted(kustomization_dirs())
# the scripts whose pods train: GPU workers in the gpu overlay, results under run.storage_path
TRAINING_SCRIPTS = ("jobs/train.py", "jobs/tune.py", "jobs/compare.py")


def cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def groups(doc: dict) -> list[tuple[str, dict]]:
    """(group name, group spec) for the head and every worker group of a RayJob / RayCluster."""
    spec = cluster_spec(doc)
    return [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]


def ray_objects(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("RayJob", "RayCluster")]


def all_ray_objects(rendered) -> list[tuple[str, dict]]:
    return [(name, doc) for name in OVERLAYS for doc in ray_objects(rendered[name])]


def entrypoint(job: dict) -> tuple[str, str | None, list[str]]:
    """(jobs script, --config value, key=value overrides) of a RayJob's entrypoint."""
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "python" and len(argv) >= 2, f"{job['metadata']['name']}: entrypoint must be 'python jobs/X.py ...'"
    args = argv[2:]
    config = args[args.index("--config") + 1] if "--config" in args else None
    return argv[1], config, [a for a in args if "=" in a and not a.startswith("-")]


def jobs_in(rendered) -> list[tuple[str, dict]]:
    return [(name, doc) for name, doc in all_ray_objects(rendered) if doc["kind"] == "RayJob"]


def pvc_names(docs: list[dict]) -> set[str]:
    return {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}


def shared_mounts(pod: dict, claims: set[str]) -> set[str]:
    """Mount paths of the first container that come from one of the PVCs ``claims``."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    container = pod["containers"][0]
    return {m["mountPath"] for m in container["volumeMounts"]
            if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") in claims}
