"""Every file under k8s/ and every rendered overlay passes strict schema validation."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from deploy_paths import K8S, kustomization_dirs
from kustomize_lite import load_yaml_docs, read_kustomization, render, resource_key

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


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_rendered_kustomization_is_valid(name, rendered, manifest_validator):
    kinds = sorted(doc["kind"] for doc in rendered[name])
    assert kinds == ["PersistentVolumeClaim", "RayCluster", "RayJob", "RayJob", "RayJob"]
    for doc in rendered[name]:
        assert manifest_validator.errors(doc) == [], f"{name}: {resource_key(doc)}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: renderer not cross-checked")
@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_renderer_matches_kubectl_kustomize(name):
    out = subprocess.run(["kubectl", "kustomize", str(KUSTOMIZATIONS[name])],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    by_kubectl = {resource_key(d): d for d in yaml.safe_load_all(out.stdout) if d}
    ours = {resource_key(d): d for d in render(KUSTOMIZATIONS[name])}
    assert sorted(ours) == sorted(by_kubectl)
    for key, doc in ours.items():
        assert doc == by_kubectl[key], f"{name}: {key} renders differently from kubectl kustomize"
