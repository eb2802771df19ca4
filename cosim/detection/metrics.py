"""Detection metrics for labelled runs: point-wise, event-wise, false alarms per hour.

Pure numpy. Every function takes per-sample arrays (``times`` in seconds, ``y_true`` the
ground truth 0/1, ``y_pred`` the alarms 0/1) and never returns NaN:

- precision with no predicted positives is 1.0 when there are no true positives to find
  either (nothing to find, nothing claimed), else 0.0; recall with no true positives is
  1.0 when nothing was predicted positive, else 0.0; F1 is 0.0 when precision + recall is 0.
- event-wise delays are ``None`` when no event was detected.
- false alarms per hour is 0.0 when there is no normal time.

Two ground truths are scored side by side by ``experiments.fit`` (see ``docs/detection.md``):
*interval* labels (the attack is active) and *effect* labels (the attack is active and
changed what its victim received, :mod:`cosim.attacks.effect`); :func:`effect_intervals`
gives the events of the latter. A ``grace_s`` after an attack's end is an event-wise notion
only: an alarm that *begins* within it is counted with that attack, not as a false alarm, in
``false_alarms_per_hour_grace`` — point-wise figures never use it.

The headline figures are point-wise precision/recall/F1 and event recall with detection
delay. Point-adjusted F1 (every sample of an event counted as detected once one is) is
given only as the extra key ``f1_point_adjusted``: it inflates scores and is never a
headline. eTaPR is not provided (no maintained package on PyPI installs here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cosim.errors import ConfigurationError

Interval = tuple[float, float | None]


class MetricInputError(ConfigurationError, ValueError):
    """Arrays given to a metric do not fit (shape, length, non-binary labels, unsorted times)."""


def _binary(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise MetricInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and not np.all(np.isin(arr, (0, 1))):
        raise MetricInputError(f"{name} must hold only 0/1 (or booleans)")
    return arr.astype(bool)


def _times(times: Any, n: int) -> np.ndarray:
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or t.size != n:
        raise MetricInputError(f"times must be one-dimensional with {n} samples, got shape {t.shape}")
    if t.size > 1 and np.any(np.diff(t) < 0):
        raise MetricInputError("times must be non-decreasing")
    return t


def _check_same(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise MetricInputError(f"y_true and y_pred differ in length: {a.size} vs {b.size}")


def _ratio(num: int, den: int, empty: float) -> float:
    return float(num) / float(den) if den > 0 else empty


def pointwise(y_true: Any, y_pred: Any) -> dict[str, float | int]:
    """Sample-by-sample confusion counts and rates.

    Args:
        y_true: ground truth per sample (1 = under attack / faulty).
        y_pred: alarms per sample (1 = alarm).

    Returns:
        ``precision``, ``recall``, ``f1``, ``accuracy`` (floats) and ``tp``, ``fp``,
        ``tn``, ``fn`` (ints). Zero-denominator cases follow the module docstring;
        accuracy of an empty run is 1.0.
    """
    t = _binary(y_true, "y_true")
    p = _binary(y_pred, "y_pred")
    _check_same(t, p)
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    tn = int(np.sum(~t & ~p))
    precision = _ratio(tp, tp + fp, 1.0 if tp + fn == 0 else 0.0)
    recall = _ratio(tp, tp + fn, 1.0 if tp + fp == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    accuracy = _ratio(tp + tn, t.size, 1.0)
    return {"precision": precision, "recall": recall, "f1": float(f1), "accuracy": accuracy,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def _median_dt(t: np.ndarray) -> float:
    if t.size < 2:
        return 0.0
    return float(np.median(np.diff(t)))


def _runs(y: np.ndarray) -> list[tuple[int, int]]:
    """Index runs ``[i, j)`` of True in ``y``."""
    if y.size == 0:
        return []
    padded = np.concatenate(([False], y, [False])).astype(np.int8)
    d = np.diff(padded)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def events(times: Any, y: Any) -> list[tuple[float, float]]:
    """Maximal runs of ``y == 1`` as ``[start, end)`` intervals in time.

    ``end`` is the time of the first sample after the run, or, for a run that lasts to
    the last sample, the last time plus the median sample spacing.
    """
    yb = _binary(y, "y")
    t = _times(times, yb.size)
    tail = float(t[-1]) + _median_dt(t) if t.size else 0.0
    out: list[tuple[float, float]] = []
    for a, b in _runs(yb):
        end = float(t[b]) if b < t.size else tail
        out.append((float(t[a]), end))
    return out


def eventwise(intervals: Sequence[Interval], times: Any, y_pred: Any) -> dict[str, Any]:
    """Event recall and detection delays.

    Args:
        intervals: attack events as ``(start, end)``; ``end=None`` means "until the end of
            the run". An event is detected when at least one alarm sample lies in
            ``[start, end)``.
        times: sample times (s).
        y_pred: alarms per sample.

    Returns:
        ``event_recall`` (1.0 when there are no events), ``events``, ``detected``,
        ``delays`` (first alarm time minus start, per detected event, in event order),
        ``median_delay_s`` and ``mean_delay_s`` (``None`` when nothing was detected).
    """
    p = _binary(y_pred, "y_pred")
    t = _times(times, p.size)
    delays: list[float] = []
    for start, end in intervals:
        s = float(start)
        inside = t >= s
        if end is not None:
            inside &= t < float(end)
        hits = np.flatnonzero(inside & p)
        if hits.size:
            delays.append(float(t[hits[0]]) - s)
    n = len(intervals)
    return {
        "event_recall": _ratio(len(delays), n, 1.0),
        "events": n,
        "detected": len(delays),
        "delays": delays,
        "median_delay_s": float(np.median(delays)) if delays else None,
        "mean_delay_s": float(np.mean(delays)) if delays else None,
    }


def _sample_dt(t: np.ndarray) -> np.ndarray:
    """Duration each sample stands for: time to the next sample; the last gets the median."""
    if t.size == 0:
        return t.copy()
    return np.append(np.diff(t), _median_dt(t))


def _durations(t: np.ndarray, durations: Any) -> np.ndarray:
    if durations is None:
        return _sample_dt(t)
    d = np.asarray(durations, dtype=float)
    if d.shape != t.shape:
        raise MetricInputError(f"durations must have one value per sample ({t.size}), got shape {d.shape}")
    return d


def false_alarms_per_hour(times: Any, y_true: Any, y_pred: Any, durations: Any = None) -> float:
    """Alarm onsets that start on normal samples, per hour of normal time.

    An onset is a rising edge of ``y_pred`` (an alarm on the first sample counts as one).
    Normal time is the sum of the sample spacings of samples with ``y_true == 0`` (the last
    sample counts for the median spacing), or of ``durations`` — the time each sample stands
    for — when given (runs laid end to end with gaps between them must give it, or the gaps
    count as normal time). Returns 0.0 when there is no normal time.
    """
    hours = normal_hours(times, y_true, durations)
    return false_alarm_onsets(times, y_true, y_pred) / hours if hours > 0 else 0.0


def false_alarm_onsets(times: Any, y_true: Any, y_pred: Any, intervals: Sequence[Interval] = (),
                       grace_s: float = 0.0) -> int:
    """Alarm onsets on normal samples, leaving out those that begin within ``grace_s`` after
    the end of an interval (an alarm tail of that attack, counted with its event)."""
    tr = _binary(y_true, "y_true")
    p = _binary(y_pred, "y_pred")
    _check_same(tr, p)
    t = _times(times, p.size)
    onset = p & ~np.concatenate(([False], p[:-1])) & ~tr
    if grace_s > 0:
        for _, end in intervals:
            if end is not None:
                onset &= ~((t >= float(end)) & (t < float(end) + grace_s))
    return int(np.sum(onset))


def normal_hours(times: Any, y_true: Any, durations: Any = None) -> float:
    """Hours of normal time (sample spacings, or ``durations``, of samples with ``y_true == 0``)."""
    tr = _binary(y_true, "y_true")
    t = _times(times, tr.size)
    return float(np.sum(_durations(t, durations)[~tr])) / 3600.0


def effect_intervals(times: Any, y_effect: Any, intervals: Sequence[Interval]) -> list[tuple[float, float | None]]:
    """The events under effect labels: for each attack interval in which some sample has an
    effect, ``(time of its first such sample, the interval's end)``. Intervals without any
    effect (the attack changed nothing the victim received) are not events: there is nothing
    to detect."""
    e = _binary(y_effect, "y_effect")
    t = _times(times, e.size)
    out: list[tuple[float, float | None]] = []
    for start, end in intervals:
        inside = (t >= float(start)) & (t < (np.inf if end is None else float(end))) & e
        hits = np.flatnonzero(inside)
        if hits.size:
            out.append((float(t[hits[0]]), end))
    return out


def f1_point_adjusted(y_true: Any, y_pred: Any) -> float:
    """F1 after point adjustment: an attack run with any alarm counts as fully detected.

    Known to inflate scores (a random detector can look good); report it only beside the
    unadjusted figures, never as the headline.
    """
    tr = _binary(y_true, "y_true")
    p = _binary(y_pred, "y_pred").copy()
    _check_same(tr, p)
    for a, b in _runs(tr):
        if p[a:b].any():
            p[a:b] = True
    return float(pointwise(tr, p)["f1"])


def score_run(times: Any, y_true: Any, y_pred: Any, intervals: Sequence[Interval] | None = None,
              grace_s: float = 0.0, y_attack: Any = None, durations: Any = None) -> dict[str, Any]:
    """All metrics of one run in a flat dict.

    Args:
        times: sample times (s).
        y_true: ground truth per sample.
        y_pred: alarms per sample.
        intervals: attack events; ``None`` derives them from ``y_true`` with :func:`events`.
        grace_s: for ``false_alarms_per_hour_grace`` only (see the module documentation).
        y_attack: samples at which an attack is active, for the false alarms (an alarm onset
            where none is) and the normal time they are counted over; default ``y_true``.
            Scoring effect labels passes the interval labels here: an alarm while an attack is
            active but momentarily changes nothing is a point-wise false positive, not a false
            alarm.
        durations: time each sample stands for (see :func:`false_alarms_per_hour`).

    Returns:
        precision, recall, f1, accuracy, tp, fp, tn, fn, event_recall, events, detected,
        median_delay_s, mean_delay_s, false_alarms_per_hour (every alarm onset on a normal
        sample), false_alarms and normal_hours, false_alarms_per_hour_grace (onsets within
        ``grace_s`` after an event's end left out) with grace_s, alarm_rate, samples and the
        extra (non-headline) ``f1_point_adjusted``.
    """
    tr = _binary(y_true, "y_true")
    p = _binary(y_pred, "y_pred")
    _check_same(tr, p)
    t = _times(times, p.size)
    if intervals is None:
        intervals = events(t, tr)
    out: dict[str, Any] = dict(pointwise(tr, p))
    ev = eventwise(intervals, t, p)
    out.update({k: v for k, v in ev.items() if k != "delays"})
    ta = tr if y_attack is None else _binary(y_attack, "y_attack")
    _check_same(ta, p)
    hours = normal_hours(t, ta, durations)
    out["false_alarms"] = false_alarm_onsets(t, ta, p)
    out["false_alarms_per_hour"] = out["false_alarms"] / hours if hours > 0 else 0.0
    out["normal_hours"] = hours
    grace = false_alarm_onsets(t, ta, p, intervals, grace_s)
    out["false_alarms_per_hour_grace"] = grace / hours if hours > 0 else 0.0
    out["grace_s"] = float(grace_s)
    out["alarm_rate"] = _ratio(int(p.sum()), p.size, 0.0)
    out["samples"] = int(p.size)
    out["f1_point_adjusted"] = f1_point_adjusted(tr, p)
    return out
