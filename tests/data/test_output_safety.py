"""`hamur prepare --out`: never replaces what is not a dataset, one writer at a time, and a killed
run's leftovers are restored or cleaned by the next run (only the folders it names itself)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hamur_dist.cli import main
from hamur_dist.data import prepare
from hamur_dist.data.validation import DataError, verify_dataset
from hamur_dist.data.staged_output import StagedOutput, recover_leftovers
from tests.helpers import make_tiny_dataset

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = ["--rows", "300", "--shard-rows", "100", "--workers", "1"]


def make_synthetic(out, seed=1, **options):
    return prepare("synthetic", out, rows=300, shard_rows=100, workers=1, seed=seed, progress=False, **options)


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def run_and_die(out: Path, die_when: str) -> None:
    """Run a prepare to ``out`` in a child process that is killed (os._exit) at ``die_when``:
    'between-renames' (old dataset moved aside, new one not yet in place) or 'before-commit'."""
    script = textwrap.dedent(f"""
        import os, sys
        from hamur_dist.data import prepare, staged_output
        out = sys.argv[1]
        real_replace, real_rename = os.replace, os.rename

        def dies_on_publish(real):
            def rename(src, dst, *args, **kwargs):
                if ".partial-" in os.path.basename(src) and os.path.abspath(dst) == os.path.abspath(out):
                    os._exit(9)
                return real(src, dst, *args, **kwargs)
            return rename

        if {die_when!r} == "between-renames":
            os.replace, os.rename = dies_on_publish(real_replace), dies_on_publish(real_rename)
        else:
            staged_output.StagedOutput.commit = lambda self, manifest: os._exit(9)
        prepare("synthetic", out, rows=300, shard_rows=100, workers=1, seed=99, overwrite=True, progress=False)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 9, done.stderr


# --- 1. --overwrite replaces only a dataset; one prepare per output at a time -------------------
@pytest.mark.parametrize("manifest_text", [None, "{not json"])
def test_overwrite_refuses_a_folder_that_is_not_a_dataset(tmp_path, capsys, manifest_text):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    if manifest_text is not None:
        (out / "manifest.json").write_text(manifest_text)
    code = main(["prepare", "synthetic", "--out", str(out), *SYNTHETIC, "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{out}: is not a dataset made by `hamur prepare`" in err and "refusing to replace it" in err
    assert (out / "notes.txt").read_text() == "my notes" and hidden_leftovers(tmp_path) == []


def test_overwrite_replaces_a_dataset(tmp_path):
    out = tmp_path / "out"
    make_synthetic(out, seed=1)
    after = make_synthetic(out, seed=2, overwrite=True)
    assert verify_dataset(out) == after and after.source["spec"]["seed"] == 2 and hidden_leftovers(tmp_path) == []


def test_a_second_prepare_to_the_same_out_fails_at_once(tmp_path, capsys):
    out = tmp_path / "out"
    with StagedOutput(out) as first:                          # a prepare in progress
        code = main(["prepare", "synthetic", "--out", str(out), *SYNTHETIC, "--overwrite"])
        err = capsys.readouterr().err
        assert code == 2 and f"another `hamur prepare` is writing {out} right now" in err
        assert f".{out.name}.lock" in err
        assert first.path.is_dir()                             # the live run's folder is untouched
        first.commit(make_tiny_dataset(first.path, rows=(60, 20, 20), shards=(1, 1, 1)))
    assert verify_dataset(out).name == "tiny"
    make_synthetic(out, overwrite=True)                        # the lock is free again


# --- 2. the commit is durable and a killed run is recovered from --------------------------------
def test_commit_fsyncs_every_file_and_folder_before_the_rename(tmp_path, monkeypatch):
    out = tmp_path / "out"
    events: list[tuple] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def recorded(real):
        def rename(src, dst, *args, **kwargs):
            events.append(("rename", str(src), str(dst)))
            return real(src, dst, *args, **kwargs)
        return rename
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", recorded(real_replace))
    monkeypatch.setattr(os, "rename", recorded(real_rename))
    make_synthetic(out)
    publish = next(i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(out))
    staged = Path(events[publish][1])
    synced_before = {e[1] for e in events[:publish] if e[0] == "fsync"}
    expected = {str(staged / p.relative_to(out)) for p in out.rglob("*")} | {str(staged)}
    assert expected - synced_before == set()


def test_crash_between_the_renames_restores_the_old_dataset(tmp_path, capsys):
    out = tmp_path / "out"
    before = make_synthetic(out, seed=1)
    run_and_die(out, "between-renames")
    assert not out.exists() and len(hidden_leftovers(tmp_path)) == 2      # .out.old-* and .out.partial-*
    code = main(["prepare", "synthetic", "--out", str(out), *SYNTHETIC])   # no --overwrite: restores, then stops
    err = capsys.readouterr().err
    assert "restored the previous dataset from .out.old-" in err and "removed 1 unfinished folder" in err
    assert code == 2 and "already exists; pass --overwrite" in err
    assert verify_dataset(out) == before and hidden_leftovers(tmp_path) == []


def test_a_killed_prepare_leaves_nothing_the_next_one_keeps(tmp_path, capsys):
    out = tmp_path / "out"
    make_synthetic(out, seed=1)
    run_and_die(out, "before-commit")
    assert [n.split("-")[0] for n in hidden_leftovers(tmp_path)] == [".out.partial"]
    after = make_synthetic(out, seed=2, overwrite=True)
    assert "removed 1 unfinished folder(s) of a killed prepare (.out.partial-" in capsys.readouterr().err
    assert verify_dataset(out) == after and hidden_leftovers(tmp_path) == []


def test_only_this_outputs_own_leftovers_are_touched(tmp_path, capsys):
    out = tmp_path / "out"
    make_synthetic(out)
    make_tiny_dataset(tmp_path / ".out.old-0123abcd", rows=(60, 20, 20), shards=(1, 1, 1))
    decoys = [".out.old-notes", ".out.partial-XYZ", ".outer.partial-0123456789ab", ".other.old-0123abcd",
              "out.partial-0123456789ab"]
    for name in decoys:
        (tmp_path / name).mkdir()
        (tmp_path / name / "keep.txt").write_text("keep")
    (tmp_path / ".out.partial-0123456789ab").write_text("a file, not a folder this tool made")
    line = recover_leftovers(out)
    assert line == f"hamur prepare: {out}: removed 1 leftover copy of a replaced dataset (.out.old-0123abcd)"
    assert line in capsys.readouterr().err
    assert all((tmp_path / name / "keep.txt").is_file() for name in decoys)
    assert (tmp_path / ".out.partial-0123456789ab").is_file() and not (tmp_path / ".out.old-0123abcd").exists()


def test_an_old_copy_is_kept_when_out_is_not_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()                                                 # made by hand after an interrupted replace
    make_tiny_dataset(tmp_path / ".out.old-0123abcd", rows=(60, 20, 20), shards=(1, 1, 1))
    assert "kept .out.old-0123abcd" in recover_leftovers(out)
    assert verify_dataset(tmp_path / ".out.old-0123abcd").name == "tiny"


def test_a_symlinked_out_is_refused(tmp_path):
    make_synthetic(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(DataError, match="is a symbolic link"):
        make_synthetic(tmp_path / "link", overwrite=True)
    assert verify_dataset(tmp_path / "real")
