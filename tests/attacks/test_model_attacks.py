"""Poisoning, logic payload, OTA update and supply chain: each changes what it claims, only
inside its window."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from cosim.attacks import update_endpoint
from tests.attacks.helpers import build, run

SPEED = ["conveyor.speed_meas", "plc.speed_meas", "twin_rx.conveyor__speed_meas"]


@pytest.fixture(scope="module")
def clean_speed():
    return run([], 4.0, network=False, record=SPEED)[0]


@pytest.mark.parametrize("mode", ["drift", "offset", "noise"])
def test_poisoning_shifts_the_twins_data_within_budget_and_not_the_plcs(mode, clean_speed):
    attack = {"attack": "poisoning", "target": "conveyor.speed_meas", "at": 1.0, "duration": 2.0,
              "params": {"mode": mode, "budget": 2.0, "noise": 0.01, "rate": 1.0}}
    data, campaign, _, _ = run([attack], 4.0, network=False, record=SPEED)
    t = data["time"]
    shift = data["twin_rx.conveyor__speed_meas"] - clean_speed["twin_rx.conveyor__speed_meas"]
    np.testing.assert_array_equal(data["plc.speed_meas"], clean_speed["plc.speed_meas"])  # the PLC: the truth
    np.testing.assert_array_equal(data["conveyor.speed_meas"], clean_speed["conveyor.speed_meas"])
    inside, outside = (t > 1.005) & (t < 3.0), (t <= 1.0) | (t > 3.005)
    assert np.abs(shift[outside]).max() == 0.0
    assert np.abs(shift[inside]).max() <= 0.02 + 1e-12  # within 2 noise scales
    assert np.abs(shift[inside]).max() > 0.015  # and it uses the budget
    if mode == "drift":
        assert np.all(np.diff(shift[inside]) >= -1e-12)  # a slow, monotone drift
    (interval,) = campaign.ground_truth.intervals
    assert (interval.kind, interval.physical) == ("poisoning", False)
    mask = campaign.ground_truth.training_mask(t, kinds=["poisoning"])
    np.testing.assert_array_equal(mask, (t < 1.0) | (t >= 3.0))


def test_poisoning_refuses_a_signal_that_reaches_no_twin():
    from cosim import ConfigurationError

    with pytest.raises(ConfigurationError, match="never touches the control path"):
        run([{"attack": "poisoning", "target": "plc.valve_cmd", "at": 0.1}], 0.2, network=False, twin=False)


def test_logic_payload_lengthens_the_press_dwell_behind_the_operators_back():
    rec = ["plc.valve_cmd", "hmi.press_time_sp", "press.ram_position"]
    clean, _, _, _ = run([], 16.0, network=False, twin=False, record=rec)
    attack = {"attack": "logic", "target": "plc.press_time_sp", "at": 5.0, "duration": 11.0,
              "params": {"mode": "set", "value": 3.0}}
    data, campaign, _, _ = run([attack], 16.0, network=False, twin=False, record=rec)

    def closed_s(d):
        return d["plc.valve_cmd"].sum() * (d["time"][1] - d["time"][0])

    assert closed_s(clean) == pytest.approx(1.3, abs=0.1)
    assert closed_s(data) == pytest.approx(3.3, abs=0.1)  # the payload's dwell of 3 s
    assert (data["hmi.press_time_sp"] == 1.0).all()  # the operator still sees the recipe's 1 s
    before = data["time"] < 5.0
    np.testing.assert_array_equal(data["press.ram_position"][before], clean["press.ram_position"][before])
    assert campaign.ground_truth.intervals[0].physical


def test_logic_on_delay_makes_the_valve_open_late():
    rec = ["plc.valve_cmd", "press.ram_position"]
    clean, _, _, _ = run([], 14.0, network=False, twin=False, record=rec)
    data, _, _, _ = run([{"attack": "logic", "target": "press.valve_cmd", "at": 5.0,
                          "params": {"mode": "on_delay", "delay_s": 0.5}}], 14.0, network=False, twin=False,
                        record=rec)
    t = data["time"]
    first = t[np.argmax(clean["press.ram_position"] > 0.01)]
    late = t[np.argmax(data["press.ram_position"] > 0.01)]
    assert late - first == pytest.approx(0.5, abs=0.06)


def _ota(params, verify=True, intercept=None):
    attack = {"attack": "ota", "target": "twin_conveyor", "at": 0.2,
              "params": {"parameters": {"gain": 0.25}, "verify": verify, **params}}
    master, campaign = build([attack], network=False)
    if intercept:
        update_endpoint(master).intercept(intercept)
    before = master.get("twin_conveyor.gain")
    master.run(duration=0.3)
    after = master.get("twin_conveyor.gain")
    log = update_endpoint(master).log
    master.terminate()
    return before, after, campaign.attacks[0], log


@pytest.mark.parametrize(("mode", "reason"), [("unsigned", "missing manifest"), ("foreign", "unknown signer"),
                                              ("modified", "hash mismatch")])
def test_ota_update_is_refused_by_verification(mode, reason, tmp_path):
    before, after, attack, log = _ota({"mode": mode, "attacker_keystore": str(tmp_path / "attacker")})
    assert after == before == 0.5
    assert attack.result == f"refused: {reason}"
    assert attack.events[0]["kind"] == "update_refused" and attack.events[0]["t"] == pytest.approx(0.2)
    assert log[-1]["result"] == attack.result


def test_ota_update_is_applied_without_verification_and_can_be_quarantined():
    before, after, attack, _ = _ota({"mode": "unsigned"}, verify=False)
    assert before == 0.5 and after == 0.25 and attack.result == "applied"
    taken = []
    before, after, attack, log = _ota({"mode": "unsigned"}, verify=False,
                                      intercept=lambda update: taken.append(update) or "quarantined")
    assert after == before == 0.5 and attack.result == "quarantined" and taken[0].parameters == {"gain": 0.25}
    assert log[-1]["result"] == "quarantined"
    assert attack.ground_truth().physical is False


def test_supply_chain_component_fails_its_signature_and_poisons_when_unverified(tmp_path):
    def go(verify):
        attack = {"attack": "supply_chain", "target": "twin_conveyor", "at": 0.1,
                  "params": {"parameters": {"gain": 0.3}, "verify": verify, "workdir": str(tmp_path / str(verify))}}
        master, campaign = build([attack], network=False)
        original = Path(master.units["twin_conveyor"].path)
        digest = hashlib.sha256(original.read_bytes()).hexdigest()
        master.run(duration=0.2)
        tau = master.get("twin_conveyor.gain")
        master.terminate()
        assert hashlib.sha256(original.read_bytes()).hexdigest() == digest  # the original is untouched
        return tau, campaign.attacks[0]

    tau, attack = go(True)
    assert attack.result == "refused: hash mismatch" and tau == 0.5
    assert attack.component is not None and attack.component.parent == tmp_path / "True"
    tau, attack = go(False)
    assert attack.result == "applied" and tau == 0.3
