"""Many trials, one region: a folder of trial tables, one file per trial, named by its trial key.

``<folder>/<key>.csv`` or ``<key>.parquet``: the file's stem is the trial's key (its Dagster
partition), so adding a trial is dropping a file. Keys are letters, digits, ``_`` and ``-``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

TABLE_SUFFIXES = (".csv", ".parquet")
EXCEL_SUFFIXES = (".xlsx", ".xls", ".xlsm", ".ods")
LOOKED_FOR = "*.csv or *.parquet"
KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class TrialFolderError(ValueError):
    """A trial folder or table that cannot be read as trials (names the file and what to change)."""


@dataclass(frozen=True)
class TrialFolder:
    """What a trials folder holds: its trial tables by key, and every other file with what to do
    about it. A file that is not a trial never hides or blocks the others."""

    folder: Path
    tables: dict[str, Path]
    problems: dict[str, str]  # file name -> what is wrong and the fix

    def describe(self) -> str:
        """One line per problem file, for a sensor's log and skip reason."""
        return "; ".join(f"{name}: {problem}" for name, problem in self.problems.items())


def scan_trials(folder: str | Path) -> TrialFolder:
    """The trial tables of ``folder`` by key, sorted, and a message for every file that is not one;
    hidden and partial files (``.``, ``~``) are ignored. A missing folder is an error naming the setting."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrialFolderError(f"StudySource.trials = {str(folder)!r} is not a folder: point it at a folder of trial tables ({LOOKED_FOR})")
    tables: dict[str, Path] = {}
    problems: dict[str, str] = {}
    twice: set[str] = set()  # keys with two tables: neither is taken
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "~")) or not path.is_file():
            continue
        if path.stem in tables and path.suffix.lower() in TABLE_SUFFIXES:
            problems[path.name] = (
                f"a second table for trial {path.stem!r} beside {tables[path.stem].name}: keep one (neither is run until then)"
            )
            twice.add(path.stem)
        elif (problem := _problem(path)) is None:
            tables[path.stem] = path
        else:
            problems[path.name] = problem
    return TrialFolder(folder, {k: p for k, p in tables.items() if k not in twice}, problems)


def _problem(path: Path) -> str | None:
    """Why ``path`` is not a trial table (and what to do), or None when it is one."""
    suffix = path.suffix.lower()
    if suffix in EXCEL_SUFFIXES:
        return f"Excel workbooks are not read: save the trial's sheet as {_key_for(path.stem)}.csv or .parquet"
    if suffix not in TABLE_SUFFIXES:
        return f"not a trial table: a trial is a {LOOKED_FOR} file named by its key; move this file out of the folder"
    if not KEY.match(path.stem):
        return f"a trial's file name is its key (letters, digits, '_' and '-'): rename it, e.g. to {_key_for(path.stem)}{suffix}"
    return None


def _key_for(stem: str) -> str:
    """A valid trial key close to ``stem``: accents dropped, other characters as '_'."""
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_stem).strip("_-")[:64] or "trial"


def trial_tables(folder: str | Path) -> dict[str, Path]:
    """Every trial table of ``folder`` by key, sorted (files that are not trials are left out: see
    :func:`scan_trials`)."""
    return scan_trials(folder).tables


def trial_table(folder: str | Path, key: str) -> Path:
    """The table of trial ``key`` (an error naming the folder's trials, and what is wrong with a
    file of that name, when there is none)."""
    scan = scan_trials(folder)
    if key not in scan.tables:
        related = {n: p for n, p in scan.problems.items() if Path(n).stem == key or _key_for(Path(n).stem) == key}
        why = f"; {'; '.join(f'{n}: {p}' for n, p in related.items())}" if related else ""
        raise TrialFolderError(f"trial {key!r} has no table in {str(folder)!r} (trials there: {sorted(scan.tables) or 'none'}){why}")
    return scan.tables[key]


def table_digest(path: str | Path) -> str:
    """SHA-256 of a trial table's bytes (16 hex digits): which version of the table a result came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
