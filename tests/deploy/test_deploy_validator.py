"""The checkers themselves must fail on broken input: strict schemas, core-kind validation, the
fallback renderer."""
from __future__ import annotations

import copy

import pytest
import yaml

from tests.deploy.deploy_paths import K8S
from tests.deploy.k8s_schemas import strict_schema
from tests.deploy.kustomize_render import KustomizeError, apply_json_patch, render_fallback, retag_images, split_image


@pytest.fixture(scope="module")
def train_job() -> dict:
    return yaml.safe_load((K8S / "base" / "rayjob-train.yaml").read_text())


def worker_container(job: dict) -> dict:
    return job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]


def test_base_train_job_is_valid(train_job, manifest_validator):
    assert manifest_validator.errors(train_job) == []


def test_typo_at_spec_level_is_rejected(train_job, manifest_validator):
    job = copy.deepcopy(train_job)
    job["spec"]["entrypointt"] = job["spec"].pop("entrypoint")
    errors = manifest_validator.errors(job)
    assert len(errors) == 1 and "'entrypointt' was unexpected" in errors[0] and errors[0].startswith("$.spec:")


def test_typo_deep_in_the_pod_template_is_rejected(train_job, manifest_validator):
    job = copy.deepcopy(train_job)
    worker_container(job)["volumeMount"] = worker_container(job).pop("volumeMounts")
    errors = manifest_validator.errors(job)
    assert any("workerGroupSpecs[0].template.spec.containers[0]" in e and "'volumeMount'" in e for e in errors), errors


def test_typo_in_metadata_and_wrong_version_are_rejected(train_job, manifest_validator):
    job = copy.deepcopy(train_job)
    job["metadata"]["lables"] = job["metadata"].pop("labels")
    assert any("'lables' was unexpected" in e for e in manifest_validator.errors(job))
    job = copy.deepcopy(train_job)
    job["apiVersion"] = "ray.io/v2"
    assert manifest_validator.errors(job) == [f"no KubeRay CRD schema for RayJob ray.io/v2 in {manifest_validator.crd_folder}"]


def test_wrong_types_and_bad_quantities_are_rejected(train_job, manifest_validator):
    job = copy.deepcopy(train_job)
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "two"
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    worker_container(job)["resources"]["limits"]["memory"] = "16 GB"
    errors = "\n".join(manifest_validator.errors(job))
    assert "replicas: 'two' is not of type 'integer'" in errors
    assert "shutdownAfterJobFinishes: 'yes' is not of type 'boolean'" in errors
    assert "limits.memory: '16 GB' does not match" in errors


def test_status_cannot_be_written(train_job, manifest_validator):
    job = copy.deepcopy(train_job)
    job["status"] = {"jobStatus": "SUCCEEDED"}
    assert any("'status' was unexpected" in e for e in manifest_validator.errors(job))


def test_core_kinds_are_validated_strictly(manifest_validator):
    pvc = yaml.safe_load((K8S / "base" / "pvc.yaml").read_text())
    assert manifest_validator.errors(pvc) == []
    pvc["spec"]["storageClasName"] = "nfs"
    assert any("'storageClasName' was unexpected" in e for e in manifest_validator.errors(pvc))
    policy = next(yaml.safe_load_all((K8S / "base" / "networkpolicy.yaml").read_text()))
    assert policy["kind"] == "NetworkPolicy" and manifest_validator.errors(policy) == []
    policy["spec"]["ingress"][0]["form"] = policy["spec"]["ingress"][0].pop("from")
    assert any("'form' was unexpected" in e for e in manifest_validator.errors(policy))
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert manifest_validator.errors(unknown)[0].startswith("no Kubernetes")


