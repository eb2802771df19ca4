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
from cosim.errors import ConfigurationError, ContractError, CosimError

UnitFactory = Callable[..., Unit]


@dataclass
class UnitSpec:
    """How to make one unit: a factory (called at build time) and its step in base steps.

    A factory is called as ``factory(name=..., overrides=...)``: ``name`` renames the unit and
    ``overrides`` deep-merges into its constructor arguments, so the same description can
    make a replica (the twin's own instance of a plant unit, e.g. without sensor noise).
    With ``needs_units`` the factory also gets ``units=``: the units made before it.
    """

    name: str
    factory: UnitFactory
    step_ticks: int = 1
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    needs_units: bool = False

    def make(self, made: Mapping[str, Unit]) -> Unit:
        kwargs: dict[str, Any] = {"name": self.name, "overrides": self.overrides}
        if self.needs_units:
            kwargs["units"] = made
        return self.factory(**kwargs)

    def replica(self, name: str, overrides: Mapping[str, Any] | None = None,
                step_ticks: int | None = None) -> UnitSpec:
        """The same unit under another name, with constructor overrides merged in."""
        merged = deep_merge(self.overrides, overrides or {})
        return UnitSpec(name, self.factory, self.step_ticks if step_ticks is None else int(step_ticks),
                        f"replica of {self.name}", merged, self.needs_units)


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in; nested mappings merge, everything else is replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


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
              check_finite: bool = True, network: Callable[[list[str]], Any] | None = None) -> Master:
        """Instantiate every unit and return a built master.

        Args:
            record: ``False`` for no recorder, ``None`` or ``True`` to record every output,
                or a list of ``"unit.variable"``. The recorder is ``master.observers[0]``.
            network: ``network(unit_names) -> Network`` — the interface layer the
                connections are routed over; its statistics become the unit ``net``.
        """
        master = Master(self.base_step, self.start_time, self.algorithm, self.order, check_finite)
        made: list[Unit] = []
        try:
            for spec in self.units:
                unit = spec.make({u.name: u for u in made})
                if not isinstance(unit, Unit):
                    raise ConfigurationError(
                        f"unit '{spec.name}': its factory returned {type(unit).__name__}, not a Unit"
                    )
                if unit.name != spec.name:
                    raise ConfigurationError(f"unit '{spec.name}': its factory named it '{unit.name}'")
                made.append(unit)
                master.add_unit(unit, spec.step_ticks)
            check_plant_contract(self, {u.name: u for u in made}, record if isinstance(record, Sequence) else ())
            if network is not None:
                from cosim.network import NetworkStats

                net = network([u.name for u in made])
                stats = NetworkStats(net, name="net")
                made.append(stats)
                master.add_unit(stats)
                net.attach(master)
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


def check_plant_contract(spec: SystemSpec, units: Mapping[str, Unit], record: Sequence[str] = ()) -> None:
    """Check every unit against what the plant expects of it; one error lists all problems.

    What a plant expects of a unit is what its description uses: each connection end (an
    output of the right type feeding, an input of the right type fed), each held input, each
    recorded variable. A replacement station (another FMU, another tool) passes if it offers
    all of these, whatever else it has.

    Raises:
        ContractError: naming the unit and listing every missing or mismatched variable.
    """
    from cosim.core.variables import Causality

    problems: dict[str, list[str]] = {name: [] for name in units}

    def var(port: str) -> tuple[str, str, Any]:
        unit_name, _, var_name = port.partition(".")
        unit = units.get(unit_name)
        return unit_name, var_name, None if unit is None else unit.variables.get(var_name)

    for source, target in spec.connections:
        s_unit, s_var, s = var(source)
        t_unit, t_var, t = var(target)
        for unit_name, var_name, v, role, other, other_v in (
            (s_unit, s_var, s, Causality.OUTPUT, target, t),
            (t_unit, t_var, t, Causality.INPUT, source, s),
        ):
            if unit_name not in units:
                continue  # an unknown unit is reported by the connection check
            if v is None:
                problems[unit_name].append(f"missing {role.value} '{var_name}' (connected to {other})")
            elif v.causality is not role:
                problems[unit_name].append(
                    f"'{var_name}' is an {v.causality.value}, the plant needs an {role.value} (connected to {other})"
                )
            elif other_v is not None and other_v.type is not v.type:
                problems[unit_name].append(
                    f"'{var_name}' is {v.type.value}, the plant needs {other_v.type.value} (connected to {other})"
                )
    for port in spec.inputs:
        unit_name, var_name, v = var(port)
        if unit_name in units and v is None:
            problems[unit_name].append(f"missing input '{var_name}' (given a value in the plant's inputs)")
    for port in record:
        unit_name, var_name, v = var(port)
        if unit_name in units and v is None:
            problems[unit_name].append(f"missing variable '{var_name}' (recorded by the plant)")
    failing = {name: p for name, p in problems.items() if p}
    if failing:
        name, found = next(iter(failing.items()))
        extra = sum(len(p) for p in failing.values()) - len(found)
        subject = f"unit '{name}' ({type(units[name]).__name__}) in plant '{spec.name}'"
        if len(failing) > 1:
            others = [n for n in failing if n != name]
            found = [*found, f"(and {extra} more problem(s) in unit(s) {others})"]
        raise ContractError(subject, found)


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
