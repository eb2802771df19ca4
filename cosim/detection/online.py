"""Online detection inside the co-simulation loop.

An :class:`OnlineDetector` is an observer: every ``every_ticks`` it reads a feature vector
(:mod:`cosim.detection.features`), scores it with a fitted model loaded from a file
(:mod:`cosim.detection.models`) and, when the score crosses the model's threshold, publishes
an :class:`~cosim.detection.alert.Alert` carrying time, detector, score, suspected target and
kind, and the evidence (the features most to blame).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cosim.core.observer import Observer
from cosim.detection.alert import Alert, AlertBus
from cosim.detection.features import FeatureExtractor, FeatureSpec, RollingWindow, check_names
from cosim.detection.models import DetectionModel, StackedModel, load_model
from cosim.errors import ConfigurationError

if TYPE_CHECKING:
    from cosim.core.master import Master
    from cosim.episode import EpisodeContext

#: Suspected attack kind from the kind of network feature that raised the alarm.
NETWORK_KINDS = {"auth_failures": "injection", "malformed": "injection", "out_of_order": "sync",
                 "delivered": "dos", "age_s": "dos", "gaps": "dos", "queue_length": "dos", "bytes_sent": "dos",
                 "dropped_queue": "dos", "dropped_rate": "dos", "dropped_cut": "dos", "dropped_filter": "injection"}


def target_of(feature: str) -> tuple[str, str | None]:
    """``(target, suspected kind)`` of a feature name (``res:sig``, ``net:conduit:field``, ``unit.var``)."""
    if feature.startswith("res:"):
        return feature[4:], None
    if feature.startswith("net:"):
        _, conduit, fld = feature.split(":", 2)
        return conduit, NETWORK_KINDS.get(fld)
    return feature, None


class OnlineDetector(Observer):
    """Scores the running system and raises alerts.

    Args:
        name: the detector's name (in alerts and summaries).
        model: path of a fitted model file, or a fitted :class:`DetectionModel`.
        features: what it reads: ``{physics: [...], residuals: bool, residual_signals: [...],
            network: [...]}`` (see :class:`~cosim.detection.features.FeatureSpec`); must be the
            features the model was fitted on.
        every_ticks: sampling period in ticks.
        min_score: alerts need at least this score (default: the model's threshold).
        retrain_budget: largest relative widening of the model's normal range that
            :meth:`retrain` accepts (a guard against poisoned retraining data).
    """

    def __init__(self, name: str, model: str | Path | DetectionModel, features: Mapping[str, Any],
                 every_ticks: int = 5, min_score: float | None = None, retrain_budget: float = 0.25) -> None:
        if int(every_ticks) != every_ticks or every_ticks < 1:
            raise ConfigurationError(f"detector '{name}': every_ticks must be a positive integer, got {every_ticks!r}")
        unknown = set(features) - {"physics", "residuals", "residual_signals", "network"}
        if unknown:
            raise ConfigurationError(f"detector '{name}': unknown feature keys {sorted(unknown)}")
        self.name = name
        self.model = model if isinstance(model, DetectionModel) else load_model(model)
        self.spec = FeatureSpec(physics=list(features.get("physics") or []),
                                residuals=bool(features.get("residuals", False)),
                                residual_signals=(list(features["residual_signals"])
                                                  if features.get("residual_signals") else None),
                                network=list(features.get("network") or []))
        self.every_ticks = int(every_ticks)
        self.threshold = float(self.model.threshold if min_score is None else min_score)
        self.retrain_budget = float(retrain_budget)
        self.bus: AlertBus | None = None
        self._ctx: EpisodeContext | None = None
        self.extractor = FeatureExtractor(self.spec)
        self.times: list[float] = []
        self.scores: list[float] = []
        self.alarms: list[int] = []
        self.rows: list[np.ndarray] = []  # raw features, kept for guarded retraining
        self.wall_s = 0.0
        self.retrains: list[dict[str, Any]] = []
        self._master: Master | None = None

    # Episode protocol ------------------------------------------------------------------
    def attach(self, ctx: EpisodeContext) -> None:
        self._ctx = ctx
        self.bus = ctx.bus

    def on_start(self, master: Master) -> None:
        self._master = master
        twin = self._ctx.twin if self._ctx is not None else None
        names = self.extractor.bind(master, twin)
        check_names(self.model.names, names, f"detector '{self.name}'")
        self.model.reset()
        self.model.ready()
        self._window = RollingWindow(self.model.window)
        self._filter = self.model.alarm_filter()
        self._filter.threshold = self.threshold
        self._alarmed = False

    def after_step(self, tick: int) -> None:
        if tick % self.every_ticks:
            return
        master = self._master
        assert master is not None
        t0 = time.perf_counter()
        x = self.extractor.sample()
        z = self._window.push(x)
        score, index, kind = self.model.decide(z)
        alarm = self._filter(score)
        self.wall_s += time.perf_counter() - t0
        t = master.grid.time(tick)
        self.times.append(t)
        self.scores.append(score)
        self.alarms.append(int(alarm))
        self.rows.append(x)
        if alarm and not self._alarmed and self.bus is not None:
            self.bus.publish(self._alert(t, tick, score, index, kind, z, t0))
        self._alarmed = alarm

    def _alert(self, t: float, tick: int, score: float, index: int, kind: str | None, z: np.ndarray,
               t0: float) -> Alert:
        names = self.model.names
        d = len(names)
        if index < 0:  # a classifier: blame the feature furthest from normal
            index = self._most_unusual(z[:d])
        feature = names[index % d]
        target, net_kind = target_of(feature)
        top = np.argsort(-np.abs(z[:d]))[:3]
        return Alert(time=t, tick=tick, detector=self.name, score=score, threshold=self.threshold, target=target,
                     kind=kind or net_kind,
                     evidence={"feature": feature, "value": float(z[index % d]),
                               "top": {names[i]: float(z[i]) for i in top}},
                     wall_time=t0)

    def _most_unusual(self, x: np.ndarray) -> int:
        model = self.model
        if isinstance(model, StackedModel):
            return int(np.argmax(np.abs(model.standardise(x))))
        return int(np.argmax(np.abs(x)))

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.asarray(self.times), np.asarray(self.scores), np.asarray(self.alarms, dtype=int)

    def summary(self) -> dict[str, Any]:
        n = len(self.times)
        return {
            "samples": n,
            "alarm_samples": int(sum(self.alarms)),
            "alerts": sum(1 for a in (self.bus.alerts if self.bus else []) if a.detector == self.name),
            "wall_us_per_sample": 1e6 * self.wall_s / n if n else None,
            "threshold": self.threshold,
            "retrains": self.retrains,
        }

    # Guarded retraining ----------------------------------------------------------------
    def retrain(self, intervals: Sequence[tuple[float, float]]) -> bool:
        """Refit the model's normal range on the samples inside ``intervals`` (clean data, as
        the containment layer judged it). Refused when the new model would widen the normal
        range by more than ``retrain_budget`` (poisoned data widens it), or for supervised
        models (their labels cannot be trusted online)."""
        t = np.asarray(self.times)
        keep = np.zeros(len(t), dtype=bool)
        for start, end in intervals:
            keep |= (t >= start) & (t < end)
        record: dict[str, Any] = {"samples": int(keep.sum()), "accepted": False}
        if self.model.supervised or keep.sum() < 20:
            record["reason"] = "supervised model" if self.model.supervised else "too few clean samples"
            self.retrains.append(record)
            return False
        candidate = copy.deepcopy(self.model).fit([np.vstack(self.rows)[keep]], self.model.names)
        widening = _widening(self.model, candidate)
        record["widening"] = widening
        if widening > self.retrain_budget:
            record["reason"] = f"normal range would widen by {widening:.0%} (budget {self.retrain_budget:.0%})"
            self.retrains.append(record)
            return False
        merged = _merge(self.model, candidate)
        self.model = merged
        record["accepted"] = True
        self.retrains.append(record)
        return True

    def save_state(self) -> Any:
        return (len(self.times), self.extractor.save_state(), copy.deepcopy(self.model), self._alarmed,
                list(self._window.rows), copy.copy(self._filter))

    def restore_state(self, state: Any) -> None:
        n, ext, model, self._alarmed, rows, self._filter = state
        for seq in (self.times, self.scores, self.alarms, self.rows):
            del seq[n:]
        self.extractor.restore_state(ext)
        self.model = model
        self._window.rows = list(rows)


def _widening(old: DetectionModel, new: DetectionModel) -> float:
    """How much ``new`` widens ``old``'s normal range (0: not at all), worst feature."""
    if hasattr(old, "h"):
        return float(np.max(np.maximum(new.h - old.h, 0.0) / old.h))  # type: ignore[attr-defined]
    if hasattr(old, "hi"):
        span = old.span  # type: ignore[attr-defined]
        grow = np.maximum(new.hi - old.hi, 0.0) + np.maximum(old.lo - new.lo, 0.0)  # type: ignore[attr-defined]
        return float(np.max(grow / span))
    return float("inf")


def _merge(old: DetectionModel, new: DetectionModel) -> DetectionModel:
    """The union of two normal ranges (retraining adapts, never narrows below what was normal)."""
    merged = copy.deepcopy(old)
    if hasattr(old, "h"):
        merged.h = np.maximum(old.h, new.h)  # type: ignore[attr-defined]
        merged.k = np.maximum(old.k, new.k)  # type: ignore[attr-defined]
    elif hasattr(old, "hi"):
        merged.hi = np.maximum(old.hi, new.hi)  # type: ignore[attr-defined]
        merged.lo = np.minimum(old.lo, new.lo)  # type: ignore[attr-defined]
    return merged
