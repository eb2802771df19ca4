"""Production and safety accounting of the cell, as an observer.

It reads the PLC's counters, the scene's sensors and the press's true state after every
step, and keeps: parts produced and rejected with their completion times (so cycle times),
downtime intervals (the cell not producing, or producing nothing for longer than
``stall_factor`` design cycles), and unsafe events with time stamps: arm collision, part
dropped, overpressure, interlock violated (the press ram away from open while the light
curtain sees the arm in the press zone).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cosim.core.observer import Observer, PortReader
from cosim.errors import ConfigurationError

if TYPE_CHECKING:
    from cosim.core.master import Master

DEFAULT_SIGNALS = {
    "good": "plc.parts_good",
    "rejected": "plc.parts_rejected",
    "producing": "plc.producing",
    "collisions": "cell.arm_collisions",
    "dropped": "cell.parts_dropped",
    "arm_in_press_zone": "cell.press_zone_occupied",
    "overpressure": "press.overpressure",
    "ram_position": "press.ram_position",
}
_ROLES = tuple(DEFAULT_SIGNALS)
# positions of the roles in a reading
_GOOD, _REJECTED, _PRODUCING, _COLLISIONS, _DROPPED, _IN_ZONE, _OVERPRESSURE, _RAM = range(len(_ROLES))


class CellMonitor(Observer):
    """Counts production, cycle times, downtime and unsafe events.

    Args:
        design_cycle_s: the designed cycle time (s) of one part.
        stall_factor: producing nothing for longer than this many design cycles counts as
            downtime (from the last completion, or from the start).
        ram_open_tolerance: ram travel (m) still counted as open.
        signals: ``{role: "unit.variable"}`` overrides of :data:`DEFAULT_SIGNALS`.
    """

    def __init__(self, design_cycle_s: float, stall_factor: float = 2.0, ram_open_tolerance: float = 0.005,
                 signals: Mapping[str, str] | None = None) -> None:
        if not design_cycle_s > 0:
            raise ConfigurationError(f"monitor: design_cycle_s must be positive, got {design_cycle_s}")
        self.design_cycle_s = float(design_cycle_s)
        self.stall_factor = float(stall_factor)
        self.ram_open_tolerance = float(ram_open_tolerance)
        self.signals = {**DEFAULT_SIGNALS, **dict(signals or {})}
        unknown = set(self.signals) - set(DEFAULT_SIGNALS)
        if unknown:
            raise ConfigurationError(f"monitor: unknown signal roles {sorted(unknown)}")
        self._master: Master | None = None
        self._reader: PortReader | None = None
        self._time: Callable[[int], float] | None = None  # the master's grid.time
        self._reset()

    def _reset(self) -> None:
        self.completions: list[tuple[float, str]] = []  # (time, "good" | "rejected")
        self.events: list[dict[str, Any]] = []
        self.downtime: list[list[float]] = []  # [start, end]; end grows while it lasts
        self._last: list[Any] = []  # the last reading, in the order of _ROLES
        self.last_completion = 0.0
        self.down_since: float | None = None
        self.t = 0.0

    def on_start(self, master: Master) -> None:
        self._master = master
        self._time = master.grid.time
        ports = [self.signals[r] for r in _ROLES]
        self._reader = PortReader(master, ports, "monitor")
        # what it reads changes only when one of its units steps: look only then
        self._every = math.gcd(*(master.step_ticks.get(p.split(".", 1)[0], 1) for p in ports))
        self._reset()
        self.t0 = master.time
        self.last_completion = master.time
        self._last = self._read()

    @property
    def last(self) -> dict[str, Any]:
        """The last reading, ``{role: value}``."""
        return dict(zip(_ROLES, self._last, strict=True)) if self._last else {}

    def _read(self) -> list[Any]:
        assert self._reader is not None
        return self._reader.read()

    def after_step(self, tick: int) -> None:
        assert self._time is not None
        t = self._time(tick)
        if tick % self._every:
            if self.down_since is not None:
                self.downtime[-1][1] = t
            self.t = t
            return
        now = self._read()
        if now != self._last:  # equal readings complete nothing and start no event
            self._count(t, now, self._last)
        stalled = t - self.last_completion > self.stall_factor * self.design_cycle_s
        down = (not now[_PRODUCING]) or stalled
        if down and self.down_since is None:
            start = t if not stalled or not now[_PRODUCING] else self.last_completion
            self.down_since = start
            self.downtime.append([start, t])
        elif down:
            self.downtime[-1][1] = t
        elif self.down_since is not None:
            self.downtime[-1][1] = t
            self.down_since = None
        self._last = now
        self.t = t

    def _count(self, t: float, now: list[Any], last: list[Any]) -> None:
        """Completions and unsafe events between two readings."""
        for kind, i in (("good", _GOOD), ("rejected", _REJECTED)):
            for _ in range(max(0, now[i] - last[i])):
                self.completions.append((t, kind))
                self.last_completion = t
        if now[_COLLISIONS] > last[_COLLISIONS]:
            self._event(t, "arm_collision", f"arm touched a station ({now[_COLLISIONS]} so far)")
        if now[_DROPPED] > last[_DROPPED]:
            self._event(t, "part_dropped", f"{now[_DROPPED] - last[_DROPPED]} part(s) dropped")
        if now[_OVERPRESSURE] and not last[_OVERPRESSURE]:
            self._event(t, "overpressure", "press relief valve acted")
        violated = now[_IN_ZONE] and now[_RAM] > self.ram_open_tolerance
        was = last[_IN_ZONE] and last[_RAM] > self.ram_open_tolerance
        if violated and not was:
            self._event(t, "interlock_violated",
                        f"ram at {now[_RAM] * 1000:.1f} mm with the arm in the press zone")

    def _event(self, t: float, kind: str, detail: str) -> None:
        self.events.append({"t": t, "kind": kind, "detail": detail})

    def save_state(self) -> Any:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in ("_master", "_reader", "_time")})

    def restore_state(self, state: Any) -> None:
        self.__dict__.update(copy.deepcopy(state))

    # results --------------------------------------------------------------------------
    @property
    def unsafe_events(self) -> list[dict[str, Any]]:
        return list(self.events)

    def summary(self) -> dict[str, Any]:
        """Production and safety figures over the run so far."""
        done = [t for t, _ in self.completions]
        cycles = [b - a for a, b in itertools.pairwise(done)]
        good = sum(1 for _, k in self.completions if k == "good")
        rejected = len(self.completions) - good
        elapsed = self.t - getattr(self, "t0", 0.0)
        downtime_s = sum(end - start for start, end in self.downtime)
        by_kind: dict[str, int] = {}
        for e in self.events:
            by_kind[e["kind"]] = by_kind.get(e["kind"], 0) + 1
        return {
            "parts_produced": good,
            "parts_rejected": rejected,
            "parts_completed": len(self.completions),
            "cycle_time_mean_s": sum(cycles) / len(cycles) if cycles else None,
            "cycle_time_max_s": max(cycles) if cycles else None,
            "first_part_s": done[0] - getattr(self, "t0", 0.0) if done else None,
            "throughput_per_h": 3600.0 * len(self.completions) / elapsed if elapsed > 0 else 0.0,
            "downtime_s": downtime_s,
            "downtime_frac": downtime_s / elapsed if elapsed > 0 else 0.0,
            "downtime_intervals": [list(d) for d in self.downtime],
            "unsafe_events": len(self.events),
            "unsafe_by_kind": by_kind,
            "sim_time_s": elapsed,
        }


