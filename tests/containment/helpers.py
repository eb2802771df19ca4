"""Test helpers: a detector that raises alerts at chosen times or on a residual, small systems."""

from __future__ import annotations

import time
from typing import Any

from cosim.core.observer import Observer
from cosim.detection.alert import Alert, AlertBus


class ScriptedDetector(Observer):
    """Publishes an alert at each chosen time (s): ``[(t, kind, target), ...]``."""

    name = "scripted"

    def __init__(self, bus: AlertBus, script: list[tuple[float, str, str]], score: float = 5.0) -> None:
        self.bus, self.script, self.score = bus, sorted(script), score

    def on_start(self, master: Any) -> None:
        self.master = master

    def after_step(self, tick: int) -> None:
        t = self.master.grid.time(tick)
        while self.script and self.script[0][0] <= t + 1e-9:
            _, kind, target = self.script.pop(0)
            self.bus.publish(Alert(t, tick, self.name, self.score, 1.0, target, kind, {"scripted": True},
                                   time.perf_counter()))


class ResidualDetector(Observer):
    """Alerts while what a receiver got differs from what was sent (a real check that stops
    alerting once the manipulation stops)."""

    name = "residual"

    def __init__(self, bus: AlertBus, sent: str, received: str, kind: str, target: str, tol: float = 1e-9,
                 every: int = 1) -> None:
        self.bus, self.sent, self.received, self.kind, self.target, self.tol = bus, sent, received, kind, target, tol
        self.every = every
        self.raised: list[float] = []

    def on_start(self, master: Any) -> None:
        self.master = master

    def after_step(self, tick: int) -> None:
        a, b = self.master.get(self.sent), self.master.get(self.received)
        self._recent = [*getattr(self, "_recent", [])[-5:], float(a)]
        if tick % self.every:
            return
        # the receiver holds a value sent a step or two ago: compare with the recent ones
        r = min(abs(x - float(b)) for x in self._recent)
        if r > self.tol:
            t = self.master.grid.time(tick)
            self.raised.append(t)
            self.bus.publish(Alert(t, tick, self.name, r, self.tol, self.target, self.kind,
                                   {"sent": a, "received": b}, time.perf_counter()))
