"""The unit interface: what the master needs from anything it steps.

FMUs, the PyBullet arm and plain Python components (PLC, HMI, twin) all implement
:class:`Unit`. Time is never passed as a float: the master hands a unit integer ticks and the
unit converts them through its :class:`TimeGrid`, so every unit sees the same instants.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from cosim.core.state import pack_state, pickle_dumps, restricted_loads, unpack_state
from cosim.core.variables import Causality, Value, Variable, VarType
from cosim.errors import ConfigurationError, SnapshotError

Reader = Callable[[], Sequence[Value]]
Writer = Callable[[Sequence[Value]], None]


@dataclass(frozen=True)
class TimeGrid:
    """Integer tick grid: ``time(tick) = start_time + tick * base_step``.

    A step from ``tick`` over ``n`` ticks has size ``time(tick + n) - time(tick)``, so that
    ``t + h`` lands exactly on the next grid point (no accumulated float drift).
    """

    base_step: float
    start_time: float = 0.0

    def __post_init__(self) -> None:
        if not self.base_step > 0.0:
            raise ConfigurationError(f"base_step must be positive, got {self.base_step!r}")

    def time(self, tick: int) -> float:
        return self.start_time + tick * self.base_step

    def step_size(self, tick: int, n_ticks: int) -> float:
        return self.interval(tick, n_ticks)[1]

    def interval(self, tick: int, n_ticks: int) -> tuple[float, float]:
        """``(time(tick), step_size(tick, n_ticks))`` in one call (what a unit's step needs)."""
        t = self.start_time + tick * self.base_step
        return t, self.start_time + (tick + n_ticks) * self.base_step - t

    def ticks(self, duration: float) -> int:
        """Whole number of ticks in ``duration`` seconds (rounded to nearest)."""
        n = round(duration / self.base_step)
        if abs(n * self.base_step - duration) > 1e-9 * max(1.0, abs(duration)):
            raise ConfigurationError(
                f"duration {duration!r} s is not a whole multiple of base_step {self.base_step!r} s"
            )
        return int(n)


class Unit(ABC):
    """A simulated component with variables, a step and a saveable state.

    Lifecycle: construct → :meth:`setup` (once) → any number of :meth:`step`, :meth:`get`,
    :meth:`set`, :meth:`save_state`, :meth:`restore_state` → :meth:`terminate`.
    :attr:`variables` must answer before :meth:`setup`: the master checks connections first.

    Attributes:
        name: unique name of the unit in its system.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.grid: TimeGrid | None = None

    @property
    @abstractmethod
    def variables(self) -> Mapping[str, Variable]:
        """Every variable of the unit, by name."""

    @abstractmethod
    def setup(self, grid: TimeGrid) -> None:
        """Instantiate and initialise the unit at ``grid.time(0)``."""

    @abstractmethod
    def step(self, tick: int, n_ticks: int) -> None:
        """Advance from ``grid.time(tick)`` to ``grid.time(tick + n_ticks)``."""

    @abstractmethod
    def get(self, names: Sequence[str]) -> list[Value]:
        """Current values of the named variables, in the order asked."""

    @abstractmethod
    def set(self, names: Sequence[str], values: Sequence[Value]) -> None:
        """Set inputs (or parameters) by name."""

    @abstractmethod
    def save_state(self) -> Any:
        """Return an opaque copy of the unit's full state."""

    @abstractmethod
    def restore_state(self, state: Any) -> None:
        """Return the unit to a state from :meth:`save_state`; may be restored many times."""

    def release_state(self, state: Any) -> None:  # noqa: B027 - optional hook
        """Free a state from :meth:`save_state` that will not be restored again."""

    # Portable state (optional): bytes instead of in-process handles, see cosim.core.state.
    def export_state(self) -> bytes:
        """The unit's full current state as bytes.

        Another instance built from the same model (same class and constructor arguments, or
        the same FMU), set up, loads them with :meth:`import_state` and then steps on exactly
        like this one. Default: not supported.

        Raises:
            SnapshotError: the unit cannot export its state.
        """
        raise SnapshotError(f"unit '{self.name}' cannot export its state")

    def import_state(self, data: bytes) -> None:
        """Load bytes from :meth:`export_state` of an instance of the same model.

        Raises:
            SnapshotError: naming the unit: the bytes belong to another model, are corrupt, or
                the unit cannot import states (the default).
        """
        raise SnapshotError(f"unit '{self.name}' cannot import a portable state")

    def terminate(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Default: nothing to release."""

    def feedthrough(self) -> Mapping[str, Sequence[str]]:
        """Direct feed-through: for each output, the inputs it depends on within the same instant.

        An output with direct feed-through changes as soon as those inputs change, before the
        unit steps; a cycle of such dependencies through connections is an algebraic loop,
        which Gauss-Seidel cannot order (the master refuses it at build). Default: none (the
        outputs are computed in :meth:`step`, from the unit's state).
        """
        return {}

    # Fast paths for the master's step loop. Units override these when they can resolve
    # names once (FMU value references, PyBullet joint indices) instead of on every call.
    def reader(self, names: Sequence[str]) -> Reader:
        """A callable that returns the current values of ``names``."""
        names = list(names)
        return lambda: self.get(names)

    def writer(self, names: Sequence[str]) -> Writer:
        """A callable that sets ``names`` to the values it is given."""
        names = list(names)
        return lambda values: self.set(names, values)

    # Convenience helpers.
    def variables_by(self, causality: Causality) -> list[Variable]:
        return [v for v in self.variables.values() if v.causality is causality]

    def time(self, tick: int) -> float:
        assert self.grid is not None, f"unit '{self.name}' used before setup()"
        return self.grid.time(tick)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.name}'>"


class PythonUnit(Unit):
    """Base for units written in Python.

    Subclasses declare ``VARIABLES`` (or pass ``variables``), keep their variable values in
    ``self.values`` and implement :meth:`do_step`. The full state is every instance attribute
    (deep-copied), so plain Python state — counters, queues, a ``numpy`` generator — is saved
    and restored without extra code. Attributes named in ``TRANSIENT`` are left out of the
    state (handles to external resources).

    The portable state (:meth:`export_state`) is a pickle of the same attributes (without the
    unit's name), loaded with an allow-list of globals: containers, numpy arrays and
    generators, and classes of ``cosim``, ``models`` and the unit's own module. A state holding
    instances of other classes names their modules (or ``"module.name"`` globals) in
    ``PICKLE_ALLOW``.
    """

    VARIABLES: Sequence[Variable] = ()
    TRANSIENT: frozenset[str] = frozenset({"grid"})
    PICKLE_ALLOW: frozenset[str] = frozenset()
    #: direct feed-through, ``{output: [inputs]}`` (see :meth:`Unit.feedthrough`)
    FEEDTHROUGH: Mapping[str, Sequence[str]] = {}

    def __init__(self, name: str, variables: Sequence[Variable] | None = None,
                 parameters: Mapping[str, Value] | None = None) -> None:
        super().__init__(name)
        declared = list(variables if variables is not None else self.VARIABLES)
        self._variables: dict[str, Variable] = {v.name: v for v in declared}
        self.values: dict[str, Value] = {
            v.name: v.type.coerce(v.start) if v.start is not None else v.type.coerce(0)
            for v in declared
        }
        for key, value in (parameters or {}).items():
            if key not in self._variables:
                raise ConfigurationError(f"unit '{name}': unknown parameter '{key}'")
            self.values[key] = self._variables[key].type.coerce(value)

    @property
    def variables(self) -> Mapping[str, Variable]:
        return self._variables

    def feedthrough(self) -> Mapping[str, Sequence[str]]:
        return self.FEEDTHROUGH

    def setup(self, grid: TimeGrid) -> None:
        self.grid = grid
        self.initialize()

    def initialize(self) -> None:
        """Hook: compute initial outputs from parameters. Default: nothing."""

    def step(self, tick: int, n_ticks: int) -> None:
        grid = self.grid
        assert grid is not None
        self.do_step(*grid.interval(tick, n_ticks))

    @abstractmethod
    def do_step(self, t: float, h: float) -> None:
        """Advance from time ``t`` by ``h`` seconds, updating ``self.values``."""

    def get(self, names: Sequence[str]) -> list[Value]:
        values = self.values
        return [values[n] for n in names]

    def set(self, names: Sequence[str], values: Sequence[Value]) -> None:
        store = self.values
        for n, v in zip(names, values, strict=True):
            store[n] = v

    def writer(self, names: Sequence[str]) -> Writer:
        if type(self).set is not PythonUnit.set:  # a subclass that checks or converts what it is set
            return super().writer(names)
        names = tuple(names)

        def write(values: Sequence[Value]) -> None:
            self.values.update(zip(names, values, strict=True))  # looked up: a restored state replaces it

        return write

    def reader(self, names: Sequence[str]) -> Reader:
        names = list(names)
        if len(names) == 1:
            only = names[0]
            return lambda: [self.values[only]]
        getter = itemgetter(*names)
        return lambda: getter(self.values)

    def save_state(self) -> dict[str, Any]:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in self.TRANSIENT})

    def restore_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(copy.deepcopy(state))

    def _portable_identity(self) -> dict[str, Any]:
        cls = type(self)
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "variables": list(self._variables)}

    def export_state(self) -> bytes:
        if self.grid is None:
            raise SnapshotError(f"unit '{self.name}': export_state before setup()")
        state = {k: v for k, v in self.__dict__.items() if k not in self.TRANSIENT and k != "name"}
        try:
            payload = pickle_dumps(state)
        except Exception as exc:
            raise SnapshotError(f"unit '{self.name}' cannot export its state: {type(exc).__name__}: {exc}") from exc
        return pack_state("python", self._portable_identity(), payload)

    def import_state(self, data: bytes) -> None:
        if self.grid is None:
            raise SnapshotError(f"unit '{self.name}': import_state before setup()")
        payload = unpack_state(self.name, data, "python", self._portable_identity())
        state = restricted_loads(self.name, payload, {type(self).__module__, *self.PICKLE_ALLOW})
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise SnapshotError(f"unit '{self.name}': corrupt portable state (not a dict of attributes)")
        state = {k: v for k, v in state.items() if k not in self.TRANSIENT and k != "name"}
        self.__dict__.update(state)


def real(name: str, causality: Causality | str, start: float = 0.0, unit: str = "",
         description: str = "") -> Variable:
    """Shorthand for a real-valued :class:`Variable`."""
    return Variable(name, Causality(causality), VarType.REAL, start, unit, description)
