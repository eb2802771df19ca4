"""Variables a unit exposes: name, causality and type."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

Value = float | int | bool | str


class Causality(str, Enum):
    """Who computes a variable (FMI 2.0/3.0 causality, simplified)."""

    INPUT = "input"
    OUTPUT = "output"
    PARAMETER = "parameter"
    LOCAL = "local"

    @classmethod
    def from_fmi(cls, text: str) -> Causality:
        """Map an FMI causality string onto ours (calculated/structural parameters are parameters)."""
        mapping = {
            "input": cls.INPUT,
            "output": cls.OUTPUT,
            "parameter": cls.PARAMETER,
            "structuralParameter": cls.PARAMETER,
            "calculatedParameter": cls.LOCAL,
            "local": cls.LOCAL,
            "independent": cls.LOCAL,
        }
        try:
            return mapping[text]
        except KeyError:
            raise ValueError(f"unknown FMI causality '{text}'") from None


class VarType(str, Enum):
    """Value type of a variable. FMI 3.0's sized types map onto these four."""

    REAL = "real"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"

    @classmethod
    def from_fmi(cls, text: str) -> VarType:
        if text in ("Real", "Float64", "Float32"):
            return cls.REAL
        if text in ("Integer", "Enumeration") or text.startswith(("Int", "UInt")):
            return cls.INTEGER
        if text == "Boolean":
            return cls.BOOLEAN
        if text == "String":
            return cls.STRING
        raise ValueError(f"unsupported FMI variable type '{text}'")

    def coerce(self, value: Value) -> Value:
        """Convert a value to this type's Python representation."""
        if self is VarType.REAL:
            return float(value)
        if self is VarType.INTEGER:
            return int(value)
        if self is VarType.BOOLEAN:
            return bool(value)
        return str(value)


@dataclass(frozen=True)
class Variable:
    """One variable of a unit.

    Attributes:
        name: unique name inside the unit.
        causality: input, output, parameter or local.
        type: value type.
        start: start value, if the unit declares one.
        unit: physical unit text (e.g. ``"m/s"``), informational.
        description: free text.
    """

    name: str
    causality: Causality
    type: VarType = VarType.REAL
    start: Value | None = None
    unit: str = ""
    description: str = ""
