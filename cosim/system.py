"""A system description (units, rates, connections, inputs, time settings) and its build.

Hydra plant configs and SSP files both end up as a :class:`SystemSpec`; :meth:`SystemSpec.build`
turns it into a ready :class:`~cosim.core.master.Master`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cosim.core.master import Master
from cosim.core.observer import Recorder
from cosim.core.unit import Unit
from cosim.core.variables import Value
from cosim.errors import ConfigurationError, CosimError

UnitFactory = Callable[[], Unit]


@dataclass
class UnitSpec:
    """How to make one unit: a factory (called at build time) and its step in base steps."""

    name: str
    factory: UnitFactory
    step_ticks: int = 1
    description: str = ""


@dataclass
class SystemSpec:
    """Everything needed to build a master.

    Attributes:
        units: in Gauss-Seidel order unless ``order`` says otherwise.
        connections: ``(source, target)`` pairs of ``"unit.variable"``.
        inputs: held values for unconnected inputs, ``{"unit.variable": value}``.
        stop_time: end of the default experiment (``None``: the caller decides).
    """

    base_step: float
    units: list[UnitSpec]
    connections: list[tuple[str, str]] = field(default_factory=list)
    inputs: dict[str, Value] = field(default_factory=dict)
    start_time: float = 0.0
    stop_time: float | None = None
    algorithm: str = "jacobi"
    order: list[str] | None = None
    name: str = "system"

    def build(self, record: Sequence[str] | bool | None = False, record_interval: int = 1,
              check_finite: bool = True) -> Master:
        """Instantiate every unit and return a built master.

        Args:
            record: ``False`` for no recorder, ``None`` or ``True`` to record every output,
                or a list of ``"unit.variable"``. The recorder is ``master.observers[0]``.
        """
        master = Master(self.base_step, self.start_time, self.algorithm, self.order, check_finite)
        made: list[Unit] = []
        try:
            for spec in self.units:
                unit = spec.factory()
                if not isinstance(unit, Unit):
                    raise ConfigurationError(
                        f"unit '{spec.name}': its factory returned {type(unit).__name__}, not a Unit"
                    )
                if unit.name != spec.name:
                    raise ConfigurationError(f"unit '{spec.name}': its factory named it '{unit.name}'")
                made.append(unit)
                master.add_unit(unit, spec.step_ticks)
            for source, target in self.connections:
                master.connect(source, target)
            for port, value in self.inputs.items():
                master.set_input(port, value)
            if record is not False:
                master.add_observer(Recorder(None if record is True else record, record_interval))
            master.build()
        except CosimError:
            for unit in made:
                _quiet_terminate(unit)
            raise
        return master


def _quiet_terminate(unit: Unit) -> None:
    try:
        unit.terminate()
    except Exception:
        pass


def parse_connections(items: Sequence[Any]) -> list[tuple[str, str]]:
    """Accept ``"a.x -> b.u"`` strings, ``[a.x, b.u]`` pairs or ``{from:, to:}`` mappings."""
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            src, sep, dst = item.partition("->")
            if not sep:
                raise ConfigurationError(f"connection '{item}' must be written 'unit.output -> unit.input'")
            out.append((src.strip(), dst.strip()))
        elif isinstance(item, Mapping):
            try:
                out.append((str(item["from"]), str(item["to"])))
            except KeyError as exc:
                raise ConfigurationError(f"connection {dict(item)} needs 'from' and 'to'") from exc
        elif isinstance(item, Sequence) and len(item) == 2:
            out.append((str(item[0]), str(item[1])))
        else:
            raise ConfigurationError(f"cannot read connection {item!r}")
    return out
