"""Fetching an archive from a URL (progress bar, sha256 check) and unpacking it safely."""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from hamur_dist.data.validation import DataError
from hamur_dist.fileio import atomic_rename, sha256_file


def default_cache_dir() -> Path:
    return Path(os.environ.get("HAMUR_CACHE", Path.home() / ".cache" / "hamur-dist"))


def is_url(text: str | Path) -> bool:
    return isinstance(text, str) and text.split("://", 1)[0] in ("http", "https", "file")


def download(url: str, dest_dir: str | Path, sha256: str | None = None, progress: bool | None = None) -> Path:
    """Download ``url`` into ``dest_dir`` (kept if already there with the right hash); return the file.

    Written to a ``.part`` file first and renamed only once complete and verified.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / (url.rstrip("/").rsplit("/", 1)[-1] or "download")
    if target.is_file() and (sha256 is None or sha256_file(target) == sha256):
        return target
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as fh:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {target.name}",
                      disable=None if progress is None else not progress, leave=False) as bar:
                while block := response.read(1 << 20):
                    fh.write(block)
                    digest.update(block)
                    bar.update(len(block))
        if total is not None and part.stat().st_size != total:
            raise DataError(f"download incomplete: {part.stat().st_size} of {total} bytes", file=url)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise DataError(f"download failed: {exc}", file=url) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if sha256 is not None and digest.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise DataError(f"sha256 {digest.hexdigest()} does not match the expected {sha256} "
                        "(corrupt download or a different file)", file=url)
    atomic_rename(part, target)
    return target


def extract_zip(archive: str | Path, dest_dir: str | Path) -> Path:
    """Unpack ``archive`` into ``dest_dir/<archive stem>/`` (once; refuses paths leaving that folder)."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    out = dest_dir / archive.stem
    marker = out / ".complete"
    if marker.is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                resolved = (out / member).resolve()
                if not resolved.is_relative_to(out.resolve()):
                    raise DataError(f"archive member {member!r} would be written outside {out}", file=archive)
            zf.extractall(out)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a valid zip archive: {exc}", file=archive) from None
    marker.touch()
    return out


def find_file(root: Path, names: tuple[str, ...]) -> Path | None:
    """The folder under ``root`` (itself included) that holds one of ``names``, shallowest first."""
    for name in names:
        hits = sorted(root.rglob(name), key=lambda p: len(p.parts))
        if hits:
            return hits[0]
    return None
