"""FMU units through fmpy: FMI 2.0 and 3.0, agreement with fmpy, state, and every error case."""

from __future__ import annotations

import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fmpy import simulate_fmu

from cosim import (
    ConfigurationError,
    FMUError,
    FMUUnit,
    InvalidConnectionError,
    Master,
    ModelLoadError,
    NonFiniteValueError,
    Recorder,
    SnapshotError,
    VarType,
)
from cosim.core.unit import TimeGrid
from models.build import build_fmu

GRID2 = TimeGrid(0.01)


@pytest.fixture(scope="module")
def integrator2() -> Path:
    return build_fmu("integrator", fmi_version="2.0")


@pytest.fixture(scope="module")
def integrator3() -> Path:
    return build_fmu("integrator", fmi_version="3.0")


@pytest.fixture(scope="module")
def conveyor2() -> Path:
    return build_fmu("conveyor", fmi_version="2.0")


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy an FMU archive, passing each member through ``edit(name, data) -> (name, data) | None``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            out = edit(info.filename, zin.read(info.filename))
            if out is not None:
                zout.writestr(out[0], out[1])
    return dst


def test_variables_are_read_from_the_model_description(integrator2, integrator3):
    for path in (integrator2, integrator3):
        unit = FMUUnit("i", path)
        v = unit.variables
        assert v["u"].causality.value == "input" and v["u"].type is VarType.REAL
        assert v["y"].causality.value == "output"
        assert v["k"].causality.value == "parameter"


@pytest.mark.parametrize("versions", [("2.0", "2.0"), ("3.0", "3.0"), ("2.0", "3.0")])
def test_two_coupled_fmus_reach_the_analytic_solution(versions):
    """x' = -y, y' = x over two integrator FMUs; the error shrinks linearly with the step."""
    errors = []
    for h in (0.01, 0.005):
        m = Master(h, algorithm="gauss_seidel")
        m.add_unit(FMUUnit("x", build_fmu("integrator", versions[0]), {"k": -1.0, "y0": 1.0}))
        m.add_unit(FMUUnit("y", build_fmu("integrator", versions[1]), {"k": 1.0, "y0": 0.0}))
        m.connect("y.y", "x.u")
        m.connect("x.y", "y.u")
        with m:
            m.run(duration=2.0)
            errors.append(math.hypot(m.get("x.y") - math.cos(2.0), m.get("y.y") - math.sin(2.0)))
    assert errors[0] < 5e-3
    assert 1.7 < errors[0] / errors[1] < 2.3


def test_single_fmu_under_our_master_equals_fmpy_simulate_fmu(conveyor2):
    # dyadic step and input values, so that fmpy's input interpolation is exact too
    h, stop = 2.0**-7, 3.0
    inputs = np.array([(0.0, 0.25), (1.0, 0.25), (1.0, 0.75), (stop, 0.75)],
                      dtype=[("time", np.float64), ("motor_cmd", np.float64)])
    unit_outputs = ["belt_speed", "belt_position", "motor_current", "encoder_count"]
    ref = simulate_fmu(str(conveyor2), start_time=0.0, stop_time=stop, step_size=h, output_interval=h,
                       input=inputs, output=unit_outputs)
    m = Master(h)
    m.add_unit(FMUUnit("conveyor", conveyor2))
    rec = m.add_observer(Recorder([f"conveyor.{o}" for o in unit_outputs]))
    m.set_input("conveyor.motor_cmd", 0.25)  # before build: seen at initialisation, as fmpy does
    m.build()
    m.run(duration=1.0)
    m.set_input("conveyor.motor_cmd", 0.75)
    m.run(duration=2.0)
    m.terminate()
    assert len(ref) == len(rec.rows) == 385
    np.testing.assert_array_equal(rec.column("time"), ref["time"])
    for name in unit_outputs:
        np.testing.assert_array_equal(rec.column(f"conveyor.{name}"), ref[name])  # bit for bit
    assert rec.column("conveyor.belt_speed")[-1] > 0.3


