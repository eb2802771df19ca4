"""Quarantine: diverted flows and model updates go to the sandbox twin, never to production.

:class:`UpdateGate` is the path model updates (over-the-air parameter or model changes) take
into the system: open, :meth:`UpdateGate.submit` applies an update to production; closed by
a ``quarantine`` action, it applies the update to the sandbox twin only (where its effect can
be observed) and keeps it in :attr:`UpdateGate.quarantined`. An updater or an OTA attack
finds the gate in ``ctx.extra["update_gate"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cosim.core.variables import Value
from cosim.errors import ConfigurationError

if TYPE_CHECKING:
    from cosim.core.master import Master
    from cosim.twin.sandbox import Sandbox


@dataclass
class ModelUpdate:
    """A model update: new values for tunable parameters of one unit.

    Attributes:
        unit: the unit it is meant for (a plant unit or a twin replica).
        parameters: ``{parameter: value}``.
        source: who sent it (``"ota"``, ``"engineer"``, an attack's name...).
        version: its version label.
    """

    unit: str
    parameters: Mapping[str, Value]
    source: str = "ota"
    version: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def apply(self, master: Master, unit: str | None = None) -> None:
        name = unit or self.unit
        target = master.units.get(name)
        if target is None:
            raise ConfigurationError(f"model update for unknown unit '{name}'")
        missing = [p for p in self.parameters if p not in target.variables]
        if missing:
            raise ConfigurationError(f"model update for unit '{name}': unknown parameter(s) {missing}")
        target.set(list(self.parameters), list(self.parameters.values()))


class UpdateGate:
    """Where model updates enter; closed, they go to the sandbox only."""

    def __init__(self) -> None:
        self.closed = False
        self.reason = ""
        self.applied: list[ModelUpdate] = []
        self.quarantined: list[ModelUpdate] = []
        self._master: Master | None = None
        self._sandbox: Callable[[], Sandbox | None] = lambda: None
        self._replica: Callable[[str], str | None] = lambda unit: None
        self.on_submit: Callable[[ModelUpdate, str], None] | None = None

    def bind(self, master: Master, sandbox: Callable[[], Sandbox | None],
             replica_of: Callable[[str], str | None]) -> None:
        self._master, self._sandbox, self._replica = master, sandbox, replica_of

    def close(self, reason: str = "") -> None:
        self.closed, self.reason = True, reason

    def open(self) -> None:
        self.closed, self.reason = False, ""

    def submit(self, update: ModelUpdate) -> str:
        """Apply ``update`` to production (gate open) or to the sandbox (closed).

        Returns:
            ``"applied"`` or ``"quarantined"``.
        """
        if self._master is None:
            raise ConfigurationError("update gate: not bound to a running system")
        if not self.closed:
            update.apply(self._master)
            self.applied.append(update)
            outcome = "applied"
        else:
            self.quarantined.append(update)
            box = self._sandbox()
            replica = self._replica(update.unit)
            if box is not None and replica is not None and replica in box.master.units:
                update.apply(box.master, replica)
                update.meta["sandbox_unit"] = replica
            outcome = "quarantined"
        if self.on_submit is not None:
            self.on_submit(update, outcome)
        return outcome


class QuarantineManager:
    """Sinks for diverted conduits and the update gate."""

    def __init__(self, sandbox: Callable[[], Sandbox | None]) -> None:
        self.gate = UpdateGate()
        self.received: dict[str, int] = {}
        self.messages: list[Any] = []
        self._sandbox = sandbox
        self.sandbox_fed = 0

    def sink(self, conduit: str, use_sandbox: bool = True) -> Callable[[Any], None]:
        def receive(message: Any) -> None:
            self.received[conduit] = self.received.get(conduit, 0) + 1
            if len(self.messages) < 10_000:
                self.messages.append(message)
            if use_sandbox:
                box = self._sandbox()
                if box is not None:
                    box.receive(message)
                    self.sandbox_fed += 1

        return receive
