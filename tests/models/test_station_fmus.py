"""Station FMUs built from this repo's sources: builder, cache, FMI behaviour, physics."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import fmpy
import numpy as np
import pytest
from fmpy import extract, read_model_description, simulate_fmu
from fmpy.fmi1 import FMICallException
from fmpy.fmi2 import (
    FMU2Slave,
    defaultCallbacks,
    fmi2CallbackFunctions,
    fmi2CallbackLoggerTYPE,
    fmi2LastSuccessfulTime,
    fmi2Terminated,
)
from fmpy.fmi3 import FMU3Slave
from fmpy.validation import validate_fmu

from cosim.errors import ConfigurationError, CosimError
from models import build as builder
from models.build import FMUBuildError, available_models, build, build_fmu, platform_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
C_MODELS = ["conveyor", "feeder", "integrator", "press"]
ALL_BUILDS = [(m, v) for m in C_MODELS for v in ("2.0", "3.0")] + [("inspection", "2.0")]


# --------------------------------------------------------------------------- helpers


class Slave:
    """Uniform access to an FMI 2.0 / 3.0 co-simulation instance through fmpy."""

    def __init__(
        self,
        path: Path,
        unzip_root: Path,
        name: str = "inst",
        start_values: dict | None = None,
        start_time: float = 0.0,
        initialize: bool = True,
    ) -> None:
        self.md = read_model_description(path)
        self.fmi3 = self.md.fmiVersion.startswith("3")
        self.vars = {v.name: v for v in self.md.modelVariables}
        unzip_dir = unzip_root / f"{path.stem}-{name}"
        if not unzip_dir.exists():
            extract(path, unzipdir=unzip_dir)
        self.messages: list[tuple[int, str, str]] = []
        kwargs = dict(
            guid=self.md.guid,
            unzipDirectory=str(unzip_dir),
            modelIdentifier=self.md.coSimulation.modelIdentifier,
            instanceName=name,
        )
        if self.fmi3:
            self.fmu = FMU3Slave(**kwargs)
            self.fmu.instantiate(logMessage=self._log3)
        else:
            self.fmu = FMU2Slave(**kwargs)
            cb = fmi2CallbackFunctions()
            cb.logger = fmi2CallbackLoggerTYPE(self._log2)
            cb.allocateMemory = defaultCallbacks.allocateMemory
            cb.freeMemory = defaultCallbacks.freeMemory
            self._callbacks = cb
            self.fmu.instantiate(callbacks=cb)
        if initialize:
            self.initialize(start_values or {}, start_time)
        self.t = start_time

    def _log2(self, env, instance_name, status, category, message):
        self.messages.append((status, (category or b"").decode(), (message or b"").decode()))

    def _log3(self, env, status, category, message):
        self.messages.append((status, (category or b"").decode(), (message or b"").decode()))

    def initialize(self, start_values: dict, start_time: float = 0.0) -> None:
        if self.fmi3:
            for k, v in start_values.items():
                self.set(k, v)
            self.fmu.enterInitializationMode(startTime=start_time)
        else:
            self.fmu.setupExperiment(startTime=start_time)
            for k, v in start_values.items():
                self.set(k, v)
            self.fmu.enterInitializationMode()
        self.fmu.exitInitializationMode()

    def _kind(self, name: str) -> str:
        return {"Float64": "Real", "Int32": "Integer"}.get(self.vars[name].type, self.vars[name].type)

    def set(self, name: str, value) -> None:
        vr, kind = [self.vars[name].valueReference], self._kind(name)
        if kind == "Real":
            (self.fmu.setFloat64 if self.fmi3 else self.fmu.setReal)(vr, [float(value)])
        elif kind == "Integer":
            (self.fmu.setInt32 if self.fmi3 else self.fmu.setInteger)(vr, [int(value)])
        else:
            self.fmu.setBoolean(vr, [bool(value)])

    def get(self, name: str):
        vr, kind = [self.vars[name].valueReference], self._kind(name)
        if kind == "Real":
            return (self.fmu.getFloat64 if self.fmi3 else self.fmu.getReal)(vr)[0]
        if kind == "Integer":
            return (self.fmu.getInt32 if self.fmi3 else self.fmu.getInteger)(vr)[0]
        return bool(self.fmu.getBoolean(vr)[0])

    def step(self, h: float) -> None:
        self.fmu.doStep(self.t, h)
        self.t += h

    def outputs(self) -> tuple:
        return tuple(self.get(v.name) for v in self.md.modelVariables if v.causality == "output")

    def close(self) -> None:
        with contextlib.suppress(FMICallException):  # e.g. after an injected error
            self.fmu.terminate()
        self.fmu.freeInstance()


@pytest.fixture(scope="module")
def fmus(fmu_cache):
    """Build every model once for this module: {(model, version): path}."""
    return {(m, v): build_fmu(m, v, cache_dir=fmu_cache) for m, v in ALL_BUILDS}


@pytest.fixture
def copied_sources(tmp_path) -> Path:
    """A private copy of the model sources, to be modified by a test."""
    root = tmp_path / "src"
    shutil.copytree(
        REPO_ROOT / "models" / "fmus", root / "fmus", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        REPO_ROOT / "models" / "stations", root / "stations", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root


# --------------------------------------------------------------------------- packaging


def test_available_models():
    assert set(available_models()) >= {"conveyor", "feeder", "press", "integrator", "inspection"}


@pytest.mark.parametrize("model,version", ALL_BUILDS)
def test_fmu_archive_and_model_description(fmus, model, version):
    path = fmus[(model, version)]
    md = read_model_description(path, validate=True)  # XML schema validation
    assert md.fmiVersion == version
    assert md.coSimulation is not None and md.coSimulation.modelIdentifier == model
    assert md.coSimulation.canGetAndSetFMUstate
    ext = ".so" if sys.platform.startswith("linux") else (".dylib" if sys.platform == "darwin" else ".dll")
    names = zipfile.ZipFile(path).namelist()
    assert "modelDescription.xml" in names
    assert f"binaries/{platform_dir(version)}/{model}{ext}" in names
    # the same platform names fmpy looks for on this host
    assert platform_dir("2.0") == fmpy.platform and platform_dir("3.0") == fmpy.platform_tuple
    found = fmpy.supported_platforms(str(path))
    assert fmpy.platform in found or fmpy.platform_tuple in found
    problems = validate_fmu(str(path))
    if model == "inspection":
        # pythonfmu 0.7.0 omits ModelStructure/InitialUnknowns; nothing else is wrong.
        assert all("InitialUnknowns" in p for p in problems), problems
    else:
        assert problems == []
        outputs = [v for v in md.modelVariables if v.causality == "output"]
        assert [o.variable for o in md.outputs] == outputs
        assert md.coSimulation.canSerializeFMUstate


def test_variable_tables_match_specs(fmus):
    for model in C_MODELS:
        spec = builder.load_spec(model)
        for version in ("2.0", "3.0"):
            md = read_model_description(fmus[(model, version)])
            got = [(v.name, v.valueReference, v.causality, v.variability) for v in md.modelVariables]
            want = [(v["name"], v["vr"], v["causality"], v["variability"]) for v in spec["variables"]]
            assert got == want
        # one instantiation token per model sources, shared by both FMI versions
        assert (
            read_model_description(fmus[(model, "2.0")]).guid
            == read_model_description(fmus[(model, "3.0")]).guid
        )


# --------------------------------------------------------------------------- physics


def _conveyor_exact(t, u, gain, tau, v0=0.0, x0=0.0):
    a = np.exp(-t / tau)
    vss = gain * u
    return vss + (v0 - vss) * a, x0 + vss * t + (v0 - vss) * tau * (1 - a)


@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_conveyor_step_response_is_exact(fmus, version):
    gain, tau, u = 0.7, 0.3, 0.8
    inp = np.array([(0.0, u)], dtype=[("time", float), ("motor_cmd", float)])
    res = simulate_fmu(
        fmus[("conveyor", version)],
        stop_time=3.0,
        output_interval=0.01,
        input=inp,
        start_values={"gain": gain, "tau": tau},
        output=["belt_speed", "belt_position", "encoder_count", "motor_current"],
    )
    v, x = _conveyor_exact(res["time"], u, gain, tau)
    np.testing.assert_allclose(res["belt_speed"], v, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res["belt_position"], x, rtol=0, atol=1e-9)
    # encoder = floor(x * 1000 counts/m); allow for a count flipping exactly at a boundary
    assert np.all(np.abs(res["encoder_count"] - np.floor(x * 1000.0)) <= 1)
    # current: stall*u at standstill, rated*u in steady state
    assert res["motor_current"][0] == pytest.approx(6.0 * u)
    assert res["motor_current"][-1] == pytest.approx(1.2 * u, rel=1e-3)


def test_conveyor_any_step_size_and_command_change(fmus, tmp_path):
    """Irregular steps (tiny to huge) and a command change agree with the piecewise closed form."""
    s = Slave(fmus[("conveyor", "2.0")], tmp_path)
    try:
        s.set("motor_cmd", 1.0)
        steps = [1e-9, 0.013, 0.2, 0.7, 1e-6, 0.0867]
        for h in steps:
            s.step(h)
        t1 = s.t
        v1, x1 = _conveyor_exact(t1, 1.0, 0.5, 0.25)
        assert s.get("belt_speed") == pytest.approx(v1, abs=1e-12)
        assert s.get("belt_position") == pytest.approx(x1, abs=1e-12)
        s.set("motor_cmd", 0.3)
        s.step(0.4)
        v2, x2 = _conveyor_exact(0.4, 0.3, 0.5, 0.25, v0=v1, x0=x1)
        assert s.get("belt_speed") == pytest.approx(v2, abs=1e-12)
        assert s.get("belt_position") == pytest.approx(x2, abs=1e-12)
        s.step(1000.0)  # one huge step: reaches steady state exactly
        assert s.get("belt_speed") == pytest.approx(0.15, abs=1e-12)
        assert s.get("belt_phase") == pytest.approx(math.fmod(s.get("belt_position"), 4.0), abs=1e-9)
        s.set("motor_cmd", 7.0)  # out of range: the drive saturates at 1
        s.step(1000.0)
        assert s.get("belt_speed") == pytest.approx(0.5, abs=1e-12)
    finally:
        s.close()


@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_integrator_is_exact(fmus, version):
    # a step in u at t = 0.5 (repeated time = discontinuity; fmpy interpolates otherwise)
    inp = np.array([(0.0, 2.0), (0.5, 2.0), (0.5, -1.0), (1.0, -1.0)], dtype=[("time", float), ("u", float)])
    res = simulate_fmu(
        fmus[("integrator", version)],
        stop_time=1.0,
        output_interval=0.1,
        input=inp,
        start_values={"k": 3.0, "y0": 1.0},
        output=["y"],
    )
    t = res["time"]
    expected = np.where(t <= 0.5 + 1e-12, 1.0 + 6.0 * t, 1.0 + 3.0 - 3.0 * (t - 0.5))
    np.testing.assert_allclose(res["y"], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_press_closes_under_command_and_opens_after_venting(fmus, version):
    inp = np.array([(0.0, True), (1.5, False)], dtype=[("time", float), ("valve_cmd", np.bool_)])
    res = simulate_fmu(
        fmus[("press", version)],
        stop_time=3.0,
        output_interval=0.01,
        input=inp,
        output=["pressure", "ram_position", "closed_switch", "overpressure"],
    )
    t = res["time"]
    filling = t <= 1.5 + 1e-9
    # the pressure follows the exact exponential fill / vent
    p_fill = 6.0 * (1 - np.exp(-t / 0.3))
    p15 = 6.0 * (1 - math.exp(-1.5 / 0.3))
    p_vent = p15 * np.exp(-(t - 1.5) / 0.2)
    np.testing.assert_allclose(res["pressure"], np.where(filling, p_fill, p_vent), rtol=0, atol=1e-9)
    closed = res["closed_switch"]
    assert not closed[0]
    t_close = t[np.argmax(closed)]
    assert 0.2 < t_close < 0.5  # needs > 3 bar (spring) and the ram travel time
    assert np.all(closed[(t >= t_close) & filling])
    assert res["ram_position"][np.searchsorted(t, 1.4)] == pytest.approx(0.1)
    assert np.all(res["ram_position"] >= 0.0) and np.all(res["ram_position"] <= 0.1)
    assert not closed[-1] and res["ram_position"][-1] == 0.0  # vented: open again
    assert not res["overpressure"].any()


def test_press_relief_valve_and_overpressure_flag(fmus, tmp_path):
    s = Slave(fmus[("press", "2.0")], tmp_path, start_values={"supply_pressure": 10.0})
    try:
        s.set("valve_cmd", True)
        for _ in range(300):
            s.step(0.01)
        assert s.get("pressure") == 8.0  # capped at relief_pressure
        assert s.get("overpressure") and s.get("closed_switch")
        s.set("supply_pressure", 6.0)  # tunable: the regulator is turned down at run time
        for _ in range(300):
            s.step(0.01)
        assert not s.get("overpressure")
        s.step(1e6)  # a single huge step settles exactly
        assert s.get("pressure") == pytest.approx(6.0, abs=1e-9)
        s.set("valve_cmd", False)
        s.step(1e6)
        assert s.get("pressure") == pytest.approx(0.0, abs=1e-9)
        assert s.get("ram_position") == 0.0 and not s.get("closed_switch")
    finally:
        s.close()


def test_inspection_station_runs_under_fmpy(fmus):
    inp = np.array(
        [(0.0, False, 0.9), (0.5, True, 0.9), (1.0, False, 0.5), (1.5, True, 0.5), (2.0, False, 0.5)],
        dtype=[("time", float), ("part_present", np.bool_), ("part_quality", float)],
    )
    res = simulate_fmu(
        fmus[("inspection", "2.0")],
        stop_time=2.5,
        output_interval=0.05,
        input=inp,
        start_values={"noise_std": 0.01, "seed": 7},
    )
    t = res["time"]

    def at(x):
        return res[np.searchsorted(t, x - 1e-9)]

    assert at(0.4)["inspections_done"] == 0 and not at(0.4)["pass_signal"]
    good = at(0.9)
    assert good["inspections_done"] == 1 and good["pass_signal"] and not good["reject_signal"]
    assert abs(good["measured_quality"] - 0.9) < 0.05
    assert not at(1.2)["pass_signal"] and not at(1.2)["reject_signal"]  # part left
    bad = at(1.9)
    assert bad["inspections_done"] == 2 and bad["reject_signal"] and not bad["pass_signal"]
    # reproducible: same seed, same measurements
    again = simulate_fmu(
        fmus[("inspection", "2.0")],
        stop_time=2.5,
        output_interval=0.05,
        input=inp,
        start_values={"noise_std": 0.01, "seed": 7},
    )
    np.testing.assert_array_equal(res["measured_quality"], again["measured_quality"])


# --------------------------------------------------------------------------- FMU state


def _drive(s: Slave, model: str, n: int) -> list[tuple]:
    """Step with model-specific time-varying inputs; return the outputs after each step."""
    out = []
    for _ in range(n):
        k = round(s.t / 0.05)
        if model == "conveyor":
            s.set("motor_cmd", 0.5 + 0.4 * math.sin(0.3 * k))
        elif model == "press":
            s.set("valve_cmd", (k // 20) % 2 == 0)
        elif model == "integrator":
            s.set("u", math.cos(0.2 * k))
        elif model == "feeder":
            s.set("release_cmd", (k // 12) % 2 == 0)
        else:
            s.set("part_present", (k // 5) % 2 == 1)
            s.set("part_quality", 0.6 + 0.3 * math.sin(k))
        s.step(0.05)
        out.append(s.outputs())
    return out


@pytest.mark.parametrize("model,version", ALL_BUILDS)
def test_fmu_state_round_trip_is_bit_identical(fmus, tmp_path, model, version):
    s = Slave(fmus[(model, version)], tmp_path)
    other = Slave(fmus[(model, version)], tmp_path, name="other")
    try:
        _drive(s, model, 17)
        t_saved = s.t
        state = s.fmu.getFMUState()
        blob = s.fmu.serializeFMUState(state)
        first = _drive(s, model, 40)

        s.fmu.setFMUState(state)
        s.t = t_saved
        assert _drive(s, model, 40) == first

        restored = s.fmu.deserializeFMUState(blob)
        s.fmu.setFMUState(restored)
        s.t = t_saved
        assert _drive(s, model, 40) == first

        # a serialized state moves to another instance (e.g. the twin) and continues identically
        other_state = other.fmu.deserializeFMUState(blob)
        other.fmu.setFMUState(other_state)
        other.t = t_saved
        assert _drive(other, model, 40) == first
        for st, owner in ((state, s), (restored, s), (other_state, other)):
            owner.fmu.freeFMUState(st)
    finally:
        s.close()
        other.close()


def test_state_from_another_model_is_rejected(fmus, tmp_path):
    a = Slave(fmus[("integrator", "2.0")], tmp_path)
    b = Slave(fmus[("conveyor", "2.0")], tmp_path)
    try:
        blob = a.fmu.serializeFMUState(a.fmu.getFMUState())
        with pytest.raises(FMICallException):
            b.fmu.deserializeFMUState(blob)
        assert any("does not belong" in m or "wrong size" in m for _, _, m in b.messages)
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------- fault injection


@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_fail_at_returns_error(fmus, tmp_path, version):
    s = Slave(fmus[("integrator", version)], tmp_path, start_values={"fail_at": 0.5, "u": 1.0})
    try:
        for _ in range(5):
            s.step(0.1)
        y = s.get("y")
        with pytest.raises(FMICallException) as exc:
            s.fmu.doStep(s.t, 0.1)
        assert exc.value.status == 3
        assert any(status == 3 and "injected failure" in m for status, _, m in s.messages)
        assert s.get("y") == y  # the failed step left the state untouched
    finally:
        s.close()


def test_discard_at_fmi2_requests_termination(fmus, tmp_path):
    s = Slave(fmus[("integrator", "2.0")], tmp_path, start_values={"discard_at": 0.25, "u": 1.0})
    try:
        for _ in range(5):
            s.step(0.05)
        assert s.fmu.getBooleanStatus(fmi2Terminated) is False or not s.fmu.getBooleanStatus(fmi2Terminated)
        with pytest.raises(FMICallException) as exc:
            s.fmu.doStep(s.t, 0.05)
        assert exc.value.status == 2
        assert s.fmu.getBooleanStatus(fmi2Terminated)
        assert s.fmu.getRealStatus(fmi2LastSuccessfulTime) == pytest.approx(0.25)
        assert s.get("y") == pytest.approx(0.25)
    finally:
        s.close()
    # fmpy's master ends the run gracefully at the last successful time
    res = simulate_fmu(
        fmus[("integrator", "2.0")],
        stop_time=1.0,
        output_interval=0.1,
        start_values={"discard_at": 0.5, "u": 1.0},
    )
    assert res["time"][-1] == pytest.approx(0.5)


def test_discard_at_fmi3_sets_terminate_simulation(fmus, tmp_path):
    s = Slave(fmus[("integrator", "3.0")], tmp_path, start_values={"discard_at": 0.2, "u": 1.0})
    try:
        do_step = s.fmu.dll.fmi3DoStep  # raw call: fmpy raises on Discard before returning the flags
        b_, d_ = ctypes.c_bool, ctypes.c_double
        do_step.argtypes = [ctypes.c_void_p, d_, d_, b_, *[ctypes.POINTER(b_)] * 3, ctypes.POINTER(d_)]
        do_step.restype = ctypes.c_int
        results = []
        for k in range(4):
            ev, term, early, last = b_(), b_(), b_(), d_()
            status = do_step(
                s.fmu.component,
                k * 0.1,
                0.1,
                True,
                ctypes.byref(ev),
                ctypes.byref(term),
                ctypes.byref(early),
                ctypes.byref(last),
            )
            results.append((status, term.value, last.value))
            if status != 0:
                break
        assert [r[0] for r in results] == [0, 0, 2]
        assert results[-1][1] is True and results[-1][2] == pytest.approx(0.2)
        assert s.get("y") == pytest.approx(0.2)
    finally:
        s.close()


@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_nan_at_makes_output_nan(fmus, version):
    res = simulate_fmu(
        fmus[("integrator", version)],
        stop_time=1.0,
        output_interval=0.1,
        start_values={"nan_at": 0.5, "u": 1.0},
        output=["y"],
    )
    before = res["time"] < 0.5 - 1e-9
    assert np.all(np.isfinite(res["y"][before]))
    assert np.all(np.isnan(res["y"][~before]))


def test_faults_are_off_by_default(fmus):
    res = simulate_fmu(
        fmus[("integrator", "2.0")], stop_time=2.0, output_interval=0.1, start_values={"u": 1.0}, output=["y"]
    )
    assert res["time"][-1] == pytest.approx(2.0) and np.all(np.isfinite(res["y"]))


# --------------------------------------------------------------------------- FMI rules


@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_wrapper_rejects_invalid_calls_with_a_logged_error(fmus, tmp_path, version):
    s = Slave(fmus[("integrator", version)], tmp_path)
    try:
        cases = [
            (lambda: s.set("y", 1.0), "cannot be set"),  # output
            (lambda: s.set("y0", 1.0), "cannot be set in state"),  # fixed parameter after init
            (lambda: s.set("u", float("nan")), "non-finite"),
            (lambda: s.fmu.doStep(s.t + 1.0, 0.1), "does not match"),
            (lambda: s.fmu.doStep(s.t, 0.0), "step size"),
            (lambda: s.fmu.getDirectionalDerivative([4], [1], [1.0]), "not supported"),
        ]
        for call, text in cases:
            n = len(s.messages)
            with pytest.raises(FMICallException):
                call()
            assert any(text in m for _, _, m in s.messages[n:]), (text, s.messages[n:])
        s.set("k", 2.0)  # tunable parameter: allowed while stepping
        s.set("u", 1.0)
        s.step(0.5)
        assert s.get("y") == pytest.approx(1.0)
    finally:
        s.close()


def test_wrong_guid_is_refused(fmus, tmp_path):
    path = fmus[("conveyor", "2.0")]
    md = read_model_description(path)
    unzip = extract(path, unzipdir=tmp_path / "wrong-guid")
    fmu = FMU2Slave(
        guid="{00000000-0000-0000-0000-000000000000}",
        unzipDirectory=unzip,
        modelIdentifier=md.coSimulation.modelIdentifier,
        instanceName="x",
    )
    with pytest.raises(Exception, match="instantiate"):
        fmu.instantiate()


def test_invalid_parameter_fails_initialization(fmus, tmp_path):
    s = Slave(fmus[("conveyor", "3.0")], tmp_path, initialize=False)
    try:
        s.set("tau", 0.0)
        s.fmu.enterInitializationMode(startTime=0.0)
        with pytest.raises(FMICallException):
            s.fmu.exitInitializationMode()
        assert any("tau must be > 0" in m for _, _, m in s.messages)
    finally:
        s.fmu.freeInstance()


# --------------------------------------------------------------------------- builder and cache


def test_cache_hit_does_not_recompile(fmu_cache, monkeypatch):
    first = build("integrator", "2.0", cache_dir=fmu_cache)
    mtime = first.path.stat().st_mtime_ns

    def no_compiler(*args, **kwargs):
        raise AssertionError("the compiler must not run on a cache hit")

    monkeypatch.setattr(builder.subprocess, "run", no_compiler)
    again = build("integrator", "2.0", cache_dir=fmu_cache)
    assert again.cache_hit and again.path == first.path
    assert again.path.stat().st_mtime_ns == mtime
    assert build_fmu("integrator", "2.0", cache_dir=fmu_cache) == first.path


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COSIM_FMU_CACHE", str(tmp_path / "envcache"))
    assert builder.default_cache_dir() == tmp_path / "envcache"
    monkeypatch.delenv("COSIM_FMU_CACHE")
    monkeypatch.delenv("COSIM_CACHE_DIR", raising=False)
    assert builder.default_cache_dir() == REPO_ROOT / ".cache" / "fmus"
    monkeypatch.setenv("COSIM_CACHE_DIR", str(tmp_path / "root"))  # the cache root moves it too
    assert builder.default_cache_dir() == tmp_path / "root" / "fmus"


def test_changed_source_rebuilds(copied_sources, tmp_path):
    cache = tmp_path / "cache"
    a = build("conveyor", "3.0", cache_dir=cache, source_root=copied_sources)
    assert not a.cache_hit
    assert build("conveyor", "3.0", cache_dir=cache, source_root=copied_sources).cache_hit
    src = copied_sources / "fmus" / "conveyor" / "conveyor.c"
    src.write_text(src.read_text() + "\n/* changed */\n")
    b = build("conveyor", "3.0", cache_dir=cache, source_root=copied_sources)
    assert not b.cache_hit and b.path != a.path and b.digest != a.digest
    # the scaffold and the spec are sources too
    spec = copied_sources / "fmus" / "conveyor" / "spec.json"
    spec.write_text(spec.read_text().replace('"start": 0.5', '"start": 0.6'))
    c = build("conveyor", "3.0", cache_dir=cache, source_root=copied_sources)
    assert not c.cache_hit
    assert read_model_description(c.path).guid != read_model_description(b.path).guid
    station = copied_sources / "stations" / "inspection.py"
    d = build("inspection", cache_dir=cache, source_root=copied_sources)
    station.write_text(station.read_text() + "\n# changed\n")
    e = build("inspection", cache_dir=cache, source_root=copied_sources)
    assert not d.cache_hit and not e.cache_hit and e.path != d.path


def test_compile_error_is_reported_clearly(copied_sources, tmp_path):
    cache = tmp_path / "cache"
    src = copied_sources / "fmus" / "press" / "press.c"
    src.write_text(src.read_text() + "\nthis is not C;\n")
    with pytest.raises(FMUBuildError) as exc:
        build_fmu("press", "2.0", cache_dir=cache, source_root=copied_sources)
    msg = str(exc.value)
    assert isinstance(exc.value, CosimError)
    assert "'press'" in msg and "press.c" in msg and "error" in msg
    assert exc.value.stderr and exc.value.model == "press"
    assert list(cache.iterdir()) == []  # no partial FMU, no leftover build directory


def test_unknown_model_and_version(fmu_cache):
    with pytest.raises(ConfigurationError, match=r"unknown model 'nope'.*conveyor"):
        build_fmu("nope", cache_dir=fmu_cache)
    with pytest.raises(ConfigurationError, match="FMI version"):
        build_fmu("conveyor", "1.0", cache_dir=fmu_cache)
    with pytest.raises(ConfigurationError, match=r"FMI 2\.0 only"):
        build_fmu("inspection", "3.0", cache_dir=fmu_cache)


def test_concurrent_builds_of_the_same_fmu(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from models.build import build_fmu; "
        "print(build_fmu('integrator', '3.0', cache_dir=sys.argv[2]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(REPO_ROOT), str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert zipfile.ZipFile(path).testzip() is None
    assert [p.name for p in cache.iterdir()] == [path.name]
    res = simulate_fmu(path, stop_time=1.0, start_values={"u": 1.0}, output=["y"])
    assert res["y"][-1] == pytest.approx(1.0)


def test_cli_prints_the_path(fmu_cache):
    proc = subprocess.run(
        [sys.executable, "-m", "models.build", "integrator", "--fmi", "3.0", "--cache-dir", str(fmu_cache)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.is_file() and path.parent == fmu_cache and path.suffix == ".fmu"
    bad = subprocess.run(
        [sys.executable, "-m", "models.build", "nope", "--cache-dir", str(fmu_cache)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert bad.returncode == 1 and "unknown model" in bad.stderr
