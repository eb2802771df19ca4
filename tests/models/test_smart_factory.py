"""The smart-factory cell: production at the designed rate, interlocks, safe state, seeds, swaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from cosim import ContractError, Master
from experiments.plant import plant_observers, plant_spec, register_resolvers
from models.cell.monitor import CellMonitor

REPO = Path(__file__).resolve().parents[2]
register_resolvers()


def cell(*overrides: str, record: list[str] | None = None) -> tuple[Master, CellMonitor, object]:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=["plant=smart_factory", *overrides])
    master = plant_spec(cfg.plant).build(record=record if record is not None else list(cfg.plant.record),
                                         record_interval=5)
    monitor = plant_observers(cfg.plant)["monitor"]
    master.add_observer(monitor)
    assert isinstance(monitor, CellMonitor)
    return master, monitor, cfg


def hmi(master: Master):
    return master.units["hmi"]


@pytest.mark.slow
def test_ten_minutes_of_nominal_operation_at_the_designed_rate_with_no_unsafe_event():
    master, monitor, cfg = cell("seed=11")
    master.run(duration=600.0)
    s = monitor.summary()
    master.terminate()
    design = float(cfg.plant.design_cycle_s)
    expected = 600.0 / design  # parts per ten minutes at the designed rate
    assert s["unsafe_events"] == 0, monitor.events
    assert s["parts_completed"] >= int(0.9 * expected), s
    assert s["parts_completed"] <= int(expected) + 1
    assert abs(s["cycle_time_mean_s"] - design) < 0.05 * design
    assert s["downtime_s"] == 0.0
    assert s["parts_produced"] > 0.8 * s["parts_completed"]  # most parts pass inspection


def test_press_may_not_close_while_the_arm_is_in_the_fixture():
    master, monitor, _ = cell(record=["plc.valve_cmd", "press.ram_position", "cell.press_zone_occupied"])
    panel = hmi(master)
    robot = master.units["robot"]
    panel.request("mode_cmd", 2, user="engineer")  # manual
    panel.request("manual_robot_cmd", robot.waypoint("fixture"), user="engineer", at=0.5)
    panel.request("manual_press_cmd", True, user="engineer", at=6.0)  # the provocation
    master.run(duration=10.0)
    rec = master.observers[0].as_dict()
    assert rec["cell.press_zone_occupied"][-1]  # the arm is in the press zone ...
    assert not rec["plc.valve_cmd"].any()  # ... so the valve never opened
    assert rec["press.ram_position"].max() < 1e-6
    assert master.get("plc.interlock_trips") >= 1
    assert [e for e in monitor.events if e["kind"] == "interlock_violated"] == []
    master.terminate()


def test_arm_may_not_enter_while_the_press_is_closed():
    master, monitor, _ = cell(record=["plc.robot_cmd", "cell.press_zone_occupied", "press.closed_switch"])
    panel = hmi(master)
    robot = master.units["robot"]
    panel.request("mode_cmd", 2, user="engineer")
    panel.request("manual_press_cmd", True, user="engineer", at=0.5)
    panel.request("manual_robot_cmd", robot.waypoint("fixture"), user="engineer", at=4.0)  # provocation
    master.run(duration=8.0)
    rec = master.observers[0].as_dict()
    assert rec["press.closed_switch"][-1]
    assert robot.waypoint("fixture") not in rec["plc.robot_cmd"]
    assert not rec["cell.press_zone_occupied"].any()
    assert master.get("plc.interlock_trips") >= 1
    # once the press is open again the same request goes through
    panel.request("manual_press_cmd", False, user="engineer")
    panel.request("manual_robot_cmd", robot.waypoint("fixture"), user="engineer", at=10.0)
    master.run(duration=6.0)
    assert master.get("plc.robot_cmd") == robot.waypoint("fixture")
    assert master.get("cell.press_zone_occupied")
    assert monitor.summary()["unsafe_events"] == 0
    master.terminate()


def test_safe_mode_reaches_the_safe_state_and_production_resumes():
    master, monitor, _ = cell(record=["plc.safe_state", "conveyor.belt_speed", "press.ram_position"])
    panel = hmi(master)
    master.run(duration=24.0)  # mid-cycle of the second part
    before = monitor.summary()["parts_completed"]
    panel.request("safe_mode_cmd", True, user="safety")
    master.run(duration=8.0)
    assert master.get("plc.safe_state")
    assert not master.get("plc.producing")
    assert master.get("plc.valve_cmd") is False and master.get("plc.motor_cmd") == 0.0
    assert abs(master.get("conveyor.belt_speed")) < 0.02
    assert master.get("press.ram_position") < 0.002
    times = master.observers[0].as_dict()
    reached = times["time"][np.argmax(times["plc.safe_state"] & (times["time"] > 24.0))]
    assert reached - 24.0 < 5.0  # safe state within 5 s of the command
    panel.request("safe_mode_cmd", False, user="safety")
    master.run(duration=45.0)
    after = monitor.summary()
    assert after["parts_completed"] >= before + 2  # production resumed
    assert after["unsafe_events"] == 0
    assert any(24.0 <= a <= 24.2 and b >= 32.0 for a, b in after["downtime_intervals"])  # down while safe
    master.terminate()


def test_hmi_refuses_unauthorised_writes_and_applies_recipes():
    master, _, _ = cell(record=[])
    panel = hmi(master)
    panel.request("safe_mode_cmd", True, user="viewer")
    panel.request("mode_cmd", 0, user="mallory")
    panel.request("recipe", "gentle", user="operator")
    panel.request("press_time_sp", 9.0, user="operator")
    master.run(duration=0.5)
    results = [(e["user"], e["tag"], e["result"]) for e in panel.log]
    assert results[0] == ("viewer", "safe_mode_cmd", "refused: role 'viewer' may not write 'safe_mode_cmd'")
    assert results[1] == ("mallory", "mode_cmd", "refused: unknown user")
    assert results[2] == ("operator", "recipe", "accepted")
    assert results[3][2].startswith("refused")
    assert master.get("plc.safe_state") is False or not master.get("hmi.safe_mode_cmd")
    assert master.get("hmi.press_time_sp") == 1.5  # the gentle recipe reached the HMI outputs ...
    master.step(2)
    assert master.units["plc"].values["press_time_sp"] == 1.5  # ... and the PLC over its connection
    master.terminate()


def _trace(seed: int) -> dict[str, np.ndarray]:
    master, _, _ = cell(f"seed={seed}")
    master.run(duration=30.0)
    data = master.observers[0].as_dict()
    master.terminate()
    return data


def test_same_seed_bit_identical_different_seed_different():
    a, b, c = _trace(3), _trace(3), _trace(4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["press.pressure_meas"], c["press.pressure_meas"])
    assert not np.array_equal(a["conveyor.speed_meas"], c["conveyor.speed_meas"])


@pytest.mark.slow
def test_panda_and_a_replacement_press_by_config():
    master, monitor, _ = cell("plant.robot=panda", "plant.units.press.path=${fmu:press,3.0}")
    assert master.units["cell"].robot == "panda"
    assert master.units["press"].fmi_major == 3
    master.run(duration=60.0)
    s = monitor.summary()
    master.terminate()
    assert s["parts_completed"] >= 3 and s["unsafe_events"] == 0


def test_contract_check_rejects_a_bad_station():
    with pytest.raises(ContractError) as err:
        cell("plant.units.press.path=${fmu:feeder}", "~plant.units.press.parameters")
    text = str(err.value)
    assert "unit 'press' (FMUUnit) in plant 'smart_factory'" in text
    for missing in ("missing input 'valve_cmd' (connected to plc.valve_cmd)",
                    "missing output 'ram_position' (connected to cell.ram_position)",
                    "missing output 'open_switch' (connected to plc.open_switch)",
                    "missing output 'closed_switch'", "missing output 'pressure_meas'"):
        assert missing in text


def test_unsafe_events_are_detected_with_time_stamps():
    """Forced actuators (as an attacker would force them) produce the unsafe events the monitor counts."""
    from cosim import Override

    # the belt forced to run: parts are carried off the end of the belt
    master, monitor, _ = cell(record=[])
    master.add_manipulator(Override("plc.motor_cmd -> conveyor.motor_cmd", 1.0))
    master.run(duration=12.0)
    drops = [e for e in monitor.events if e["kind"] == "part_dropped"]
    assert drops and 1.0 < drops[0]["t"] < 12.0  # 0.6 m of belt at 0.5 m/s, then the fall
    master.terminate()

    # the press valve forced closed while the arm places a part: interlock violated, arm hits the ram
    master, monitor, _ = cell(record=[])
    master.run(duration=6.5)  # the arm is over the fixture with the first part
    assert master.get("cell.press_zone_occupied")
    t_attack = master.time
    master.add_manipulator(Override("plc.valve_cmd -> press.valve_cmd", True, start_tick=master.tick))
    master.run(duration=3.0)
    kinds = {e["kind"]: e["t"] for e in reversed(monitor.events)}
    assert "interlock_violated" in kinds and kinds["interlock_violated"] >= t_attack
    assert "arm_collision" in kinds
    master.terminate()

    # a relief valve set below the supply pressure: overpressure on every press stroke
    master, monitor, _ = cell("plant.units.press.parameters.relief_pressure=4.0", record=[])
    master.run(duration=25.0)
    assert any(e["kind"] == "overpressure" for e in monitor.events)
    master.terminate()


def test_rollback_after_a_long_run_equals_a_clean_replay():
    """Contacts made after a snapshot must not leak into the restored world."""
    master, _, _ = cell("seed=2", record=["cell.ee_x", "cell.part_at_pick", "press.ram_position", "plc.state"])
    master.run(duration=2.0)
    snap = master.save_snapshot()
    master.run(duration=27.0)  # parts picked, pressed, placed: many contacts
    master.restore_snapshot(snap)
    master.run(duration=5.0)
    rolled = master.observers[0].as_dict()
    master.terminate()
    fresh, _, _ = cell("seed=2", record=["cell.ee_x", "cell.part_at_pick", "press.ram_position", "plc.state"])
    fresh.run(duration=7.0)
    clean = fresh.observers[0].as_dict()
    fresh.terminate()
    for key in clean:
        np.testing.assert_array_equal(rolled[key], clean[key], err_msg=key)
