"""The recorder's CSV text and its non-finite check, against the plain ``csv.writer`` way."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from cosim import Causality, Master, NonFiniteValueError, PythonUnit, Recorder, Variable, VarType
from cosim.core.observer import _fmt, _write_rows


def reference_csv(rows: list[list]) -> str:
    fh = io.StringIO()
    writer = csv.writer(fh)
    for row in rows:
        writer.writerow([_fmt(v) for v in row])
    return fh.getvalue()


def test_rows_are_written_as_csv_writer_writes_them():
    rows = [
        [0.1, 1.0, -0.0, 5e-324, 1.7976931348623157e308, math.nan, math.inf, -math.inf, 2.019463549296758e-17],
        [0.2, 0, -3, 10**30, True, False, 0.30000000000000004],
        [0.3, "a,b", 'say "hi"', "two\nlines", "", "plain", 1.5],   # strings: through csv.writer
        [0.4, None, np.float64(0.25), np.int64(7), np.bool_(True)],   # other types: through _fmt
        [0.5, 1.25, 2],
        [""],
    ]
    fh = io.StringIO()
    _write_rows(fh, rows)
    assert fh.getvalue() == reference_csv(rows)


class Source(PythonUnit):
    VARIABLES = (Variable("x", Causality.OUTPUT, VarType.REAL, 0.0),
                 Variable("s", Causality.OUTPUT, VarType.STRING, "a,b"))

    def do_step(self, t: float, h: float) -> None:
        self.values["x"] = math.nan if t + h > 0.25 else t + h


class Other(PythonUnit):
    VARIABLES = (Variable("y", Causality.OUTPUT, VarType.REAL, 1.0),)

    def do_step(self, t: float, h: float) -> None:
        self.values["y"] = math.inf if t + h > 0.15 else 2.0


def test_non_finite_check_names_the_first_unit_and_column_with_strings_about(tmp_path):
    m = Master(0.1)
    m.add_unit(Source("src"))
    m.add_unit(Other("oth"))
    rec = m.add_observer(Recorder(["src.s", "oth.y", "src.x"]))
    m.build()
    m.step(1)
    with pytest.raises(NonFiniteValueError, match=r"unit 'oth'.*non-finite value in oth\.y"):
        m.step(1)
    assert len(rec.rows) == 2
    text = rec.write_csv(tmp_path / "t.csv").read_bytes().decode()
    assert text == "time,src.s,src.x,oth.y\r\n" + reference_csv(rec.rows)


def test_a_unit_with_strings_is_not_checked_but_others_are():
    m = Master(0.1)
    m.add_unit(Source("src"))
    rec = m.add_observer(Recorder(["src.s", "src.x"]))
    m.build()
    m.step(5)  # src.x is NaN from t = 0.3: not checked, the unit also has a string output
    assert math.isnan(rec.rows[-1][2])
    m2 = Master(0.1)
    m2.add_unit(Source("src"))
    m2.add_observer(Recorder(["src.x"]))
    m2.build()
    with pytest.raises(NonFiniteValueError, match=r"src\.x"):
        m2.step(5)
