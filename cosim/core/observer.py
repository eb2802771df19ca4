"""Observers watch the system after each step; the recorder writes chosen variables to files."""

from __future__ import annotations

import csv
import math
import os
from abc import ABC
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from cosim.core.connection import Port
from cosim.core.unit import Reader
from cosim.core.variables import Causality, VarType
from cosim.errors import ConfigurationError, NonFiniteValueError

if TYPE_CHECKING:
    from cosim.core.master import Master


class Observer(ABC):  # noqa: B024 - every hook is optional
    """Hooks the master calls. Override what you need."""

    def on_start(self, master: Master) -> None:  # noqa: B027
        """Called once after the units are set up, at tick 0."""

    def after_step(self, tick: int) -> None:  # noqa: B027
        """Called after the master has advanced to ``tick``."""

    def on_stop(self) -> None:  # noqa: B027
        """Called when the run ends (normally, by a discarded step, or by an error)."""

    def save_state(self) -> Any:
        return None

    def restore_state(self, state: Any) -> None:  # noqa: B027
        pass


class PortReader:
    """Reads a fixed list of ``unit.variable`` ports with one read per unit, in the given order.

    Observers that compare or count signals (twin synchronisation, production accounting) use
    it instead of reading each port on its own.

    Raises:
        ConfigurationError: naming ``what`` and the port that is not a variable of the system.
    """

    def __init__(self, master: Master, ports: Sequence[str], what: str = "observer") -> None:
        by_unit: dict[str, list[tuple[int, str]]] = {}
        for i, text in enumerate(ports):
            port = Port.parse(text)
            unit = master.units.get(port.unit)
            if unit is None or port.variable not in unit.variables:
                raise ConfigurationError(f"{what}: '{text}' is not a variable of the system")
            by_unit.setdefault(port.unit, []).append((i, port.variable))
        self._groups = [([i for i, _ in pairs], master.units[u].reader([v for _, v in pairs]))
                        for u, pairs in by_unit.items()]
        # a unit whose ports are consecutive in the list is copied as a slice
        self._slices = [(slice(idx[0], idx[-1] + 1) if idx == list(range(idx[0], idx[-1] + 1)) else None,
                         len(idx), idx, reader)
                        for idx, reader in self._groups]
        self.size = len(ports)

    def read(self, out: list[Any] | None = None) -> list[Any]:
        """Current values, in port order (written into ``out`` when given)."""
        values = out if out is not None else [None] * self.size
        for where, n, idx, reader in self._slices:
            got = reader()
            if where is not None and len(got) == n:
                values[where] = got
            else:
                for i, v in zip(idx, got, strict=True):
                    values[i] = v
        return values


_NUMPY_TYPES = {VarType.REAL: np.float64, VarType.INTEGER: np.int64, VarType.BOOLEAN: np.bool_}


