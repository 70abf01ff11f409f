"""Write outputs under a temporary name and rename them into place only when complete.

A job killed mid-way then leaves at most a ``.tmp`` file behind, never a truncated output
that a later run (or Snakemake's mtime check) would trust.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix last: some writers (Keras) choose the format from the file name.
    fd, tmp = tempfile.mkstemp(
        dir=dest.parent, prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp creates 0600; outputs are shared files
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
