"""The deployment files agree with each other and with the package: versions, images, entrypoints,
configs, storage, resources. Every check reads the real files, so drift anywhere fails here."""
from __future__ import annotations

import re
import shlex

import pytest
import yaml

from tests.deploy.deploy_paths import REPO, kustomization_dirs, pinned_version

RAY = pinned_version("ray")
TORCH = pinned_version("torch")
DOCKERFILE = (REPO / "Dockerfile").read_text()
DEPLOY_DOC = REPO / "docs" / "deploy.md"
OVERLAYS = sorted(kustomization_dirs())
STORAGE_OVERRIDES = ("run.storage_path", "data.path")
# path options of the subcommands (prepare, predict, ...): read or written by the pods
PATH_OPTIONS = ("model", "data", "source", "out", "resume")
# the scripts whose pods train: GPU workers in the gpu overlay, results under run.storage_path
TRAINING_SCRIPTS = ("jobs/train.py", "jobs/tune.py", "jobs/compare.py")


def dockerfile_arg(name: str) -> str:
    m = re.search(rf"^ARG {name}=(.*)$", DOCKERFILE, re.M)
    assert m, f"Dockerfile has no 'ARG {name}=...'"
    return m.group(1).strip()


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


def job_ids(rendered_jobs):
    return [f"{name}/{doc['metadata']['name']}" for name, doc in rendered_jobs]


@pytest.fixture(scope="module")
def rendered_jobs(rendered):
    return jobs_in(rendered)


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


def pvc_names(docs: list[dict]) -> set[str]:
    return {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}


def shared_mounts(pod: dict, claims: set[str]) -> set[str]:
    """Mount paths of the first container that come from one of the PVCs ``claims``."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    container = pod["containers"][0]
    return {m["mountPath"] for m in container["volumeMounts"]
            if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") in claims}


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


# --- entrypoints --------------------------------------------------------------------------------

def parsed_args(job: dict, where: str):
    """The entrypoint's arguments as the real ``hamur`` parser reads them (a Namespace)."""
    from hamur_dist import cli
    sub = entrypoint(job)[0][len("jobs/"):-len(".py")]
    try:
        return cli.build_parser().parse_args([sub, *shlex.split(job["spec"]["entrypoint"])[2:]])
    except SystemExit:
        pytest.fail(f"{where}: `hamur {sub}` rejects the entrypoint's arguments")


def test_entrypoints_name_jobs_scripts_of_cli_subcommands(rendered_jobs):
    from hamur_dist.cli import SUBCOMMANDS
    for name, job in rendered_jobs:
        script, config, _ = entrypoint(job)
        where = f"{name}/{job['metadata']['name']}"
        assert re.fullmatch(r"jobs/\w+\.py", script) and (REPO / script).is_file(), f"{where}: {script}"
        assert script[len("jobs/"):-len(".py")] in SUBCOMMANDS, f"{where}: {script} is no hamur subcommand"
        # the RayJob hamur-X (component X) runs jobs/X.py
        assert job["metadata"]["name"] == f"hamur-{script[len('jobs/'):-len('.py')]}" \
            == f"hamur-{job['metadata']['labels']['app.kubernetes.io/component']}", where
        args = parsed_args(job, where)
        if hasattr(args, "config"):       # train / tune / compare: an experiment, search or comparison config
            assert config and config.startswith("configs/") and config.endswith(".yaml"), f"{where}: --config {config}"
        else:                             # prepare / predict: paths; the output must be on the shared volume
            assert (args.out or "").startswith("/mnt/hamur/"), f"{where}: --out {args.out!r} not on the shared volume"


def config_paths_named(rendered) -> set[str]:
    named = {entrypoint(job)[1] for _, job in jobs_in(rendered)} - {None}
    named |= set(re.findall(r"\bconfigs/[\w/.-]+\.yaml", DEPLOY_DOC.read_text()))
    return named


def test_every_config_named_in_a_manifest_or_the_docs_exists(rendered):
    missing = sorted(p for p in config_paths_named(rendered) if not (REPO / p).is_file())
    assert not missing, f"config files named by k8s/ or docs/deploy.md do not exist: {missing}"


def test_paths_in_the_docs_exist():
    text = DEPLOY_DOC.read_text()
    named = set(re.findall(r"\b(?:jobs/\w+\.py|k8s/[\w/.-]*\w)", text))
    assert named, "docs/deploy.md names no jobs/ script or k8s/ path"
    assert sorted(p for p in named if not (REPO / p).exists()) == []


