"""Read a user's table (trial, survey) deliberately: CSV with its separator detected, Parquet, or a
clear refusal (Excel, empty files), ids kept as strings.

pandas' own errors for these cases (``EmptyDataError``, ``UnicodeDecodeError``, one column named
'a;b;c') name neither the file nor the fix, and a CSV reader that guesses types turns the id
'00042' into 42.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

ID_COLUMNS = ("unit_id", "survey_id")
SEPARATORS = ",;\t|"
_EXCEL_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # xlsx (zip) and xls (OLE2)
_DECIMAL_COMMA = re.compile(r"(?<![\d.])-?\d+,\d+(?![\d,])")


class TableError(ValueError):
    """A table cannot be read as it stands (the message names the file and the fix)."""


def read_table(path: str | Path, field: str = "StudySource.trials") -> pd.DataFrame:
    """CSV (separator ``, ; tab |`` detected, decimal commas with ``;``), Parquet; Excel is refused.

    ``field`` names the setting that points here, so that every message says what to change.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{field} = {str(path)!r} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise TableError(f"{field} = {str(path)!r} is empty (0 bytes): was the export or download interrupted?")
    with path.open("rb") as handle:
        head = handle.read(65536)
    if path.suffix.lower() in {".xlsx", ".xls", ".xlsm"} or head.startswith(_EXCEL_MAGIC):
        raise TableError(
            f"{field} = {str(path)!r} is an Excel workbook: save the sheet as CSV (UTF-8) or Parquet and point {field} at that file"
        )
    if path.suffix.lower() in {".parquet", ".pq"} or head.startswith(b"PAR1"):
        return _ids_as_text(pd.read_parquet(path))
    return _read_csv(path, head, field)


def _read_csv(path: Path, head: bytes, field: str) -> pd.DataFrame:
    try:
        sample = head.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TableError(
            f"{field} = {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start}): save it as CSV (UTF-8) or Parquet"
        ) from err
    lines = sample.splitlines()[:50]
    try:
        sep = csv.Sniffer().sniff("\n".join(lines), delimiters=SEPARATORS).delimiter
    except csv.Error:
        sep = ","
    decimal = "," if sep == ";" and _DECIMAL_COMMA.search("\n".join(lines[1:])) else "."
    table = pd.read_csv(path, sep=sep, decimal=decimal, dtype={c: str for c in ID_COLUMNS}, encoding="utf-8-sig")
    if table.shape[1] == 1:
        raise TableError(
            f"{field} = {str(path)!r} was read as a single column {table.columns[0]!r}: no separator among {list(SEPARATORS)} splits its header; "
            "save it as a comma- or semicolon-separated CSV"
        )
    return table


def _ids_as_text(table: pd.DataFrame) -> pd.DataFrame:
    for col in ID_COLUMNS:
        if col in table and not pd.api.types.is_string_dtype(table[col]):
            table[col] = table[col].astype(str)
    return table
