"""The co-simulation master: a fixed-step algorithm on an integer tick grid.

At every tick the master finds the units *due* (``tick % step_ticks == 0``), moves values
along the connections into their inputs (through any active manipulators) and steps them
over their own step (``step_ticks`` base steps, inputs held in between). Two orderings:

* ``jacobi`` (default): every due unit's inputs come from outputs as they were at the
  start of the tick; units could step in parallel.
* ``gauss_seidel``: due units step one after another in ``order``; a unit reads outputs of
  units that already stepped in this tick.

Time is ``grid.time(tick)``; floats are never summed.

With a network attached (:meth:`Master.attach_network`, see :mod:`cosim.network`), the
values of a connection between units of two zones travel over a conduit: when the source's
outputs are read, one message per (source unit, target unit) is sent, and the target's
inputs hold the value last delivered (manipulators act on them as on direct connections).
Same-zone connections stay direct.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from cosim.core.connection import Connection, Port, algebraic_loop, check_connections
from cosim.core.manipulator import Manipulator
from cosim.core.observer import Observer
from cosim.core.unit import Reader, TimeGrid, Unit, Writer
from cosim.core.variables import Causality, Value, VarType
from cosim.errors import (
    ConfigurationError,
    CosimError,
    InvalidConnectionError,
    NonFiniteValueError,
    SnapshotError,
    StepDiscarded,
    UnitError,
)

if TYPE_CHECKING:
    from cosim.network.conduit import Channel
    from cosim.network.network import Network


class Algorithm(str, Enum):
    JACOBI = "jacobi"
    GAUSS_SEIDEL = "gauss_seidel"


@dataclass
class Snapshot:
    """The whole system's state at one tick (see :meth:`Master.save_snapshot`)."""

    tick: int
    units: dict[str, Any]
    buffer: list[Value]
    manipulators: list[tuple[Manipulator, Any]]
    observers: list[tuple[Observer, Any]]
    network: Any = None
    slots: dict[Any, int] | None = None  # buffer layout the buffer was saved with


@dataclass
class RunResult:
    """How a run ended."""

    start_tick: int
    end_tick: int
    discarded: StepDiscarded | None = None

    @property
    def completed(self) -> bool:
        return self.discarded is None


@dataclass
class _Read:
    reader: Reader
    first: int  # slots first .. first+count-1 of the buffer
    count: int
    unit: str
    numeric: bool
    sends: tuple[Channel, ...] = ()  # cross-zone channels that send these outputs once read


@dataclass
class _Write:
    unit: Unit
    writer: Writer
    gather: Any  # itemgetter over buffer slots
    single: bool
    manipulators: list[tuple[int, Manipulator]] = field(default_factory=list)


@dataclass(frozen=True)
class _Hold:
    """Buffer key of the value a routed channel last delivered for ``tag`` to ``target``."""

    target: str
    tag: str


@dataclass
class _Plan:
    # each op, in order: read these units' outputs into the buffer, write one unit's
    # inputs from the buffer, step one unit over n_ticks

    ops: list[tuple[list[_Read], _Write | None, Unit | None, int]]


