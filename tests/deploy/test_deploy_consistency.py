"""The deployment files agree with each other and with the package: versions, images, cluster
shapes, resources, shared storage. Every check reads the real files, so drift anywhere fails here
(the entrypoints: test_deploy_entrypoints.py)."""
from __future__ import annotations

import re

import yaml

from tests.deploy.deploy_paths import DEPLOY_DOC, REPO, pinned_version
from tests.deploy.rendered_objects import (OVERLAYS, TRAINING_SCRIPTS, all_ray_objects, cluster_spec, entrypoint,
                                           groups, pvc_names, ray_objects, shared_mounts)

RAY = pinned_version("ray")
TORCH = pinned_version("torch")
DOCKERFILE = (REPO / "Dockerfile").read_text()


def dockerfile_arg(name: str) -> str:
    m = re.search(rf"^ARG {name}=(.*)$", DOCKERFILE, re.M)
    assert m, f"Dockerfile has no 'ARG {name}=...'"
    return m.group(1).strip()


# --- image and versions -------------------------------------------------------------------------

def test_dockerfile_builds_on_the_pinned_ray_image():
    assert dockerfile_arg("BASE_IMAGE") == f"rayproject/ray:{RAY}-py311-cpu"
    mentioned = set(re.findall(r"rayproject/ray:([0-9][\w.]*)-", DOCKERFILE + DEPLOY_DOC.read_text()))
    assert mentioned == {RAY}, "every Ray image named in the Dockerfile and docs/deploy.md must be the pinned one"
    assert f"rayproject/ray:{RAY}-py311-gpu" in DOCKERFILE, "the GPU build-arg example is missing"
    assert f"ray.__version__ == '{RAY}'" in DOCKERFILE


def test_dockerfile_pins_torch_with_a_cpu_index_by_default():
    assert set(re.findall(r"torch==([0-9][\w.]*)", DOCKERFILE)) == {TORCH}
    assert re.search(rf"^RUN pip install .*torch=={re.escape(TORCH)}$", DOCKERFILE, re.M)
    assert dockerfile_arg("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    assert re.search(r"pip install --no-cache-dir \.", DOCKERFILE)


def test_dockerignore_keeps_data_results_and_envs_out():
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {"data", "datasets", "runs", ".venv", ".git"} <= ignored


def test_every_ray_version_field_is_the_pinned_ray(rendered):
    for name, doc in all_ray_objects(rendered):
        assert cluster_spec(doc)["rayVersion"] == RAY, f"{name}/{doc['metadata']['name']}"


def test_one_image_per_overlay_built_from_this_tree(rendered):
    version = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    for name in OVERLAYS:
        images = set()
        uses_gpu = False
        for doc in ray_objects(rendered[name]):
            for _, group in groups(doc):
                pod = group["template"]["spec"]
                images |= {c["image"] for c in pod["containers"]}
                uses_gpu |= any("nvidia.com/gpu" in c["resources"].get("limits", {}) for c in pod["containers"])
        assert len(images) == 1, f"{name}: Ray pods use several images {sorted(images)}"
        # the registry part is the user's (kustomize edit set image); name and tag are this tree's
        repo_and_name, _, tag = images.pop().rpartition(":")
        assert repo_and_name.split("/")[-1] == "hamur-dist", name
        assert tag == f"{version}-{'gpu' if uses_gpu else 'cpu'}", name


# --- cluster shape ------------------------------------------------------------------------------

def test_head_runs_no_training(rendered):
    for name, doc in all_ray_objects(rendered):
        params = cluster_spec(doc)["headGroupSpec"]["rayStartParams"]
        assert params.get("num-cpus") == "0", f"{name}/{doc['metadata']['name']}: head must have num-cpus '0'"


def test_worker_replicas_lie_within_their_bounds(rendered):
    """The operator rejects replicas outside [minReplicas, maxReplicas]; the CRD schema does not."""
    for name, doc in all_ray_objects(rendered):
        for g in cluster_spec(doc)["workerGroupSpecs"]:
            assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], \
                f"{name}/{doc['metadata']['name']}/{g['groupName']}"


def test_every_container_has_cpu_and_memory_requests_and_limits(rendered):
    for name, doc in all_ray_objects(rendered):
        for group_name, group in groups(doc):
            for c in group["template"]["spec"]["containers"]:
                where = f"{name}/{doc['metadata']['name']}/{group_name}/{c['name']}"
                res = c.get("resources", {})
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{where}: {kind} needs cpu and memory"
                # a memory limit above the request lets the node OOM-kill Ray pods under pressure
                assert res["requests"]["memory"] == res["limits"]["memory"], where
                if "nvidia.com/gpu" in res["limits"]:
                    assert res["requests"].get("nvidia.com/gpu") == res["limits"]["nvidia.com/gpu"], where


def test_every_pod_has_memory_backed_shm_and_the_shared_volume(rendered):
    for name in OVERLAYS:
        claims = pvc_names(rendered[name])
        assert claims, f"{name}: no PersistentVolumeClaim"
        for doc in ray_objects(rendered[name]):
            for group_name, group in groups(doc):
                pod = group["template"]["spec"]
                where = f"{name}/{doc['metadata']['name']}/{group_name}"
                volumes = {v["name"]: v for v in pod["volumes"]}
                mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
                assert set(mounts.values()) <= set(volumes), f"{where}: a mount names an undefined volume"
                assert "/dev/shm" in mounts, f"{where}: /dev/shm not mounted"
                assert volumes[mounts["/dev/shm"]].get("emptyDir", {}).get("medium") == "Memory", where
                assert shared_mounts(pod, claims), f"{where}: the shared PVC is not mounted"


def test_rayjobs_clean_up_after_themselves(rendered_jobs):
    for name, job in rendered_jobs:
        spec, where = job["spec"], f"{name}/{job['metadata']['name']}"
        assert spec["shutdownAfterJobFinishes"] is True, where
        assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0, where
        assert isinstance(spec["activeDeadlineSeconds"], int) and spec["activeDeadlineSeconds"] > 0, where
        assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 0, where


def test_runtime_env_working_dir_is_the_source_tree_in_the_image(rendered_jobs):
    app_dir = dockerfile_arg("APP_DIR")
    assert f"COPY --chown=ray:users . ${{APP_DIR}}" in DOCKERFILE
    for name, job in rendered_jobs:
        runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
        assert isinstance(runtime_env, dict), f"{name}/{job['metadata']['name']}: runtimeEnvYAML is not a mapping"
        assert runtime_env["working_dir"] == app_dir, f"{name}/{job['metadata']['name']}"


def test_gpu_only_where_asked(rendered_jobs):
    for name, job in rendered_jobs:
        script, _, overrides = entrypoint(job)
        workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
        gpus = [w["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu") for w in workers]
        trains = script in TRAINING_SCRIPTS
        if name == "gpu" and trains:
            assert all(g and int(g) >= 1 for g in gpus), f"{name}/{job['metadata']['name']}: workers without a GPU"
            assert "train.use_gpu=true" in overrides, f"{name}/{job['metadata']['name']}"
            assert all(w["template"]["spec"].get("tolerations") for w in workers)
        else:
            assert not any(gpus) and "train.use_gpu=true" not in overrides, f"{name}/{job['metadata']['name']}"