class Recorder(Observer):
    """Samples variables every ``interval`` ticks and writes CSV and/or Parquet.

    Columns: ``time`` first, then one per variable named ``unit.variable``. Values are kept
    exactly (CSV with 17 significant digits, Parquet in binary).

    Args:
        variables: ``["unit.var", ...]``; ``None`` records every output of every unit.
        interval: sampling period in ticks (1 = every base step).
        check_finite: raise :class:`NonFiniteValueError` when a recorded real is NaN or inf.
    """

    def __init__(self, variables: Sequence[str] | None = None, interval: int = 1,
                 check_finite: bool = True) -> None:
        if int(interval) != interval or interval < 1:
            raise ConfigurationError(f"recorder interval must be a positive integer, got {interval!r}")
        self.requested = list(variables) if variables is not None else None
        self.interval = int(interval)
        self.check_finite = check_finite
        self.columns: list[str] = []
        self.types: list[VarType] = []
        self.rows: list[list[Any]] = []
        self._readers: list[tuple[Reader, str, int]] = []  # (reader, unit, number of columns)
        self._master: Master | None = None
        self._time: Callable[[int], float] | None = None  # the master's grid.time
        self._ckpt: Path | None = None
        self._ckpt_every = 0
        self._ckpt_at = math.inf  # row count of the next checkpoint
        self._ckpt_marks: list[tuple[int, int]] = []  # (rows written, file size) per checkpoint

    def checkpoint_to(self, path: str | Path, every_rows: int) -> None:
        """Append new rows to the CSV file ``path`` every ``every_rows`` samples while running.

        What a process that is killed (SIGKILL, out of memory) or crashes in native code has
        recorded survives in ``path`` up to its last checkpoint: the same columns and number
        format as :meth:`write_csv`, whose output it equals over those rows. Costs one
        comparison per sample and the writing of each row once. A restored snapshot that
        drops checkpointed rows truncates the file back. :meth:`close_checkpoint` removes it.
        """
        if int(every_rows) != every_rows or every_rows < 1:
            raise ConfigurationError(f"recorder checkpoint: every_rows must be a positive integer, got {every_rows!r}")
        self._ckpt = Path(path)
        self._ckpt_every = int(every_rows)
        self._ckpt_at = math.inf
        self._ckpt_marks = []
        if self._master is not None:  # already started: begin with what is recorded
            self._begin_checkpoint()

    def _begin_checkpoint(self) -> None:
        assert self._ckpt is not None
        self._ckpt.parent.mkdir(parents=True, exist_ok=True)
        with self._ckpt.open("w", newline="") as fh:
            csv.writer(fh).writerow(["time", *self.columns])
            self._ckpt_marks = [(0, fh.tell())]
        self._ckpt_at = self._ckpt_every
        if self.rows:
            self.checkpoint()

    def on_start(self, master: Master) -> None:
        self._master = master
        self._time = master.grid.time
        ports: list[Port] = []
        if self.requested is None:
            for unit in master.units.values():
                ports += [Port(unit.name, v.name) for v in unit.variables_by(Causality.OUTPUT)]
        else:
            ports = [Port.parse(p) for p in self.requested]
        by_unit: dict[str, list[str]] = {}
        for port in ports:
            unit = master.units.get(port.unit)
            if unit is None:
                raise ConfigurationError(f"recorder: unknown unit '{port.unit}' in '{port}'")
            if port.variable not in unit.variables:
                raise ConfigurationError(f"recorder: unit '{port.unit}' has no variable '{port.variable}'")
            by_unit.setdefault(port.unit, []).append(port.variable)
        self.columns, self.types, self._readers = [], [], []
        for unit_name, names in by_unit.items():
            unit = master.units[unit_name]
            self._readers.append((unit.reader(names), unit_name, len(names)))
            self.columns += [f"{unit_name}.{n}" for n in names]
            self.types += [unit.variables[n].type for n in names]
        self.rows = []
        if self._ckpt is not None:
            self._begin_checkpoint()
        self._sample(master.tick)

    def after_step(self, tick: int) -> None:
        if tick % self.interval == 0:
            self._sample(tick)

    def _sample(self, tick: int) -> None:
        assert self._time is not None
        row: list[Any] = [self._time(tick)]
        for reader, _, _ in self._readers:
            row += reader()
        if self.check_finite:
            try:
                finite = math.isfinite(sum(row))  # any NaN/inf poisons the sum
            except TypeError:
                finite = False  # strings somewhere: check unit by unit
            if not finite:
                self._check_units(row)
        self.rows.append(row)
        if len(self.rows) >= self._ckpt_at:
            self.checkpoint()

    def _check_units(self, row: list[Any]) -> None:
        """Raise :class:`NonFiniteValueError` for the first unit whose outputs in ``row`` hold a
        NaN or inf (a unit with strings among its outputs is not checked)."""
        start = 1
        for _, unit_name, size in self._readers:
            stop = start + size
            values = row[start:stop]
            try:
                finite = math.isfinite(sum(values))
            except TypeError:
                finite = True  # strings: nothing to check
            if not finite:
                bad = [c for c, v in zip(self.columns[start - 1:], values, strict=False)
                       if isinstance(v, float) and not math.isfinite(v)]
                raise NonFiniteValueError(unit_name, f"output at t={row[0]!r}",
                                          f"non-finite value in {', '.join(bad)}")
            start = stop

    def checkpoint(self) -> None:
        """Append the rows recorded since the last checkpoint to the checkpoint file."""
        if self._ckpt is None or not self._ckpt_marks:
            return
        done = self._ckpt_marks[-1][0]
        with self._ckpt.open("a", newline="") as fh:
            _write_rows(fh, self.rows[done:])
            fh.flush()
            self._ckpt_marks.append((len(self.rows), fh.tell()))
        self._ckpt_at = len(self.rows) + self._ckpt_every

    def finish_checkpoint(self, path: str | Path) -> Path | None:
        """Complete the checkpoint file and move it to ``path``: :meth:`write_csv` without
        writing the rows a second time. Stops checkpointing; ``None`` when there is none."""
        if self._ckpt is None or not self._ckpt_marks:
            return None
        self.checkpoint()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._ckpt, path)
        self._ckpt, self._ckpt_at, self._ckpt_marks = None, math.inf, []
        return path

    def close_checkpoint(self) -> None:
        """Stop checkpointing and remove the checkpoint file (the full trace is written)."""
        if self._ckpt is not None:
            self._ckpt.unlink(missing_ok=True)
        self._ckpt, self._ckpt_at, self._ckpt_marks = None, math.inf, []

    def save_state(self) -> int:
        return len(self.rows)

    def restore_state(self, state: int) -> None:
        del self.rows[state:]
        if self._ckpt is not None and self._ckpt_marks and self._ckpt_marks[-1][0] > state:
            while self._ckpt_marks[-1][0] > state:  # the first mark (header only) is at 0 rows
                self._ckpt_marks.pop()
            with self._ckpt.open("r+b") as fh:
                fh.truncate(self._ckpt_marks[-1][1])
            self._ckpt_at = self._ckpt_marks[-1][0] + self._ckpt_every

    # Results -----------------------------------------------------------------------
    def column(self, name: str) -> np.ndarray:
        """One recorded column (``"time"`` or ``"unit.var"``) as a numpy array."""
        if name == "time":
            return np.array([r[0] for r in self.rows], dtype=np.float64)
        try:
            i = self.columns.index(name)
        except ValueError:
            raise ConfigurationError(f"recorder: no column '{name}'") from None
        dtype = _NUMPY_TYPES.get(self.types[i], object)
        return np.array([r[i + 1] for r in self.rows], dtype=dtype)

    def as_dict(self) -> dict[str, np.ndarray]:
        out = {"time": self.column("time")}
        for name in self.columns:
            out[name] = self.column(name)
        return out

    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerow(["time", *self.columns])
            _write_rows(fh, self.rows)
        return path

    def write_parquet(self, path: str | Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.as_dict()
        table = pa.table({k: pa.array(v) for k, v in data.items()})
        pq.write_table(table, path)
        return path


def read_checkpoint(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a recorder checkpoint file (a partial last line is dropped)."""
    text = Path(path).read_text()
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = list(csv.reader(text.splitlines()))
    return (rows[0] if rows else []), rows[1:]


# Text of the exact types whose text never needs CSV quoting (what _fmt gives them).
_PLAIN_TEXT: dict[type, Callable[[Any], str]] = {float: float.__repr__, int: int.__repr__,
                                                 bool: ("0", "1").__getitem__}


def _write_rows(fh: TextIO, rows: Sequence[list[Any]]) -> None:
    """Write ``rows`` to ``fh`` as ``csv.writer`` does, each value as :func:`_fmt` gives it.

    A row of floats, ints and bools only is joined directly: ``csv.writer`` would quote none
    of its fields. Other rows go through ``csv.writer``.
    """
    text = _PLAIN_TEXT
    writer = None
    for row in rows:
        try:
            line = ",".join([text[type(v)](v) for v in row])
        except KeyError:
            if writer is None:
                writer = csv.writer(fh)
            writer.writerow([_fmt(v) for v in row])
        else:
            fh.write(line + "\r\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest repr that round-trips exactly
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
