"""The attacks of the library (communication and interface level).

Each acts through the master's manipulators (on connections) or a conduit's hooks, inside
its window only, and reports its ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cosim.attacks.base import Attack, register
from cosim.core.connection import Port
from cosim.core.manipulator import Manipulator
from cosim.core.observer import Observer
from cosim.core.variables import Value
from cosim.errors import ConfigurationError

if TYPE_CHECKING:
    from cosim.core.master import Master


def links_from(master: Master, signal: str, exclude_prefix: Sequence[str] = ()) -> list[str]:
    """Every connection leaving ``signal`` (``"src -> dst"``), optionally not into some units."""
    port = Port.parse(signal)
    if port.unit not in master.units or port.variable not in master.units[port.unit].variables:
        raise ConfigurationError(f"attack target '{signal}' is not a variable of the system")
    links = [f"{c.source} -> {c.target}" for c in master.connections
             if c.source == port and not c.target.unit.startswith(tuple(exclude_prefix))]
    if not links:
        raise ConfigurationError(f"attack target '{signal}' feeds no connection: nothing to attack")
    return links


class ConnectionHook(Manipulator):
    """A manipulator on one link whose value comes from ``fn(tick, value)``: the building block
    of attacks on connections (one hook per link, state shared through the attack)."""

    def __init__(self, target: str, start: int, end: int | None, fn: Any) -> None:
        super().__init__(target, start, end)
        self.fn = fn

    def apply(self, tick: int, value: Value) -> Value:
        return self.fn(tick, value)

    def save_state(self) -> Any:
        return {k: v for k, v in self.__dict__.items() if k != "fn"}


@register("spoofing")
class MeasurementSpoofing(Attack):
    """Falsifies a sensor signal on its way to every receiver (PLC and twin see the lie; the
    physical state is untouched).

    Modes: ``constant`` (``value``), ``random`` (uniform in ``[low, high]``), ``scale``
    (``factor`` times the true value), ``ramp`` (true + ``rate`` * time since start), ``drift`` (like ramp,
    but capped at ``limit``: a slow, stealthy drift).
    """

    kind = "spoofing"
    physical = False
    MODES = ("constant", "random", "scale", "ramp", "drift")

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 mode: str = "constant", value: float = 0.0, low: float = 0.0, high: float = 1.0,
                 factor: float = 1.0, rate: float = 0.0, limit: float = float("inf")) -> None:
        super().__init__(name, target, start, duration, seed)
        if mode not in self.MODES:
            raise ConfigurationError(f"attack '{name}': unknown spoofing mode '{mode}'; modes are {self.MODES}")
        self.mode, self.value, self.low, self.high = mode, value, low, high
        self.factor, self.rate, self.limit = factor, rate, limit
        self.rng = np.random.default_rng(seed)
        self._draws: dict[int, float] = {}

    def _spoof(self, master: Master, start_tick: int) -> Any:
        dt = master.grid.base_step

        def fn(tick: int, value: Value) -> Value:
            if self.mode == "constant":
                return type(value)(self.value) if not isinstance(value, bool) else bool(self.value)
            if self.mode == "random":  # one draw per tick, the same on every link
                if tick not in self._draws:
                    self._draws = {tick: float(self.rng.uniform(self.low, self.high))}
                return self._draws[tick]
            if self.mode == "scale":
                return value * self.factor  # type: ignore[operator]
            offset = self.rate * (tick - start_tick) * dt
            if self.mode == "drift":
                offset = max(-self.limit, min(self.limit, offset))
            return value + offset  # type: ignore[operator]

        return fn

    def install(self, master: Master) -> None:
        start, end = self.ticks(master)
        fn = self._spoof(master, start)
        for link in links_from(master, self.target):
            master.add_manipulator(ConnectionHook(link, start, end, fn))


@register("injection")
class CommandInjection(Attack):
    """Forged actuator commands: the field device receives ``value`` instead of what the
    controller sent (an attacker on the command path, or posing as the controller). The twin,
    which observes the controller's own commands, is not told."""

    kind = "injection"
    physical = True

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 value: Any = True, twin_prefix: str = "twin_") -> None:
        super().__init__(name, target, start, duration, seed)
        self.value, self.twin_prefix = value, twin_prefix

    def install(self, master: Master) -> None:
        start, end = self.ticks(master)
        value = self.value
        for link in links_from(master, self.target, exclude_prefix=[self.twin_prefix]):
            master.add_manipulator(ConnectionHook(link, start, end, lambda tick, v: type(v)(value)))


