"""An all-or-nothing dataset folder: built aside, published by rename, one writer at a time.

``StagedOutput`` builds everything in a hidden folder next to the target and moves it into place
only once the manifest is written and every file is fsynced, so an interrupted or failed run never
leaves something that looks like a whole dataset. An existing folder is replaced only on
``overwrite`` and only when it is a dataset (its manifest.json parses). One prepare at a time may
write an output: it holds an exclusive lock on ``.<name>.lock`` beside it, and a second one fails
at once. With the lock held, leftovers of a killed run (``.<name>.partial-*``, ``.<name>.old-*``)
are cleaned up or, when the dataset survives only there, restored.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import sys
import uuid
from pathlib import Path

from hamur_dist.data.manifest import MANIFEST_NAME, Manifest, ManifestError, load_manifest, write_manifest
from hamur_dist.data.validation import DataError
from hamur_dist.fileio import LockHeldError, atomic_rename, exclusive_lock, fsync_tree


def is_dataset(folder: Path) -> bool:
    """A folder ``hamur prepare`` made: a real directory whose manifest.json loads as a manifest."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        load_manifest(folder)
    except (ManifestError, OSError, ValueError):   # unreadable or not a manifest (ManifestError is a ValueError)
        return False
    return True


def _leftovers(out: Path, kind: str, hex_digits: int) -> list[Path]:
    """Hidden folders this tool names ``.<out name>.<kind>-<hex>`` for exactly this output."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.{kind}-[0-9a-f]{{{hex_digits}}}")
    return sorted(p for p in out.parent.iterdir()
                  if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink())


def recover_leftovers(out: Path) -> str | None:
    """Undo what a killed prepare to ``out`` left behind; returns the line printed, or None.

    Call only with the output's lock held: then no live prepare owns any of these folders.
    """
    actions = []
    olds = sorted(_leftovers(out, "old", 8), key=lambda p: (is_dataset(p), p.stat().st_mtime), reverse=True)
    if olds and not out.exists() and not out.is_symlink():
        restored = olds.pop(0)
        atomic_rename(restored, out)
        actions.append(f"restored the previous dataset from {restored.name} (an earlier replace was interrupted)")
    if olds and is_dataset(out):
        for old in olds:
            shutil.rmtree(old)
        copies = f"{len(olds)} leftover {'copy' if len(olds) == 1 else 'copies'}"
        actions.append(f"removed {copies} of a replaced dataset ({', '.join(p.name for p in olds)})")
    elif olds:
        actions.append(f"kept {', '.join(p.name for p in olds)}: {out.name} is not a whole dataset, "
                       "so that may be the only copy (move it back by hand)")
    partials = _leftovers(out, "partial", 12)
    for partial in partials:
        shutil.rmtree(partial)
    if partials:
        actions.append(f"removed {len(partials)} unfinished folder(s) of a killed prepare "
                       f"({', '.join(p.name for p in partials)})")
    if not actions:
        return None
    line = f"hamur prepare: {out}: " + "; ".join(actions)
    print(line, file=sys.stderr)
    return line


class StagedOutput:
    """``with StagedOutput(out, overwrite) as staged: ... write under staged.path ...; staged.commit(m)``."""

    def __init__(self, out: str | Path, overwrite: bool = False):
        self.out = Path(out).absolute()
        self.overwrite = overwrite
        self.lock_file = self.out.parent / f".{self.out.name}.lock"
        self.path: Path | None = None
        self._committed = False
        self._lock: contextlib.ExitStack | None = None

    def __enter__(self) -> "StagedOutput":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        busy = (f"another `hamur prepare` is writing {self.out} right now (it holds this lock); "
                "wait for it to finish or choose another --out")
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(exclusive_lock(self.lock_file, wait=False))
            except LockHeldError:
                raise DataError(busy, file=self.lock_file) from None
            recover_leftovers(self.out)
            self._check_replaceable()
            # a hidden sibling (same filesystem, so the final rename is atomic); mkdir honours the umask
            self.path = self.out.parent / f".{self.out.name}.partial-{uuid.uuid4().hex[:12]}"
            self.path.mkdir()
            self._lock = stack.pop_all()
        return self

    def _check_replaceable(self) -> None:
        if self.out.is_symlink():
            raise DataError("is a symbolic link; give the directory itself as --out", file=self.out)
        if not self.out.exists():
            return
        if not self.out.is_dir():
            raise DataError("exists and is not a directory", file=self.out)
        if not any(self.out.iterdir()):
            return
        if not self.overwrite:
            raise DataError("already exists; pass --overwrite (overwrite=True) to replace it", file=self.out)
        if not is_dataset(self.out):
            raise DataError(f"is not a dataset made by `hamur prepare` (no readable {MANIFEST_NAME}) and is not "
                            "empty: refusing to replace it even with --overwrite; move it away or choose another "
                            "--out", file=self.out)

    def commit(self, manifest: Manifest) -> None:
        write_manifest(self.path, manifest)
        fsync_tree(self.path)
        self._check_replaceable()      # again: the folder may have changed while the data was built
        old = None
        if self.out.exists():
            # a crash between the two renames leaves the dataset only here; the next prepare restores it
            old = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            atomic_rename(self.out, old)
        try:
            atomic_rename(self.path, self.out)
        except BaseException:
            if old is not None:
                atomic_rename(old, self.out)
            raise
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, *exc_info) -> None:
        try:
            if not self._committed and self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None
