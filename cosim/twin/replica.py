"""Build the digital twin from the plant's own description.

:func:`add_twin` takes a plant :class:`~cosim.system.SystemSpec` and the names of the plant
units to mirror (the physical ones: stations and the scene). It adds, to the same system:

* a replica of each, named ``<prefix><unit>``, made by the unit's own factory — its own FMU
  instance, its own PyBullet client — with constructor overrides (e.g. no sensor noise);
* the replicas' couplings: every plant connection between two mirrored units, mirrored;
* the commands the twin observes: every connection from a control unit (PLC, robot
  controller) into a mirrored unit is also wired into the replica (over the control→twin
  conduit once the network is attached);
* the telemetry: every sensor signal (a connection from a mirrored unit to a control unit)
  is also sent to the twin's telemetry receiver ``<prefix>rx`` (over the field→twin conduit).

The twin then *predicts* each sensor from its replicas while the receiver holds what the
plant *measured*; :class:`~cosim.twin.sync.TwinSync` compares the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cosim.core.unit import PythonUnit, Unit
from cosim.core.variables import Causality, Variable
from cosim.errors import ConfigurationError
from cosim.system import SystemSpec, UnitSpec


@dataclass(frozen=True)
class Signal:
    """One sensor the twin predicts: plant output, receiver input and replica output."""

    measured_at: str  # "<prefix>rx.<unit>__<var>": the plant's value, as received
    predicted_at: str  # "<prefix><unit>.<var>": the twin's value
    plant: str  # "<unit>.<var>"


@dataclass
class TwinLayout:
    """What :func:`add_twin` added."""

    prefix: str
    replicas: dict[str, str]  # plant unit -> replica unit
    receiver: str
    signals: list[Signal] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)  # control output -> replica input

    @property
    def units(self) -> list[str]:
        return [*self.replicas.values(), self.receiver]


class TelemetryReceiver(PythonUnit):
    """The twin's end of the telemetry conduit: one input per sensor signal, no behaviour.

    Its inputs take the type of the plant outputs they receive (resolved when the system is
    built, from the units made before it).
    """

    def __init__(self, name: str, sources: Sequence[str], units: Mapping[str, Unit] | None = None) -> None:
        variables = []
        for port in sources:
            unit_name, _, var_name = port.partition(".")
            unit = (units or {}).get(unit_name)
            if unit is None or var_name not in unit.variables:
                raise ConfigurationError(f"twin receiver '{name}': no plant signal '{port}'")
            src = unit.variables[var_name]
            variables.append(Variable(receiver_input(port), Causality.INPUT, src.type,
                                      src.start if src.start is not None else src.type.coerce(0)))
        super().__init__(name, variables)

    def do_step(self, t: float, h: float) -> None:
        """Nothing to compute: the inputs hold the last telemetry delivered."""


def receiver_input(port: str) -> str:
    """Receiver input name of plant signal ``unit.var``: ``unit__var``."""
    return port.replace(".", "__", 1)


def add_twin(spec: SystemSpec, replicate: Sequence[str], prefix: str = "twin_",
             overrides: Mapping[str, Mapping[str, Any]] | None = None,
             step_ticks: Mapping[str, int] | None = None,
             exclude_signals: Sequence[str] = ()) -> TwinLayout:
    """Add a twin of the units ``replicate`` to ``spec`` (in place) and return its layout.

    Args:
        spec: the plant's system description.
        replicate: plant units the twin mirrors (physical units; not PLC, HMI, controllers).
        prefix: name prefix of the replicas and the receiver.
        overrides: constructor overrides per mirrored unit (deep-merged).
        step_ticks: the replicas' own rates (default: the plant unit's).
        exclude_signals: plant sensor signals ``unit.var`` the twin does not receive.
    """
    by_name = {u.name: u for u in spec.units}
    unknown = [u for u in replicate if u not in by_name]
    if unknown:
        raise ConfigurationError(f"twin: cannot mirror unknown plant unit(s) {unknown}; units are {list(by_name)}")
    overrides = dict(overrides or {})
    bad = [u for u in overrides if u not in replicate]
    if bad:
        raise ConfigurationError(f"twin: overrides for units that are not mirrored: {bad}")
    rates = dict(step_ticks or {})
    mirrored = set(replicate)
    names = {u: f"{prefix}{u}" for u in replicate}
    clash = [n for n in [*names.values(), f"{prefix}rx"] if n in by_name]
    if clash:
        raise ConfigurationError(f"twin: names {clash} already used by plant units; choose another prefix")
    layout = TwinLayout(prefix, names, f"{prefix}rx")
    for u in replicate:
        spec.units.append(by_name[u].replica(names[u], overrides.get(u), rates.get(u)))
    sensors: list[str] = []
    for src, dst in list(spec.connections):
        s_unit, _, s_var = src.partition(".")
        d_unit, _, d_var = dst.partition(".")
        if s_unit in mirrored and d_unit in mirrored:
            spec.connections.append((f"{names[s_unit]}.{s_var}", f"{names[d_unit]}.{d_var}"))
        elif d_unit in mirrored:  # a command the twin observes
            spec.connections.append((src, f"{names[d_unit]}.{d_var}"))
            layout.commands.append((src, f"{names[d_unit]}.{d_var}"))
        elif s_unit in mirrored and src not in sensors and src not in exclude_signals:
            sensors.append(src)
    for port, value in list(spec.inputs.items()):
        unit_name, _, var = port.partition(".")
        if unit_name in mirrored:
            spec.inputs[f"{names[unit_name]}.{var}"] = value
    for port in sensors:
        unit_name, _, var = port.partition(".")
        measured = f"{layout.receiver}.{receiver_input(port)}"
        spec.connections.append((port, measured))
        layout.signals.append(Signal(measured, f"{names[unit_name]}.{var}", port))

    def make_receiver(name: str | None = None, overrides: Mapping[str, Any] | None = None,
                      units: Mapping[str, Unit] | None = None) -> TelemetryReceiver:
        return TelemetryReceiver(name or layout.receiver, sensors, units)

    spec.units.append(UnitSpec(layout.receiver, make_receiver, 1, "twin telemetry receiver", needs_units=True))
    return layout
