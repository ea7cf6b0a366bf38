"""Render the kustomizations under k8s/ the way ``kubectl apply -k`` will.

``render(dir)`` runs the real kustomize: a ``kustomize`` binary on PATH (``kustomize build DIR``),
else kubectl's built-in one (``kubectl kustomize DIR``). Only where neither exists does it fall
back to ``render_fallback``, a small renderer for the subset of kustomize that k8s/ uses, whose
JSON patches are applied by the maintained ``jsonpatch`` library (RFC 6902):

* ``resources``: files, or folders with their own kustomization.yaml;
* ``patches``: ``path`` (a JSON patch file) + ``target`` (``kind`` and / or exact ``name``);
* ``images``: ``name`` + ``newName`` / ``newTag`` / ``digest``.

Anything else raises ``KustomizeError``, so the fallback never silently ignores a kustomize feature.
Where kubectl or kustomize is present, the tests check that the fallback renders the same objects.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import jsonpointer
import yaml

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "patches", "images"}
PATCH_KEYS = {"path", "target"}
TARGET_KEYS = {"kind", "name"}
IMAGE_KEYS = {"name", "newName", "newTag", "digest"}


class KustomizeError(ValueError):
    """The kustomization or a patch is wrong, kustomize failed, or the fallback lacks a feature."""


def load_yaml_docs(path: Path) -> list[Any]:
    with open(path) as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def resource_key(doc: dict) -> tuple[str, str, str]:
    return doc.get("apiVersion", ""), doc.get("kind", ""), doc.get("metadata", {}).get("name", "")


# --- the real kustomize ---------------------------------------------------------------------------

def kustomize_command() -> list[str] | None:
    """The command that renders a kustomization folder (append the folder), or None if none exists."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render_with(command: list[str], directory: str | Path) -> list[dict]:
    """The objects ``command DIRECTORY`` (kustomize build / kubectl kustomize) prints."""
    out = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise KustomizeError(f"`{' '.join(command)} {directory}` failed:\n{out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc is not None]


def render(directory: str | Path) -> list[dict]:
    """The objects a kustomization folder renders to: by the real kustomize where there is one."""
    command = kustomize_command()
    return render_with(command, directory) if command else render_fallback(directory)


# --- the fallback ---------------------------------------------------------------------------------

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


def render_fallback(directory: str | Path) -> list[dict]:
    """The objects a kustomization folder renders to, in the order its resources list them."""
    directory = Path(directory)
    kustomization = read_kustomization(directory)
    docs: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs.extend(render_fallback(path))
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
        docs = apply_patch_entry(docs, patch, directory, where=f"{directory / 'kustomization.yaml'}: patches[{i}]")
    for i, image in enumerate(kustomization.get("images", [])):
        if set(image) - IMAGE_KEYS or "name" not in image:
            raise KustomizeError(f"{directory}: images[{i}] needs 'name' and only {sorted(IMAGE_KEYS)}")
        for doc in docs:
            retag_images(doc, image)
    return docs


def apply_patch_entry(docs: list[dict], patch: dict, directory: Path, where: str) -> list[dict]:
    """``docs`` with one ``patches`` entry applied to every object its target matches."""
    target = patch.get("target") or {}
    if set(patch) - PATCH_KEYS or "path" not in patch or not target or set(target) - TARGET_KEYS:
        raise KustomizeError(f"{where}: a patch needs 'path' and a 'target' of {sorted(TARGET_KEYS)} only")
    ops = yaml.safe_load((directory / patch["path"]).read_text())
    if not isinstance(ops, list):
        raise KustomizeError(f"{where}: {patch['path']} is not a JSON patch (a list of operations)")
    matched = 0
    out = []
    for doc in docs:
        if doc.get("kind") == target.get("kind", doc.get("kind")) and \
                doc["metadata"]["name"] == target.get("name", doc["metadata"]["name"]):
            matched += 1
            try:
                doc = apply_json_patch(doc, ops)
            except KustomizeError as exc:
                raise KustomizeError(f"{where} ({patch['path']}) on {resource_key(doc)}: {exc}") from None
        out.append(doc)
    if not matched:
        raise KustomizeError(f"{where}: target {target} matches no resource")
    return out


def apply_json_patch(doc: Any, ops: list[dict]) -> Any:
    """A patched copy of ``doc`` (``doc`` is left as it is); any patch error is a KustomizeError."""
    try:
        return jsonpatch.apply_patch(doc, ops, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
        raise KustomizeError(f"{type(exc).__name__}: {exc}") from None


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
    """Set new name / tag / digest on every container image named ``image['name']``, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    name, tag = split_image(container.get("image", ""))
                    if name != image["name"]:
                        continue
                    if "digest" in image:
                        tag = "@" + image["digest"]
                    elif "newTag" in image:
                        tag = ":" + image["newTag"]
                    container["image"] = image.get("newName", name) + tag
            retag_images(value, image)
    elif isinstance(node, list):
        for value in node:
            retag_images(value, image)
