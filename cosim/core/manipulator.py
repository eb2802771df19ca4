"""Manipulators: hooks that change a value on its way into a unit input.

A manipulator targets either a connection (``"src.out -> dst.in"``, only that link is
affected) or a unit input (``"dst.in"``, every value written to that input, whether it
comes from a connection or is held constant by the master). It is active on ticks
``start_tick <= tick < end_tick``. The attack layer is built on these.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from cosim.core.variables import Value
from cosim.errors import ConfigurationError


class Manipulator(ABC):
    """Changes a value in transit.

    Attributes:
        target: ``"unit.input"`` or ``"src_unit.output -> dst_unit.input"``.
        start_tick: first tick the manipulator acts on.
        end_tick: first tick it no longer acts on (``None``: until the end).
        path: the conduit a manipulated connection travels over, set by the master when a
            network is attached (``None``: a direct link, or a manipulator on a unit input).
            On an authenticated conduit an in-path change fails the receiver's check: the
            manipulator does not act and the attempt counts as an authentication failure.
        credentials: the manipulator holds the conduit's key (an insider): authentication
            does not stop it.
    """

    path: Any = None
    credentials: bool = False

    def __init__(self, target: str, start_tick: int = 0, end_tick: int | None = None) -> None:
        if start_tick < 0 or (end_tick is not None and end_tick < start_tick):
            raise ConfigurationError(
                f"manipulator on '{target}': invalid window [{start_tick}, {end_tick})"
            )
        self.target = target
        self.start_tick = start_tick
        self.end_tick = end_tick

    def active(self, tick: int) -> bool:
        if not (self.start_tick <= tick and (self.end_tick is None or tick < self.end_tick)):
            return False
        path = self.path
        if path is not None and path.authenticated and not self.credentials:
            path.reject_tampered()
            return False
        return True

    @abstractmethod
    def apply(self, tick: int, value: Value) -> Value:
        """Return the value the target receives instead of ``value``."""

    def save_state(self) -> Any:
        """State for system snapshots. Default: every attribute but :attr:`path`, deep-copied."""
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "path"})

    def restore_state(self, state: Any) -> None:
        self.__dict__.update(copy.deepcopy({k: v for k, v in state.items() if k != "path"}))


class Override(Manipulator):
    """Replace the value with a constant."""

    def __init__(self, target: str, value: Value, start_tick: int = 0,
                 end_tick: int | None = None) -> None:
        super().__init__(target, start_tick, end_tick)
        self.value = value

    def apply(self, tick: int, value: Value) -> Value:
        return self.value


class Bias(Manipulator):
    """Add a constant offset."""

    def __init__(self, target: str, offset: float, start_tick: int = 0,
                 end_tick: int | None = None) -> None:
        super().__init__(target, start_tick, end_tick)
        self.offset = offset

    def apply(self, tick: int, value: Value) -> Value:
        return value + self.offset  # type: ignore[operator]


class Transform(Manipulator):
    """Apply ``fn(tick, value)``; the function must be deterministic (or save its own state)."""

    def __init__(self, target: str, fn: Callable[[int, Value], Value], start_tick: int = 0,
                 end_tick: int | None = None) -> None:
        super().__init__(target, start_tick, end_tick)
        self.fn = fn

    def apply(self, tick: int, value: Value) -> Value:
        return self.fn(tick, value)

    def save_state(self) -> Any:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "fn"}
