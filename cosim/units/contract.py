"""Contract check for units written by users (in the spirit of Gymnasium's ``check_env``).

``check_unit(unit)`` exercises a fresh, not yet set up unit the way the master will and
raises one :class:`~cosim.errors.ContractError` that lists every problem it found.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cosim.core.unit import TimeGrid, Unit
from cosim.core.variables import Causality, Variable, VarType
from cosim.errors import ContractError

REQUIRED = ("variables", "setup", "step", "get", "set", "save_state", "restore_state", "terminate")
_PY_TYPES: dict[VarType, tuple[type, ...]] = {
    VarType.REAL: (float, int),
    VarType.INTEGER: (int,),
    VarType.BOOLEAN: (bool, int),
    VarType.STRING: (str,),
}


def check_unit(unit: Any, base_step: float = 0.01, n_steps: int = 5, step_ticks: int = 1,
               terminate: bool = True) -> None:
    """Validate ``unit`` against the unit interface; raise :class:`ContractError` listing all problems.

    The check sets the unit up, reads every output, writes every input (with its start value),
    steps it, and checks that save/restore brings the outputs back exactly.
    """
    name = getattr(unit, "name", None)
    subject = f"unit '{name}' ({type(unit).__name__})" if name else f"unit {type(unit).__name__}"
    problems: list[str] = []
    if not isinstance(unit, Unit):
        problems.append("does not derive from cosim.Unit (subclass it, or PythonUnit for Python code)")
    missing = [m for m in REQUIRED if not hasattr(unit, m)]
    problems += [f"missing '{m}'" for m in missing]
    if not isinstance(name, str) or not name or "." in name:
        problems.append(f"'name' must be a non-empty string without '.', got {name!r}")
    if missing:
        raise ContractError(subject, problems)

    variables = _check_variables(unit, problems)
    if variables is None:
        raise ContractError(subject, problems)
    outputs = [v for v in variables.values() if v.causality is Causality.OUTPUT]
    inputs = [v for v in variables.values() if v.causality is Causality.INPUT]
    if not outputs and not inputs:
        problems.append("declares neither inputs nor outputs: nothing can connect to it")

    grid = TimeGrid(base_step)
    if _call(problems, "setup(grid)", unit.setup, grid) is FAILED:
        raise ContractError(subject, problems)
    try:
        _check_values(unit, outputs, "output", problems)
        if inputs:
            starts = [v.start if v.start is not None else v.type.coerce(0) for v in inputs]
            _call(problems, "set(inputs, start values)", unit.set, [v.name for v in inputs], starts)
            back = _call(problems, "get(inputs)", unit.get, [v.name for v in inputs])
            if back is not FAILED and list(back) != list(starts):
                problems.append(f"get() does not return what set() wrote: {list(back)} != {starts}")
        tick = 0
        for _ in range(n_steps):
            if _call(problems, f"step({tick}, {step_ticks})", unit.step, tick, step_ticks) is FAILED:
                break
            tick += step_ticks
        _check_values(unit, outputs, "output after stepping", problems)
        state = unit_state = _call(problems, "save_state()", unit.save_state)
        if state is not FAILED:
            before = _call(problems, "get(outputs)", unit.get, [v.name for v in outputs])
            for _ in range(3):
                _call(problems, f"step({tick}, {step_ticks})", unit.step, tick, step_ticks)
                tick += step_ticks
            _call(problems, "restore_state(state)", unit.restore_state, unit_state)
            after = _call(problems, "get(outputs)", unit.get, [v.name for v in outputs])
            if before is not FAILED and after is not FAILED and not _same(list(before), list(after)):
                problems.append("restore_state() does not bring the outputs back to the saved values")
        reader = _call(problems, "reader(outputs)", unit.reader, [v.name for v in outputs])
        if reader is not FAILED and outputs:
            got = _call(problems, "reader()()", reader)
            if got is not FAILED and len(got) != len(outputs):
                problems.append(f"reader() returned {len(got)} values for {len(outputs)} names")
    finally:
        if terminate:
            _call(problems, "terminate()", unit.terminate)
    if problems:
        raise ContractError(subject, problems)


def _check_variables(unit: Any, problems: list[str]) -> Mapping[str, Variable] | None:
    try:
        variables = unit.variables
    except Exception as exc:
        problems.append(f"'variables' raised {type(exc).__name__}: {exc}")
        return None
    if not isinstance(variables, Mapping):
        problems.append(f"'variables' must be a mapping name -> Variable, got {type(variables).__name__}")
        return None
    for key, var in variables.items():
        if not isinstance(var, Variable):
            problems.append(f"variable '{key}' is a {type(var).__name__}, not a cosim Variable")
        elif var.name != key:
            problems.append(f"variable stored under '{key}' is named '{var.name}'")
        elif not isinstance(var.causality, Causality) or not isinstance(var.type, VarType):
            problems.append(f"variable '{key}' needs a Causality and a VarType")
    return variables


def _check_values(unit: Any, variables: list[Variable], what: str, problems: list[str]) -> None:
    if not variables:
        return
    values = _call(problems, f"get({what}s)", unit.get, [v.name for v in variables])
    if values is FAILED:
        return
    values = list(values)
    if len(values) != len(variables):
        problems.append(f"get() returned {len(values)} values for {len(variables)} {what}s")
        return
    for var, value in zip(variables, values, strict=True):
        if not isinstance(value, _PY_TYPES[var.type]):
            problems.append(f"{what} '{var.name}' is declared {var.type.value} but get() gave "
                            f"{type(value).__name__} {value!r}")
        elif var.type is VarType.REAL and not math.isfinite(value):
            problems.append(f"{what} '{var.name}' is {value!r}")


FAILED: Any = object()


def _call(problems: list[str], what: str, fn: Any, *args: Any) -> Any:
    """Call ``fn``; on an exception record it and return :data:`FAILED`."""
    try:
        result = fn(*args)
    except Exception as exc:
        problems.append(f"{what} raised {type(exc).__name__}: {exc}")
        return FAILED
    return result


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        (x == y) or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True)
    )
