"""Manipulators change exactly what they target; snapshots restore the system bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from cosim import (
    Bias,
    ConfigurationError,
    InvalidConnectionError,
    Master,
    Observer,
    Override,
    Recorder,
    SnapshotError,
    Transform,
)
from tests.conftest import Clock, Integrator, Noisy


def fan_out(algorithm: str = "jacobi") -> Master:
    """A clock feeding two integrators: a.u = b.u = t."""
    m = Master(0.1, algorithm=algorithm)
    m.add_unit(Clock("c"))
    m.add_unit(Integrator("a"))
    m.add_unit(Integrator("b"))
    m.connect("c.t", "a.u")
    m.connect("c.t", "b.u")
    return m


def test_override_on_connection_hits_only_that_link_within_its_window():
    m = fan_out()
    m.add_manipulator(Override("c.t -> a.u", 100.0, start_tick=3, end_tick=5))
    seen = {"a": [], "b": []}

    class Spy(Observer):
        def after_step(self, tick: int) -> None:
            seen["a"].append(m.units["a"].values["u"])
            seen["b"].append(m.units["b"].values["u"])

    m.add_observer(Spy())
    m.build().step(7)
    clock_at = [m.grid.time(k) if k else 0.0 for k in range(7)]
    assert seen["b"] == clock_at
    assert seen["a"] == [*clock_at[:3], 100.0, 100.0, *clock_at[5:]]


def test_bias_and_transform_on_unit_input_stack_in_order():
    m = fan_out()
    m.add_manipulator(Bias("b.u", 1.0, start_tick=2))
    m.add_manipulator(Transform("b.u", lambda tick, v: v * 10.0, start_tick=4))
    m.build()
    m.step(6)
    u = m.units["b"].values["u"]
    assert u == (m.grid.time(5) + 1.0) * 10.0
    assert m.units["a"].values["u"] == m.grid.time(5)


def test_manipulator_on_unconnected_input_uses_held_value():
    m = Master(1.0)
    integ = m.add_unit(Integrator("i"))
    m.set_input("i.u", 2.0)
    m.add_manipulator(Bias("i.u", 0.5, start_tick=1, end_tick=2))
    m.build()
    m.step(3)  # u = 2.0, 2.5, 2.0 (the bias never accumulates into the held value)
    assert integ.values["y"] == 2.0 + 2.5 + 2.0
    m.set_input("i.u", -1.0)
    m.step(1)
    assert integ.values["y"] == 6.5 - 1.0


def test_manipulator_added_while_running_by_an_observer():
    m = fan_out()

    class Attacker(Observer):
        def after_step(self, tick: int) -> None:
            if tick == 4:
                m.add_manipulator(Override("a.u", -5.0, start_tick=4))

    m.add_observer(Attacker())
    m.build()
    m.step(6)
    assert m.units["a"].values["u"] == -5.0
    assert m.units["b"].values["u"] == m.grid.time(5)


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ("c.t -> b.y", InvalidConnectionError, "no connection c.t -> b.y"),
        ("a.y", ConfigurationError, "'a.y' is not an input"),
        ("zz.u", ConfigurationError, "unknown unit 'zz'"),
    ],
)
def test_manipulator_with_bad_target_is_refused(target, error, message):
    m = fan_out().build()
    with pytest.raises(error, match=message):
        m.add_manipulator(Override(target, 1.0))
    assert m.manipulators == []  # refused manipulators are not kept
    m.step(1)


def test_manipulator_window_is_validated():
    with pytest.raises(ConfigurationError, match="invalid window"):
        Override("a.u", 1.0, start_tick=5, end_tick=2)


def noisy_system(algorithm: str, seed: int = 7) -> tuple[Master, Recorder]:
    m = Master(0.01, algorithm=algorithm)
    m.add_unit(Noisy("n", seed=seed))
    m.add_unit(Integrator("x", parameters={"k": -1.0, "y0": 1.0}))
    m.add_unit(Integrator("y"), step_ticks=2)
    m.add_unit(Clock("c"), step_ticks=3)
    m.connect("y.y", "x.u")
    m.connect("x.y", "y.u")
    m.connect("x.y", "n.u")
    m.add_manipulator(Transform("y.u", lambda tick, v: v + 0.001 * (tick % 5), start_tick=20))
    rec = m.add_observer(Recorder(["n.y", "x.y", "y.y", "c.t", "c.n"]))
    return m.build(), rec


@pytest.mark.parametrize("algorithm", ["jacobi", "gauss_seidel"])
def test_restore_then_step_reproduces_the_run_bit_for_bit(algorithm):
    m, rec = noisy_system(algorithm)
    m.step(37)
    snap = m.save_snapshot()
    m.step(100)
    first = rec.as_dict()
    for _ in range(2):  # a snapshot can be restored more than once
        m.restore_snapshot(snap)
        assert m.tick == 37 and len(rec.rows) == 38
        m.step(100)
        again = rec.as_dict()
        for key in first:
            np.testing.assert_array_equal(again[key], first[key])
    # and the run equals a fresh run that never restored anything
    fresh, rec2 = noisy_system(algorithm)
    fresh.step(137)
    for key, values in rec2.as_dict().items():
        np.testing.assert_array_equal(values, first[key])


def test_different_seed_changes_the_run():
    a, ra = noisy_system("jacobi", seed=1)
    b, rb = noisy_system("jacobi", seed=2)
    a.step(20)
    b.step(20)
    assert not np.array_equal(ra.column("n.y"), rb.column("n.y"))


def test_snapshot_from_another_system_is_refused():
    m, _ = noisy_system("jacobi")
    other = fan_out().build()
    with pytest.raises(SnapshotError, match="do not match"):
        other.restore_snapshot(m.save_snapshot())