class Master:
    """Couples units through connections and steps them on a shared tick grid.

    Args:
        base_step: base step in seconds; every unit steps a whole multiple of it.
        start_time: time of tick 0.
        algorithm: ``"jacobi"`` or ``"gauss_seidel"``.
        order: Gauss-Seidel order of unit names (default: order of :meth:`add_unit`).
        check_finite: raise :class:`NonFiniteValueError` when a transferred value is NaN/inf.
    """

    def __init__(self, base_step: float, start_time: float = 0.0,
                 algorithm: Algorithm | str = Algorithm.JACOBI,
                 order: Sequence[str] | None = None, check_finite: bool = True) -> None:
        self.grid = TimeGrid(float(base_step), float(start_time))
        try:
            self.algorithm = Algorithm(algorithm)
        except ValueError:
            raise ConfigurationError(
                f"unknown algorithm '{algorithm}', choose one of {[a.value for a in Algorithm]}"
            ) from None
        self.order = list(order) if order is not None else None
        self.check_finite = check_finite
        self.units: dict[str, Unit] = {}
        self.step_ticks: dict[str, int] = {}
        self.connections: list[Connection] = []
        self.observers: list[Observer] = []
        self.manipulators: list[Manipulator] = []
        self.tick = 0
        self._built = False
        self._stopped = False
        self._pending_inputs: list[tuple[Port, Value]] = []
        self._buf: list[Value] = []
        self._slot: dict[Port, int] = {}
        self._block: dict[str, tuple[int, int, list[str]]] = {}
        self._plans: list[_Plan] = []
        self._version = 0
        self.network: Network | None = None
        # objects other layers keep per running system (e.g. the attack layer's model-update
        # endpoint): they live exactly as long as this master, whatever they refer to
        self.extensions: dict[str, Any] = {}
        # values observers compute once per tick and share ({key: (tick, value)}); emptied
        # when a snapshot is restored, since a tick number then comes round again
        self.tick_cache: dict[Any, tuple[int, Any]] = {}

    # Building ------------------------------------------------------------------------
    def add_unit(self, unit: Unit, step_ticks: int = 1) -> Unit:
        """Add a unit that steps every ``step_ticks`` base steps."""
        self._require_not_built("add a unit")
        if unit.name in self.units:
            raise ConfigurationError(f"two units are named '{unit.name}'")
        if "." in unit.name or not unit.name:
            raise ConfigurationError(f"unit name '{unit.name}' must be non-empty and contain no '.'")
        if isinstance(step_ticks, bool) or int(step_ticks) != step_ticks or step_ticks < 1:
            raise ConfigurationError(
                f"unit '{unit.name}': step_ticks must be a positive integer, got {step_ticks!r}"
            )
        self.units[unit.name] = unit
        self.step_ticks[unit.name] = int(step_ticks)
        return unit

    def connect(self, source: str | Port, target: str | Port) -> Connection:
        """Connect ``"unit.output"`` to ``"unit.input"`` (checked when the system is built)."""
        self._require_not_built("add a connection")
        src = source if isinstance(source, Port) else Port.parse(source)
        dst = target if isinstance(target, Port) else Port.parse(target)
        conn = Connection(src, dst)
        self.connections.append(conn)
        return conn

    def add_observer(self, observer: Observer) -> Observer:
        self.observers.append(observer)
        if self._built:
            observer.on_start(self)
        return observer

    def add_manipulator(self, manipulator: Manipulator) -> Manipulator:
        """Attach a manipulator; allowed while running (the attack layer does so)."""
        self.manipulators.append(manipulator)
        if self._built:
            try:
                self._compile()
            except CosimError:
                self.manipulators.remove(manipulator)
                raise
        return manipulator

    def remove_manipulator(self, manipulator: Manipulator) -> None:
        self.manipulators.remove(manipulator)
        if self._built:
            self._compile()

    def attach_network(self, network: Network) -> Network:
        """Route connections between zones through ``network``'s conduits (before :meth:`build`)."""
        self._require_not_built("attach a network")
        if self.network is not None and self.network is not network:
            raise ConfigurationError("a network is already attached to this master")
        self.network = network
        return network

    def set_input(self, port: str | Port, value: Value) -> None:
        """Set an input that no connection feeds (held until set again)."""
        port = port if isinstance(port, Port) else Port.parse(port)
        if not self._built:
            self._pending_inputs.append((port, value))
            return
        unit = self._input_unit(port)
        if port in self._slot:
            self._buf[self._slot[port]] = unit.variables[port.variable].type.coerce(value)
        else:
            unit.set([port.variable], [value])

    def get(self, port: str | Port) -> Value:
        """Current value of any variable, ``"unit.variable"``."""
        port = port if isinstance(port, Port) else Port.parse(port)
        unit = self.units.get(port.unit)
        if unit is None:
            raise ConfigurationError(f"unknown unit '{port.unit}'")
        if port.variable not in unit.variables:
            raise ConfigurationError(f"unit '{port.unit}' has no variable '{port.variable}'")
        return unit.get([port.variable])[0]

    def build(self) -> Master:
        """Check the connection graph, set every unit up and compile the step plans."""
        if self._built:
            return self
        if not self.units:
            raise ConfigurationError("the system has no units")
        check_connections(self.units, self.connections)
        if self.algorithm is Algorithm.GAUSS_SEIDEL:
            loop = algebraic_loop(self.units, self.connections)
            if loop:
                raise ConfigurationError(
                    "algebraic loop under gauss_seidel: " + ", ".join(str(c) for c in loop)
                    + " (each unit on it passes its input straight to its output: direct feed-through);"
                    " use algorithm jacobi, or break the loop with a unit that has state"
                )
        if self.network is not None:
            self.network.bind(self)
        if self.order is not None:
            missing = set(self.units) - set(self.order)
            unknown = set(self.order) - set(self.units)
            if missing or unknown:
                raise ConfigurationError(
                    f"gauss_seidel order must name every unit once: missing {sorted(missing)}, "
                    f"unknown {sorted(unknown)}"
                )
        # inputs set before the build are start values: units see them at initialisation
        for port, value in self._pending_inputs:
            unit = self._input_unit(port)
            unit.set([port.variable], [unit.variables[port.variable].type.coerce(value)])
        for unit in self.units.values():
            unit.setup(self.grid)
        self._built = True
        for port, value in self._pending_inputs:
            self.set_input(port, value)
        self._pending_inputs.clear()
        self._compile()
        if self.network is not None and self.algorithm is Algorithm.GAUSS_SEIDEL:
            # A receiver ordered before its source reads before the source's first publication
            # at tick 0; a direct connection gives it the source's initial outputs, so every
            # channel publishes them once now (as in FMI initialisation). Jacobi's tick-0 reads
            # come before every write and need no such publication.
            for ch in self.network.channels:
                ch.send(self._buf, self.tick)
        for obs in self.observers:
            obs.on_start(self)
        return self

    def _require_not_built(self, what: str) -> None:
        if self._built:
            raise ConfigurationError(f"cannot {what} after the system is built")

    def _input_unit(self, port: Port) -> Unit:
        unit = self.units.get(port.unit)
        if unit is None:
            raise ConfigurationError(f"unknown unit '{port.unit}' in '{port}'")
        var = unit.variables.get(port.variable)
        if var is None:
            raise ConfigurationError(f"unit '{port.unit}' has no variable '{port.variable}'")
        if var.causality not in (Causality.INPUT, Causality.PARAMETER):
            raise ConfigurationError(f"'{port}' is an {var.causality.value}, not an input")
        if any(c.target == port for c in self.connections):
            raise ConfigurationError(f"'{port}' is fed by a connection and cannot be set directly")
        return unit

    # Plans ---------------------------------------------------------------------------
    def _compile(self) -> None:
        """Lay out the value buffer and precompute what happens at each phase of the schedule."""
        fed: dict[Port, Port] = {c.target: c.source for c in self.connections}
        routes = self.network.routes if self.network is not None else {}
        old_buf, old_slot = self._buf, self._slot
        buf: list[Value] = []
        slot: dict[Any, int] = {}  # Port (output or manipulated input) or _Hold -> index
        block: dict[str, tuple[int, int, list[str]]] = {}
        # one contiguous block of slots per source unit, so one read fills it
        for name in self.units:
            outs = list(dict.fromkeys(c.source.variable for c in self.connections if c.source.unit == name))
            if outs:
                block[name] = (len(buf), len(outs), outs)
                for var in outs:
                    slot[Port(name, var)] = len(buf)
                    buf.append(None)  # type: ignore[arg-type]
        manip_by_input: dict[Port, list[Manipulator]] = {}
        for m in self.manipulators:
            port = self._manipulated_input(m, fed)
            manip_by_input.setdefault(port, []).append(m)
        # an unconnected but manipulated input holds its value in a slot of its own
        for port in manip_by_input:
            if port not in fed:
                slot[port] = len(buf)
                buf.append(None)  # type: ignore[arg-type]
        # a routed channel holds what it last delivered in slots of its own, one per tag;
        # before its first delivery a slot keeps the start value of the (first) input it feeds
        hold_start: dict[_Hold, Port] = {}
        channels = self.network.channels if self.network is not None else []
        for ch in channels:
            first = len(buf)
            for tag in ch.tags:
                key = _Hold(ch.target, tag)
                slot[key] = len(buf)
                hold_start[key] = Port(ch.target, ch.inputs[tag][0])
                buf.append(None)  # type: ignore[arg-type]
            ch.bind_slots([slot[Port.parse(tag)] for tag in ch.tags], first)
        # slots keep their values across a recompile; new ones start from the units
        for key, index in slot.items():
            if key in old_slot:
                buf[index] = old_buf[old_slot[key]]
            else:
                port = hold_start[key] if isinstance(key, _Hold) else key
                buf[index] = self.units[port.unit].get([port.variable])[0]
        self._buf, self._slot, self._block = buf, slot, block
        self._version += 1

        writes: dict[str, _Write] = {}
        for name, unit in self.units.items():
            inputs = [c.target.variable for c in self.connections if c.target.unit == name]
            inputs += [p.variable for p in manip_by_input if p.unit == name and p not in fed]
            if not inputs:
                continue
            ports = [Port(name, v) for v in inputs]
            indices = [slot[_Hold(name, routes[p][1])] if p in routes else slot[fed.get(p, p)] for p in ports]
            manips: list[tuple[int, Manipulator]] = []
            for pos, p in enumerate(ports):
                manips += [(pos, m) for m in manip_by_input.get(p, [])]
            writes[name] = _Write(unit, unit.writer(inputs), itemgetter(*indices), len(indices) == 1, manips)

        reads = {name: self._make_read(name) for name in block}
        for ch in channels:
            reads[ch.source].sends += (ch,)
        period = math.lcm(*self.step_ticks.values())
        order = self.order if self.order is not None else list(self.units)
        plans: dict[tuple[bool, ...], _Plan] = {}
        self._plans = []
        for phase in range(period):
            due_mask = tuple(phase % self.step_ticks[n] == 0 for n in order)
            if due_mask not in plans:
                due = [n for n, d in zip(order, due_mask, strict=True) if d]
                ops: list[tuple[list[_Read], _Write | None, Unit | None, int]] = []
                if self.algorithm is Algorithm.JACOBI:
                    # outputs of units in sync with this tick; the others stay held
                    ops.append(([reads[n] for n in due if n in reads], None, None, 0))
                    ops += [([], writes[n], None, 0) for n in due if n in writes]
                    ops += [([], None, self.units[n], self.step_ticks[n]) for n in due]
                else:
                    # each unit publishes its new outputs as soon as it has stepped
                    for n in due:
                        ops.append(([], writes.get(n), self.units[n], self.step_ticks[n]))
                        if n in reads:
                            ops.append(([reads[n]], None, None, 0))
                plans[due_mask] = _Plan(ops)
            self._plans.append(plans[due_mask])

    def _make_read(self, name: str) -> _Read:
        first, count, outs = self._block[name]
        unit = self.units[name]
        numeric = all(unit.variables[v].type is not VarType.STRING for v in outs)
        return _Read(unit.reader(outs), first, count, name, numeric)

    def _manipulated_input(self, m: Manipulator, fed: Mapping[Port, Port]) -> Port:
        text = m.target
        if "->" in text:
            src_text, _, dst_text = text.partition("->")
            src, dst = Port.parse(src_text.strip()), Port.parse(dst_text.strip())
            if fed.get(dst) != src:
                raise InvalidConnectionError(
                    f"manipulator {type(m).__name__}: there is no connection {src} -> {dst}"
                )
            if self.network is not None and m.path is None:
                m.path = self.network.route_of(src.unit, dst.unit)
            return dst
        port = Port.parse(text.strip())
        unit = self.units.get(port.unit)
        if unit is None:
            raise ConfigurationError(f"manipulator {type(m).__name__}: unknown unit '{port.unit}'")
        var = unit.variables.get(port.variable)
        if var is None or var.causality is not Causality.INPUT:
            raise ConfigurationError(
                f"manipulator {type(m).__name__}: '{port}' is not an input of unit '{port.unit}'"
            )
        return port

    # Running -------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return self.grid.time(self.tick)

    def step(self, n: int = 1) -> RunResult:
        """Advance ``n`` base steps (ticks)."""
        if not self._built:
            self.build()
        start = self.tick
        if self._stopped:
            raise SnapshotError("the run ended with a discarded step; restore a snapshot to go on")
        plans, period, buf = self._plans, len(self._plans), self._buf
        version = self._version
        observers = self.observers
        check = self.check_finite
        tick = self.tick
        net = self.network
        try:
            for _ in range(n):
                if net is not None and net.next_arrival <= tick:
                    net.deliver(tick, buf)
                for reads, write, unit, n_ticks in plans[tick % period].ops:
                    for r in reads:
                        values = r.reader()
                        if check and r.numeric and not math.isfinite(sum(values)):
                            self._raise_non_finite(r, values, tick)
                        buf[r.first:r.first + r.count] = values
                        if r.sends:
                            for ch in r.sends:
                                ch.send(buf, tick)
                    if write is not None:
                        values = write.gather(buf)
                        if write.single:
                            values = [values]
                        if write.manipulators:
                            values = list(values)
                            for pos, m in write.manipulators:
                                if m.active(tick):
                                    values[pos] = m.apply(tick, values[pos])
                        write.writer(values)
                    if unit is not None:
                        try:
                            unit.step(tick, n_ticks)
                        except CosimError:
                            raise
                        except Exception as exc:
                            raise UnitError(unit.name, f"step at t={self.grid.time(tick)!r}",
                                            f"{type(exc).__name__}: {exc}") from exc
                tick += 1
                self.tick = tick
                for obs in observers:
                    obs.after_step(tick)
                if self._version != version:  # an observer changed the manipulators
                    plans, period, buf = self._plans, len(self._plans), self._buf
                    version = self._version
        except StepDiscarded as discarded:
            self._stopped = True
            for obs in observers:
                obs.on_stop()
            return RunResult(start, self.tick, discarded)
        return RunResult(start, self.tick)

    def run(self, duration: float | None = None, until_tick: int | None = None,
            progress: Any = None) -> RunResult:
        """Run for ``duration`` seconds or up to tick ``until_tick``, then call ``on_stop``.

        Args:
            progress: optional callable ``progress(done_ticks, total_ticks)`` called about
                100 times over the run.
        """
        if not self._built:
            self.build()
        if (duration is None) == (until_tick is None):
            raise ConfigurationError("give exactly one of duration or until_tick")
        target = self.tick + self.grid.ticks(duration) if duration is not None else int(until_tick)  # type: ignore[arg-type]
        start = self.tick
        total = target - start
        chunk = max(1, total // 100) if progress is not None else max(1, total)
        try:
            while self.tick < target:
                result = self.step(min(chunk, target - self.tick))
                if progress is not None:
                    progress(self.tick - start, total)
                if not result.completed:
                    return RunResult(start, self.tick, result.discarded)
        finally:
            if not self._stopped:
                for obs in self.observers:
                    obs.on_stop()
        return RunResult(start, self.tick)

    def _raise_non_finite(self, r: _Read, values: Sequence[Value], tick: int) -> None:
        outs = self._block[r.unit][2]
        bad = [f"{o}={v!r}" for o, v in zip(outs, values, strict=True)
               if isinstance(v, float) and not math.isfinite(v)]
        raise NonFiniteValueError(r.unit, f"output at t={self.grid.time(tick)!r}",
                                  f"non-finite value: {', '.join(bad)}")

    # State ---------------------------------------------------------------------------
    def save_snapshot(self) -> Snapshot:
        """Save every unit (FMU state, PyBullet state, Python state), manipulator and observer."""
        if not self._built:
            self.build()
        units: dict[str, Any] = {}
        for name, unit in self.units.items():
            try:
                units[name] = unit.save_state()
            except CosimError:
                raise
            except Exception as exc:
                raise SnapshotError(f"unit '{name}' cannot save its state: {exc}") from exc
        return Snapshot(
            tick=self.tick,
            units=units,
            buffer=list(self._buf),
            manipulators=[(m, m.save_state()) for m in self.manipulators],
            observers=[(o, o.save_state()) for o in self.observers],
            network=self.network.save_state() if self.network is not None else None,
            slots=self._slot,
        )

    def restore_snapshot(self, snapshot: Snapshot) -> None:
        """Return the whole system to ``snapshot``; stepping on reproduces the original run."""
        if set(snapshot.units) != set(self.units):
            raise SnapshotError(
                f"snapshot units {sorted(snapshot.units)} do not match system units {sorted(self.units)}"
            )
        for name, state in snapshot.units.items():
            self.units[name].restore_state(state)
        for m, state in snapshot.manipulators:
            m.restore_state(state)
        for o, state in snapshot.observers:
            o.restore_state(state)
        if self.network is not None and snapshot.network is not None:
            self.network.restore_state(snapshot.network)
        if snapshot.slots is self._slot or (snapshot.slots is None and len(snapshot.buffer) == len(self._buf)):
            self._buf[:] = snapshot.buffer
        elif snapshot.slots is not None:
            # the plan was recompiled since (a manipulator added or removed): restore by slot
            for key, index in self._slot.items():
                old = snapshot.slots.get(key)
                if old is not None:
                    self._buf[index] = snapshot.buffer[old]
        self.tick = snapshot.tick
        self.tick_cache.clear()
        self._stopped = False

    def release_snapshot(self, snapshot: Snapshot) -> None:
        """Free the unit states held by a snapshot that will not be restored again."""
        for name, state in snapshot.units.items():
            self.units[name].release_state(state)
        snapshot.units.clear()

    def terminate(self) -> None:
        """Terminate every unit (errors from one do not stop the others)."""
        errors: list[str] = []
        for unit in self.units.values():
            try:
                unit.terminate()
            except Exception as exc:
                errors.append(f"{unit.name}: {exc}")
        if errors:
            raise UnitError("system", "terminate", "; ".join(errors))

    def __enter__(self) -> Master:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    def describe(self) -> str:
        lines = [f"master: {self.algorithm.value}, base step {self.grid.base_step} s"]
        lines += [f"  unit {n} ({type(u).__name__}) every {self.step_ticks[n]} tick(s)"
                  for n, u in self.units.items()]
        lines += [f"  {c}" for c in self.connections]
        if self.network is not None:
            lines.append(self.network.describe())
        return "\n".join(lines)

