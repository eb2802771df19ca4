"""Campaign traits (stealth, persistence, insider, lateral), scenario presets with Hydra
overrides, bit-for-bit replay, and the README's worked example."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from cosim import ConfigurationError
from cosim.attacks import Attack, ConduitAttack, load_scenario
from cosim.network.message import Message
from tests.attacks.helpers import REPO, build, config, run

SPEED = ["conveyor.speed_meas", "plc.speed_meas"]
STEALTHY = ["attack=stealthy_persistent", "attack.events.0.at=1.0", "attack.events.0.duration=3.0"]


def test_stealth_keeps_the_spoofing_under_its_bound_and_rate():
    clean, _, _, _ = run([], 4.0, network=False, twin=False, record=SPEED)
    faster = [*STEALTHY, "attack.events.0.params.rate=0.1", "attack.events.0.traits.stealth.max_rate=0.05"]
    data, campaign, _, _ = run(None, 4.0, network=False, twin=False, record=SPEED, overrides=faster,
                               scenario="config")
    dev = data["plc.speed_meas"] - clean["plc.speed_meas"]
    t = data["time"]
    assert np.abs(dev[(t <= 1.0) | (t > 4.0)]).max() == 0.0
    assert 0.029 < np.abs(dev).max() <= 0.03 + 1e-12  # 3 noise scales of 0.01, reached ...
    assert np.abs(np.diff(dev)).max() <= 0.05 * 0.05 + 1e-12  # ... at no more than 0.05/s (20 Hz samples)
    assert np.abs(dev[t < 1.5]).max() < 0.03  # (the ramp alone would have reached it at once)
    (interval,) = campaign.ground_truth.intervals
    assert interval.traits == ("stealth", "persistence") and interval.start == 1.0 and interval.end == 4.0


def _remove_at(tick_at: int):
    def probe(master, tick):
        if tick == tick_at:
            for m in list(master.manipulators):
                master.remove_manipulator(m)  # a containment action
        return None

    return probe


@pytest.mark.parametrize("persistent", [True, False])
def test_persistence_rearms_after_its_manipulators_are_removed(persistent):
    events = [{"attack": "spoofing", "target": "conveyor.speed_meas", "at": 1.0, "duration": 3.0,
               "params": {"mode": "constant", "value": 2.0},
               "traits": {"persistence": {"period_s": 0.5}} if persistent else {}}]
    data, campaign, _, _ = run(events, 4.0, _remove_at(200), network=False, twin=False, record=SPEED)
    t, plc = data["time"], data["plc.speed_meas"]
    assert (plc[(t > 1.05) & (t < 2.0)] == 2.0).all()
    assert (plc[(t > 2.05) & (t < 2.5)] != 2.0).all()  # removed at t = 2.0 ...
    comes_back = (plc[(t > 2.55) & (t < 4.0)] == 2.0).all()
    assert comes_back == persistent  # ... re-armed at the next period (t = 2.5) only when persistent
    assert (plc[t > 4.05] != 2.0).all()  # and gone after its window
    rearmed = [e for e in campaign.events if e["kind"] == "rearmed"]
    assert [e["t"] for e in rearmed] == ([2.5] if persistent else [])


@pytest.mark.parametrize("persistent", [True, False])
def test_persistence_rearms_a_conduit_hook_after_a_rollback(persistent):
    """A snapshot from before the attack is restored mid-run (a rollback): the DoS hook is gone."""
    events = [{"attack": "dos", "target": "field_to_control", "at": 1.0, "duration": 2.0,
               "traits": {"persistence": {"period_s": 0.25}} if persistent else {}}]
    master, campaign = build([], twin=False)
    master.build()
    golden = master.save_snapshot()  # no attack installed yet
    attack = load_scenario({"events": events})
    from cosim.attacks import Campaign

    campaign = master.add_observer(Campaign(attack))
    assert campaign.ground_truth.intervals[0].traits == (("persistence",) if persistent else ())
    conduit = master.network.conduit("field_to_control")
    assert len(conduit.hooks) == 1
    master.run(duration=1.5)
    master.restore_snapshot(golden)  # back to t = 0 ... and the hook with it
    assert conduit.hooks == ()
    ages = []
    for _ in range(250):
        master.step()
        ch = master.network.channel("conveyor", "plc")
        ages.append(master.tick - ch.last_arrival_tick)
    master.terminate()
    ages = np.array(ages)  # index i: tick i + 1
    assert ages[:99].max() <= 2  # before the window
    starved = ages[150:].max() >= 90
    assert starved == persistent and len(conduit.hooks) == (1 if persistent else 0)


def test_insider_uses_valid_credentials():
    def attempt(traits):
        events = [{"attack": "api", "target": "hmi", "at": 0.5, "params": {"tag": "safe_mode_cmd", "value": True,
                                                                           "user": "mallory"}, "traits": traits}]
        master, campaign = build(events, twin=False, network=False)
        master.run(duration=1.0)
        log = list(master.units["hmi"].log)
        master.terminate()
        return log[-1]["result"], campaign.ground_truth.intervals[0].traits

    assert attempt({}) == ("refused: unknown user", ())
    assert attempt({"insider": {"user": "operator"}}) == ("accepted", ("insider",))


class _SpeedUp(ConduitAttack):
    """A test attack that changes the belt-speed setpoint in HMI frames to the PLC."""

    kind = "mitm_frames"
    physical = True

    def install(self, master):
        conduit = self.conduit(master)

        def hook(msg: Message):
            if not self.active(master, self.frame_tick(master, msg)) or "hmi.conveyor_speed_sp" not in msg.tags:
                return msg
            values = list(msg.values)
            values[msg.tags.index("hmi.conveyor_speed_sp")] = 0.9
            return msg._replace(values=tuple(values))

        self.add_hook(conduit, hook)


@pytest.mark.parametrize("insider", [False, True])
def test_insider_frames_pass_an_authenticated_conduit(insider):
    events = [{"attack": f"{__name__}._SpeedUp", "target": "enterprise_to_control", "at": 0.5,
               "traits": {"insider": {}} if insider else {}}]
    data, _, _, stats = run(events, 1.5, twin=False, record=["plc.conveyor_speed_sp"])
    late = data["time"] > 0.7
    changed = (data["plc.conveyor_speed_sp"][late] == 0.9).all()
    assert changed == insider  # without the key, the receiver rejects the changed frames
    assert (stats["enterprise_to_control"]["auth_failures"] > 0) != insider


def test_lateral_movement_has_one_interval_per_hop_and_each_acts_in_its_zone():
    overrides = ["attack=lateral", "attack.events.0.at=1.0", "attack.events.0.params.hops.0.at=1.0",
                 "attack.events.0.params.hops.0.duration=4.0", "attack.events.0.params.hops.1.at=2.0",
                 "attack.events.0.params.hops.1.duration=1.0"]
    master, campaign = build(None, twin=False, record=["plc.conveyor_speed_sp", "press.ram_position",
                                                       "plc.valve_cmd"], overrides=overrides, scenario="config")
    master.run(duration=6.0)
    data = master.observers[0].as_dict()
    log = list(master.units["hmi"].log)
    master.terminate()
    hop1, hop2 = campaign.ground_truth.intervals
    assert (hop1.attack, hop1.kind, hop1.start, hop1.end) == ("pivot.hop1", "api", 1.0, 5.0)
    assert (hop2.attack, hop2.kind, hop2.start, hop2.end, hop2.physical) == ("pivot.hop2", "injection", 2.0, 3.0,
                                                                              True)
    assert hop1.traits == hop2.traits == ("lateral",)
    assert [e["result"] for e in log] == ["accepted", "accepted"]  # the engineer's session: set, restored
    t = data["time"]
    assert (data["plc.conveyor_speed_sp"][(t > 1.5) & (t < 5.0)] == 0.3).all()
    assert data["press.ram_position"][(t > 2.0) & (t < 3.1)].max() > 0.05 and not data["plc.valve_cmd"].any()
    assert data["press.ram_position"][t < 2.0].max() == 0.0


CAMPAIGN = ["attack=campaign",
            "attack.events.0.at=0.5", "attack.events.0.duration=1.0",
            "attack.events.1.at=1.0", "attack.events.1.duration=1.0",
            "attack.events.2.at=2.0", "attack.events.2.duration=0.5",
            "attack.events.3.at=2.5", "attack.events.3.duration=1.0",
            "attack.events.4.at=3.0", "attack.events.4.params.hops.0.at=3.0",
            "attack.events.4.params.hops.0.duration=1.0", "attack.events.4.params.hops.1.at=3.5",
            "attack.events.4.params.hops.1.duration=0.5"]
REC = ["plc.speed_meas", "twin_rx.conveyor__speed_meas", "plc.pressure_meas", "press.ram_position",
       "plc.conveyor_speed_sp", "conveyor.belt_speed", "twin_conveyor.speed_meas"]


def test_campaign_preset_composes_is_overridable_and_replays_bit_for_bit():
    def go(seed):
        master, campaign = build(None, record=REC, overrides=CAMPAIGN, seed=seed, scenario="config")
        stats = []
        master.add_observer(__import__("tests.attacks.helpers", fromlist=["Probe"]).Probe(
            lambda m, k: tuple(s["bytes_sent"] for s in m.network.stats().values())))
        master.run(duration=4.5)
        data = master.observers[0].as_dict()
        stats = master.observers[-1].rows
        master.terminate()
        return data, campaign, stats

    a, camp, sa = go(3)
    b, _, sb = go(3)
    c, _, _ = go(4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert sa == sb
    assert not np.array_equal(a["plc.pressure_meas"], c["plc.pressure_meas"])  # another seed, other draws
    gt = [(i.attack, i.kind, i.start, i.end) for i in camp.ground_truth.intervals]
    assert gt == [("poison", "poisoning", 0.5, 1.5), ("spoof", "spoofing", 1.0, 2.0), ("flood", "dos", 2.0, 2.5),
                  ("exfil", "exfiltration", 2.5, 3.5), ("pivot.hop1", "api", 3.0, 4.0),
                  ("pivot.hop2", "injection", 3.5, 4.0)]
    assert camp.ground_truth.intervals[4].traits == ("insider", "lateral")
    assert camp.ground_truth.label(2.2) == "dos" and camp.ground_truth.label(0.2) == "normal"
    kinds = [e["kind"] for e in camp.events]
    assert "model_read" in kinds and "exfiltrated" in kinds
    t = a["time"]
    flooded = (t > 2.05) & (t < 2.5)
    assert np.ptp(a["plc.speed_meas"][flooded]) == 0.0  # the flood starves the PLC


NEW_PRESETS = {"dos_flood": "dos", "dos_delay": "dos", "sync_reorder": "sync", "poisoning": "poisoning",
               "logic": "logic", "exfiltration": "exfiltration", "ota": "ota", "supply_chain": "supply_chain",
               "lateral": "api", "stealthy_persistent": "spoofing", "campaign": "poisoning"}


@pytest.mark.parametrize("preset", sorted(NEW_PRESETS))
def test_every_new_preset_installs_on_the_cell(preset):
    master, campaign = build(None, overrides=[f"attack={preset}"], scenario="config")
    master.run(duration=0.3)
    master.terminate()
    assert campaign.ground_truth.intervals[0].kind == NEW_PRESETS[preset]


def test_preset_verify_follows_the_twins_setting():
    cfg = config(["twin=replica", "attack=ota", "twin.verify_models=false"])
    assert cfg.attack.events[0].params.verify is False
    cfg = config(["twin=none", "attack=ota"])
    assert cfg.attack.events[0].params.verify is True


def test_traits_are_checked():
    with pytest.raises(ConfigurationError, match=r"unknown trait\(s\) \['sneaky'\]"):
        load_scenario({"events": [{"attack": "spoofing", "target": "a.b", "at": 1, "traits": {"sneaky": True}}]})
    with pytest.raises(ConfigurationError, match="persistence takes period_s"):
        load_scenario({"events": [{"attack": "spoofing", "target": "a.b", "at": 1,
                                   "traits": {"persistence": {"period_s": -1}}}]})
    with pytest.raises(ConfigurationError, match="unknown stealth key"):
        load_scenario({"events": [{"attack": "spoofing", "target": "a.b", "at": 1, "traits": {"stealth": {"k2": 1}}}]})
    with pytest.raises(ConfigurationError, match="before the movement"):
        load_scenario({"events": [{"attack": "lateral", "target": "x", "at": 5,
                                   "params": {"hops": [{"attack": "api", "target": "hmi", "at": 1}]}}]})


def test_the_readme_worked_example_runs(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    section = text[text.index("Adding an attack takes one class"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    yaml_text = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    module = re.search(r"# (\w+)\.py", code).group(1)
    (tmp_path / f"{module}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    from cosim.attacks import ATTACKS

    monkeypatch.setattr("cosim.attacks.base.ATTACKS", dict(ATTACKS))  # the example registers a kind
    scenario = tmp_path / "stuck.yaml"
    scenario.write_text(yaml_text.replace("at: 20.0", "at: 1.0").replace("duration: 10.0", "duration: 1.0"))
    attacks = load_scenario(scenario)
    assert isinstance(attacks[0], Attack)
    data, _, _, _ = run(None, 3.0, network=False, twin=False, record=SPEED, scenario=scenario)
    t = data["time"]
    stuck = data["plc.speed_meas"][(t > 1.05) & (t < 2.0)]
    assert np.ptp(stuck) == 0.0 and np.ptp(data["conveyor.speed_meas"][(t > 1.05) & (t < 2.0)]) > 0
    assert np.ptp(data["plc.speed_meas"][t > 2.05]) > 0


def test_the_documented_override_forms_work():
    cfg = config(["twin=replica", "network=cell", "attack=campaign", "attack.events.0.at=5",
                  "attack.events.2.params.frames_per_tick=80", "attack.events.4.params.hops.1.at=70",
                  "+attack.events.1.traits.persistence.period_s=0.5"])
    from omegaconf import OmegaConf

    attacks = load_scenario(OmegaConf.to_container(cfg.attack, resolve=True))
    assert attacks[0].start == 5.0 and attacks[2].frames_per_tick == 80 and attacks[4].hops[1].start == 70.0
    assert attacks[1].traits.names() == ("stealth", "persistence")
    assert "attack.events.0.at=5" in (REPO / "docs" / "attacks.md").read_text()
