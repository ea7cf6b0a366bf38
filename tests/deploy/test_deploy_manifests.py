"""Every file under k8s/ and every rendered overlay passes strict schema validation, and the
fallback renderer agrees with the real kustomize."""
from __future__ import annotations

import pytest
import yaml

from tests.deploy.deploy_paths import K8S, kustomization_dirs
from tests.deploy.kustomize_render import (KustomizeError, kustomize_command, load_yaml_docs, read_kustomization,
                              render_fallback, render_with, resource_key)

KUSTOMIZATIONS = kustomization_dirs()


def referenced_files() -> tuple[set, set]:
    """(resource files, patch files) named by any kustomization under k8s/."""
    resources, patches = set(), set()
    for directory in KUSTOMIZATIONS.values():
        kustomization = read_kustomization(directory)
        for entry in kustomization.get("resources", []):
            path = (directory / entry).resolve()
            if path.is_file():
                resources.add(path)
        patches |= {(directory / p["path"]).resolve() for p in kustomization.get("patches", [])}
    return resources, patches


def test_overlays_exist():
    assert {"base", "cpu-small", "gpu"} <= set(KUSTOMIZATIONS), sorted(KUSTOMIZATIONS)


def test_every_yaml_file_is_used():
    """A manifest no kustomization names would never be applied, nor checked below."""
    resources, patches = referenced_files()
    kustomizations = {(d / "kustomization.yaml").resolve() for d in KUSTOMIZATIONS.values()}
    every = {p.resolve() for p in K8S.rglob("*.y*ml")}
    assert every - resources - patches - kustomizations == set()
    assert all(isinstance(yaml.safe_load(p.read_text()), list) for p in patches), "patches are JSON patches"


@pytest.mark.parametrize("path", sorted(referenced_files()[0]), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_file_is_valid(path, manifest_validator):
    docs = load_yaml_docs(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        assert manifest_validator.errors(doc) == [], f"{path}: {resource_key(doc)}"


# The Ray objects every kustomization renders (add a new one here); each Ray cluster has two policies.
RAYJOBS = {"hamur-prepare", "hamur-train", "hamur-tune", "hamur-compare", "hamur-predict"}
RAYCLUSTERS = {"hamur-interactive"}


def names_of(kind: str, docs: list[dict]) -> set[str]:
    return {d["metadata"]["name"] for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_rendered_kustomization_is_valid(name, rendered, manifest_validator):
    docs = rendered[name]
    assert names_of("RayJob", docs) == RAYJOBS and names_of("RayCluster", docs) == RAYCLUSTERS, name
    policies = {f"{n}-{role}" for n in RAYJOBS | RAYCLUSTERS for role in ("head", "workers")}
    assert names_of("NetworkPolicy", docs) == policies, name
    kinds = sorted(doc["kind"] for doc in rendered[name])
    assert kinds == sorted(["NetworkPolicy"] * len(policies) + ["PersistentVolumeClaim"]
                           + ["RayCluster"] * len(RAYCLUSTERS) + ["RayJob"] * len(RAYJOBS))
    for doc in rendered[name]:
        assert manifest_validator.errors(doc) == [], f"{name}: {resource_key(doc)}"


def same_objects(name: str, ours: list[dict], theirs: list[dict]) -> None:
    by_key = {resource_key(d): d for d in theirs}
    assert sorted(resource_key(d) for d in ours) == sorted(by_key), name
    for doc in ours:
        assert doc == by_key[resource_key(doc)], f"{name}: {resource_key(doc)} renders differently"


@pytest.mark.skipif(kustomize_command() is None, reason="neither kubectl nor kustomize: fallback not cross-checked")
@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_fallback_renders_what_kustomize_renders(name):
    """The fallback (no kubectl) must produce exactly the objects `kubectl apply -k` would apply."""
    same_objects(name, render_fallback(KUSTOMIZATIONS[name]), render_with(kustomize_command(), KUSTOMIZATIONS[name]))


@pytest.mark.skipif(kustomize_command() is None, reason="neither kubectl nor kustomize: fallback not cross-checked")
def test_fallback_matches_kustomize_beyond_what_k8s_uses(tmp_path):
    """Patch operations and image fields k8s/ does not use today (move, copy, test, digest) agree too."""
    base, overlay = tmp_path / "base", tmp_path / "overlay"
    base.mkdir()
    overlay.mkdir()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
           "spec": {"containers": [{"name": "c", "image": "reg.io:5000/team/app:1.0"},
                                   {"name": "d", "image": "other:2"}],
                    "initContainers": [{"name": "i", "image": "reg.io:5000/team/app"}]}}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v", "x": "y"}}
    (base / "objects.yaml").write_text(yaml.safe_dump_all([pod, cm]))
    (base / "kustomization.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["objects.yaml"]}))
    (overlay / "pod.yaml").write_text(yaml.safe_dump([
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/b"},
        {"op": "move", "from": "/spec/containers/1", "path": "/spec/containers/0"},
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "e", "image": "reg.io:5000/team/app:0"}},
    ]))
    (overlay / "cm.yaml").write_text(yaml.safe_dump([{"op": "remove", "path": "/data/x"}]))
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["../base"],
        "patches": [{"path": "pod.yaml", "target": {"kind": "Pod", "name": "p"}},
                    {"path": "cm.yaml", "target": {"kind": "ConfigMap"}}],
        "images": [{"name": "reg.io:5000/team/app", "newName": "mirror.io/app", "digest": "sha256:" + "ab" * 32},
                   {"name": "other", "newTag": "3"}],
    }))
    ours = render_fallback(overlay)
    same_objects("tmp overlay", ours, render_with(kustomize_command(), overlay))
    images = [c["image"] for c in ours[0]["spec"]["containers"] + ours[0]["spec"]["initContainers"]]
    assert images == ["other:3"] + [f"mirror.io/app@sha256:{'ab' * 32}"] * 3


@pytest.mark.skipif(kustomize_command() is None, reason="neither kubectl nor kustomize installed")
def test_kustomize_failures_are_reported(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match="missing.yaml"):
        render_with(kustomize_command(), tmp_path)
