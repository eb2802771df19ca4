"""The sandbox: a copy of the twin, cloned from a verified snapshot, with no path to the plant.

A :class:`Sandbox` builds its own :class:`~cosim.core.master.Master` holding fresh instances
of the twin's replicas only (new FMU instances, a new PyBullet client), restores them from a
:class:`~cosim.twin.integrity.SignedSnapshot` (verified before anything is loaded), and lets
a researcher or the containment layer drive it with a recorded stream (:meth:`Sandbox.play`)
or a diverted one (:meth:`Sandbox.receive` as a conduit's divert sink) and watch what
happens. Its master knows no plant unit and has no network: nothing it does can reach
production.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cosim.core.master import Master
from cosim.core.observer import Recorder
from cosim.core.variables import Value
from cosim.errors import ConfigurationError
from cosim.system import SystemSpec
from cosim.twin.integrity import KeyStore, SignedSnapshot
from cosim.twin.replica import TwinLayout


class Sandbox:
    """An isolated twin copy.

    Args:
        spec: the system description the twin was added to (plant + twin).
        layout: the twin's layout.
        snapshot: signed portable state of the twin's replicas (see :meth:`snapshot_twin`).
        keystore: verifies the snapshot (default: this installation's).
        record: sandbox variables to record (``"twin_press.pressure"``...); ``None``: every output.
    """

    def __init__(self, spec: SystemSpec, layout: TwinLayout, snapshot: SignedSnapshot,
                 keystore: KeyStore | None = None, record: Sequence[str] | None = None) -> None:
        self.layout = layout
        replicas = set(layout.replicas.values())
        units = [u for u in spec.units if u.name in replicas]
        if len(units) != len(replicas):
            raise ConfigurationError("sandbox: the system description does not hold every twin replica")
        connections = [(s, d) for s, d in spec.connections
                       if s.partition(".")[0] in replicas and d.partition(".")[0] in replicas]
        inputs = {p: v for p, v in spec.inputs.items() if p.partition(".")[0] in replicas}
        self.spec = SystemSpec(base_step=spec.base_step, units=units, connections=connections, inputs=inputs,
                               start_time=spec.start_time, algorithm=spec.algorithm, name=f"{spec.name}-sandbox")
        # commands the twin observed from the plant's control units: here they are held
        # inputs that only the sandbox's own driver sets
        self.command_inputs: dict[str, list[str]] = {}
        for source, target in layout.commands:
            self.command_inputs.setdefault(source, []).append(target)
        self.master: Master = self.spec.build(record=record if record is not None else True)
        try:
            snapshot.restore_into(self.master, keystore)
        except Exception:
            self.master.terminate()
            raise
        self.received: list[Any] = []

    @staticmethod
    def snapshot_twin(master: Master, layout: TwinLayout, keystore: KeyStore | None = None,
                      version: str | int = 1) -> SignedSnapshot:
        """Signed portable state of the twin's replicas in a running ``master``."""
        return SignedSnapshot.take(master, list(layout.replicas.values()), keystore, version, name="twin")

    @property
    def recorder(self) -> Recorder:
        rec = self.master.observers[0]
        assert isinstance(rec, Recorder)
        return rec

    def feed(self, values: Mapping[str, Value]) -> None:
        """Set commands by their plant name (``"plc.valve_cmd"``) or replica input name."""
        for port, value in values.items():
            targets = self.command_inputs.get(port, [port])
            for target in targets:
                if target.partition(".")[0] not in self.master.units:
                    raise ConfigurationError(
                        f"sandbox: '{port}' is not a command the twin receives; commands are "
                        f"{sorted(self.command_inputs)}"
                    )
                self.master.set_input(target, value)

    def receive(self, message: Any) -> None:
        """A conduit's divert sink: apply a diverted message's values to the sandbox."""
        self.received.append(message)
        known = {tag: value for tag, value in zip(message.tags, message.values, strict=True)
                 if tag in self.command_inputs}
        if known:
            self.feed(known)

    def play(self, stream: Iterable[tuple[float, Mapping[str, Value]]], until: float | None = None) -> None:
        """Run through a recorded stream of ``(time, {command: value})``, in time order."""
        grid = self.master.grid

        def tick_of(t: float) -> int:
            return round((t - grid.start_time) / grid.base_step)

        for t, values in stream:
            if tick_of(t) > self.master.tick:
                self.master.run(until_tick=tick_of(t))
            self.feed(values)
        if until is not None and tick_of(until) > self.master.tick:
            self.master.run(until_tick=tick_of(until))

    def run(self, duration: float) -> None:
        self.master.run(duration=duration)

    def close(self) -> None:
        self.master.terminate()