def test_results_and_data_live_on_shared_storage(rendered, rendered_jobs):
    """A relative or pod-local storage_path would leave each node's checkpoints on its own disk, and a
    pod-local --data / --model / --out each pod's reads or scores on its own."""
    for name, job in rendered_jobs:
        where = f"{name}/{job['metadata']['name']}"
        script, _, overrides = entrypoint(job)
        values = dict(o.split("=", 1) for o in overrides)
        if script in TRAINING_SCRIPTS:
            assert "run.storage_path" in values, f"{where}: set run.storage_path to the shared volume or a URI"
        mounts = [shared_mounts(g["template"]["spec"], pvc_names(rendered[name])) for _, g in groups(job)]
        args = vars(parsed_args(job, where))
        options = {f"--{k}": args.get(k) for k in PATH_OPTIONS if isinstance(args.get(k), str)}
        for key, value in [(k, values.get(k)) for k in STORAGE_OVERRIDES] + list(options.items()):
            if value is None or re.match(r"^[a-z][a-z0-9+.-]*://", value):
                continue          # unset (data.path: the config's own) or a URI / URL
            assert value.startswith("/"), f"{where}: {key}={value} must be absolute"
            for m in mounts:
                assert any(value == p or value.startswith(p.rstrip("/") + "/") for p in m), \
                    f"{where}: {key}={value} is not on the shared volume in every pod"


def test_entrypoint_arguments_parse_with_the_hamur_cli(rendered_jobs):
    from hamur_dist import cli
    parser = cli.build_parser()
    built = set(parser._subparsers._group_actions[0].choices)   # argparse keeps subparsers here
    assert rendered_jobs, "no RayJob rendered"
    for name, job in rendered_jobs:
        script, _, _ = entrypoint(job)
        sub = script[len("jobs/"):-len(".py")]
        assert sub in built, f"{name}/{job['metadata']['name']}: `hamur {sub}` is not a subcommand of the CLI"
        parsed_args(job, f"{name}/{job['metadata']['name']}")


def test_entrypoint_overrides_are_experiment_config_keys(rendered_jobs):
    """Experiment configs (not configs/tune/) with the overrides load: every key exists and types fit.
    A comparison (configs/compare/) loads as `hamur compare` loads it: the overrides apply to every
    cell, and every (model, seed) cell is resolved and validated."""
    to_check = [entrypoint(job)[1:] for _, job in rendered_jobs]
    to_check = [(c, o) for c, o in to_check if c and not c.startswith("configs/tune/")]
    assert to_check, "no RayJob runs an experiment config"
    assert any(c.startswith("configs/compare/") for c, _ in to_check), "no RayJob runs a comparison"
    from hamur_dist.compare.config import load_comparison
    from hamur_dist.config import load_experiment
    for config, overrides in to_check:
        assert (REPO / config).is_file(), f"{config} (named by a RayJob) does not exist"
        if config.startswith("configs/compare/"):
            assert load_comparison(REPO / config, overrides).cells, f"{config}: no models"
        else:
            load_experiment(REPO / config, overrides)


def test_comparisons_write_to_the_shared_volume_and_train_where_the_overlay_says(rendered_jobs):
    """`hamur compare` puts its experiment folder (every cell's run, the tables, the compare.yaml a
    --resume reads) under run.storage_path, and refuses a URI there; the gpu overlay's cells, and
    only they, train on GPUs."""
    from hamur_dist.compare.config import load_comparison
    from hamur_dist.compare.driver import experiment_dir_for
    jobs = [(name, job) for name, job in rendered_jobs if entrypoint(job)[0] == "jobs/compare.py"]
    assert sorted(name for name, _ in jobs) == OVERLAYS, "every kustomization renders the comparison RayJob"
    for name, job in jobs:
        where = f"{name}/{job['metadata']['name']}"
        _, config, overrides = entrypoint(job)
        comparison = load_comparison(REPO / config, overrides)
        folder = experiment_dir_for(comparison, config)     # ConfigError for a URI
        storage = dict(o.split("=", 1) for o in overrides)["run.storage_path"]
        assert str(folder.parent) == storage and storage.startswith("/mnt/hamur/"), f"{where}: {folder}"
        use_gpu = {cell["train"]["use_gpu"] for cell in comparison.cells.values()}
        assert use_gpu == {name == "gpu"}, f"{where}: train.use_gpu of the cells {use_gpu}"
