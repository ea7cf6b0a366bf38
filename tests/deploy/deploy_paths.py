"""Where the deployment files are, and the versions pyproject.toml pins (shared by the deploy tests)."""
from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
# The KubeRay CRDs are not copied into the repo: they live in the shared folder next to it.
CRDS = Path(os.environ.get("HAMUR_SHARED_KUBERAY_CRDS", REPO.parent / "shared" / "kuberay-crds"))


def kustomization_dirs() -> dict[str, Path]:
    """'base' and every overlay name -> its folder."""
    dirs = {"base": K8S / "base"}
    dirs.update({p.name: p for p in sorted((K8S / "overlays").iterdir()) if (p / "kustomization.yaml").is_file()})
    return dirs


def pinned_version(package: str) -> str:
    """The exact version pyproject.toml pins ``package`` to (``"name[extras]==X"``)."""
    text = (REPO / "pyproject.toml").read_text()
    found = re.findall(rf'"{re.escape(package)}(?:\[[^\]]*\])?==([0-9][\w.]*)"', text)
    assert len(found) == 1, f"pyproject.toml should pin {package}==X exactly once, found {found}"
    return found[0]
