"""The unit contract check lists every problem of a user's unit in one error."""

from __future__ import annotations

import pytest

from cosim import Causality, ContractError, PythonUnit, Variable, VarType
from cosim.core.unit import real
from cosim.units.contract import check_unit
from tests.conftest import Integrator, Noisy


def test_good_python_units_pass():
    check_unit(Integrator("i"))
    check_unit(Noisy("n", seed=3))


def test_bullet_arm_passes():
    from cosim.units.bullet import BulletArm

    check_unit(BulletArm("arm", robot="kuka"), base_step=0.01)


def test_fmu_unit_passes():
    from cosim import FMUUnit
    from models.build import build_fmu

    check_unit(FMUUnit("conv", build_fmu("conveyor")))


class NotAUnit:
    name = "thing"

    def step(self, tick: int, n: int) -> None:
        pass


def test_object_missing_methods_lists_all_of_them():
    with pytest.raises(ContractError) as err:
        check_unit(NotAUnit())
    text = str(err.value)
    assert "does not derive from cosim.Unit" in text
    for method in ("variables", "setup", "get", "set", "save_state", "restore_state"):
        assert f"missing '{method}'" in text
    assert "missing 'step'" not in text


class Liar(PythonUnit):
    """Declares a Real output but stores a string, breaks on restore, has a bad name."""

    VARIABLES = (real("u", "input"), real("y", "output"),
                 Variable("n", Causality.OUTPUT, VarType.INTEGER, 0))

    def do_step(self, t: float, h: float) -> None:
        self.values["y"] = "high"
        self.values["n"] += 1

    def restore_state(self, state: object) -> None:
        raise RuntimeError("cannot go back")


def test_each_problem_of_a_bad_unit_is_listed():
    with pytest.raises(ContractError) as err:
        check_unit(Liar("bad.name"))
    problems = err.value.problems
    assert any("without '.'" in p for p in problems)
    assert any("'y' is declared real but get() gave str" in p for p in problems)
    assert any("restore_state(state) raised RuntimeError: cannot go back" in p for p in problems)
    assert str(err.value).count("\n  - ") == len(problems)


class NoStateRoundTrip(PythonUnit):
    VARIABLES = (real("y", "output"),)
    TRANSIENT = frozenset({"grid", "values"})  # forgets its values on restore

    def do_step(self, t: float, h: float) -> None:
        self.values["y"] += h


def test_restore_that_does_not_restore_is_caught():
    with pytest.raises(ContractError, match="does not bring the outputs back"):
        check_unit(NoStateRoundTrip("n"))
