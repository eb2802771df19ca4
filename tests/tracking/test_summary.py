"""Summary figures: zero-order hold, labels, detection and production figures, baseline cache."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from cosim.attacks.base import Interval
from cosim.tracking.baseline import baseline_key, cached_baseline
from cosim.tracking.summary import (
    SUMMARY_KEYS,
    detection_figures,
    hold,
    labels,
    production_figures,
    write_summary,
)


def test_hold_takes_last_value_at_or_before_each_time():
    out = hold([1.0, 2.0, 4.0], [10, 20, 40], [0.0, 1.0, 1.5, 2.0, 3.9, 4.0, 9.0], initial=-1)
    assert out.tolist() == [-1, 10, 10, 20, 20, 40, 40]


def test_labels_cover_half_open_intervals_and_open_ends():
    grid = np.arange(0.0, 10.0, 1.0)
    y = labels(grid, [Interval("a", "spoofing", "x", 2.0, 4.0, True), (7.0, None)])
    assert y.astype(int).tolist() == [0, 0, 1, 1, 0, 0, 0, 1, 1, 1]


def test_detection_figures_or_of_detectors_on_the_grid():
    grid = np.arange(0.0, 10.0, 1.0)  # attack covers 4, 5, 6
    a = (np.array([0.0, 5.0, 7.0]), np.array([0.1, 0.9, 0.1]), np.array([0, 1, 0]))  # alarm held on 5, 6
    b = (np.array([0.5, 8.5]), np.array([0.0, 1.0]), np.array([0, 1]))  # false alarm held on 9
    out = detection_figures(grid, [(4.0, 7.0)], {"a": a, "b": b})
    assert out["y_pred"].astype(int).tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 1]
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (2, 1, 1, 6)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["detected"] is True and out["detection_latency_s"] == pytest.approx(1.0)


def test_detection_figures_missed_attack_and_no_detectors():
    grid = np.arange(0.0, 5.0, 1.0)
    quiet = (grid, np.zeros(5), np.zeros(5))
    out = detection_figures(grid, [(1.0, 2.0)], {"q": quiet})
    assert out["detected"] is False and out["detection_latency_s"] is None and out["recall"] == 0.0
    assert all(v is None for v in detection_figures(grid, [(1.0, 2.0)], {}).values())
    no_attack = detection_figures(grid, [], {"q": quiet})
    assert no_attack["detected"] is None and no_attack["false_alarms_per_hour"] == 0.0


def test_production_figures_against_the_baseline():
    episode = {"parts_produced": 3, "unsafe_events": 1, "downtime_intervals": [[10.0, 40.0], [50.0, 60.0]]}
    base = {"parts_produced": 5, "unsafe_events": 0, "downtime_intervals": [[0.0, 10.0]]}
    out = production_figures(episode, base, duration=100.0)
    assert out == {"parts_produced": 3, "parts_baseline": 5, "production_loss_frac": pytest.approx(0.4),
                   "downtime_frac": pytest.approx(0.3), "unsafe_events": 1}
    better = production_figures({**episode, "parts_produced": 6, "downtime_intervals": []}, base, 100.0)
    assert better["production_loss_frac"] == 0.0 and better["downtime_frac"] == 0.0
    assert production_figures(None, base, 100.0)["parts_produced"] is None


def test_summary_json_has_the_keys_first_in_order(tmp_path):
    path = write_summary(tmp_path, {"status": "FINISHED", "f1": np.float64(0.5), "detected": np.bool_(True),
                                    "wall_time_s": float("nan")})
    data = json.loads(path.read_text())
    assert list(data)[:len(SUMMARY_KEYS)] == list(SUMMARY_KEYS)
    assert data["f1"] == 0.5 and data["detected"] is True and data["wall_time_s"] is None
    assert data["status"] == "FINISHED" and data["parts_produced"] is None


def test_baseline_cache_computes_once_under_parallel_callers(tmp_path):
    calls = []
    barrier = threading.Barrier(4)

    def compute():
        calls.append(1)
        return {"parts": 7}

    results = []

    def worker():
        barrier.wait()
        results.append(cached_baseline(tmp_path, "k", compute))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r["cached"] for r in results) == [False, True, True, True]
    assert all(r["parts"] == 7 for r in results)
    assert baseline_key({"a": 1}, 0) != baseline_key({"a": 1}, 1) != baseline_key({"a": 2}, 1)
    assert baseline_key({"a": 1, "b": 2}, 0) == baseline_key({"b": 2, "a": 1}, 0)