@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_fmu_state_restore_reproduces_bit_for_bit(version):
    m = Master(0.01)
    m.add_unit(FMUUnit("x", build_fmu("integrator", version), {"k": -1.0, "y0": 1.0}))
    m.add_unit(FMUUnit("conv", build_fmu("conveyor", version)))
    m.add_unit(FMUUnit("y", build_fmu("integrator", version)))
    m.connect("y.y", "x.u")
    m.connect("x.y", "y.u")
    m.connect("x.y", "conv.motor_cmd")
    rec = m.add_observer(Recorder(["x.y", "y.y", "conv.belt_speed", "conv.belt_position"]))
    with m:
        m.step(50)
        snap = m.save_snapshot()
        m.step(150)
        first = rec.as_dict()
        m.restore_snapshot(snap)
        m.step(150)
        for key, values in rec.as_dict().items():
            np.testing.assert_array_equal(values, first[key])
        m.release_snapshot(snap)


def test_missing_file_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match=r"unit 'st'.*file not found"):
        FMUUnit("st", tmp_path / "nope.fmu")


def test_corrupt_archive_is_a_model_load_error(tmp_path, integrator2):
    bad = tmp_path / "corrupt.fmu"
    bad.write_bytes(integrator2.read_bytes()[:200])
    with pytest.raises(ModelLoadError) as err:
        FMUUnit("st", bad)
    assert "corrupt.fmu" in str(err.value) and "corrupt" in str(err.value)


def test_fmu_without_binary_for_this_platform(tmp_path, integrator2):
    def drop_linux(name: str, data: bytes):
        if name.startswith("binaries/"):
            return name.replace("linux64", "win64").replace(".so", ".dll"), data
        return name, data

    bad = rewrite(integrator2, tmp_path / "winonly.fmu", drop_linux)
    with pytest.raises(ModelLoadError, match=r"no binary for this platform.*win64"):
        FMUUnit("st", bad)


def test_model_exchange_only_fmu_is_refused(tmp_path, integrator2):
    def strip_cs(name: str, data: bytes):
        if name == "modelDescription.xml":
            text = data.decode()
            start = text.index("<CoSimulation")
            end = text.index(">", text.index("CoSimulation", start + 5)) + 1 if "</CoSimulation>" in text \
                else text.index("/>", start) + 2
            return name, (text[:start] + text[end:]).encode()
        return name, data

    bad = rewrite(integrator2, tmp_path / "me.fmu", strip_cs)
    with pytest.raises(ModelLoadError, match="no co-simulation interface"):
        FMUUnit("st", bad)


def test_broken_model_description(tmp_path, integrator2):
    bad = rewrite(integrator2, tmp_path / "broken.fmu",
                  lambda n, d: (n, b"<fmiModelDescription") if n == "modelDescription.xml" else (n, d))
    with pytest.raises(ModelLoadError, match=r"modelDescription\.xml"):
        FMUUnit("st", bad)


def test_unknown_parameter_and_unknown_variable(integrator2):
    with pytest.raises(ConfigurationError, match=r"unknown parameter\(s\) \['gain'\]"):
        FMUUnit("st", integrator2, {"gain": 1.0})
    m = Master(0.1)
    m.add_unit(FMUUnit("a", integrator2))
    m.add_unit(FMUUnit("b", integrator2))
    m.connect("a.yy", "b.u")
    with pytest.raises(InvalidConnectionError, match="unit 'a' has no variable 'yy'"):
        m.build()


def test_failing_step_is_an_fmu_error_naming_fmu_and_call(integrator2):
    m = Master(0.1)
    m.add_unit(FMUUnit("st", integrator2, {"fail_at": 0.5}))
    m.build()
    with pytest.raises(FMUError) as err:
        m.step(20)
    text = str(err.value)
    assert "unit 'st'" in text and integrator2.name in text and "fmi2DoStep" in text and "error" in text
    m.terminate()


def test_discarded_step_ends_the_run_and_keeps_the_record(integrator2, integrator3):
    for path in (integrator2, integrator3):
        m = Master(0.1)
        m.add_unit(FMUUnit("st", path, {"discard_at": 0.5}))
        m.set_input("st.u", 1.0)
        rec = m.add_observer(Recorder(["st.y"]))
        result = m.run(duration=2.0)
        assert not result.completed
        assert m.tick == 5 and len(rec.rows) == 6
        assert rec.column("st.y")[-1] == pytest.approx(0.5)
        m.terminate()


def test_nan_from_an_fmu_is_caught(integrator2):
    m = Master(0.1)
    m.add_unit(FMUUnit("st", integrator2, {"nan_at": 0.3}))
    m.add_unit(FMUUnit("sink", integrator2))
    m.connect("st.y", "sink.u")
    m.build()
    with pytest.raises(NonFiniteValueError, match=r"unit 'st'.*y=nan"):
        m.step(10)
    m.terminate()


