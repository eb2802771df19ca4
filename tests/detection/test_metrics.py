"""Metrics on hand-made arrays with known answers, including the 0/0 cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosim.detection.metrics import (
    MetricInputError,
    events,
    eventwise,
    f1_point_adjusted,
    false_alarms_per_hour,
    pointwise,
    score_run,
)
from cosim.errors import ConfigurationError


def test_pointwise_counts_and_rates():
    y_true = [0, 0, 1, 1, 1, 0, 0, 1]
    y_pred = [0, 1, 1, 0, 1, 0, 0, 0]
    m = pointwise(y_true, y_pred)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 3, 2)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert isinstance(m["tp"], int) and isinstance(m["precision"], float)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "precision", "recall", "f1"),
    [
        ([0, 0, 0], [0, 0, 0], 1.0, 1.0, 1.0),  # nothing to find, nothing claimed
        ([0, 1, 1], [0, 0, 0], 0.0, 0.0, 0.0),  # missed everything, claimed nothing
        ([0, 0, 0], [1, 0, 0], 0.0, 0.0, 0.0),  # only false alarms
        ([1, 1], [1, 1], 1.0, 1.0, 1.0),
        ([], [], 1.0, 1.0, 1.0),
    ],
)
def test_pointwise_zero_denominators_never_nan(y_true, y_pred, precision, recall, f1):
    m = pointwise(y_true, y_pred)
    assert (m["precision"], m["recall"], m["f1"]) == (precision, recall, f1)
    assert not any(isinstance(v, float) and math.isnan(v) for v in m.values())


def test_pointwise_accepts_booleans_and_rejects_bad_input():
    assert pointwise(np.array([True, False]), np.array([True, True]))["fp"] == 1
    with pytest.raises(MetricInputError, match="differ in length"):
        pointwise([0, 1], [0, 1, 1])
    with pytest.raises(ConfigurationError, match="0/1"):
        pointwise([0, 2], [0, 1])


def test_events_are_maximal_runs_with_half_open_ends():
    t = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert events(t, [0, 1, 1, 0, 1, 1]) == [(1.0, 3.0), (4.0, 6.0)]  # last run: last time + median dt
    assert events(t, [1, 0, 0, 0, 0, 0]) == [(0.0, 1.0)]
    assert events(t, [0] * 6) == []
    assert events([0.0, 0.5, 1.0, 2.0], [0, 0, 0, 1]) == [(2.0, 2.5)]  # median dt is 0.5
    with pytest.raises(MetricInputError, match="non-decreasing"):
        events([0.0, 2.0, 1.0], [0, 1, 0])


def test_eventwise_recall_and_delays():
    t = np.arange(10.0)
    y_pred = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 1])
    r = eventwise([(2.0, 5.0), (5.0, 8.0), (7.5, None)], t, y_pred)
    # event 1 detected at t=3 (delay 1), event 2 [5, 8) has no alarm, event 3 detected at 8 (delay 0.5)
    assert r["events"] == 3 and r["detected"] == 2
    assert r["event_recall"] == pytest.approx(2 / 3)
    assert r["delays"] == [1.0, 0.5]
    assert r["median_delay_s"] == pytest.approx(0.75)
    assert r["mean_delay_s"] == pytest.approx(0.75)
    # an alarm exactly at the end of an interval does not count (half-open)
    assert eventwise([(0.0, 3.0)], t, y_pred)["detected"] == 0


def test_eventwise_nothing_detected_and_no_events():
    t = np.arange(5.0)
    none = eventwise([(1.0, 3.0)], t, [0] * 5)
    assert none["event_recall"] == 0.0 and none["median_delay_s"] is None and none["mean_delay_s"] is None
    empty = eventwise([], t, [1] * 5)
    assert empty["event_recall"] == 1.0 and empty["events"] == 0 and empty["delays"] == []


def test_false_alarms_per_hour_counts_onsets_on_normal_samples():
    t = np.arange(0.0, 3600.0 * 2, 60.0)  # 2 h at 1 sample/min, 120 samples
    y_true = np.zeros(t.size, dtype=int)
    y_true[60:90] = 1  # 30 min of attack -> 90 min normal
    y_pred = np.zeros(t.size, dtype=int)
    y_pred[10:13] = 1  # one onset, lasting 3 samples: counts once
    y_pred[20] = 1  # second onset
    y_pred[59:65] = 1  # starts on a normal sample (59) -> counts
    y_pred[70:72] = 1  # starts inside the attack -> not a false alarm
    assert false_alarms_per_hour(t, y_true, y_pred) == pytest.approx(3 / 1.5)
    assert false_alarms_per_hour(t, np.ones(t.size, int), y_pred) == 0.0  # no normal time
    first = np.zeros(t.size, int)
    first[0] = 1
    assert false_alarms_per_hour(t, y_true, first) == pytest.approx(1 / 1.5)  # onset at the first sample


def test_point_adjusted_f1_is_extra_and_larger():
    y_true = [0, 1, 1, 1, 1, 0]
    y_pred = [0, 0, 0, 1, 0, 0]
    assert pointwise(y_true, y_pred)["f1"] == pytest.approx(2 * 1.0 * 0.25 / 1.25)
    assert f1_point_adjusted(y_true, y_pred) == 1.0


def test_score_run_is_flat_and_complete():
    t = np.arange(8.0) * 0.5
    y_true = [0, 0, 1, 1, 1, 0, 0, 0]
    y_pred = [1, 0, 0, 1, 1, 0, 0, 0]
    r = score_run(t, y_true, y_pred)
    for key in ("precision", "recall", "f1", "accuracy", "event_recall", "median_delay_s", "mean_delay_s",
                "false_alarms_per_hour", "tp", "fp", "tn", "fn", "f1_point_adjusted"):
        assert key in r
    assert r["events"] == 1 and r["event_recall"] == 1.0 and r["median_delay_s"] == pytest.approx(0.5)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["false_alarms_per_hour"] == pytest.approx(1 / (2.5 / 3600))
    assert all(not isinstance(v, (list, dict)) for v in r.values())
    explicit = score_run(t, y_true, y_pred, intervals=[(0.0, 0.5)])
    assert explicit["median_delay_s"] == 0.0
