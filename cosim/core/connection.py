"""Connections from unit outputs to unit inputs, and the checks made when a system is built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cosim.core.unit import Unit
from cosim.core.variables import Causality
from cosim.errors import InvalidConnectionError


@dataclass(frozen=True)
class Port:
    """One variable of one unit, written ``unit.variable``."""

    unit: str
    variable: str

    @classmethod
    def parse(cls, text: str) -> Port:
        unit, sep, variable = text.partition(".")
        if not sep or not unit or not variable:
            raise InvalidConnectionError(f"'{text}' is not of the form 'unit.variable'")
        return cls(unit, variable)

    def __str__(self) -> str:
        return f"{self.unit}.{self.variable}"


@dataclass(frozen=True)
class Connection:
    """A link that copies an output value to an input at every step of the input's unit."""

    source: Port
    target: Port

    @classmethod
    def parse(cls, source: str, target: str) -> Connection:
        return cls(Port.parse(source), Port.parse(target))

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}"


def _close_matches(name: str, options: Sequence[str]) -> str:
    import difflib

    near = difflib.get_close_matches(name, list(options), n=3)
    return f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""


def check_port(units: Mapping[str, Unit], port: Port, role: str, conn: Connection) -> None:
    """Raise :class:`InvalidConnectionError` if ``port`` is not a usable ``role`` end."""
    if port.unit not in units:
        raise InvalidConnectionError(
            f"connection {conn}: {role} unit '{port.unit}' does not exist"
            f"{_close_matches(port.unit, list(units))}; units are {sorted(units)}"
        )
    variables = units[port.unit].variables
    if port.variable not in variables:
        raise InvalidConnectionError(
            f"connection {conn}: unit '{port.unit}' has no variable '{port.variable}'"
            f"{_close_matches(port.variable, list(variables))}"
        )
    wanted = Causality.OUTPUT if role == "source" else Causality.INPUT
    actual = variables[port.variable].causality
    if actual is not wanted:
        raise InvalidConnectionError(
            f"connection {conn}: {role} {port} has causality '{actual.value}', "
            f"a {role} must be an {wanted.value}"
        )


def check_connections(units: Mapping[str, Unit], connections: Sequence[Connection]) -> None:
    """Check every connection against the units; the first problem raises, naming both ends."""
    fed: dict[Port, Connection] = {}
    for conn in connections:
        check_port(units, conn.source, "source", conn)
        check_port(units, conn.target, "target", conn)
        src = units[conn.source.unit].variables[conn.source.variable]
        dst = units[conn.target.unit].variables[conn.target.variable]
        if src.type is not dst.type:
            raise InvalidConnectionError(
                f"connection {conn}: type mismatch, {conn.source} is {src.type.value} "
                f"but {conn.target} is {dst.type.value}"
            )
        if conn.target in fed:
            raise InvalidConnectionError(
                f"input {conn.target} is fed twice: by {fed[conn.target].source} and by {conn.source}"
            )
        fed[conn.target] = conn
