"""Render the kustomize subset that k8s/ uses, without kubectl (CI may not have it).

Supported kustomization keys: ``resources`` (files, or folders with their own kustomization),
``patches`` (``path`` + ``target`` of kind / exact name; the file is an RFC 6902 JSON patch) and
``images`` (``name`` + ``newName`` / ``newTag``). Anything else raises ``KustomizeError``: an
overlay that needs more must grow this renderer, so no kustomize feature is silently ignored.
When kubectl is present, the tests check that ``kubectl kustomize`` renders the same objects.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "patches", "images"}
PATCH_KEYS = {"path", "target"}
TARGET_KEYS = {"kind", "name"}
IMAGE_KEYS = {"name", "newName", "newTag"}
JSON_PATCH_OPS = {"add", "replace", "remove"}


class KustomizeError(ValueError):
    """The kustomization or a patch is wrong, or uses something this renderer does not do."""


def load_yaml_docs(path: Path) -> list[Any]:
    with open(path) as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def resource_key(doc: dict) -> tuple[str, str, str]:
    return doc.get("apiVersion", ""), doc.get("kind", ""), doc.get("metadata", {}).get("name", "")


def read_kustomization(directory: Path) -> dict:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - KUSTOMIZATION_KEYS)
    if unknown:
        raise KustomizeError(f"{path}: unsupported key '{unknown[0]}' (supported: {sorted(KUSTOMIZATION_KEYS)})")
    if data.get("kind") != "Kustomization":
        raise KustomizeError(f"{path}: kind must be Kustomization, got {data.get('kind')!r}")
    return data


def render(directory: str | Path) -> list[dict]:
    """The objects a kustomization folder renders to, in the order its resources list them."""
    directory = Path(directory)
    kustomization = read_kustomization(directory)
    docs: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs.extend(render(path))
        elif path.is_file():
            docs.extend(load_yaml_docs(path))
        else:
            raise KustomizeError(f"{directory / 'kustomization.yaml'}: resource '{entry}' does not exist")
    seen = set()
    for doc in docs:
        if resource_key(doc) in seen:
            raise KustomizeError(f"{directory}: {resource_key(doc)} is defined twice")
        seen.add(resource_key(doc))
    for i, patch in enumerate(kustomization.get("patches", [])):
        apply_patch_entry(docs, patch, directory, where=f"{directory / 'kustomization.yaml'}: patches[{i}]")
    for i, image in enumerate(kustomization.get("images", [])):
        unknown = sorted(set(image) - IMAGE_KEYS)
        if unknown or "name" not in image:
            raise KustomizeError(f"{directory}: images[{i}] needs 'name' and only {sorted(IMAGE_KEYS)}")
        for doc in docs:
            retag_images(doc, image)
    return docs


def apply_patch_entry(docs: list[dict], patch: dict, directory: Path, where: str) -> None:
    unknown = sorted(set(patch) - PATCH_KEYS)
    target = patch.get("target") or {}
    if unknown or "path" not in patch or not target or set(target) - TARGET_KEYS:
        raise KustomizeError(f"{where}: a patch needs 'path' and a 'target' of {sorted(TARGET_KEYS)} only")
    ops = yaml.safe_load((directory / patch["path"]).read_text())
    if not isinstance(ops, list):
        raise KustomizeError(f"{where}: {patch['path']} is not a JSON patch (a list of operations)")
    matched = [d for d in docs if d.get("kind") == target.get("kind", d.get("kind"))
               and d["metadata"]["name"] == target.get("name", d["metadata"]["name"])]
    if not matched:
        raise KustomizeError(f"{where}: target {target} matches no resource")
    for doc in matched:
        try:
            apply_json_patch(doc, ops)
        except KustomizeError as exc:
            raise KustomizeError(f"{where} ({patch['path']}) on {resource_key(doc)}: {exc}") from None


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer '{path}' must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list, token: str, path: str, allow_end: bool) -> int:
    if allow_end and token == "-":
        return len(container)
    if not token.isdigit() or int(token) > len(container) - (0 if allow_end else 1):
        raise KustomizeError(f"'{path}': list index '{token}' out of range (length {len(container)})")
    return int(token)


def apply_json_patch(doc: Any, ops: list[dict]) -> Any:
    """Apply RFC 6902 add / replace / remove operations to ``doc`` in place."""
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind not in JSON_PATCH_OPS:
            raise KustomizeError(f"JSON patch op {kind!r} is not supported (only {sorted(JSON_PATCH_OPS)})")
        if kind != "remove" and "value" not in op:
            raise KustomizeError(f"JSON patch op '{kind} {path}' has no value")
        *parents, last = _pointer(path)
        node = doc
        for token in parents:
            if isinstance(node, list):
                node = node[_index(node, token, path, allow_end=False)]
            elif isinstance(node, dict) and token in node:
                node = node[token]
            else:
                raise KustomizeError(f"'{path}': '{token}' does not exist")
        value = copy.deepcopy(op.get("value"))
        if isinstance(node, list):
            i = _index(node, last, path, allow_end=(kind == "add"))
            if kind == "add":
                node.insert(i, value)
            elif kind == "replace":
                node[i] = value
            else:
                del node[i]
        elif isinstance(node, dict):
            if kind != "add" and last not in node:
                raise KustomizeError(f"'{path}': cannot {kind} '{last}', it does not exist")
            if kind == "remove":
                del node[last]
            else:
                node[last] = value
        else:
            raise KustomizeError(f"'{path}': parent is not an object or a list")
    return doc


def split_image(image: str) -> tuple[str, str]:
    """``repo/name:tag`` -> (``repo/name``, ``:tag``); a registry port is not a tag."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return name, ":" + tag
    return image, ""


def retag_images(node: Any, image: dict) -> None:
    """Set new name / tag on every container image named ``image['name']``, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    name, tag = split_image(container.get("image", ""))
                    if name == image["name"]:
                        new_tag = ":" + image["newTag"] if "newTag" in image else tag
                        container["image"] = image.get("newName", name) + new_tag
            retag_images(value, image)
    elif isinstance(node, list):
        for value in node:
            retag_images(value, image)