def test_strict_schema_closes_objects_but_keeps_open_ones_open():
    schema = strict_schema({
        "type": "object",
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"a": {"type": "object", "properties": {}}}},
            "when": {"type": "string", "nullable": True},
            "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        },
    })
    assert schema["additionalProperties"] is False
    assert schema["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in schema["properties"]["free"]
    assert "additionalProperties" not in schema["properties"]["free"]["properties"]["a"]
    assert schema["properties"]["when"]["type"] == ["string", "null"]
    assert schema["properties"]["items"]["items"]["additionalProperties"] is False


def test_json_patch_operations():
    doc = {"a": {"b": [1, 2], "c": "x"}, "k/s": 1}
    original = copy.deepcopy(doc)
    patched = apply_json_patch(doc, [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "replace", "path": "/a/c", "value": {"d": 1}},
        {"op": "remove", "path": "/k~1s"},
        {"op": "add", "path": "/a/new", "value": [True]},
        {"op": "test", "path": "/a/new/0", "value": True},
    ])
    assert patched == {"a": {"b": [0, 1, 2, 3], "c": {"d": 1}, "new": [True]}}
    assert doc == original, "the input must not be changed"
    for bad in ({"op": "replace", "path": "/a/missing", "value": 1},
                {"op": "remove", "path": "/a/b/9"},
                {"op": "add", "path": "/nope/x", "value": 1},
                {"op": "add", "path": "/a/b/7", "value": 1},
                {"op": "test", "path": "/a/c", "value": "y"},
                {"op": "frob", "path": "/a"},
                {"op": "add", "path": "a/q", "value": 1},
                {"op": "add", "path": "/a/q"}):
        with pytest.raises(KustomizeError):
            apply_json_patch(copy.deepcopy(doc), [bad])


def test_image_retag():
    assert split_image("reg.io:5000/team/hamur-dist:0.1.0-cpu") == ("reg.io:5000/team/hamur-dist", ":0.1.0-cpu")
    assert split_image("reg.io:5000/hamur-dist") == ("reg.io:5000/hamur-dist", "")
    pod = {"spec": {"containers": [{"image": "hamur-dist:0.1.0-cpu"}, {"image": "busybox:1"}],
                    "initContainers": [{"image": "hamur-dist"}]}}
    retag_images(pod, {"name": "hamur-dist", "newName": "reg.io/x/hamur-dist", "newTag": "v2"})
    assert [c["image"] for c in pod["spec"]["containers"] + pod["spec"]["initContainers"]] == \
        ["reg.io/x/hamur-dist:v2", "busybox:1", "reg.io/x/hamur-dist:v2"]
    digest = "sha256:" + "0f" * 32          # a digest replaces the tag
    retag_images(pod, {"name": "reg.io/x/hamur-dist", "newTag": "v3", "digest": digest})
    assert pod["spec"]["containers"][0]["image"] == f"reg.io/x/hamur-dist@{digest}"


def write(path, data):
    path.write_text(yaml.safe_dump(data))


def test_renderer_rejects_what_it_does_not_support(tmp_path):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    write(tmp_path / "cm.yaml", cm)
    write(tmp_path / "p.yaml", [{"op": "replace", "path": "/data/k", "value": "w"}])
    base = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["cm.yaml"]}
    write(tmp_path / "kustomization.yaml", {**base, "patches": [{"path": "p.yaml", "target": {"kind": "ConfigMap"}}]})
    assert render_fallback(tmp_path)[0]["data"] == {"k": "w"}
    bad_cases = [
        {**base, "namePrefix": "dev-"},                                             # unsupported key
        {**base, "patches": [{"path": "p.yaml", "target": {"kind": "Secret"}}]},     # matches nothing
        {**base, "patches": [{"path": "p.yaml", "target": {"labelSelector": "a=b"}}]},
        {**base, "resources": ["cm.yaml", "cm.yaml"]},                             # defined twice
        {**base, "resources": ["missing.yaml"]},
        {**base, "images": [{"name": "x", "newDigest": "sha256:0"}]},               # unknown image field
        {**base, "patches": [{"path": "p.yaml", "target": {"kind": "ConfigMap"}, "options": {}}]},
    ]
    for bad in bad_cases:
        write(tmp_path / "kustomization.yaml", bad)
        with pytest.raises(KustomizeError):
            render_fallback(tmp_path)
    write(tmp_path / "p.yaml", [{"op": "replace", "path": "/data/missing", "value": "w"}])   # patch fails
    write(tmp_path / "kustomization.yaml", {**base, "patches": [{"path": "p.yaml", "target": {"kind": "ConfigMap"}}]})
    with pytest.raises(KustomizeError, match="p.yaml"):
        render_fallback(tmp_path)
