"""`python -m experiments.simulate`: plants from config and SSP, outputs, and clear errors."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from cosim import ConfigurationError, ContractError, InvalidConnectionError, ModelLoadError
from cosim.core.master import Master
from experiments.plant import frozen_heap, register_resolvers
from experiments.simulate import simulate
from models.ssp import build_ssp

REPO = Path(__file__).resolve().parents[2]
register_resolvers()


def config(*overrides: str):
    """The simulate config with the demo plant (unless an override picks another plant)."""
    plant = [] if any(o.startswith("plant=") for o in overrides) else ["plant=demo"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("simulate", overrides=["progress=false", "plot=false", *plant, *overrides])


def test_demo_plant_runs_and_writes_traces(tmp_path):
    summary = simulate(config("duration=3"), tmp_path)
    assert summary["completed"] and summary["ticks"] == 300
    table = pq.read_table(tmp_path / "trace.parquet")
    assert table.column_names[0] == "time"
    assert "conveyor.belt_speed" in table.column_names and "arm.ee_x" in table.column_names
    speed = table.column("conveyor.belt_speed").to_numpy()
    assert speed.max() > 0.3  # the sequencer drove the conveyor
    ee_x = table.column("arm.ee_x").to_numpy()
    assert np.ptp(ee_x) > 0.05  # and the arm moved
    csv_header = (tmp_path / "trace.csv").read_text().splitlines()[0]
    assert csv_header.split(",") == table.column_names
    assert json.loads((tmp_path / "simulate.json").read_text())["ticks"] == 300


def test_same_seed_same_trace_and_robot_swap(tmp_path):
    a = simulate(config("duration=1", "seed=3"), tmp_path / "a")
    b = simulate(config("duration=1", "seed=3"), tmp_path / "b")
    assert a["ticks"] == b["ticks"]
    assert (tmp_path / "a" / "trace.csv").read_bytes() == (tmp_path / "b" / "trace.csv").read_bytes()
    simulate(config("duration=1", "plant.units.arm.robot=panda"), tmp_path / "panda")
    panda = pq.read_table(tmp_path / "panda" / "trace.parquet").column("arm.ee_z").to_numpy()
    kuka = pq.read_table(tmp_path / "a" / "trace.parquet").column("arm.ee_z").to_numpy()
    assert not np.array_equal(panda, kuka)


def test_loop_runs_with_the_heap_frozen_and_leaves_nothing_frozen(tmp_path, monkeypatch):
    counts = []
    run = Master.run

    def spy(self, *args, **kwargs):
        counts.append(gc.get_freeze_count())
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Master, "run", spy)
    simulate(config("duration=1"), tmp_path)
    assert counts and counts[0] > 1000  # the models and worlds built before the loop
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a failing run")
    assert gc.get_freeze_count() == 0


def test_ssp_plant_runs_to_its_default_stop_time(tmp_path):
    path = build_ssp("demo")
    summary = simulate(config("plant=ssp", f"plant.path={path}", "plant.base_step=0.02",
                              "+plant.inputs={drive.u: 1.0}"), tmp_path)
    assert summary["sim_time_s"] == 4.0 and summary["ticks"] == 200
    table = pq.read_table(tmp_path / "trace.parquet")
    assert table.column("drive.y").to_numpy()[-1] == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("plant.base_step=abc", ConfigurationError, "plant.base_step must be a float"),
        ("plant=ssp", ConfigurationError, "needs a path"),
        ("plant.units.press.path=/nonexistent/press.fmu", ModelLoadError,
         r"unit 'press'.*/nonexistent/press.fmu.*file not found"),
        ("plant.connections=['sequencer.motor_cmd -> conveyor.nope']", ContractError,
         r"(?s)unit 'conveyor'.*missing input 'nope' \(connected to sequencer.motor_cmd\)"),
        ("plant.connections=['sequencer.motor_cmd -> nobody.u']", InvalidConnectionError,
         "target unit 'nobody' does not exist"),
        ("plant.units.arm.robot=ur5", ConfigurationError, "ur5"),
        ("plant.units.inspection.step_ticks=two", ConfigurationError, "step_ticks must be an integer"),
        ("+plant.units.conveyor.parameters.speed=1", ConfigurationError, r"unknown parameter\(s\) \['speed'\]"),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path, override, error, message):
    with pytest.raises(error, match=message):
        simulate(config("duration=1", override), tmp_path)


@pytest.mark.slow
def test_command_line_error_is_one_line_and_exit_code_1(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.simulate", "plant=demo", "plant.base_step=abc",
         f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "error: plant.base_step must be a float, got 'abc'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_whole_demo_plant_restores_bit_for_bit():
    """FMUs (C and pythonfmu), the PyBullet arm and the Python sequencer, saved and restored together."""
    from experiments.plant import plant_spec

    cfg = config("seed=5")  # demo plant
    master = plant_spec(cfg.plant).build(record=list(cfg.plant.record))
    recorder = master.observers[0]
    master.step(250)
    snap = master.save_snapshot()
    master.step(400)
    first = recorder.as_dict()
    master.restore_snapshot(snap)
    assert master.tick == 250
    master.step(400)
    again = recorder.as_dict()
    assert again.keys() == first.keys()
    for key in first:
        np.testing.assert_array_equal(again[key], first[key], err_msg=key)
    assert np.ptp(first["arm.q_0"][250:]) > 0.1  # the restored stretch really moves
    master.release_snapshot(snap)
    master.terminate()


@pytest.mark.slow
def test_sweep_goes_on_after_a_failing_job(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.simulate", "-m", "plant=demo", "plant.base_step=abc,0.01",
         "duration=0.5",
         "progress=false", f"hydra.sweep.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    failed = json.loads((tmp_path / "0" / "simulate.json").read_text())
    done = json.loads((tmp_path / "1" / "simulate.json").read_text())
    assert failed["status"] == "FAILED" and "plant.base_step must be a float" in failed["error"]
    assert done["status"] == "FINISHED" and done["ticks"] == 50
    assert (tmp_path / "1" / "trace.parquet").is_file()


def test_replacement_station_is_checked_against_the_plant(tmp_path):
    with pytest.raises(ContractError) as err:
        simulate(config("duration=1", "plant.units.press.path=${fmu:conveyor}", "~plant.units.press.parameters",
                        "plant.record=[press.pressure, press.ram_position]"), tmp_path)
    text = str(err.value)
    assert "unit 'press' (FMUUnit) in plant 'demo'" in text
    assert "missing input 'valve_cmd' (connected to sequencer.valve_cmd)" in text
    assert "missing variable 'pressure' (recorded by the plant)" in text
    assert "missing variable 'ram_position' (recorded by the plant)" in text
    # a replacement with the same variables (the FMI 3.0 build of the press) drops in
    summary = simulate(config("duration=1", "plant.units.press.path=${fmu:press,3.0}"), tmp_path / "ok")
    assert summary["completed"]


def test_cell_pictures_and_timeline_on_request(tmp_path):
    cfg = config("plant=smart_factory", "duration=2", "render.enabled=true", "render.every_ticks=50",
                 "render.width=160", "render.height=120", "plot=true")
    summary = simulate(cfg, tmp_path)
    files = summary["files"]
    assert len(list(Path(files["frames"]).glob("frame_*.png"))) == 5  # t = 0, 0.5, 1, 1.5, 2
    assert Path(files["gif"]).stat().st_size > 1000
    assert Path(files["timeline"]).stat().st_size > 10_000
    assert summary["monitor"]["unsafe_events"] == 0
