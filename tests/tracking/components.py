"""Small detector and defence meeting the episode contracts (referenced by ``_target_`` in tests)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cosim.core.observer import Observer, PortReader
from cosim.detection.alert import Alert
from cosim.episode import EpisodeContext
from cosim.errors import ConfigurationError


class ThresholdDetector(Observer):
    """Alarm when ``signal`` is above ``threshold`` (every ``every`` ticks); raises at ``fail_at`` if set."""

    def __init__(self, signal: str, threshold: float, name: str = "threshold", every: int = 5,
                 fail_at: float | None = None) -> None:
        self.name, self.signal, self.threshold, self.every = name, signal, float(threshold), int(every)
        self.fail_at = fail_at
        self.ctx: EpisodeContext | None = None
        self.t: list[float] = []
        self.s: list[float] = []
        self.a: list[int] = []

    def attach(self, ctx: EpisodeContext) -> None:
        self.ctx = ctx

    def on_start(self, master: Any) -> None:
        self.master = master
        self.reader = PortReader(master, [self.signal], self.name)

    def after_step(self, tick: int) -> None:
        if tick % self.every:
            return
        t = self.master.grid.time(tick)
        if self.fail_at is not None and t >= self.fail_at:
            raise ConfigurationError(f"{self.name}: failing on purpose at t={t}")
        score = float(self.reader.read()[0])
        alarm = int(score > self.threshold)
        self.t.append(t)
        self.s.append(score)
        self.a.append(alarm)
        if alarm and self.ctx is not None:
            self.ctx.bus.publish(Alert(t, tick, self.name, score, self.threshold, target=self.signal,
                                       wall_time=time.perf_counter()))

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.asarray(self.t), np.asarray(self.s), np.asarray(self.a)

    def summary(self) -> dict[str, Any]:
        return {"samples": len(self.t), "alarms": int(sum(self.a))}


class FlagDefence(Observer):
    """Records the first alert as a containment action and writes an audit line."""

    def __init__(self, fail_on_attach: bool = False) -> None:
        if fail_on_attach:
            raise ConfigurationError("FlagDefence: told to fail")
        self.actions: list[dict[str, Any]] = []
        self.first_alarm: float | None = None
        self.wall_ms: list[float] = []
        self.closed = False

    def attach(self, ctx: EpisodeContext) -> None:
        self.ctx = ctx
        ctx.bus.subscribe(self.on_alert)

    def close(self) -> None:
        self.closed = True

    def on_alert(self, alert: Alert) -> None:
        if self.first_alarm is None:
            self.first_alarm = alert.time
            self.actions.append({"t": alert.time, "action": "flag", "target": alert.target})
            self.wall_ms.append((time.perf_counter() - alert.wall_time) * 1000.0)
            if self.ctx.out_dir is not None:
                (self.ctx.out_dir / "audit.jsonl").write_text(f'{{"t": {alert.time}, "action": "flag"}}\n')

    def summary(self) -> dict[str, Any]:
        return {"containment_latency_s": 0.0 if self.actions else None,
                "decision_wall_ms": float(np.mean(self.wall_ms)) if self.wall_ms else None,
                "actions": list(self.actions), "closed": self.closed}
