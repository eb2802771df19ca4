"""The feeder FMU: magazine, pusher, one part per extend/retract cycle, refill, step-size independence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fmpy.fmi1 import FMICallException

from models.build import available_models, build_fmu
from tests.models.test_station_fmus import Slave

VERSIONS = ["2.0", "3.0"]
STROKE, TAU = 0.06, 0.15
# time from the retracted end (x = 0) to the release point 0.9 * stroke
T_RELEASE = TAU * math.log(1.0 / (1.0 - 0.9))  # 0.3454 s


@pytest.fixture(scope="module")
def feeder(fmu_cache) -> dict[str, Path]:
    return {v: build_fmu("feeder", v, cache_dir=fmu_cache) for v in VERSIONS}


class Run:
    """A feeder instance stepped on an integer grid t = k * h, with a command schedule."""

    def __init__(self, path: Path, tmp: Path, h: float, name: str = "feeder", **start) -> None:
        self.s = Slave(path, tmp, name=name, start_values=start)
        self.h, self.k = h, 0

    @property
    def t(self) -> float:
        return self.k * self.h

    def until(self, t_end: float, cmd: bool | None = None) -> None:
        if cmd is not None:
            self.s.set("release_cmd", cmd)
        while self.t < t_end - 1e-9:
            self.s.fmu.doStep(self.t, self.h)
            self.k += 1

    def get(self, name: str):
        return self.s.get(name)

    def close(self) -> None:
        self.s.close()


def _cycle(r: Run, extend: float = 0.7, retract: float = 0.7) -> None:
    r.until(r.t + extend, True)
    r.until(r.t + retract, False)


def test_feeder_is_registered():
    assert "feeder" in available_models()


@pytest.mark.parametrize("version", VERSIONS)
def test_one_part_per_extend_retract_cycle(feeder, tmp_path, version):
    r = Run(feeder[version], tmp_path, 0.01)
    try:
        assert r.get("parts_in_magazine") == 20 and r.get("parts_released") == 0
        assert r.get("pusher_retracted") and not r.get("pusher_extended") and not r.get("magazine_empty")
        for n in range(1, 6):
            r.until(r.t + T_RELEASE - 0.02, True)  # just before the release point: nothing yet
            assert r.get("parts_released") == n - 1
            r.until(r.t + 0.7, True)  # through the release point, then hold extended for long
            assert r.get("pusher_extended") and not r.get("pusher_retracted")
            assert r.get("parts_released") == n and r.get("parts_in_magazine") == 20 - n
            r.until(r.t + 0.7, False)
            assert r.get("pusher_retracted") and not r.get("pusher_extended")
            assert r.get("parts_released") == n  # retracting releases nothing
        # an extension aborted before the release point releases nothing but keeps the pusher armed
        r.until(r.t + 0.2, True)
        r.until(r.t + 0.7, False)
        assert r.get("parts_released") == 5
        # re-extending without retracting below 10 % of the stroke does not release again
        r.until(r.t + 0.7, True)
        assert r.get("parts_released") == 6
        r.until(r.t + 0.1, False)  # pusher still at ~0.5 * stroke
        assert r.get("pusher_position") > 0.1 * STROKE
        r.until(r.t + 0.7, True)
        assert r.get("parts_released") == 6 and r.get("parts_in_magazine") == 14
        r.until(r.t + 0.7, False)
        _cycle(r)  # properly retracted before: releases again
        assert r.get("parts_released") == 7 and r.get("parts_in_magazine") == 13
    finally:
        r.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_pusher_moves_on_the_exact_first_order_path(feeder, tmp_path, version):
    r = Run(feeder[version], tmp_path, 0.01, tau_extend=0.2, tau_retract=0.1, stroke=0.05)
    try:
        r.until(0.3, True)
        x1 = 0.05 * (1 - math.exp(-0.3 / 0.2))
        assert r.get("pusher_position") == pytest.approx(x1, abs=1e-14)
        r.until(0.45, False)
        assert r.get("pusher_position") == pytest.approx(x1 * math.exp(-0.15 / 0.1), abs=1e-14)
    finally:
        r.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_magazine_refuses(feeder, tmp_path, version):
    r = Run(feeder[version], tmp_path, 0.01, initial_parts=2)
    try:
        for _ in range(2):
            _cycle(r)
        assert r.get("parts_released") == 2 and r.get("parts_in_magazine") == 0 and r.get("magazine_empty")
        for _ in range(3):
            _cycle(r)
            assert r.get("parts_released") == 2 and r.get("parts_in_magazine") == 0
            assert r.get("magazine_empty")
    finally:
        r.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_refill_rate_is_honoured_up_to_capacity(feeder, tmp_path, version):
    r = Run(feeder[version], tmp_path, 0.01, initial_parts=0, capacity=8, refill_rate=2.0)
    try:
        assert r.get("magazine_empty")
        seen = []
        for k in range(1, 301):  # parts arrive every 0.5 s
            r.until(k * 0.01)
            seen.append(r.get("parts_in_magazine"))
        for k, parts in enumerate(seen, start=1):
            assert parts == min(math.floor(2.0 * k * 0.01 + 1e-9), 8), k * 0.01
        r.until(10.0)
        assert r.get("parts_in_magazine") == 8  # never above capacity
        assert not r.get("magazine_empty")
    finally:
        r.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_full_magazine_restarts_the_supply_at_the_release(feeder, tmp_path, version):
    r = Run(feeder[version], tmp_path, 0.01, initial_parts=5, capacity=5, refill_rate=1.0)
    try:
        r.until(1.0)
        assert r.get("parts_in_magazine") == 5
        r.until(1.7, True)  # release at 1.0 + T_RELEASE = 1.345; the supply restarts then
        assert r.get("parts_in_magazine") == 4
        r.until(2.33, False)
        assert r.get("parts_in_magazine") == 4
        r.until(2.36)  # 1.345 + 1 / refill_rate
        assert r.get("parts_in_magazine") == 5 and r.get("parts_released") == 1
    finally:
        r.close()


def test_refill_rate_is_tunable_and_keeps_progress(feeder, tmp_path):
    r = Run(feeder["2.0"], tmp_path, 0.01, initial_parts=0, refill_rate=1.0)
    try:
        r.until(1.5)
        assert r.get("parts_in_magazine") == 1  # arrived at 1.0; half-way to the next one
        r.s.set("refill_rate", 2.0)  # the remaining half part takes 0.25 s at the new rate
        r.until(1.74)
        assert r.get("parts_in_magazine") == 1
        r.until(1.76)
        assert r.get("parts_in_magazine") == 2
        r.s.set("refill_rate", 0.0)  # supply off
        r.until(5.0)
        assert r.get("parts_in_magazine") == 2
    finally:
        r.close()


# (t_start, t_end) of release_cmd = true; all on the 0.05 s grid. Includes an aborted extension
# (0.2 s < T_RELEASE), a retraction too short to re-arm (0.1 s) and strokes on an empty magazine.
SCHEDULE = [(0.1, 0.8), (1.5, 1.7), (2.4, 3.1), (3.2, 3.9), (4.6, 5.3), (6.0, 6.7), (7.4, 8.1), (8.8, 9.5)]


def _schedule_run(path: Path, tmp: Path, h: float, name: str) -> list[tuple[int, int, float]]:
    r = Run(path, tmp, h, name=name, initial_parts=2, capacity=3, refill_rate=0.35)
    out = []
    try:
        for k in range(1, 201):  # sample every 0.05 s up to 10 s
            t = k * 0.05
            r.until(t, any(a <= t - 0.05 + 1e-9 < b for a, b in SCHEDULE))
            out.append((r.get("parts_released"), r.get("parts_in_magazine"), r.get("pusher_position")))
    finally:
        r.close()
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_release_count_does_not_depend_on_the_step_size(feeder, tmp_path, version):
    fine = _schedule_run(feeder[version], tmp_path, 0.001, "fine")
    coarse = _schedule_run(feeder[version], tmp_path, 0.05, "coarse")
    assert [f[:2] for f in fine] == [c[:2] for c in coarse]
    for f, c in zip(fine, coarse, strict=True):
        assert f[2] == pytest.approx(c[2], abs=1e-12)
    # 8 commands: (1.5, 1.7) aborted, (3.2, 3.9) follows a too-short retraction, (7.4, 8.1) finds
    # the magazine empty (refill arrivals every 1/0.35 s after the supply restarts) -> 5 parts
    assert fine[-1][:2] == (5, 0)
    assert [f[1] for f in fine].count(0) > 0 and max(f[1] for f in fine) == 2


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("arrival,released", [(T_RELEASE + 0.0025, 0), (T_RELEASE - 0.0025, 1)])
def test_refill_arrival_is_ordered_against_the_release_crossing(feeder, tmp_path, version, arrival, released):
    """A part arriving in the same coarse step as the crossing counts only if it came before it."""
    for h in (0.05, 0.001):
        r = Run(feeder[version], tmp_path, h, name=f"h{h}", initial_parts=0, refill_rate=1.0 / arrival)
        try:
            r.until(0.5, True)
            assert r.get("parts_released") == released, h
            assert r.get("parts_in_magazine") == 1 - released, h
        finally:
            r.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"initial_parts": 21},
        {"capacity": -1, "initial_parts": 0},
        {"release_fraction": 1.0},
        {"release_fraction": 0.05},
        {"tau_extend": 0.0},
        {"refill_rate": -1.0},
        {"position_noise": -0.1},
    ],
)
def test_invalid_parameters_fail_initialization(feeder, tmp_path, bad):
    s = Slave(feeder["2.0"], tmp_path, initialize=False)
    try:
        with pytest.raises(FMICallException):
            s.initialize(bad)
        assert any("feeder" in m for _, _, m in s.messages)
    finally:
        s.fmu.freeInstance()