def test_snapshot_of_fmu_without_state_support(tmp_path, integrator2):
    def no_state(name: str, data: bytes):
        if name == "modelDescription.xml":
            return name, data.replace(b'canGetAndSetFMUstate="true"', b'canGetAndSetFMUstate="false"')
        return name, data

    path = rewrite(integrator2, tmp_path / "nostate.fmu", no_state)
    m = Master(0.1)
    m.add_unit(FMUUnit("st", path))
    m.build()
    with pytest.raises(SnapshotError, match="canGetAndSetFMUstate"):
        m.save_snapshot()
    m.terminate()


def test_terminate_is_idempotent_and_cleans_up(integrator2):
    unit = FMUUnit("st", integrator2)
    m = Master(0.1)
    m.add_unit(unit)
    m.build()
    tmp = unit._unzipdir
    assert tmp is not None and tmp.exists()
    m.terminate()
    m.terminate()
    assert not tmp.exists()
    shutil.rmtree(tmp, ignore_errors=True)


def test_readers_share_one_read_per_change_of_the_fmu(conveyor2):
    """Readers of one FMU are served from one cache: one FMI get per type after each step,
    set or restored state, and the values are always what the FMU itself returns."""
    unit = FMUUnit("conv", conveyor2, {"speed_noise": 0.01, "seed": 3})
    unit.setup(GRID2)
    fills = []
    fill = unit._fill_pool

    def counting() -> None:
        fills.append(1)
        fill()

    unit._fill_pool = counting
    a = unit.reader(["speed_meas", "encoder_count"])
    b = unit.reader(["belt_position", "speed_meas", "motor_current"])
    write = unit.writer(["motor_cmd"])
    fmu = unit._fmu

    def direct(names):
        vs = {v.name: v for v in unit.md.modelVariables}
        return [fmu.getInteger([vs[n].valueReference])[0] if vs[n].type == "Integer"
                else fmu.getReal([vs[n].valueReference])[0] for n in names]

    write([1.0])
    for tick in range(5):
        unit.step(tick, 1)
        before = len(fills)
        for _ in range(3):
            assert list(a()) == direct(["speed_meas", "encoder_count"])
            assert list(b()) == direct(["belt_position", "speed_meas", "motor_current"])
        assert len(fills) == before + 1
    assert isinstance(a()[1], int)
    state = unit.save_state()
    saved = list(b())
    write([0.2])  # a set may change outputs (direct feedthrough): read again
    b()
    assert len(fills) == 6  # five steps, then the set
    for tick in range(5, 10):
        unit.step(tick, 1)
    assert list(b()) != saved
    unit.restore_state(state)
    assert list(b()) == saved == direct(["belt_position", "speed_meas", "motor_current"])
    unit.release_state(state)
    unit.terminate()


def test_a_writer_sets_again_only_what_the_fmu_does_not_hold(conveyor2, monkeypatch):
    """Writing the inputs the FMU already holds (bit for bit, no set or restored state since)
    makes no FMI call; a restored state, another writer or a different bit pattern does."""
    import cosim.units.fmu as fmu_module

    calls = []
    bare_call = fmu_module._bare_call

    def counted(ch, component):
        fn, args = bare_call(ch, component)
        return (lambda *a: calls.append(ch.function) or fn(*a)), args

    monkeypatch.setattr(fmu_module, "_bare_call", counted)
    unit = FMUUnit("conv", conveyor2)
    unit.setup(GRID2)
    write, other = unit.writer(["motor_cmd"]), unit.writer(["motor_cmd"])
    held = unit.reader(["motor_cmd"])
    sets = lambda: calls.count("fmi2SetReal")  # noqa: E731
    write([0.5])
    write([0.5])
    assert sets() == 1 and held() == [0.5]
    unit.step(0, 1)
    write([0.5])  # a step does not change an input
    assert sets() == 1
    state = unit.save_state()
    write([-0.0])
    write([0.0])  # equal to -0.0, but not the same bits
    assert sets() == 3 and math.copysign(1.0, held()[0]) == 1.0
    other([0.7])  # another writer of the same input
    write([0.0])
    assert sets() == 5 and held() == [0.0]
    write([0.3])
    unit.restore_state(state)  # the FMU holds 0.5 again
    assert held() == [0.5]
    write([0.3])
    assert sets() == 7 and held() == [0.3]
    unit.release_state(state)
    unit.terminate()
