"""Attacks change exactly what they claim, only inside their window, and record ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from cosim import ConfigurationError, ContractError
from cosim.attacks import Attack, Campaign, check_attack, load_scenario
from experiments.plant import network_factory, register_resolvers, system_spec

REPO = Path(__file__).resolve().parents[2]
register_resolvers()
REC = ["press.pressure", "press.pressure_meas", "plc.pressure_meas", "press.ram_position", "plc.valve_cmd",
       "twin_rx.press__pressure_meas", "twin_press.ram_position", "conveyor.speed_meas", "plc.speed_meas",
       "plc.part_at_pick", "cell.part_at_pick"]


def run(events: list[dict] | None, duration: float = 16.0, seed: int = 0, network: bool = False):
    overrides = ["plant=smart_factory", "twin=replica", f"seed={seed}", f"network={'cell' if network else 'none'}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=overrides)
    spec, _ = system_spec(cfg)
    master = spec.build(record=REC, network=network_factory(cfg))
    campaign = Campaign(load_scenario({"events": events or []}, seed=seed))
    master.add_observer(campaign)
    master.run(duration=duration)
    data = master.observers[0].as_dict()
    master.terminate()
    return data, campaign


@pytest.fixture(scope="module")
def baseline():
    return run(None)[0]


def window(data: dict, start: float, end: float) -> np.ndarray:
    """Samples that surely fall inside the attack (a sample is taken after its step)."""
    t = data["time"]
    return (t > start + 0.005) & (t < end)


def outside(data: dict, start: float, end: float) -> np.ndarray:
    """Samples that surely fall outside (receivers stepping every 2 ticks hold one step longer)."""
    t = data["time"]
    return (t <= start) | (t > end + 0.025)


def test_spoofing_changes_what_plc_and_twin_see_not_the_process(baseline):
    data, campaign = run([{"attack": "spoofing", "target": "press.pressure_meas", "at": 11.0, "duration": 3.0,
                           "params": {"mode": "constant", "value": 0.0}}])
    inside = window(data, 11.0, 14.0)
    assert (data["plc.pressure_meas"][inside] == 0.0).all()
    assert (data["twin_rx.press__pressure_meas"][inside] == 0.0).all()
    assert data["press.pressure_meas"][inside].max() > 1.0  # the sensor itself reads the truth
    np.testing.assert_array_equal(data["press.pressure"], baseline["press.pressure"])  # process untouched
    out = outside(data, 11.0, 14.0)
    np.testing.assert_array_equal(data["plc.pressure_meas"][out], baseline["plc.pressure_meas"][out])
    (interval,) = campaign.ground_truth.intervals
    assert (interval.kind, interval.start, interval.end, interval.physical) == ("spoofing", 11.0, 14.0, False)


def test_command_injection_changes_the_process_behind_the_controllers_back(baseline):
    baseline = {k: v[:601] for k, v in baseline.items()}
    data, campaign = run([{"attack": "injection", "target": "plc.valve_cmd", "at": 2.0, "duration": 2.0,
                           "params": {"value": True}}], duration=6.0)
    inside = window(data, 2.0, 4.0)
    assert data["press.ram_position"][inside].max() > 0.05  # the press closed ...
    assert not data["plc.valve_cmd"].any()  # ... although the PLC never commanded it
    assert data["twin_press.ram_position"].max() == 0.0  # and the twin, which follows the PLC, did not
    before = data["time"] < 2.0
    np.testing.assert_array_equal(data["press.ram_position"][before], baseline["press.ram_position"][before])
    assert campaign.ground_truth.intervals[0].physical


def test_replay_feeds_old_values(baseline):
    baseline = {k: v[:801] for k, v in baseline.items()}
    data, _ = run([{"attack": "replay", "target": "conveyor.speed_meas", "at": 3.0, "duration": 4.0,
                    "params": {"record_s": 1.0}}], duration=8.0)
    t = data["time"]
    recorded = baseline["plc.speed_meas"][(t > 2.0) & (t <= 3.0)]
    replayed = data["plc.speed_meas"][window(data, 3.0, 7.0)]
    assert set(np.round(replayed, 12)) <= set(np.round(recorded, 12))
    assert not np.array_equal(replayed, baseline["plc.speed_meas"][window(data, 3.0, 7.0)])


def test_denial_of_service_starves_the_receiver():
    data, _ = run([{"attack": "dos", "target": "field_to_control", "at": 1.0, "duration": 2.0}],
                  duration=4.0, network=True)
    inside = window(data, 1.0, 3.0)
    speeds = data["plc.speed_meas"][inside]
    assert np.ptp(speeds) == 0.0  # the PLC holds one stale value ...
    assert np.ptp(data["conveyor.speed_meas"][inside]) > 0.0  # ... while the sensor moves on
    after = outside(data, 1.0, 3.0) & (data["time"] > 3.0)
    # afterwards the PLC again receives fresh sensor values
    assert np.ptp(data["plc.speed_meas"][after]) > 0.0
    assert set(data["plc.speed_meas"][after]) <= set(data["conveyor.speed_meas"])


def test_campaign_from_a_file_replays_bit_for_bit(tmp_path):
    scenario = tmp_path / "campaign.yaml"
    scenario.write_text(
        "name: demo\n"
        "events:\n"
        "  - {attack: spoofing, target: conveyor.speed_meas, at: 1.0, duration: 2.0,"
        " params: {mode: random, low: 0.0, high: 0.5}}\n"
        "  - {attack: injection, target: plc.valve_cmd, at: 3.0, duration: 1.0, params: {value: true}}\n"
    )
    events = [{"attack": e.kind, "target": e.target, "at": e.start, "duration": e.duration,
               "params": {"mode": "random", "low": 0.0, "high": 0.5} if e.kind == "spoofing" else {"value": True}}
              for e in load_scenario(scenario, seed=4)]
    a, camp = run(events, duration=5.0, seed=4)
    b, _ = run(events, duration=5.0, seed=4)
    c, _ = run(events, duration=5.0, seed=5)
    assert not np.array_equal(a["plc.speed_meas"], c["plc.speed_meas"])  # another seed, other draws
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [i.kind for i in camp.ground_truth.intervals] == ["spoofing", "injection"]
    assert camp.ground_truth.label(1.5) == "spoofing" and camp.ground_truth.label(5.0) == "normal"


def test_bad_scenarios_and_attack_classes_give_clear_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown attack 'teleport'"):
        load_scenario({"events": [{"attack": "teleport", "target": "x.y", "at": 1}]})
    with pytest.raises(ConfigurationError, match=r"missing keys \['at'\]"):
        load_scenario({"events": [{"attack": "spoofing", "target": "x.y"}]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("events: [ {attack: spoofing, ")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_scenario(bad)
    with pytest.raises(ConfigurationError, match="unknown spoofing mode 'loud'"):
        load_scenario({"events": [{"attack": "spoofing", "target": "x.y", "at": 1, "params": {"mode": "loud"}}]})

    class Half(Attack):
        def __init__(self, target: str) -> None:  # forgets name/start/duration/seed
            pass

    with pytest.raises(ContractError) as err:
        check_attack(Half)
    text = str(err.value)
    assert "'kind'" in text and "install" in text and "'start'" in text
    # an attack aimed at a missing target
    with pytest.raises(ConfigurationError, match=r"'press\.nothing' is not a variable"):
        run([{"attack": "spoofing", "target": "press.nothing", "at": 1.0}], duration=0.1)


@pytest.mark.parametrize("preset", ["spoofing", "injection", "replay", "dos", "mitm", "api", "sync", "tamper"])
def test_every_attack_preset_installs_on_the_cell(preset):
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=["plant=smart_factory", "twin=replica", "network=cell",
                                             f"attack={preset}"])
    campaign = Campaign(load_scenario(OmegaConf.to_container(cfg.attack, resolve=True), seed=0))
    spec, _ = system_spec(cfg)
    master = spec.build(record=False, network=network_factory(cfg))
    master.add_observer(campaign)
    master.run(duration=0.5)
    assert campaign.ground_truth.intervals and campaign.ground_truth.intervals[0].kind == preset
    master.terminate()


def test_man_in_the_middle_slows_the_belt_and_hides_it(baseline):
    rec_base = {k: v[:1001] for k, v in baseline.items()}
    data, campaign = run([{"attack": "mitm", "target": "plc.motor_cmd", "at": 0.2, "duration": 9.0,
                           "params": {"factor": 0.5, "hide": "conveyor.speed_meas"}}], duration=10.0)
    t = data["time"]
    moving = (t > 1.0) & (t < 2.0) & (rec_base["conveyor.speed_meas"] > 0.25)
    # the belt really runs at half speed ...
    assert data["conveyor.speed_meas"][moving].max() < 0.6 * rec_base["conveyor.speed_meas"][moving].max()
    # ... while the PLC sees the speed it expects
    assert abs(data["plc.speed_meas"][moving].mean() - rec_base["plc.speed_meas"][moving].mean()) < 0.02
    assert campaign.ground_truth.intervals[0].physical


def test_api_exploit_is_refused_by_an_authenticating_hmi_and_accepted_from_an_insider():
    def attempt(user: str, require_auth: bool = True):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("simulate", overrides=["plant=smart_factory", f"plant.units.hmi.require_auth={require_auth}"])
        spec, _ = system_spec(cfg)
        master = spec.build(record=["hmi.safe_mode_cmd", "plc.producing"])
        master.add_observer(Campaign(load_scenario({"events": [
            {"attack": "api", "target": "hmi", "at": 1.0,
             "params": {"tag": "safe_mode_cmd", "value": True, "user": user}}]})))
        master.run(duration=2.0)
        log = list(master.units["hmi"].log)
        data = master.observers[0].as_dict()
        master.terminate()
        return log, data

    log, data = attempt("mallory")  # unknown user, authenticating HMI: refused, production goes on
    assert log[-1]["result"] == "refused: unknown user" and not data["hmi.safe_mode_cmd"].any()
    assert data["plc.producing"][-1]
    log, data = attempt("mallory", require_auth=False)  # an HMI without authentication: accepted
    assert log[-1]["result"] == "accepted" and data["hmi.safe_mode_cmd"][-1] and not data["plc.producing"][-1]
    log, data = attempt("operator")  # an insider's valid credentials: accepted
    assert log[-1]["result"] == "accepted" and not data["plc.producing"][-1]


def _twin_run(events: list[dict], duration: float):
    from experiments.plant import twin_sync

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=["plant=smart_factory", "twin=replica", "network=cell"])
    spec, layout = system_spec(cfg)
    master = spec.build(record=["press.pressure"], network=network_factory(cfg))
    sync = twin_sync(cfg, layout)
    master.add_observer(sync)
    master.add_observer(Campaign(load_scenario({"events": events})))
    master.run(duration=duration)
    out = (sync.summary(), list(sync.events), master.observers[0].as_dict(), master.network.stats())
    master.terminate()
    return out


def test_sync_attack_makes_twin_and_plant_diverge_and_is_reported():
    clean, _, plant_clean, _ = _twin_run([], 8.0)
    summary, events, plant, stats = _twin_run(
        [{"attack": "sync", "target": "field_to_twin", "at": 2.0, "duration": 4.0,
          "params": {"mode": "delay", "delay_s": 0.5}}], 8.0)
    assert any(e["kind"] == "sync_late" and 2.0 <= e["t"] <= 2.3 for e in events)
    assert stats["field_to_twin"]["injected"] > 0  # held frames were released later
    # the twin runs open loop while its telemetry is stale (no corrections from old data)
    assert summary["corrections"] <= clean["corrections"] - 3
    np.testing.assert_array_equal(plant["press.pressure"], plant_clean["press.pressure"])  # the plant: untouched
    assert clean["sync_faults"] == {}


def test_twin_parameter_tampering_shows_as_deviation_not_in_the_plant():
    clean, _, plant_clean, _ = _twin_run([], 5.0)
    summary, _, plant, _ = _twin_run([{"attack": "tamper", "target": "twin_conveyor.gain", "at": 0.5,
                                       "params": {"value": 0.25}}], 5.0)
    assert summary["signals"]["conveyor.speed_meas"]["max"] > 5 * clean["signals"]["conveyor.speed_meas"]["max"]
    np.testing.assert_array_equal(plant["press.pressure"], plant_clean["press.pressure"])
