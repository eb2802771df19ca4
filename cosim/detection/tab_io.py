"""Reading and writing recorded tables (CSV or Parquet) for the table detectors.

Tables are read with pyarrow. Every problem (missing or unreadable file, unsupported
suffix, non-numeric or incomplete columns) raises :class:`TableError`, whose message names
the file and, where it applies, the column(s).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cosim.errors import ConfigurationError

SUFFIXES = (".csv", ".parquet", ".pq")


class TableError(ConfigurationError):
    """A table cannot be read, written or used as it is. Names the file and the columns at fault."""


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise TableError(f"{path}: unsupported table format '{suffix or '(no suffix)'}'; use .csv or .parquet")
    return "csv" if suffix == ".csv" else "parquet"


def read_table(path: str | Path) -> pa.Table:
    """Read a CSV (header row, comma separated) or Parquet file."""
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    try:
        table = pacsv.read_csv(path) if kind == "csv" else pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TableError(f"{path}: cannot read as {kind.upper()} ({detail})") from exc
    if table.num_rows == 0:
        raise TableError(f"{path}: the table has no rows")
    return table


def write_table(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` as CSV or Parquet, chosen by the suffix of ``path``."""
    path = Path(path)
    kind = _kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "csv":
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path)
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"{path}: cannot write ({exc})") from exc
    return path


def _numeric(field: pa.Field) -> bool:
    t = field.type
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def feature_columns(table: pa.Table, path: str | Path, exclude: Sequence[str] = ()) -> list[str]:
    """All columns except ``exclude``; raises when any of them is not numeric (naming them all)."""
    names = [n for n in table.column_names if n not in set(exclude)]
    bad = [f"{f.name} ({f.type})" for f in table.schema if f.name in names and not _numeric(f)]
    if bad:
        raise TableError(f"{path}: non-numeric column(s) {', '.join(bad)}; "
                         f"drop them or pick numeric ones with columns=[...]")
    if not names:
        raise TableError(f"{path}: no feature columns left (excluded: {list(exclude)})")
    return names


def matrix(table: pa.Table, columns: Sequence[str], path: str | Path) -> np.ndarray:
    """The given columns as a float matrix (rows x columns); missing, non-numeric or empty cells raise."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise TableError(f"{path}: missing column(s) {missing}")
    bad = [f"{c} ({table.schema.field(c).type})" for c in columns if not _numeric(table.schema.field(c))]
    if bad:
        raise TableError(f"{path}: non-numeric column(s) {', '.join(bad)}")
    nulls = [c for c in columns if table.column(c).null_count]
    if nulls:
        raise TableError(f"{path}: empty cells in column(s) {nulls}")
    cols = [table.column(c).to_numpy(zero_copy_only=False).astype(float) for c in columns]
    out = np.column_stack(cols) if cols else np.empty((table.num_rows, 0))
    nonfinite = [c for c, v in zip(columns, cols, strict=True) if not np.all(np.isfinite(v))]
    if nonfinite:
        raise TableError(f"{path}: NaN or infinite values in column(s) {nonfinite}")
    return out
