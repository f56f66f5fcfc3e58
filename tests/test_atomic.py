"""care_flows.atomic: outputs appear whole, and an output path that is not a plain file is never replaced (review 35c M5, L4)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from care_flows.atomic import atomic_open, atomic_write_text
from care_flows.errors import ConfigError


def test_a_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(real)  # before: the link was replaced by a file
    assert real.read_text() == "new\n"


def test_a_fifo_is_written_into_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pred.fifo"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    atomic_write_text(fifo, "a,b\n1,2\n")
    reader.join(timeout=10)
    assert got == ["a,b\n1,2\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # before: a regular file took its place (/dev/full too, as root)


def test_a_new_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.csv", "x\n")
        assert stat.S_IMODE(os.stat(tmp_path / "new.csv").st_mode) == 0o644  # before: 0600 (mkstemp's)
        shared = tmp_path / "shared.csv"
        shared.write_text("x\n")
        os.chmod(shared, 0o664)
        atomic_write_text(shared, "y\n")
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o664 and shared.read_text() == "y\n"
    finally:
        os.umask(old)


def test_a_failed_block_leaves_the_old_content_and_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "plan.csv"
    out.write_text("kept\n")
    with pytest.raises(RuntimeError), atomic_open(out) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert out.read_text() == "kept\n" and sorted(p.name for p in tmp_path.iterdir()) == ["plan.csv"]


def test_bad_output_paths_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "x.csv", "")
    with pytest.raises(ConfigError, match="is a folder"):
        atomic_write_text(tmp_path, "")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux procfs")
def test_a_folder_that_refuses_files_is_found_before_the_work_even_as_root(tmp_path: Path) -> None:
    """Review 47c L6: os.access says yes to root on procfs, and the write then failed after the long
    work, naming the temporary file. The check now makes (and removes) a file where the output goes."""
    from care_flows.atomic import output_target

    with pytest.raises(ConfigError, match=r"output folder '/proc' is not writable \(.+\); choose another path"):
        output_target("/proc/pred.csv")
    assert output_target(tmp_path / "pred.csv") == tmp_path / "pred.csv"
    assert list(tmp_path.iterdir()) == []  # the check's file is gone
