"""The attacks of the library: communication and interface level, conduits and the twin's
synchronisation.

Each acts through the master's manipulators (on connections) or a conduit's hooks, inside
its window only, and reports its ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cosim.attacks.base import Attack, like, number, plain_value, register
from cosim.core.connection import Port
from cosim.core.manipulator import Manipulator
from cosim.core.variables import Value
from cosim.errors import ConfigurationError, CosimError
from cosim.network.message import Message

if TYPE_CHECKING:
    from cosim.core.master import Master
    from cosim.network.conduit import Conduit


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
        return like(value, self.fn(tick, value))  # a boolean or integer signal stays one

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
        where = f"attack '{name}'"
        self.mode, self.value = mode, plain_value(where, "value", value)
        self.low, self.high = number(where, "low", low), number(where, "high", high)
        if self.low > self.high:
            raise ConfigurationError(f"{where}: low must not exceed high, got {low} > {high}")
        self.factor, self.rate = number(where, "factor", factor), number(where, "rate", rate)
        self.limit = number(where, "limit", limit, minimum=0.0, finite=False)
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
            self.add_manipulator(master, ConnectionHook(link, start, end, fn))


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
        self.value, self.twin_prefix = plain_value(f"attack '{name}'", "value", value), twin_prefix

    def install(self, master: Master) -> None:
        start, end = self.ticks(master)
        value = self.value
        for link in links_from(master, self.target, exclude_prefix=[self.twin_prefix]):
            self.add_manipulator(master, ConnectionHook(link, start, end, lambda tick, v: type(v)(value)))


@register("replay")
class Replay(Attack):
    """Records a signal for ``record_s`` seconds before the attack and plays the recording
    back in a loop during it, so receivers see old, plausible values."""

    kind = "replay"
    physical = False

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 record_s: float = 5.0) -> None:
        super().__init__(name, target, start, duration, seed)
        record_s = number(f"attack '{name}'", "record_s", record_s)
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

            self.add_manipulator(master, ConnectionHook(link, rec_start, end, fn))


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
        factor = number(f"attack '{name}'", "factor", factor, positive=True)
        self.factor, self.hide, self.twin_prefix = float(factor), hide, twin_prefix

    def install(self, master: Master) -> None:
        start, end = self.ticks(master)
        factor = self.factor
        for link in links_from(master, self.target, exclude_prefix=[self.twin_prefix]):
            self.add_manipulator(master, ConnectionHook(link, start, end, lambda tick, v: v * factor))
        if self.hide:
            # the hiding starts one step later and ends one step later: the process lags the command
            for link in links_from(master, self.hide):
                self.add_manipulator(master, ConnectionHook(link, start + 1, None if end is None else end + 1,
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
        where = f"attack '{name}'"
        self.tag, self.value, self.user = str(tag), plain_value(where, "value", value), str(user)
        self.restore = None if restore is None else plain_value(where, "restore", restore)

    def install(self, master: Master) -> None:
        hmi = master.units.get(self.target)
        if hmi is None or not hasattr(hmi, "request"):
            raise ConfigurationError(f"attack '{self.name}': '{self.target}' is not an HMI/API unit of the system")
        user = self.user if self.traits.insider is None else str(self.traits.insider.get("user", "operator"))
        hmi.request(self.tag, self.value, user=user, at=self.start)
        if self.end is not None and self.restore is not None:
            hmi.request(self.tag, self.restore, user=user, at=self.end)


class ConduitAttack(Attack):
    """Base of the attacks on a conduit's frames: the target is a conduit name (needs the
    interface layer). Frames can be held back and released later, in any order, through the
    conduit's :meth:`~cosim.network.conduit.Conduit.inject` (they keep their sequence number,
    time stamp and HMAC tag)."""

    def conduit(self, master: Master) -> Conduit:
        network = getattr(master, "network", None)
        if network is None:
            raise ConfigurationError(f"attack '{self.name}': a {self.kind} attack needs the interface layer "
                                     "(network=...)")
        try:
            return network.conduit(self.target)
        except CosimError as exc:
            raise ConfigurationError(f"attack '{self.name}': {exc}") from None

    @staticmethod
    def frame_tick(master: Master, msg: Message) -> int:
        grid = master.grid
        return round((msg.timestamp - grid.start_time) / grid.base_step)

    @staticmethod
    def release(conduit: Conduit, msg: Message) -> None:
        """Put a held frame back on the conduit now, unchanged."""
        conduit.inject(msg.destination, dict(zip(msg.tags, msg.values, strict=True)), source=msg.source,
                       auth=msg.auth, seq=msg.seq, timestamp=msg.timestamp)

    def install_delay(self, master: Master, conduit: Conduit, delay_s: float) -> None:
        """Hold every frame sent inside the window for ``delay_s``, then release it in order."""
        delay_ticks = max(1, round(delay_s / master.grid.base_step))
        held: list[tuple[int, Message]] = []

        def hook(msg: Message) -> Message | None:
            tick = self.frame_tick(master, msg)
            if not self.active(master, tick):
                return msg
            held.append((tick + delay_ticks, msg))
            return None

        def release(tick: int) -> None:
            while held and held[0][0] <= tick:
                self.release(conduit, held.pop(0)[1])

        self.held = held
        self.add_hook(conduit, hook)
        self.add_timer(master, release)


@register("dos")
class DenialOfService(ConduitAttack):
    """Denial of service on a conduit (the target), inside the window:

    * ``drop``: every frame is dropped; the receivers hold stale values;
    * ``delay``: every frame is held back by ``delay_s`` (released in order afterwards);
    * ``flood``: ``frames_per_tick`` junk frames (stale sequence numbers, zero values) are put
      on the conduit every tick before the legitimate traffic, so they take the link's
      bandwidth and queue — or, on a conduit without a bandwidth model, the capacity of
      ``capacity_fps`` frames per second that the flooded device can handle (a token bucket
      through the conduit's public ``rate_limit``, in force only inside the window) — and
      legitimate frames are dropped (``dropped_queue`` / ``dropped_rate``). Receivers
      discard the junk itself (``out_of_order``).
    """

    kind = "dos"
    physical = False
    MODES = ("drop", "delay", "flood")

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 mode: str = "drop", delay_s: float = 0.5, frames_per_tick: int = 20,
                 capacity_fps: float | None = None) -> None:
        super().__init__(name, target, start, duration, seed)
        if mode not in self.MODES:
            raise ConfigurationError(f"attack '{name}': unknown dos mode '{mode}'; modes are {self.MODES}")
        where = f"attack '{name}'"
        delay_s = number(where, "delay_s", delay_s, positive=True)
        frames_per_tick = number(where, "frames_per_tick", frames_per_tick, minimum=1, integer=True)
        if capacity_fps is not None:
            capacity_fps = number(where, "capacity_fps", capacity_fps, positive=True)
        self.mode, self.delay_s, self.frames_per_tick = mode, float(delay_s), int(frames_per_tick)
        self.capacity_fps = None if capacity_fps is None else float(capacity_fps)
        self.junk_sent = 0

    def install(self, master: Master) -> None:
        conduit = self.conduit(master)
        if self.mode == "delay":
            self.install_delay(master, conduit, self.delay_s)
            return
        if self.mode == "drop":
            self.add_hook(conduit, lambda msg: None if self.active(master, self.frame_tick(master, msg)) else msg)
            return
        if conduit.config.bandwidth_bps is None and self.capacity_fps is None:
            raise ConfigurationError(
                f"attack '{self.name}': conduit '{conduit.name}' has no bandwidth limit, so a flood cannot fill "
                "it; give capacity_fps (frames/s the flooded device handles) or a bandwidth_bps to the conduit")
        if not conduit.channels:
            raise ConfigurationError(f"attack '{self.name}': conduit '{conduit.name}' carries no channel to flood")
        start, end = self.ticks(master)
        dt = master.grid.base_step

        def flood(tick: int) -> None:
            if tick == start and self.capacity_fps is not None:
                conduit.rate_limit(self.capacity_fps, burst=max(1.0, self.capacity_fps * dt))
            if end is not None and tick == end and self.capacity_fps is not None:
                conduit.rate_limit(None)
            if not self.active(master, tick):
                return
            chans = conduit.channels
            for i in range(self.frames_per_tick):
                ch = chans[(self.junk_sent + i) % len(chans)]
                junk = {tag: typ.coerce(0) for tag, typ in zip(ch.tags, ch.types, strict=True)}
                conduit.inject(ch.target, junk, source=ch.source, seq=0)
            self.junk_sent += self.frames_per_tick

        self.add_timer(master, flood)
        if self.active(master, master.tick):
            flood(master.tick)


@register("sync")
class SyncAttack(ConduitAttack):
    """Attacks the twin's synchronisation: telemetry frames on a conduit (the target, e.g.
    ``field_to_twin``) are dropped (``drop``: every ``every``-th frame), held back
    (``delay``: by ``delay_s``, then released in order) or delivered out of order
    (``reorder``: ``window`` consecutive frames of a channel are held and released newest
    first — or shuffled with ``shuffle`` — so the receiver discards the older ones,
    counted ``out_of_order``), so that twin and plant diverge."""

    kind = "sync"
    physical = False
    MODES = ("drop", "delay", "reorder")

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 mode: str = "delay", delay_s: float = 0.5, every: int = 1, window: int = 2,
                 shuffle: bool = False) -> None:
        super().__init__(name, target, start, duration, seed)
        if mode not in self.MODES:
            raise ConfigurationError(f"attack '{name}': unknown sync mode '{mode}'; modes are {self.MODES}")
        where = f"attack '{name}'"
        every = number(where, "every", every, minimum=1, integer=True)
        delay_s = number(where, "delay_s", delay_s, positive=True)
        window = number(where, "window", window, minimum=2, integer=True)
        self.mode, self.delay_s, self.every, self.window = mode, float(delay_s), int(every), int(window)
        self.shuffle = bool(shuffle)
        self.rng = np.random.default_rng(seed)
        self.count = 0
        self.pending: dict[tuple[str, str], list[Message]] = {}

    def install(self, master: Master) -> None:
        conduit = self.conduit(master)
        if self.mode == "delay":
            self.install_delay(master, conduit, self.delay_s)
            return
        if self.mode == "drop":
            def drop(msg: Message) -> Message | None:
                if not self.active(master, self.frame_tick(master, msg)):
                    return msg
                self.count += 1
                return None if self.count % self.every == 0 else msg

            self.add_hook(conduit, drop)
            return

        def reorder(msg: Message) -> Message | None:
            if not self.active(master, self.frame_tick(master, msg)):
                return msg
            batch = self.pending.setdefault((msg.source, msg.destination), [])
            batch.append(msg)
            if len(batch) >= self.window:
                order = (list(self.rng.permutation(len(batch))) if self.shuffle
                         else list(range(len(batch) - 1, -1, -1)))
                frames = [batch[i] for i in order]
                batch.clear()
                for frame in frames:
                    self.release(conduit, frame)
            return None

        def flush(tick: int) -> None:  # after the window: what is still held goes out in order
            if self.pending and not self.active(master, tick) and tick >= self.ticks(master)[0]:
                for batch in self.pending.values():
                    for frame in batch:
                        self.release(conduit, frame)
                self.pending.clear()

        self.add_hook(conduit, reorder)
        self.add_timer(master, flush)


@register("tamper")
class ParameterTampering(Attack):
    """Twin (or plant) model tampering: a tunable parameter ``unit.parameter`` (the target)
    is set to ``value`` at the start and, with a duration, put back at the end."""

    kind = "tamper"
    physical = False

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 value: float = 0.0) -> None:
        super().__init__(name, target, start, duration, seed)
        self.value = plain_value(f"attack '{name}'", "value", value)
        self.applied = False

    def install(self, master: Master) -> None:
        port = Port.parse(self.target)
        unit = master.units.get(port.unit)
        if unit is None or port.variable not in unit.variables:
            raise ConfigurationError(f"attack '{self.name}': '{self.target}' is not a variable of the system")
        original = unit.get([port.variable])[0]
        start, end = self.ticks(master)

        def write(tick: int, value: Value) -> bool:
            try:
                unit.set([port.variable], [like(original, value)])
            except CosimError as exc:  # e.g. a fixed parameter: the device refuses the write
                self.record(master.grid.time(tick), "tamper_refused", target=self.target, error=str(exc))
                return False
            return True

        def act(tick: int) -> None:
            if tick == start:
                self.applied = write(tick, self.value)
            elif end is not None and tick == end and self.applied:
                write(tick, original)

        self.add_timer(master, act)
