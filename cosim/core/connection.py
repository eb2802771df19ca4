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


def algebraic_loop(units: Mapping[str, Unit], connections: Sequence[Connection]) -> list[Connection] | None:
    """The connections of one algebraic loop, or ``None`` when there is none.

    An algebraic loop is a cycle of connections in which every unit passes its input straight
    on to the output that closes the cycle (direct feed-through, :meth:`Unit.feedthrough`):
    its values at one instant depend on themselves. Units that compute their outputs in their
    step (from state) break every cycle through them.
    """
    by_source: dict[Port, list[Connection]] = {}
    for conn in connections:
        by_source.setdefault(conn.source, []).append(conn)
    passes: dict[Port, list[Port]] = {}  # input -> outputs of the same unit that depend on it
    for name, unit in units.items():
        for output, inputs in (unit.feedthrough() or {}).items():
            for inp in inputs:
                passes.setdefault(Port(name, str(inp)), []).append(Port(name, str(output)))
    if not passes:
        return None
    # depth-first search over outputs: output --connection--> input --feed-through--> output
    state: dict[Port, int] = {}  # 1 on the current path, 2 done
    for start in by_source:
        if state.get(start):
            continue
        path: list[Connection] = []
        stack: list[tuple[Port, list[tuple[Connection, Port]]]] = []

        def successors(out: Port) -> list[tuple[Connection, Port]]:
            return [(c, nxt) for c in by_source.get(out, []) for nxt in passes.get(c.target, [])]

        state[start] = 1
        stack.append((start, successors(start)))
        while stack:
            node, todo = stack[-1]
            if not todo:
                state[node] = 2
                stack.pop()
                if path:
                    path.pop()
                continue
            conn, nxt = todo.pop()
            if state.get(nxt) == 1:  # back to a node on the path: a cycle
                path.append(conn)
                first = next(i for i, (n, _) in enumerate(stack) if n == nxt)
                return path[first:]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(conn)
                stack.append((nxt, successors(nxt)))
    return None
