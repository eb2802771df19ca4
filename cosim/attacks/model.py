"""Model- and logic-level attacks: a logic-altering payload, model exfiltration.

Both act only through the master's manipulators and the conduits' public API:

* :class:`LogicPayload` changes what a controller's logic works with — a setpoint silently
  altered, an interlock input masked, a command that only takes effect after a delay — as
  a manipulator on the unit's *input* (resident in the unit, behind the network: what an
  implant in the PLC runtime would do) or on one connection;
* :class:`ModelExfiltration` reads the twin's models (FMU files, parameters, or exported
  state) and sends them out over a conduit: extra frames and bytes on that conduit, and a
  ``model_read`` / ``exfiltrated`` event.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from cosim.attacks.base import Attack, like, number, plain_value, register
from cosim.core.connection import Port
from cosim.core.manipulator import Manipulator
from cosim.core.variables import Causality, Value
from cosim.errors import ConfigurationError, CosimError
from cosim.network.message import HEADER_BYTES, VALUE_BYTES

if TYPE_CHECKING:
    from cosim.core.master import Master


class LogicTransform(Manipulator):
    """The transform of a :class:`LogicPayload` (its state is saved with snapshots)."""

    def __init__(self, target: str, start: int, end: int | None, mode: str, value: Any, factor: float,
                 delay_ticks: int) -> None:
        super().__init__(target, start, end)
        self.mode, self.value, self.factor, self.delay_ticks = mode, value, factor, delay_ticks
        self.on_since: int | None = None

    def apply(self, tick: int, value: Value) -> Value:
        return like(value, self._apply(tick, value))  # a boolean or integer input stays one

    def _apply(self, tick: int, value: Value) -> Value:
        mode = self.mode
        if mode in ("set", "mask"):
            return type(value)(self.value)
        if mode == "scale":
            return value * self.factor  # type: ignore[operator]
        if mode == "offset":
            return value + self.value  # type: ignore[operator]
        # on_delay: a command passes only after it has been on for delay_ticks in a row
        if not value:
            self.on_since = None
            return value
        if self.on_since is None:
            self.on_since = tick
        return value if tick - self.on_since >= self.delay_ticks else type(value)(0)


@register("logic")
class LogicPayload(Attack):
    """A logic-altering payload on a controller input (``unit.input``) or a connection
    (``src.out -> dst.in``).

    Modes: ``set`` (the input reads ``value``: a setpoint silently changed, e.g. the press
    dwell ``plc.press_time_sp``), ``scale`` (times ``factor``), ``offset`` (plus ``value``),
    ``mask`` (a boolean forced to ``value``, e.g. an interlock input held ``false``),
    ``on_delay`` (a boolean command takes effect only after it has been on for ``delay_s``:
    "the valve opens only after X"). The operator's screen shows the original setpoint; the
    process follows the altered logic.
    """

    kind = "logic"
    physical = True
    MODES = ("set", "scale", "offset", "mask", "on_delay")

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 mode: str = "set", value: Any = 0.0, factor: float = 1.0, delay_s: float = 1.0) -> None:
        super().__init__(name, target, start, duration, seed)
        if mode not in self.MODES:
            raise ConfigurationError(f"attack '{name}': unknown logic mode '{mode}'; modes are {self.MODES}")
        where = f"attack '{name}'"
        value, factor = plain_value(where, "value", value), number(where, "factor", factor)
        delay_s = number(where, "delay_s", delay_s, positive=True)
        self.mode, self.value, self.factor, self.delay_s = mode, value, factor, delay_s

    def install(self, master: Master) -> None:
        where = self.target.split("->")[-1].strip()
        port = Port.parse(where)
        unit = master.units.get(port.unit)
        var = None if unit is None else unit.variables.get(port.variable)
        if var is None or var.causality not in (Causality.INPUT, Causality.PARAMETER):
            raise ConfigurationError(f"attack '{self.name}': '{where}' is not an input of a unit of the system")
        start, end = self.ticks(master)
        delay = max(1, round(self.delay_s / master.grid.base_step))
        self.add_manipulator(master, LogicTransform(self.target, start, end, self.mode, self.value, self.factor,
                                                    delay))


@register("exfiltration")
class ModelExfiltration(Attack):
    """Steals the twin's models: at the start, reads the units named in the target
    (comma-separated, e.g. ``twin_conveyor,twin_press``) — an FMU unit's file and parameter
    values, any other unit's exported state — and sends the bytes out over ``conduit`` at
    ``rate_bps`` bytes per second inside the window.

    The frames travel on a channel of that conduit (``source`` picks it, default its first)
    like any other traffic — ``injected`` and ``bytes_sent`` rise — and carry a stale sequence
    number, so the receiver discards them (they are addressed past it). Events:
    ``model_read`` (bytes, SHA-256) and ``exfiltrated`` (when all is out) or
    ``exfiltration_cut`` (the window ended first).
    """

    kind = "exfiltration"
    physical = False

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 conduit: str = "control_to_enterprise", rate_bps: float = 50_000.0, source: str | None = None) -> None:
        super().__init__(name, target, start, duration, seed)
        rate_bps = number(f"attack '{name}'", "rate_bps", rate_bps, positive=True)
        self.conduit_name, self.rate_bps, self.source = conduit, float(rate_bps), source
        self.units = [u.strip() for u in target.split(",") if u.strip()]
        self.stolen = b""
        self.bytes_out = 0
        self.frames_out = 0

    def read_models(self, master: Master) -> bytes:
        """The bytes an attacker with read access to the twin's host gets."""
        parts: list[bytes] = []
        for name in self.units:
            unit = master.units.get(name)
            if unit is None:
                raise ConfigurationError(f"attack '{self.name}': no unit '{name}' to read a model from")
            path = getattr(unit, "path", None)
            if path is not None and hasattr(path, "read_bytes"):
                params = [v.name for v in unit.variables.values() if v.causality is Causality.PARAMETER]
                values = dict(zip(params, unit.get(params), strict=True)) if params else {}
                parts += [path.read_bytes(), json.dumps(values, sort_keys=True, default=str).encode()]
            else:
                parts.append(unit.export_state())
        return b"".join(parts)

    def install(self, master: Master) -> None:
        network = getattr(master, "network", None)
        if network is None:
            raise ConfigurationError(f"attack '{self.name}': exfiltration needs the interface layer (network=...)")
        try:
            conduit = network.conduit(self.conduit_name)
        except CosimError as exc:
            raise ConfigurationError(f"attack '{self.name}': {exc}") from None
        chans = [c for c in conduit.channels if self.source is None or c.source == self.source]
        if not chans:
            raise ConfigurationError(f"attack '{self.name}': conduit '{conduit.name}' has no channel"
                                     f"{'' if self.source is None else f' from {self.source!r}'} to send over")
        ch = chans[0]
        for name in self.units:
            if name not in master.units:
                raise ConfigurationError(f"attack '{self.name}': no unit '{name}' to read a model from")
        payload_per_frame = VALUE_BYTES * len(ch.tags)
        frame = HEADER_BYTES + payload_per_frame
        budget_per_tick = self.rate_bps * master.grid.base_step
        junk = {tag: typ.coerce(0) for tag, typ in zip(ch.tags, ch.types, strict=True)}
        start, end = self.ticks(master)
        credit = [0.0]

        def send(tick: int) -> None:
            if tick == start:
                self.stolen = self.read_models(master)
                self.record(master.grid.time(tick), "model_read", units=self.units, bytes=len(self.stolen),
                            sha256=hashlib.sha256(self.stolen).hexdigest())
            if end is not None and tick == end and self.stolen and self.bytes_out < len(self.stolen):
                self.record(master.grid.time(tick), "exfiltration_cut", bytes=self.bytes_out,
                            of=len(self.stolen))
            if not self.active(master, tick) or not self.stolen or self.bytes_out >= len(self.stolen):
                return
            credit[0] += budget_per_tick
            n = min(math.floor(credit[0] / frame), math.ceil((len(self.stolen) - self.bytes_out) / payload_per_frame))
            credit[0] -= n * frame
            for _ in range(n):
                conduit.inject(ch.target, junk, source=ch.source, seq=0)
            self.frames_out += n
            self.bytes_out = min(len(self.stolen), self.bytes_out + n * payload_per_frame)
            if self.bytes_out >= len(self.stolen):
                self.record(master.grid.time(tick), "exfiltrated", bytes=len(self.stolen), frames=self.frames_out,
                            conduit=conduit.name)

        self.add_timer(master, send)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "bytes_out": self.bytes_out, "frames_out": self.frames_out}
