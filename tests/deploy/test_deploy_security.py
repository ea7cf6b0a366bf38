"""Pod security of everything k8s/ renders (docs/security.md).

Every pod template of every kustomization (base and each overlay: RayCluster / RayJob head and
worker groups, RayJob submitter pods, and any pod template of any other kind an overlay adds) and
every container in it, KubeRay's autoscaler sidecar included, must run as the image's non-root
user, unable to gain privileges, on a read-only root filesystem with writable /tmp and HOME, with
its local disk use requested and limited. A new overlay or pod template without these fails here.
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Iterator

import pytest

from tests.deploy.deploy_paths import REPO, kustomization_dirs

OVERLAYS = sorted(kustomization_dirs())
SECURITY_DOC = REPO / "docs" / "security.md"
# The user `ray` of the rayproject/ray base image (uid 1000, primary group users = 100): the
# Dockerfile's `USER ray` and `chown ray:users`, written as numbers so runAsNonRoot can be verified.
RAY_UID, RAY_GID = 1000, 100
IMAGE_HOME = "/home/ray"
CLUSTER_LABEL, CLIENT_LABEL = "hamur-dist/ray-cluster", "hamur-dist/ray-client"


def pod_specs(node: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """(path, pod spec) for every pod spec (a mapping with a ``containers`` list) at any depth."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield path, node
        for key, value in node.items():
            yield from pod_specs(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from pod_specs(value, f"{path}[{i}]")


def cluster_spec(doc: dict) -> dict | None:
    if doc["kind"] == "RayCluster":
        return doc["spec"]
    return doc["spec"].get("rayClusterSpec") if doc["kind"] == "RayJob" else None


def autoscaling(doc: dict) -> bool:
    spec = cluster_spec(doc)
    return bool(spec and spec.get("enableInTreeAutoscaling"))


def all_pods(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(where, object, pod spec) for every pod template the objects hold."""
    return [(f"{d['kind']}/{d['metadata']['name']}:{path}", d, spec) for d in docs for path, spec in pod_specs(d)]


def all_containers(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(where, pod spec, container) for every container and init container of every pod template,
    plus KubeRay's autoscaler sidecar (built from autoscalerOptions, added to the head pod)."""
    out = []
    for where, doc, spec in all_pods(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            out.append((f"{where}/{c['name']}", spec, c))
    for doc in docs:
        if autoscaling(doc):
            spec, opts = cluster_spec(doc), cluster_spec(doc).get("autoscalerOptions", {})
            keys = ("securityContext", "resources", "env", "volumeMounts")
            sidecar = {"name": "autoscaler", **{k: opts[k] for k in keys if k in opts}}
            head = spec["headGroupSpec"]["template"]["spec"]
            out.append((f"{doc['kind']}/{doc['metadata']['name']}:autoscalerOptions", head, sidecar))
    return out


def check(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_ray_object_is_covered(name, rendered):
    """The walk above finds each Ray group and each RayJob's own submitter template."""
    for doc in rendered[name]:
        if cluster_spec(doc) is None:
            continue
        paths = {p for p, _ in pod_specs(doc)}
        prefix = "spec.rayClusterSpec." if doc["kind"] == "RayJob" else "spec."
        assert prefix + "headGroupSpec.template.spec" in paths
        if doc["kind"] == "RayJob":
            # without its own template KubeRay starts the submitter with no securityContext at all
            assert doc["spec"].get("submissionMode", "K8sJobMode") == "K8sJobMode", doc["metadata"]["name"]
            assert "spec.submitterPodTemplate.spec" in paths, f"{name}: {doc['metadata']['name']} has no submitterPodTemplate"
        assert len(paths) == 1 + len(cluster_spec(doc)["workerGroupSpecs"]) + (doc["kind"] == "RayJob"), sorted(paths)


@pytest.mark.parametrize("name", OVERLAYS)
def test_pods_run_as_the_image_user_never_root(name, rendered):
    problems = []
    for where, _, spec in all_pods(rendered[name]):
        sc = spec.get("securityContext", {})
        wanted = {"runAsNonRoot": True, "runAsUser": RAY_UID, "runAsGroup": RAY_GID, "fsGroup": RAY_GID,
                  "seccompProfile": {"type": "RuntimeDefault"}}
        problems += [f"{where}: securityContext.{k} is {sc.get(k)!r}, not {v!r}" for k, v in wanted.items() if sc.get(k) != v]
    for where, spec, c in all_containers(rendered[name]):
        pod_sc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
        for key, value in (("runAsNonRoot", True), ("runAsUser", RAY_UID), ("runAsGroup", RAY_GID),
                           ("seccompProfile", {"type": "RuntimeDefault"})):
            if sc.get(key, pod_sc.get(key)) != value:
                problems.append(f"{where}: effective {key} is {sc.get(key, pod_sc.get(key))!r}, not {value!r}")
    check(problems)


@pytest.mark.parametrize("name", OVERLAYS)
def test_containers_cannot_gain_privileges(name, rendered):
    problems = []
    for where, _, c in all_containers(rendered[name]):
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or caps.get("add"):
            problems.append(f"{where}: capabilities must drop ALL and add none, got {caps}")
    check(problems)


def writable_dirs(spec: dict, container: dict) -> set[str]:
    """Mount paths of ``container`` whose volume is an emptyDir (pod-local and writable)."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {m["mountPath"] for m in container.get("volumeMounts", [])
            if "emptyDir" in volumes.get(m["name"], {}) and not m.get("readOnly")}


def is_below(path: str, roots: set[str]) -> bool:
    return any(PurePosixPath(path) == PurePosixPath(r) or PurePosixPath(r) in PurePosixPath(path).parents for r in roots)


@pytest.mark.parametrize("name", OVERLAYS)
def test_root_filesystem_is_read_only_with_writable_tmp_and_home(name, rendered):
    """Ray writes its session dir, logs and spilled objects under /tmp/ray; tools write under HOME."""
    problems = []
    for where, spec, c in all_containers(rendered[name]):
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem must be true")
        writable = writable_dirs(spec, c)
        if "/tmp" not in writable:
            problems.append(f"{where}: /tmp is not an emptyDir mount (writable: {sorted(writable)})")
        home = next((e.get("value") for e in c.get("env", []) if e["name"] == "HOME"), IMAGE_HOME)
        if not is_below(home, writable):
            problems.append(f"{where}: HOME={home} is not on an emptyDir mount (writable: {sorted(writable)})")
    check(problems)


UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(value: str | int) -> float:
    """Bytes of a Kubernetes quantity such as ``512Mi``, ``10Gi`` or ``2G``."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", str(value))
    assert m and m.group(2) in UNITS, f"quantity {value!r} not understood"
    return float(m.group(1)) * UNITS[m.group(2)]


def test_quantity():
    assert quantity("512Mi") == 512 * 2**20 and quantity("2G") == 2e9 and quantity(3) == 3
    with pytest.raises(AssertionError):
        quantity("1 Gi")


@pytest.mark.parametrize("name", OVERLAYS)
def test_local_disk_is_requested_and_limited(name, rendered):
    """Object spilling and logs fill the node's disk: each container asks for ephemeral storage and is
    capped, and each disk-backed emptyDir has a sizeLimit that fits in what its pod may use."""
    problems = []
    for where, _, c in all_containers(rendered[name]):
        res = c.get("resources", {})
        request = res.get("requests", {}).get("ephemeral-storage")
        limit = res.get("limits", {}).get("ephemeral-storage")
        if request is None or limit is None:
            problems.append(f"{where}: needs ephemeral-storage requests and limits, has {res}")
        elif quantity(request) > quantity(limit):
            problems.append(f"{where}: ephemeral-storage request {request} above limit {limit}")
    for where, _, spec in all_pods(rendered[name]):
        disk = [v for v in spec.get("volumes", []) if "emptyDir" in v and (v["emptyDir"] or {}).get("medium") != "Memory"]
        unsized = [v["name"] for v in disk if "sizeLimit" not in (v["emptyDir"] or {})]
        if unsized:
            problems.append(f"{where}: emptyDir {unsized} without sizeLimit")
            continue
        budget = sum(quantity(c.get("resources", {}).get("limits", {}).get("ephemeral-storage", 0)) for c in spec["containers"])
        used = sum(quantity(v["emptyDir"]["sizeLimit"]) for v in disk)
        if used > budget:
            problems.append(f"{where}: emptyDir sizeLimits ({used / 2**30:.1f} GiB) exceed the containers' "
                            f"ephemeral-storage limits ({budget / 2**30:.1f} GiB)")
    check(problems)


@pytest.mark.parametrize("name", OVERLAYS)
def test_service_account_token_only_where_the_autoscaler_needs_it(name, rendered):
    problems = []
    for where, doc, spec in all_pods(rendered[name]):
        autoscaler_head = autoscaling(doc) and where.endswith("headGroupSpec.template.spec")
        if autoscaler_head and spec.get("automountServiceAccountToken") is False:
            problems.append(f"{where}: KubeRay's autoscaler sidecar needs the service account token")
        if not autoscaler_head and spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: set automountServiceAccountToken: false (no Kubernetes API use)")
    check(problems)


@pytest.mark.parametrize("name", OVERLAYS)
def test_submitters_run_the_head_image_and_are_labelled_clients(name, rendered):
    for doc in rendered[name]:
        if doc["kind"] != "RayJob":
            continue
        job, template = doc["metadata"]["name"], doc["spec"].get("submitterPodTemplate")
        assert template, f"{name}/{job}: no submitterPodTemplate"
        head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert template["spec"]["containers"][0]["image"] == head["image"], f"{name}/{job}: submitter image"
        assert template["spec"].get("restartPolicy") == "Never", f"{name}/{job}: the submitter Job must not restart in place"
        labels = template.get("metadata", {}).get("labels", {})
        assert labels.get(CLIENT_LABEL) == job and CLUSTER_LABEL not in labels, f"{name}/{job}: submitter labels {labels}"


def test_security_doc_matches_the_manifests():
    text = SECURITY_DOC.read_text()
    for needed in (CLUSTER_LABEL, CLIENT_LABEL, "6379", "8265", "10001", "digest", "runAsUser", "readOnlyRootFilesystem",
                   "ephemeral-storage", "RuntimeDefault", str(RAY_UID)):
        assert needed in text, f"docs/security.md does not mention {needed}"
    named = set(re.findall(r"\b(?:k8s|tests/deploy|docs)/[\w/.-]*\w", text))
    assert sorted(p for p in named if not (REPO / p).exists()) == []


def test_image_user_is_the_one_the_manifests_run_as():
    """runAsUser / runAsGroup above are the image's final USER; change both together."""
    users = re.findall(r"^USER\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert users and users[-1] in ("ray", "ray:users", str(RAY_UID), f"{RAY_UID}:{RAY_GID}"), users
