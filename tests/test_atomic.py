"""common.atomic: atomic writes, and no temporary files left behind by interrupted ones."""

import os
import subprocess
import sys

import pytest

from common.atomic import atomic_write, atomic_write_text, clean_stale


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # exited and reaped: no such process (unless the pid is reused at once)


def test_stale_temp_files_of_dead_writers_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "checkpoint.pt"
    dead = tmp_path / f".checkpoint.pt.{_dead_pid()}.abcd1234"
    legacy = tmp_path / ".checkpoint.pt.x1y2z3w4"  # the earlier pid-less naming
    live = tmp_path / f".checkpoint.pt.{os.getppid()}.abcd1234"  # a running writer (our parent)
    other = tmp_path / ".summary.json.12.abcd1234"  # another target's: not ours to remove
    for p in (dead, legacy, live, other):
        p.write_text("partial")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, other.name])


def test_a_write_killed_midway_leaves_a_temp_file_that_the_next_run_removes(tmp_path):
    target = tmp_path / "out.bin"
    code = ("import os, signal; from common.atomic import atomic_write\n"
            f"atomic_write({str(target)!r}, lambda tmp: (open(tmp, 'w').write('half'), os.kill(os.getpid(), signal.SIGKILL)))")
    subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)))
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.bin.")]
    assert len(leftovers) == 1 and not target.exists()
    assert clean_stale(target) == leftovers
    assert not any(tmp_path.iterdir())


def test_failed_write_removes_its_temp_file_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def boom(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
