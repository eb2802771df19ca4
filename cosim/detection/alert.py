"""Alerts and the bus that carries them from detectors to the containment layer.

Detectors publish :class:`Alert` objects on an :class:`AlertBus`; the containment
orchestrator (and anything else, e.g. the episode's summary) subscribes to it. Publishing
is synchronous: a subscriber acts within the same master step in which the alert was raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Alert:
    """One detection.

    Attributes:
        time: simulated time (s) of the sample that raised it.
        tick: master tick of that sample.
        detector: name of the detector that raised it.
        score: the detector's anomaly score (higher means more anomalous).
        threshold: the threshold the score crossed.
        target: suspected target (a signal ``unit.var``, a conduit name, a unit), if known.
        kind: suspected attack class (``"injection"``, ``"spoofing"``, ``"dos"``, ...), if known.
        evidence: what made the detector decide (top residuals, feature values...).
        wall_time: ``time.perf_counter()`` when raised (decision latency is measured from it).
    """

    time: float
    tick: int
    detector: str
    score: float
    threshold: float
    target: str | None = None
    kind: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    wall_time: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = dict(self.evidence)
        return d


Subscriber = Callable[[Alert], None]


class AlertBus:
    """Carries alerts from detectors to subscribers, and keeps them all."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Subscriber:
        self._subscribers.append(fn)
        return fn

    def unsubscribe(self, fn: Subscriber) -> None:
        self._subscribers.remove(fn)

    def publish(self, alert: Alert) -> None:
        self.alerts.append(alert)
        for fn in list(self._subscribers):
            fn(alert)

    def save_state(self) -> int:
        return len(self.alerts)

    def restore_state(self, state: int) -> None:
        del self.alerts[int(state):]
