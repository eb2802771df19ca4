"""The summary of one episode: production, downtime, safety, detection, containment, twin, speed.

Every episode writes ``summary.json`` with :data:`SUMMARY_KEYS` first, in this order (``None``
where a figure does not apply), then extra keys. Definitions:

- ``parts_produced``: good parts counted by the plant's production monitor
  (``models.cell.monitor.CellMonitor``); ``parts_baseline``: the same from the baseline
  episode (same seed and plant/twin/network/duration, no attack, no detector, no defence).
- ``production_loss_frac``: ``max(0, baseline - produced) / baseline``.
- ``downtime_frac``: the episode's downtime beyond the baseline's downtime (both the sum of
  the monitor's downtime intervals), ``max(0, down - down_baseline) / duration``.
- ``unsafe_events``: unsafe events counted by the monitor (collision, part dropped,
  overpressure, interlock violated).
- detection: the evaluation grid is the recorder's sample times; the label of a sample is 1
  when an attack interval of the campaign's ground truth covers it; the prediction is the OR
  over detectors of each detector's alarm held from its last scored sample (zero-order hold).
  ``f1``, ``precision``, ``recall``, ``accuracy`` and ``false_alarms_per_hour`` come from
  :func:`cosim.detection.metrics.score_run` on that grid.
- ``detected``: some detector raised an alarm inside an attack interval (its own sample
  times, not the grid); ``detection_latency_s``: first such alarm minus the start of the
  first attack interval that was detected.
- ``containment_latency_s`` and ``decision_wall_ms``: from the defence's ``summary()``.
- ``twin_deviation_rms``: from the twin synchronisation's ``summary()``.
- ``sim_time_s``, ``wall_time_s``, ``realtime_factor = sim_time_s / wall_time_s``.

Determinism: the same config and seed give the same summary, bit for bit, except the keys of
:data:`WALL_CLOCK_KEYS` (wall times, MLflow run id, audit log path and head hash), and the
same traces byte for byte, with any launcher.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SUMMARY_KEYS: tuple[str, ...] = (
    "parts_produced",
    "parts_baseline",
    "production_loss_frac",
    "downtime_frac",
    "unsafe_events",
    "detected",
    "detection_latency_s",
    "containment_latency_s",
    "decision_wall_ms",
    "f1",
    "precision",
    "recall",
    "accuracy",
    "false_alarms_per_hour",
    "twin_deviation_rms",
    "sim_time_s",
    "wall_time_s",
    "realtime_factor",
)

# Keys of ``summary.json`` (at any depth) whose values depend on the wall clock or on where
# and when the run happened, and so cannot be bit-identical between two runs of the same
# config and seed: wall times and what is computed from them (``realtime_factor``, the
# defence's decision times), the MLflow run id, the audit log's path and its head hash (every
# audit record carries its wall time, so the chain's hashes differ). Everything else is
# bit-identical for the same config and seed, whatever the launcher (basic, joblib, Ray):
# ``tests/reliability/test_determinism.py`` compares :func:`deterministic_view` of the
# summaries, and the traces byte for byte.
WALL_CLOCK_KEYS: tuple[str, ...] = (
    "wall_time_s",
    "realtime_factor",
    "decision_wall_ms",
    "decision_wall_ms_mean",
    "decision_wall_ms_max",
    "wall_ms",
    "total_wall_s",
    "mlflow_run_id",
    "audit_log",
    "audit_head",
)

Series = tuple[np.ndarray, np.ndarray, np.ndarray]


def deterministic_view(summary: Any, drop: Sequence[str] = WALL_CLOCK_KEYS) -> Any:
    """``summary`` without the :data:`WALL_CLOCK_KEYS` at any depth (what must be bit-identical
    for the same config and seed)."""
    if isinstance(summary, Mapping):
        return {k: deterministic_view(v, drop) for k, v in summary.items() if k not in drop}
    if isinstance(summary, list | tuple):
        return [deterministic_view(v, drop) for v in summary]
    return summary


def empty_summary() -> dict[str, Any]:
    """Every summary key set to ``None``, in order."""
    return dict.fromkeys(SUMMARY_KEYS)


def hold(times: Any, values: Any, grid: Any, initial: float = 0.0) -> np.ndarray:
    """Zero-order hold of ``values`` (sampled at sorted ``times``) onto ``grid``.

    Each grid time takes the last value at or before it; grid times before the first sample
    take ``initial``.
    """
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    g = np.asarray(grid, dtype=float)
    idx = np.searchsorted(t, g, side="right") - 1
    out = np.full(g.shape, float(initial))
    ok = idx >= 0
    out[ok] = v[idx[ok]]
    return out


def labels(grid: Any, intervals: Sequence[Any]) -> np.ndarray:
    """1 where an attack interval (``.start``, ``.end`` or a ``(start, end)`` pair) covers a grid time."""
    g = np.asarray(grid, dtype=float)
    y = np.zeros(g.shape, dtype=bool)
    for start, end in _pairs(intervals):
        y |= (g >= start) & (g < (math.inf if end is None else end))
    return y


def _pairs(intervals: Sequence[Any]) -> list[tuple[float, float | None]]:
    out = []
    for iv in intervals:
        if hasattr(iv, "start"):
            out.append((float(iv.start), None if iv.end is None else float(iv.end)))
        else:
            start, end = iv
            out.append((float(start), None if end is None else float(end)))
    return sorted(out, key=lambda p: p[0])


def detection_figures(grid: Any, intervals: Sequence[Any], series: Mapping[str, Series]) -> dict[str, Any]:
    """Detection figures of an episode (see the module docstring).

    Args:
        grid: evaluation times (the recorder's sample times).
        intervals: the campaign's ground-truth intervals (empty without an attack).
        series: ``{detector: (times, scores, alarms)}``; empty without detectors.

    Returns:
        ``detected``, ``detection_latency_s``, ``f1``, ``precision``, ``recall``, ``accuracy``,
        ``false_alarms_per_hour`` and the extras ``event_recall``, ``median_delay_s``, ``tp``,
        ``fp``, ``tn``, ``fn``, ``y_true`` and ``y_pred`` (arrays, for plots). All ``None``
        without detectors.
    """
    from cosim.detection.metrics import score_run

    none = {k: None for k in ("detected", "detection_latency_s", "f1", "precision", "recall", "accuracy",
                              "false_alarms_per_hour", "event_recall", "median_delay_s",
                              "tp", "fp", "tn", "fn", "y_true", "y_pred")}
    g = np.asarray(grid, dtype=float)
    if not series or g.size == 0:
        return none
    pairs = _pairs(intervals)
    y_true = labels(g, pairs)
    y_pred = np.zeros(g.shape, dtype=bool)
    alarm_times: list[np.ndarray] = []
    for times, _scores, alarms in series.values():
        t = np.asarray(times, dtype=float)
        a = np.asarray(alarms, dtype=float)
        if t.size == 0:
            continue
        y_pred |= hold(t, a, g) > 0.5
        alarm_times.append(t[a > 0.5])
    scores = score_run(g, y_true.astype(int), y_pred.astype(int), pairs)
    out = dict(none)
    out.update({k: scores.get(k) for k in ("f1", "precision", "recall", "accuracy", "false_alarms_per_hour",
                                            "event_recall", "median_delay_s", "tp", "fp", "tn", "fn")})
    out["y_true"], out["y_pred"] = y_true, y_pred
    if pairs:
        alarms_at = np.sort(np.concatenate(alarm_times)) if alarm_times else np.zeros(0)
        out["detected"] = False
        for start, end in pairs:
            inside = alarms_at[(alarms_at >= start) & (alarms_at < (math.inf if end is None else end))]
            if inside.size:
                out["detected"] = True
                out["detection_latency_s"] = float(inside[0] - start)
                break
    return out


def downtime_s(intervals: Sequence[Sequence[float]]) -> float:
    """Total length of ``[[start, end], ...]`` downtime intervals."""
    return float(sum(float(b) - float(a) for a, b in intervals))


def production_figures(monitor: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None,
                       duration: float) -> dict[str, Any]:
    """``parts_produced``, ``parts_baseline``, ``production_loss_frac``, ``downtime_frac``,
    ``unsafe_events`` from the monitor summaries of the episode and its baseline."""
    out: dict[str, Any] = {"parts_produced": None, "parts_baseline": None, "production_loss_frac": None,
                           "downtime_frac": None, "unsafe_events": None}
    if not monitor:
        return out
    out["parts_produced"] = int(monitor["parts_produced"])
    out["unsafe_events"] = int(monitor["unsafe_events"])
    if baseline:
        base = int(baseline["parts_produced"])
        out["parts_baseline"] = base
        out["production_loss_frac"] = max(0, base - out["parts_produced"]) / base if base > 0 else None
        extra = downtime_s(monitor["downtime_intervals"]) - downtime_s(baseline["downtime_intervals"])
        out["downtime_frac"] = max(0.0, extra) / duration if duration > 0 else None
    return out


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into Python ones and non-finite floats into ``None``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def ordered(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary with :data:`SUMMARY_KEYS` first (missing ones ``None``), extras after."""
    out = {k: summary.get(k) for k in SUMMARY_KEYS}
    out.update({k: v for k, v in summary.items() if k not in out})
    return out


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON to ``path`` through a temporary file and a rename (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(jsonable(data), fh, indent=2, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_summary(out_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """``summary.json`` in ``out_dir`` (keys in order, JSON-safe)."""
    return write_json_atomic(Path(out_dir) / "summary.json", ordered(summary))
