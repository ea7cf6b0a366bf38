"""Fetching an archive from a URL (progress bar, sha256 check) and unpacking it safely.

The cache is keyed by content: an archive is unpacked into ``<cache>/<sha256[:16]>/``, a folder
that holds a ``.hamur-extracted`` file naming the archive's full sha256. Only folders carrying
that file are ever replaced; anything else found under the cache is left alone.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import uuid
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from hamur_dist.data.validation import DataError
from hamur_dist.fileio import atomic_rename, atomic_write_text, exclusive_lock, fsync_tree, sha256_file

EXTRACTED_MARKER = ".hamur-extracted"     # written last into each folder this tool unpacks


def default_cache_dir() -> Path:
    return Path(os.environ.get("HAMUR_CACHE", Path.home() / ".cache" / "hamur-dist"))


def is_url(text: str | Path) -> bool:
    return isinstance(text, str) and text.split("://", 1)[0] in ("http", "https", "file")


def download(url: str, dest_dir: str | Path, sha256: str | None = None, progress: bool | None = None) -> Path:
    """Download ``url`` into ``dest_dir`` (kept if already there with the right hash); return the file.

    Written to a ``.part`` file first and renamed only once complete and verified. Without
    ``sha256`` a file already there is not trusted (another URL may have the same file name).
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / (url.rstrip("/").rsplit("/", 1)[-1] or "download")
    if target.is_file() and sha256 is not None and sha256_file(target) == sha256:
        return target
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")   # concurrent downloads never share one
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
            fh.flush()
            os.fsync(fh.fileno())
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


def extract_zip(archive: str | Path, cache_dir: str | Path) -> Path:
    """Unpack ``archive`` into ``cache_dir/<sha256[:16]>/`` once per distinct content; return that folder.

    Unpacks into a hidden sibling and renames it into place with the marker inside, so a folder
    with the marker is always whole. Refuses members that would land outside the folder, and a
    folder of that name the tool did not make.
    """
    archive, cache_dir = Path(archive), Path(cache_dir)
    digest = sha256_file(archive)
    out = cache_dir / digest[:16]
    if _extracted_from(out) == digest:
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_dir / f".{digest[:16]}.lock"):     # waits while another run unpacks it
        if _extracted_from(out) == digest:
            return out
        if out.exists() or out.is_symlink():
            if _extracted_from(out) is None:
                raise DataError(f"exists and was not unpacked by hamur (no {EXTRACTED_MARKER}); refusing to "
                                "replace it: move it away or choose another --download-dir", file=out)
        for stale in cache_dir.glob(f".{digest[:16]}.unpacking-*"):   # a killed run's; the lock says none is live
            shutil.rmtree(stale, ignore_errors=True)
        tmp = cache_dir / f".{digest[:16]}.unpacking-{uuid.uuid4().hex[:8]}"
        try:
            _unpack(archive, tmp, out)
            atomic_write_text(tmp / EXTRACTED_MARKER, digest + "\n")
            fsync_tree(tmp)
            if out.exists():             # ours (marker checked above), from another archive with the same prefix
                shutil.rmtree(out)
            atomic_rename(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _extracted_from(folder: Path) -> str | None:
    """The sha256 in the folder's marker (None: no marker, so not the tool's folder)."""
    if folder.is_symlink():
        return None
    try:
        return (folder / EXTRACTED_MARKER).read_text().strip()
    except OSError:
        return None


def _unpack(archive: Path, dest: Path, final: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            dest.mkdir()
            for member in zf.namelist():
                resolved = (dest / member).resolve()
                if not resolved.is_relative_to(dest.resolve()):
                    raise DataError(f"archive member {member!r} would be written outside {final}", file=archive)
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a valid zip archive: {exc}", file=archive) from None


def find_file(root: Path, names: tuple[str, ...]) -> Path | None:
    """The folder under ``root`` (itself included) that holds one of ``names``, shallowest first."""
    for name in names:
        hits = sorted(root.rglob(name), key=lambda p: len(p.parts))
        if hits:
            return hits[0]
    return None
