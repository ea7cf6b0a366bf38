"""Content hashes and crash-safe writes: the one place files are hashed or replaced.

Every write goes to a hidden temporary sibling (same directory, so the rename is atomic), is
fsynced, renamed over the target, and the directory is fsynced: after a crash a reader finds the
old file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import IO, Iterator

CHUNK = 1 << 20


class LockHeldError(RuntimeError):
    """Another process holds the lock (``exclusive_lock(..., wait=False)``)."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (memory stays flat for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | Path) -> None:
    """Make a rename or a new entry in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", durable: bool = True) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``.
    On an exception the temporary file is removed and ``path`` is left as it was. ``durable=False``
    skips the fsyncs, for files that only need to be whole, not to survive a crash."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    newline = "" if "b" not in mode else None
    try:
        with open(tmp, mode, newline=newline) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str, durable: bool = True) -> None:
    with atomic_write(path, "w", durable) as f:
        f.write(text)


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy a file's bytes to ``dst`` through a temporary file and a rename (parents created)."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as source, atomic_write(dst, "wb") as target:
        shutil.copyfileobj(source, target)


def atomic_rename(src: str | Path, dst: str | Path) -> None:
    """``os.replace`` made durable: both parent directories are fsynced afterwards."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)
    if Path(src).parent != Path(dst).parent:
        fsync_dir(Path(src).parent)


def rename_no_replace(src: str | Path, dst: str | Path) -> None:
    """Publish ``src`` as ``dst`` unless ``dst`` exists: FileExistsError then, even for an empty folder
    that appeared meanwhile (a plain rename would replace it). Linux renameat2(RENAME_NOREPLACE), else
    check-then-rename; both parent directories are fsynced afterwards."""
    src, dst = Path(src), Path(dst)
    refused = FileExistsError(f"output {dst} exists; choose another --out (it is never replaced)")
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    except (OSError, AttributeError):
        renameat2 = None
    at_fdcwd, noreplace = -100, 1
    if renameat2 is not None and renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), noreplace) == 0:
        pass
    else:
        err = ctypes.get_errno() if renameat2 is not None else errno.ENOSYS
        if err == errno.EEXIST or dst.exists() or dst.is_symlink():
            raise refused
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(dst))
        os.rename(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def fsync_tree(root: str | Path) -> None:
    """fsync every file and folder under ``root`` (deepest first), so a rename of ``root`` publishes
    data that is on disk, not only in the page cache."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


@contextlib.contextmanager
def exclusive_lock(path: str | Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing, never deleted: deleting a lock
    file lets two processes lock two different files). Held by another process: wait, or with
    ``wait=False`` raise ``LockHeldError`` at once. The kernel drops the lock when the holder dies,
    so a killed run never leaves it stuck. (One host: NFS may not share flock between machines.)"""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeldError(str(path)) from None
        yield
    finally:
        os.close(fd)
