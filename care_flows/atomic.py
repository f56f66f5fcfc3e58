"""Atomic file writes: a temporary file in the target's folder, then :func:`os.replace`.

A reader sees the old file or the whole new one, never half of one; on any error the temporary
file is removed and the target keeps its old content (or stays absent).

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_open(folder / "plan.csv") as fh:
...     _ = fh.write("job_id,region\\n")
>>> (folder / "plan.csv").read_text()
'job_id,region\\n'
>>> sorted(p.name for p in folder.iterdir())
['plan.csv']
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from care_flows.errors import ConfigError

__all__ = ["atomic_open", "atomic_write_text", "output_target"]


def output_target(path: str | os.PathLike[str], *, make_parents: bool = False) -> Path:
    """The file :func:`atomic_open` writes for ``path`` (a symbolic link followed), or the
    :class:`ConfigError` it would raise: a missing folder (unless ``make_parents``, which creates
    it), a folder given as the file, a read-only folder. Callers check an output before long work."""
    target = Path(path)
    if target.is_symlink():  # write where the link points; the link itself stays
        target = target.resolve()
    folder = target.parent if str(target.parent) else Path(".")
    if make_parents:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise ConfigError(f"output folder {str(folder)!r} does not exist; create it or choose another path")
    if target.is_dir():
        raise ConfigError(f"output path {str(target)!r} is a folder; give a file name")
    if not (target.exists() and not target.is_file()):
        _probe_writable(folder)
    return target


def _probe_writable(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``, as :func:`atomic_open` will: ``os.access``
    says yes to root on a read-only mount or procfs, and the write then failed after the long work
    (review 47c L6)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".care-write-check.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(f"output folder {str(folder)!r} is not writable ({exc.strerror or type(exc).__name__}); choose another path") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], *, make_parents: bool = False, fsync: bool = False) -> Iterator[IO[str]]:
    """Open a text file for writing that appears at ``path`` only when the block succeeds.

    A missing or read-only folder is a :class:`ConfigError` naming it (unless ``make_parents``).
    A symbolic link is followed (the file it points to is replaced, the link stays); a path that
    is not a regular file (a FIFO, ``/dev/stdout``, a device) is written into directly, never
    replaced. The new file gets the replaced file's mode, or ``0666`` less the umask.
    """
    target = output_target(path, make_parents=make_parents)
    folder = target.parent if str(target.parent) else Path(".")
    if target.exists() and not target.is_file():  # a FIFO, /dev/stdout, a device: stream into it, never replace it
        with open(target, "w", encoding="utf-8", newline="") as fh:
            yield fh
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file 0600; give it what a plain open() would (or the replaced file's mode)
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (else set and restored)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str, **kwargs: bool) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, **kwargs) as fh:
        fh.write(text)
