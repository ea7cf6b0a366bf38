"""Strict offline validation of Kubernetes manifests: KubeRay kinds against their CRD schemas,
core kinds with ``kubernetes_validate``.

The API server checks a custom resource against the CRD's ``openAPIV3Schema`` and silently
prunes unknown fields, so a typo such as ``entrypointt`` would simply vanish. To catch it here,
the schema is turned into a JSON Schema with ``additionalProperties: false`` on every object that
does not declare its own ``additionalProperties`` (like ``kubeconform -strict``), except below
``x-kubernetes-preserve-unknown-fields`` where Kubernetes keeps unknown fields too.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33"   # core-kind schemas to check against (KubeRay v1.7 supports it)

# Top-level metadata is just ``type: object`` in a CRD (the API server checks it as ObjectMeta);
# these are the ObjectMeta fields a manifest in this project may set.
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def strict_schema(node: Any) -> Any:
    """A copy of an OpenAPI v3 (structural) schema as a JSON Schema that rejects unknown fields."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return copy.deepcopy(node)
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = strict_schema(value)
        else:
            out[key] = value
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (out.get("type") == "object" or "properties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def crd_json_schemas(crd: dict) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict JSON Schema, for every served version of one CRD document."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schemas = {}
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = strict_schema(version["schema"]["openAPIV3Schema"])
        api_version = f"{group}/{version['name']}"
        props = schema["properties"]
        props.pop("status", None)                  # written by the operator, never by a manifest
        props["apiVersion"] = {"type": "string", "enum": [api_version]}
        props["kind"] = {"type": "string", "enum": [kind]}
        props["metadata"] = OBJECT_META
        schema["required"] = sorted({"apiVersion", "kind", "metadata", "spec"} | set(schema.get("required", [])))
        schemas[(api_version, kind)] = schema
    return schemas


def find_crd_folder(path: Path) -> Path:
    """The folder holding ``ray.io_*.yaml``: ``path`` itself or its newest ``v*`` subfolder."""
    if any(path.glob("ray.io_*.yaml")):
        return path
    versions = sorted((p for p in path.glob("v*") if any(p.glob("ray.io_*.yaml"))),
                      key=lambda p: [int(x) if x.isdigit() else x for x in p.name[1:].split(".")])
    if not versions:
        raise FileNotFoundError(f"no ray.io_*.yaml CRD files in {path} or its v* subfolders")
    return versions[-1]


class ManifestValidator:
    """Validates one manifest document; ``errors(doc)`` lists what is wrong (empty = valid)."""

    def __init__(self, crd_folder: Path):
        self.crd_folder = find_crd_folder(crd_folder)
        self.validators: dict[tuple[str, str], jsonschema.Draft4Validator] = {}
        self.loaded_kinds: set[str] = set()

    def validator(self, api_version: str, kind: str) -> jsonschema.Draft4Validator | None:
        """The strict validator of one KubeRay kind; its CRD file is read on first use (~0.5 s)."""
        path = self.crd_folder / f"ray.io_{kind.lower()}s.yaml"
        if kind not in self.loaded_kinds and path.is_file():
            self.loaded_kinds.add(kind)
            with open(path) as fh:
                crd = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            for key, schema in crd_json_schemas(crd).items():
                self.validators[key] = jsonschema.Draft4Validator(schema)
        return self.validators.get((api_version, kind))

    def errors(self, doc: Any) -> list[str]:
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            return ["not a Kubernetes object (needs apiVersion and kind)"]
        api_version, kind = doc["apiVersion"], doc["kind"]
        if api_version.startswith("ray.io/"):
            validator = self.validator(api_version, kind)
            if validator is None:
                return [f"no KubeRay CRD schema for {kind} {api_version} in {self.crd_folder}"]
            found = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            return [f"{e.json_path}: {e.message}" for e in found]
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [f"$.{'.'.join(map(str, exc.path))}: {exc.message}"]
        except Exception as exc:   # unknown kind / version: no schema to check it against
            return [f"no Kubernetes {KUBERNETES_VERSION} schema for {kind} {api_version} "
                    f"({type(exc).__name__}: {exc})"]
        return []
