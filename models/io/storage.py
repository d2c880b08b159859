"""Atomic writes: every output goes to a temporary sibling, then is renamed into place.

An interrupted run therefore leaves the previous materialization intact, never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success replace ``path`` with it.

    Works for files and directories (Zarr stores). On error the temporary path is removed and
    ``path`` is untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        replace_path(tmp, final)
    finally:
        _remove(tmp)


def replace_path(tmp: Path, final: Path) -> None:
    """Move ``tmp`` onto ``final``; a directory is swapped in with two renames."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if tmp.is_dir() and final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))
    return Path(path)


@dataclass(frozen=True)
class StagedOutput:
    """A file or folder written inside a staging folder, to be moved into place by its consumer.

    Only :class:`Staging` creates these, so whoever moves ``path`` knows that ``staging`` is a
    private scratch folder it may delete, never a folder that holds anything else.
    """

    path: Path
    staging: Path


class Staging:
    """A private scratch folder; ``output(name)`` names a file or folder to hand over as a result."""

    def __init__(self, folder: Path):
        self.folder = folder

    def output(self, name: str) -> StagedOutput:
        if Path(name).name != name:
            raise ValueError(f"a staged output is a plain name inside the staging folder, got {name!r}")
        return StagedOutput(self.folder / name, self.folder)


@contextlib.contextmanager
def staging(base: str | os.PathLike) -> Iterator[Staging]:
    """A fresh folder under ``base``, removed on exit whether the block succeeds or fails.

    ``base`` should sit on the outputs' filesystem, so moving a staged output into place is a rename.
    """
    Path(base).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=base))
    try:
        yield Staging(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