@register("replay")
class Replay(Attack):
    """Records a signal for ``record_s`` seconds before the attack and plays the recording
    back in a loop during it, so receivers see old, plausible values."""

    kind = "replay"
    physical = False

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 record_s: float = 5.0) -> None:
        super().__init__(name, target, start, duration, seed)
        if not record_s > 0 or record_s > start:
            raise ConfigurationError(f"attack '{name}': record_s must be in (0, start], got {record_s}")
        self.record_s = float(record_s)
        self.tape: dict[str, list[Value]] = {}

    def install(self, master: Master) -> None:
        start, end = self.ticks(master)
        rec_start = start - round(self.record_s / master.grid.base_step)
        for link in links_from(master, self.target):
            tape = self.tape.setdefault(link, [])

            def fn(tick: int, value: Value, tape: list[Value] = tape) -> Value:
                if tick < start:
                    tape.append(value)
                    return value
                return tape[(tick - start) % len(tape)] if tape else value

            master.add_manipulator(ConnectionHook(link, rec_start, end, fn))


@register("dos")
class DenialOfService(Attack):
    """Starves a conduit's receivers by dropping every frame on it inside the window (the
    receivers hold stale values). The target is a conduit name; needs the interface layer."""

    kind = "dos"
    physical = False

    def install(self, master: Master) -> None:
        network = getattr(master, "network", None)
        if network is None:
            raise ConfigurationError(
                f"attack '{self.name}': a denial of service needs the interface layer (network=...)"
            )
        try:
            conduit = network.conduit(self.target)
        except Exception as exc:
            raise ConfigurationError(f"attack '{self.name}': {exc}") from None
        grid = master.grid

        def hook(msg: Any) -> Any:
            tick = round((msg.timestamp - grid.start_time) / grid.base_step)
            return None if self.active(master, tick) else msg

        conduit.add_hook(hook)


@register("mitm")
class ManInTheMiddle(Attack):
    """Changes a command in transit and hides the effect: the field device receives ``factor``
    times the command, while every receiver of the ``hide`` signal (controller, operator, twin)
    gets the measurement divided by ``factor`` — what it would have been, for a process that
    is linear in the command (a motor speed, a valve opening)."""

    kind = "mitm"
    physical = True

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 factor: float = 0.5, hide: str | None = None, twin_prefix: str = "twin_") -> None:
        super().__init__(name, target, start, duration, seed)
        if not factor > 0:
            raise ConfigurationError(f"attack '{name}': factor must be positive, got {factor}")
        self.factor, self.hide, self.twin_prefix = float(factor), hide, twin_prefix

    def install(self, master: Master) -> None:
        start, end = self.ticks(master)
        factor = self.factor
        for link in links_from(master, self.target, exclude_prefix=[self.twin_prefix]):
            master.add_manipulator(ConnectionHook(link, start, end, lambda tick, v: v * factor))
        if self.hide:
            # the hiding starts one step later and ends one step later: the process lags the command
            for link in links_from(master, self.hide):
                master.add_manipulator(ConnectionHook(link, start + 1, None if end is None else end + 1,
                                             lambda tick, v: v / factor))


