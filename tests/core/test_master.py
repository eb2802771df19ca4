"""The master's algorithms, time grid, multi-rate scheduling and error handling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosim import (
    Causality,
    ConfigurationError,
    InvalidConnectionError,
    Master,
    NonFiniteValueError,
    PythonUnit,
    Recorder,
    StepDiscarded,
    UnitError,
    Variable,
    VarType,
)
from cosim.core.unit import real
from tests.conftest import Clock, Integrator


def oscillator(h: float, algorithm: str) -> Master:
    """x' = -y, y' = x split over two integrators (x(0)=1, y(0)=0: x=cos t, y=sin t)."""
    m = Master(h, algorithm=algorithm)
    m.add_unit(Integrator("x", parameters={"k": -1.0, "y0": 1.0}))
    m.add_unit(Integrator("y", parameters={"k": 1.0, "y0": 0.0}))
    m.connect("y.y", "x.u")
    m.connect("x.y", "y.u")
    return m.build()


def test_jacobi_is_explicit_euler_and_gauss_seidel_is_symplectic_euler():
    h, n = 0.01, 300
    jac, gs = oscillator(h, "jacobi"), oscillator(h, "gauss_seidel")
    xj, yj = 1.0, 0.0
    xg, yg = 1.0, 0.0
    for k in range(n):
        hk = jac.grid.step_size(k, 1)  # t(k+1) - t(k): the grid's exact step
        xj, yj = xj + -1.0 * yj * hk, yj + 1.0 * xj * hk  # both read old values
        xg = xg + -1.0 * yg * hk  # x steps first ...
        yg = yg + 1.0 * xg * hk  # ... and y reads the new x
    jac.step(n)
    gs.step(n)
    assert (jac.get("x.y"), jac.get("y.y")) == (xj, yj)
    assert (gs.get("x.y"), gs.get("y.y")) == (xg, yg)
    assert abs(jac.get("y.y") - gs.get("y.y")) > 1e-3  # the two answers really differ
    # explicit Euler gains energy, symplectic Euler keeps it bounded near 1
    assert xj**2 + yj**2 > 1.02
    assert abs(xg**2 + yg**2 - 1.0) < 0.02


@pytest.mark.parametrize("algorithm", ["jacobi", "gauss_seidel"])
def test_coupled_loop_converges_to_analytic_solution_first_order(algorithm):
    errors = []
    for h in (0.01, 0.005, 0.0025):
        m = oscillator(h, algorithm)
        m.run(duration=1.0)
        assert m.time == 1.0
        errors.append(math.hypot(m.get("x.y") - math.cos(1.0), m.get("y.y") - math.sin(1.0)))
    assert errors[0] < 1e-2
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(1.8 < r < 2.2 for r in ratios), ratios  # halving h halves the error


def test_time_is_computed_from_ticks_never_summed():
    m = Master(0.1)
    clock = m.add_unit(Clock("c"))
    m.build()
    m.step(10_000)
    assert m.time == 10_000 * 0.1  # a float sum of 0.1 drifts: sum([0.1]*10000) != 1000.0
    assert clock.values["t"] == m.grid.time(10_000)
    assert sum([0.1] * 10_000) != m.time


def test_multi_rate_units_hold_inputs_between_their_steps():
    m = Master(0.01)
    slow = m.add_unit(Clock("slow"), step_ticks=3)
    fast = m.add_unit(Integrator("fast"))
    m.connect("slow.t", "fast.u")
    m.build()
    m.step(9)
    assert slow.values["n"] == 3  # stepped at ticks 0, 3, 6
    assert slow.values["t"] == m.grid.time(9)
    # a slow unit's output becomes visible when global time reaches it, then is held:
    # ticks 0-2 see 0 (its value at t=0), ticks 3-5 see t(3), ticks 6-8 see t(6)
    expected = 0.0
    held = [0.0, 0.0, 0.0, m.grid.time(3), m.grid.time(3), m.grid.time(3),
            m.grid.time(6), m.grid.time(6), m.grid.time(6)]
    for k, u in enumerate(held):
        expected = expected + 1.0 * u * m.grid.step_size(k, 1)
    assert fast.values["y"] == expected


def test_multi_rate_step_size_and_schedule_with_gauss_seidel():
    m = Master(0.25, algorithm="gauss_seidel", order=["slow", "fast"])
    m.add_unit(Clock("slow"), step_ticks=4)
    fast = m.add_unit(Integrator("fast"))
    m.connect("slow.t", "fast.u")
    m.build()
    m.step(2)
    # Gauss-Seidel: slow steps first over 4 ticks (to t=1.0) and publishes at once;
    # fast reads the new value on tick 0 and holds it on tick 1
    assert m.get("slow.t") == 1.0
    assert fast.values["y"] == 1.0 * 1.0 * 0.25 + 1.0 * 1.0 * 0.25


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_step_ticks_must_be_positive_integer(bad):
    with pytest.raises(ConfigurationError, match="step_ticks"):
        Master(0.1).add_unit(Clock("c"), step_ticks=bad)


def test_duration_must_fit_the_grid():
    m = Master(0.1)
    m.add_unit(Clock("c"))
    with pytest.raises(ConfigurationError, match="whole multiple"):
        m.run(duration=0.25)


def _pair() -> Master:
    m = Master(0.1)
    m.add_unit(Integrator("a"))
    m.add_unit(Integrator("b"))
    m.add_unit(Clock("c"))
    return m


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("nope.y", "b.u", "source unit 'nope' does not exist"),
        ("a.y", "nope.u", "target unit 'nope' does not exist"),
        ("a.why", "b.u", "unit 'a' has no variable 'why'"),
        ("a.y", "b.uu", "unit 'b' has no variable 'uu'"),
        ("a.u", "b.u", "source a.u has causality 'input'"),
        ("a.y", "b.y", "target b.y has causality 'output'"),
        ("a.y", "b.k", "target b.k has causality 'parameter'"),
        ("c.n", "b.u", "type mismatch, c.n is integer but b.u is real"),
    ],
)
def test_connection_errors_name_both_ends(source, target, message):
    m = _pair()
    m.connect(source, target)
    with pytest.raises(InvalidConnectionError) as err:
        m.build()
    assert message in str(err.value)
    assert f"{source} -> {target}" in str(err.value)


def test_input_fed_twice_names_both_sources():
    m = _pair()
    m.connect("a.y", "b.u")
    m.connect("c.t", "b.u")
    with pytest.raises(InvalidConnectionError, match=r"b\.u is fed twice: by a\.y and by c\.t"):
        m.build()


def test_malformed_port_and_duplicate_unit():
    m = _pair()
    with pytest.raises(InvalidConnectionError, match=r"unit\.variable"):
        m.connect("a", "b.u")
    with pytest.raises(ConfigurationError, match="two units are named 'a'"):
        m.add_unit(Integrator("a"))


def test_unknown_algorithm_and_bad_order():
    with pytest.raises(ConfigurationError, match="unknown algorithm 'rk4'"):
        Master(0.1, algorithm="rk4")
    m = Master(0.1, algorithm="gauss_seidel", order=["a"])
    m.add_unit(Integrator("a"))
    m.add_unit(Integrator("b"))
    with pytest.raises(ConfigurationError, match=r"missing \['b'\]"):
        m.build()


class Exploding(PythonUnit):
    VARIABLES = (real("y", "output"),)

    def __init__(self, name: str, mode: str, at: float) -> None:
        super().__init__(name)
        self.mode, self.at = mode, at

    def do_step(self, t: float, h: float) -> None:
        if t + h > self.at:
            if self.mode == "nan":
                self.values["y"] = float("nan")
            elif self.mode == "inf":
                self.values["y"] = float("inf")
            elif self.mode == "discard":
                raise StepDiscarded(self.name, round(t / h), "end of data")
            else:
                raise ZeroDivisionError("division by zero in model")
        else:
            self.values["y"] = t + h


@pytest.mark.parametrize("mode", ["nan", "inf"])
def test_non_finite_output_is_an_error_naming_unit_and_variable(mode):
    m = Master(0.1)
    m.add_unit(Exploding("bad", mode, at=0.45))
    m.add_unit(Integrator("sink"))
    m.connect("bad.y", "sink.u")
    m.build()
    with pytest.raises(NonFiniteValueError) as err:
        m.step(20)
    assert "unit 'bad'" in str(err.value) and "y=" in str(err.value)
    assert m.tick == 5  # the value is caught when it is transferred at tick 5


def test_recorder_catches_non_finite_values_on_unconnected_outputs():
    m = Master(0.1)
    m.add_unit(Exploding("bad", "nan", at=0.25))
    rec = m.add_observer(Recorder(["bad.y"]))
    m.build()
    with pytest.raises(NonFiniteValueError, match=r"bad\.y"):
        m.step(10)
    assert len(rec.rows) == 3  # t = 0, 0.1, 0.2 kept


def test_python_exception_in_step_becomes_unit_error():
    m = Master(0.1)
    m.add_unit(Exploding("bad", "raise", at=0.15))
    m.build()
    with pytest.raises(UnitError) as err:
        m.step(5)
    assert "unit 'bad'" in str(err.value) and "ZeroDivisionError" in str(err.value)
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_discarded_step_ends_run_gracefully_and_keeps_records(tmp_path):
    m = Master(0.1)
    m.add_unit(Exploding("bad", "discard", at=0.35))
    rec = m.add_observer(Recorder(["bad.y"]))
    result = m.run(duration=1.0)
    assert not result.completed
    assert result.end_tick == 3 and m.tick == 3
    assert "discarded the step" in str(result.discarded)
    assert rec.column("time").tolist() == [0.0, 0.1, m.grid.time(2), m.grid.time(3)]
    path = rec.write_csv(tmp_path / "t.csv")
    assert path.read_text().splitlines()[0] == "time,bad.y"


def test_set_input_on_unconnected_input_and_errors():
    m = Master(0.5)
    integ = m.add_unit(Integrator("i"))
    m.add_unit(Integrator("j"))
    m.connect("i.y", "j.u")
    m.set_input("i.u", 2.0)  # before build: applied after setup
    m.build()
    m.step(2)
    assert integ.values["y"] == 2.0
    with pytest.raises(ConfigurationError, match="fed by a connection"):
        m.set_input("j.u", 1.0)
    with pytest.raises(ConfigurationError, match="is an output"):
        m.set_input("i.y", 1.0)


def test_strings_and_booleans_travel_over_connections():
    class Src(PythonUnit):
        VARIABLES = (Variable("s", Causality.OUTPUT, VarType.STRING, "a"),
                     Variable("b", Causality.OUTPUT, VarType.BOOLEAN, False))

        def do_step(self, t: float, h: float) -> None:
            self.values["s"] += "a"
            self.values["b"] = not self.values["b"]

    class Dst(PythonUnit):
        VARIABLES = (Variable("s", Causality.INPUT, VarType.STRING, ""),
                     Variable("b", Causality.INPUT, VarType.BOOLEAN, False))

        def do_step(self, t: float, h: float) -> None:
            pass

    m = Master(1.0)
    m.add_unit(Src("src"))
    dst = m.add_unit(Dst("dst"))
    m.connect("src.s", "dst.s")
    m.connect("src.b", "dst.b")
    m.build()
    m.step(3)
    assert dst.values == {"s": "aaa", "b": False}  # Jacobi: sees the value from before tick 2's step


def test_recorder_interval_and_exact_files(tmp_path):
    import pyarrow.parquet as pq

    m = oscillator(0.1, "jacobi")
    rec = m.add_observer(Recorder(["x.y", "y.y"], interval=2))
    m.run(duration=1.0)
    times = rec.column("time")
    assert times.tolist() == [m.grid.time(k) for k in range(0, 11, 2)]
    csv_path = rec.write_csv(tmp_path / "out" / "trace.csv")
    pq_path = rec.write_parquet(tmp_path / "out" / "trace.parquet")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "time,x.y,y.y"
    loaded = np.loadtxt(csv_path, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(loaded[:, 1], rec.column("x.y"))  # exact round trip
    table = pq.read_table(pq_path)
    assert table.column_names == ["time", "x.y", "y.y"]
    np.testing.assert_array_equal(table.column("y.y").to_numpy(), rec.column("y.y"))


def test_recorder_default_records_every_output_and_rejects_unknown():
    m = oscillator(0.1, "jacobi")
    rec = m.add_observer(Recorder())
    assert rec.columns == ["x.y", "y.y"]
    m2 = oscillator(0.1, "jacobi")
    with pytest.raises(ConfigurationError, match="has no variable 'zz'"):
        m2.add_observer(Recorder(["x.zz"]))
