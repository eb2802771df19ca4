"""Seeded sensor noise of the C station FMUs (conveyor, press, feeder): reproducibility,
statistics, zero noise, independence from sub-stepping, and the generator in the FMU state."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fmpy.fmi1 import FMICallException

from models.build import build_fmu
from tests.models.test_station_fmus import Slave

VERSIONS = ["2.0", "3.0"]
# model -> [(measured output, true output, noise std parameter, default std)]
SENSORS = {
    "conveyor": [
        ("speed_meas", "belt_speed", "speed_noise", 0.005),
        ("current_meas", "motor_current", "current_noise", 0.02),
    ],
    "press": [
        ("pressure_meas", "pressure", "pressure_noise", 0.02),
        ("ram_position_meas", "ram_position", "position_noise", 0.0002),
    ],
    "feeder": [("pusher_position_meas", "pusher_position", "position_noise", 0.0002)],
}
CASES = [(m, v) for m in SENSORS for v in VERSIONS]


@pytest.fixture(scope="module")
def fmus(fmu_cache) -> dict[tuple[str, str], Path]:
    return {(m, v): build_fmu(m, v, cache_dir=fmu_cache) for m, v in CASES}


def _drive_input(s: Slave, model: str, k: int) -> None:
    """Time-varying inputs so that the true outputs move (k = step index)."""
    if model == "conveyor":
        s.set("motor_cmd", 0.5 + 0.45 * math.sin(0.05 * k))
    elif model == "press":
        s.set("valve_cmd", (k // 80) % 2 == 0)
    else:
        s.set("release_cmd", (k // 60) % 2 == 0)


def _run(s: Slave, model: str, n: int, h: float = 0.01, k0: int = 0) -> dict[str, np.ndarray]:
    """Step n times; return every true and measured output per communication point (incl. the first)."""
    names = [x for meas, true, _, _ in SENSORS[model] for x in (meas, true)]
    rows = [[s.get(x) for x in names]]
    for k in range(k0, k0 + n):
        _drive_input(s, model, k)
        s.fmu.doStep(s.t, h)
        s.t = (k + 1) * h
        rows.append([s.get(x) for x in names])
    a = np.array(rows)
    return {x: a[:, i] for i, x in enumerate(names)}


def _slave(fmus, tmp_path, model, version, name="inst", **start) -> Slave:
    return Slave(fmus[(model, version)], tmp_path, name=name, start_values=start)


def _trace(fmus, tmp_path, model, version, n=200, name="inst", **start) -> dict[str, np.ndarray]:
    s = _slave(fmus, tmp_path, model, version, name=name, **start)
    try:
        return _run(s, model, n)
    finally:
        s.close()


@pytest.mark.parametrize("model,version", CASES)
def test_same_seed_is_bit_identical_and_another_seed_differs(fmus, tmp_path, model, version):
    a = _trace(fmus, tmp_path, model, version, name="a", seed=7)
    b = _trace(fmus, tmp_path, model, version, name="b", seed=7)
    c = _trace(fmus, tmp_path, model, version, name="c", seed=8)
    for meas, true, _, _ in SENSORS[model]:
        np.testing.assert_array_equal(a[meas], b[meas])  # bit for bit, including t = 0
        np.testing.assert_array_equal(a[true], c[true])  # the seed never touches the true outputs
        assert np.count_nonzero(a[meas] != c[meas]) > 0.99 * len(a[meas])
        assert a[meas][0] != a[true][0]  # the initial measurement is noisy too (drawn at initialisation)


@pytest.mark.parametrize("model,version", CASES)
def test_zero_noise_measures_the_true_value_exactly(fmus, tmp_path, model, version):
    zero = {std: 0.0 for _, _, std, _ in SENSORS[model]}
    tr = _trace(fmus, tmp_path, model, version, seed=3, **zero)
    for meas, true, _, _ in SENSORS[model]:
        np.testing.assert_array_equal(tr[meas], tr[true])
        assert np.ptp(tr[true]) > 0  # the true signal moved


@pytest.mark.parametrize("model,version", CASES)
def test_noise_does_not_change_the_true_outputs(fmus, tmp_path, model, version):
    """Noise only ever enters the *_meas outputs: every other output is as without noise."""
    loud = {std: 10 * d for _, _, std, d in SENSORS[model]}
    quiet = {std: 0.0 for _, _, std, _ in SENSORS[model]}
    out = []
    for name, start in (("loud", {"seed": 123, **loud}), ("quiet", quiet)):
        s = _slave(fmus, tmp_path, model, version, name=name, **start)
        meas = {m for m, _, _, _ in SENSORS[model]}
        rows = []
        try:
            for k in range(150):
                _drive_input(s, model, k)
                s.step(0.01)
                rows.append(
                    [s.get(v.name) for v in s.md.modelVariables if v.causality == "output" and v.name not in meas]
                )
        finally:
            s.close()
        out.append(rows)
    assert out[0] == out[1]


@pytest.mark.parametrize("model,version", CASES)
def test_noise_statistics(fmus, tmp_path, model, version):
    """Over 3000 steps the noise has mean ~0, the set standard deviation (within 10 %), is
    Gaussian-looking (68 % within 1 std) and uncorrelated in time and across sensors."""
    stds = {std: 3 * d for _, _, std, d in SENSORS[model]}  # not the default: the parameter is honoured
    tr = _trace(fmus, tmp_path, model, version, n=3000, seed=11, **stds)
    residuals = []
    for meas, true, std, _ in SENSORS[model]:
        sigma = stds[std]
        e = (tr[meas] - tr[true]) / sigma
        n = len(e)
        assert abs(e.mean()) < 4 / math.sqrt(n)
        assert 0.9 < e.std() < 1.1
        assert abs(np.mean(np.abs(e) < 1.0) - 0.6827) < 0.04
        assert abs(np.corrcoef(e[:-1], e[1:])[0, 1]) < 0.08
        residuals.append(e)
    if len(residuals) == 2:
        assert abs(np.corrcoef(*residuals)[0, 1]) < 0.08


def test_noise_is_drawn_once_per_step_whatever_the_sub_stepping(fmus, tmp_path):
    """The press sub-steps its dynamics (many sub-steps for h = 0.2, few for h = 0.002): the
    k-th communication point still gets the k-th draw of the generator."""
    res = []
    for h in (0.002, 0.2):
        s = _slave(fmus, tmp_path, "press", "2.0", name=f"h{h}", seed=5)
        try:
            res.append(_run(s, "press", 100, h=h))
        finally:
            s.close()
    for meas, true, _, d in SENSORS["press"]:
        e_fine = (res[0][meas] - res[0][true]) / d
        e_coarse = (res[1][meas] - res[1][true]) / d
        assert not np.array_equal(res[0][true], res[1][true])
        np.testing.assert_allclose(e_fine, e_coarse, rtol=0, atol=1e-9)


def test_models_with_the_same_seed_draw_different_streams(fmus, tmp_path):
    conv = _trace(fmus, tmp_path, "conveyor", "2.0", n=50, seed=1)
    press = _trace(fmus, tmp_path, "press", "2.0", n=50, seed=1)
    z_conv = (conv["speed_meas"] - conv["belt_speed"]) / 0.005
    z_press = (press["pressure_meas"] - press["pressure"]) / 0.02
    assert not np.allclose(z_conv, z_press, atol=1e-6)


@pytest.mark.parametrize("model,version", CASES)
def test_fmu_state_round_trip_restores_the_generator(fmus, tmp_path, model, version):
    s = (
        _slave(fmus, tmp_path, model, version, seed=21, refill_rate=0.8)
        if model == "feeder"
        else (_slave(fmus, tmp_path, model, version, seed=21))
    )
    other = _slave(fmus, tmp_path, model, version, name="other", seed=99)  # a different seed
    try:
        _run(s, model, 37)
        t_saved = s.t
        state = s.fmu.getFMUState()
        blob = s.fmu.serializeFMUState(state)
        first = _run(s, model, 60, k0=37)

        s.fmu.setFMUState(state)
        s.t = t_saved
        again = _run(s, model, 60, k0=37)

        other_state = other.fmu.deserializeFMUState(blob)
        other.fmu.setFMUState(other_state)
        other.t = t_saved
        moved = _run(other, model, 60, k0=37)
        for meas, true, _, _ in SENSORS[model]:
            assert not np.array_equal(first[meas], first[true])
            np.testing.assert_array_equal(again[meas], first[meas])
            np.testing.assert_array_equal(moved[meas], first[meas])  # the generator travels with the state
            np.testing.assert_array_equal(moved[true], first[true])
        s.fmu.freeFMUState(state)
        other.fmu.freeFMUState(other_state)
    finally:
        s.close()
        other.close()


@pytest.mark.parametrize("model", list(SENSORS))
def test_negative_noise_is_rejected(fmus, tmp_path, model):
    s = Slave(fmus[(model, "2.0")], tmp_path, initialize=False)
    try:
        with pytest.raises(FMICallException):
            s.initialize({SENSORS[model][0][2]: -0.01})
        assert any(model in m for _, _, m in s.messages)
    finally:
        s.fmu.freeInstance()


def test_press_open_switch(fmus, tmp_path):
    s = _slave(fmus, tmp_path, "press", "3.0")
    try:
        assert s.get("open_switch") and not s.get("closed_switch")
        s.set("valve_cmd", True)
        seen = []
        for _ in range(150):
            s.step(0.01)
            x = s.get("ram_position")
            assert s.get("open_switch") == (x <= 0.002)
            seen.append(s.get("open_switch"))
        assert not seen[-1] and s.get("closed_switch")
        s.set("valve_cmd", False)
        for _ in range(200):
            s.step(0.01)
        assert s.get("open_switch") and s.get("ram_position") == 0.0
    finally:
        s.close()