@register("api")
class APIExploit(Attack):
    """Unauthenticated or over-privileged calls to the HMI/API: ``request`` (a tag and value)
    is sent at ``start`` as ``user`` — an unknown user, or an insider's valid credentials — and,
    with a ``duration``, ``restore`` is sent at its end. The HMI's own checks decide whether
    it is accepted (an HMI without authentication accepts everyone)."""

    kind = "api"
    physical = True

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 tag: str = "mode_cmd", value: Any = 0, user: str = "attacker", restore: Any = None) -> None:
        super().__init__(name, target, start, duration, seed)
        self.tag, self.value, self.user, self.restore = tag, value, user, restore

    def install(self, master: Master) -> None:
        hmi = master.units.get(self.target)
        if hmi is None or not hasattr(hmi, "request"):
            raise ConfigurationError(f"attack '{self.name}': '{self.target}' is not an HMI/API unit of the system")
        hmi.request(self.tag, self.value, user=self.user, at=self.start)
        if self.end is not None and self.restore is not None:
            hmi.request(self.tag, self.restore, user=self.user, at=self.end)


class _Timer(Observer):
    """Calls ``fn(tick)`` after every step (how an attack acts at its own times)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def after_step(self, tick: int) -> None:
        self.fn(tick)


@register("sync")
class SyncAttack(Attack):
    """Attacks the twin's synchronisation: telemetry frames on a conduit (the target, e.g.
    ``field_to_twin``) are dropped (``drop``: every ``every``-th frame) or held back
    (``delay``: by ``delay_s``, then released in order), so that twin and plant diverge."""

    kind = "sync"
    physical = False
    MODES = ("drop", "delay")

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 mode: str = "delay", delay_s: float = 0.5, every: int = 1) -> None:
        super().__init__(name, target, start, duration, seed)
        if mode not in self.MODES:
            raise ConfigurationError(f"attack '{name}': unknown sync mode '{mode}'; modes are {self.MODES}")
        if int(every) != every or every < 1 or not delay_s > 0:
            raise ConfigurationError(f"attack '{name}': every must be a positive integer and delay_s > 0")
        self.mode, self.delay_s, self.every = mode, float(delay_s), int(every)
        self.held: list[tuple[int, Any]] = []
        self.count = 0
        self._releasing = False

    def install(self, master: Master) -> None:
        network = getattr(master, "network", None)
        if network is None:
            raise ConfigurationError(f"attack '{self.name}': a synchronisation attack needs the interface layer")
        try:
            conduit = network.conduit(self.target)
        except Exception as exc:
            raise ConfigurationError(f"attack '{self.name}': {exc}") from None
        grid = master.grid
        delay_ticks = max(1, round(self.delay_s / grid.base_step))

        def hook(msg: Any) -> Any:
            tick = round((msg.timestamp - grid.start_time) / grid.base_step)
            if self._releasing or not self.active(master, tick):
                return msg
            if self.mode == "drop":
                self.count += 1
                return None if self.count % self.every == 0 else msg
            self.held.append((tick + delay_ticks, msg))
            return None

        def release(tick: int) -> None:
            while self.held and self.held[0][0] <= tick:
                _, msg = self.held.pop(0)
                self._releasing = True
                try:
                    conduit.inject(msg.destination, dict(zip(msg.tags, msg.values, strict=True)), source=msg.source,
                                   auth=msg.auth, seq=msg.seq, timestamp=msg.timestamp)
                finally:
                    self._releasing = False

        conduit.add_hook(hook)
        master.add_observer(_Timer(release))


@register("tamper")
class ParameterTampering(Attack):
    """Twin (or plant) model tampering: a tunable parameter ``unit.parameter`` (the target)
    is set to ``value`` at the start and, with a duration, put back at the end."""

    kind = "tamper"
    physical = False

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 value: float = 0.0) -> None:
        super().__init__(name, target, start, duration, seed)
        self.value = value

    def install(self, master: Master) -> None:
        port = Port.parse(self.target)
        unit = master.units.get(port.unit)
        if unit is None or port.variable not in unit.variables:
            raise ConfigurationError(f"attack '{self.name}': '{self.target}' is not a variable of the system")
        original = unit.get([port.variable])[0]
        start, end = self.ticks(master)

        def act(tick: int) -> None:
            if tick == start:
                unit.set([port.variable], [self.value])
            elif end is not None and tick == end:
                unit.set([port.variable], [original])

        master.add_observer(_Timer(act))
