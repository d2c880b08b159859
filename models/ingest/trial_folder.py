"""Many trials, one region: a folder of trial tables, one file per trial, named by its trial key.

``<folder>/<key>.csv`` or ``<key>.parquet``: the file's stem is the trial's key (its Dagster
partition), so adding a trial is dropping a file. Keys are letters, digits, ``_`` and ``-``.
"""

from __future__ import annotations

import re
from pathlib import Path

TABLE_SUFFIXES = (".csv", ".parquet")
KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class TrialFolderError(ValueError):
    """A trial folder or table that cannot be read as trials (names the file and what to change)."""


def trial_tables(folder: str | Path) -> dict[str, Path]:
    """Every trial table of ``folder`` by key, sorted; hidden and partial files (``.``, ``~``) are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrialFolderError(f"StudySource.trials = {str(folder)!r} is not a folder: point it at a folder of trial tables")
    tables: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in TABLE_SUFFIXES or path.name.startswith((".", "~")) or not path.is_file():
            continue
        if not KEY.match(path.stem):
            raise TrialFolderError(f"trial table {path.name!r}: a trial's file name is its key: letters, digits, '_' and '-' only")
        if path.stem in tables:
            raise TrialFolderError(f"two tables for trial {path.stem!r} ({tables[path.stem].name}, {path.name}): keep one")
        tables[path.stem] = path
    return tables


def trial_table(folder: str | Path, key: str) -> Path:
    """The table of trial ``key`` (an error naming the folder's trials when it is gone)."""
    tables = trial_tables(folder)
    if key not in tables:
        raise TrialFolderError(f"trial {key!r} has no table in {str(folder)!r} (trials there: {sorted(tables) or 'none'})")
    return tables[key]
