"""Denial of service (flood, drop, delay), sync reorder and model exfiltration: they change
the traffic on their conduit only inside their window."""

from __future__ import annotations

import numpy as np
import pytest

from cosim import ConfigurationError
from tests.attacks.helpers import run, times


def f2c_probe(master, tick):
    """Legitimate deliveries on field_to_control, rate drops, and the age of the PLC's belt speed."""
    stats = master.network.conduit("field_to_control").stats()
    ch = master.network.channel("conveyor", "plc")
    return stats["delivered"], stats["dropped_rate"], stats["out_of_order"], tick - ch.last_arrival_tick


def test_flood_starves_the_receiver_only_inside_the_window():
    flood = {"attack": "dos", "target": "field_to_control", "at": 1.0, "duration": 1.0,
             "params": {"mode": "flood", "frames_per_tick": 40, "capacity_fps": 2000}}
    _, campaign, rows, stats = run([flood], 3.0, f2c_probe, twin=False)
    rows = np.array(rows)
    t = times(len(rows))
    delivered = np.diff(rows[:, 0], prepend=0)  # legitimate frames delivered per tick (junk is discarded)
    before, inside, after = t < 0.995, (t > 1.015) & (t < 1.995), t > 2.015
    # the field units send every 20 ms (two ticks): frames arrive in every pair of ticks
    pairs = delivered[:len(delivered) // 2 * 2].reshape(-1, 2).sum(axis=1)
    t_pairs = t[:len(pairs) * 2:2]
    assert pairs[t_pairs < 0.985].min() > 0 and pairs[t_pairs > 2.015].min() > 0
    assert delivered[inside].max() == 0  # starved
    age = rows[:, 3]
    assert age[before].max() <= 2 and age[after].max() <= 2
    assert age[inside].max() >= 95  # the PLC's belt speed is a second old at the end of the flood
    rate_drops = np.diff(rows[:, 1], prepend=0)
    assert rate_drops[before].sum() == 0 and rate_drops[after].sum() == 0 and rate_drops[inside].min() > 0
    assert stats["field_to_control"]["injected"] == 40 * 100
    assert campaign.ground_truth.intervals[0].kind == "dos"


def test_flood_needs_a_bottleneck():
    flood = {"attack": "dos", "target": "field_to_control", "at": 0.1, "params": {"mode": "flood"}}
    with pytest.raises(ConfigurationError, match="no bandwidth limit"):
        run([flood], 0.2, twin=False)


def test_flood_fills_a_bandwidth_limited_link():
    """On a conduit with a bandwidth and a queue, the junk takes the link and the queue."""
    flood = {"attack": "dos", "target": "field_to_control", "at": 0.5, "duration": 0.5,
             "params": {"mode": "flood", "frames_per_tick": 30}}
    overrides = ["+network.conduits.0.bandwidth_bps=200000", "+network.conduits.0.queue_limit=8"]
    _, _, rows, _stats = run([flood], 1.5, lambda m, k: m.network.conduit("field_to_control").stats()["dropped_queue"],
                            twin=False, overrides=overrides)
    drops = np.diff(rows, prepend=0)
    t = times(len(rows))
    assert drops[t < 0.495].sum() == 0 and drops[(t > 0.5) & (t < 1.0)].sum() > 0


def test_delay_holds_commands_back_only_inside_the_window():
    delay = {"attack": "dos", "target": "control_to_field", "at": 1.0, "duration": 1.0,
             "params": {"mode": "delay", "delay_s": 0.3}}

    def lag(master, tick):
        ch = master.network.channel("plc", "conveyor")
        return master.time - (ch.last_sent_time if ch.last_sent_time is not None else 0.0)

    _, _, rows, stats = run([delay], 3.0, lag, twin=False)
    lag_s = np.array(rows)
    t = times(len(lag_s))
    assert lag_s[t < 0.995].max() < 0.025 and lag_s[t > 2.35].max() < 0.025
    inside = (t > 1.31) & (t < 1.99)
    assert np.all(np.abs(lag_s[inside] - 0.3) < 0.025)  # commands arrive 0.3 s late
    assert stats["control_to_field"]["dropped_hook"] > 0 and stats["control_to_field"]["injected"] > 0


def test_sync_reorder_delivers_the_twins_telemetry_out_of_order_and_leaves_the_plc_alone():
    rec = ["plc.speed_meas", "twin_rx.conveyor__speed_meas", "conveyor.speed_meas"]

    def ooo(master, tick):
        return master.network.conduit("field_to_twin").stats()["out_of_order"]

    clean, _, _, _ = run([], 3.0, twin=True, record=rec)
    data, _, rows, _stats = run([{"attack": "sync", "target": "field_to_twin", "at": 1.0, "duration": 1.0,
                                 "params": {"mode": "reorder", "window": 3}}], 3.0, ooo, twin=True, record=rec)
    counts = np.array(rows)
    t = times(len(counts))
    assert counts[t < 0.995].max() == 0
    assert counts[t < 2.0].max() > 50  # the older frames of every window of 3 were discarded
    assert counts[t > 2.05].min() == counts[-1]  # nothing more after the window
    np.testing.assert_array_equal(data["plc.speed_meas"], clean["plc.speed_meas"])  # the PLC: untouched
    before = data["time"] < 0.995
    np.testing.assert_array_equal(data["twin_rx.conveyor__speed_meas"][before],
                                  clean["twin_rx.conveyor__speed_meas"][before])


def test_exfiltration_is_extra_traffic_only_inside_the_window():
    exfil = {"attack": "exfiltration", "target": "twin_conveyor", "at": 1.0, "duration": 2.0,
             "params": {"conduit": "control_to_enterprise", "rate_bps": 100000}}

    def traffic(master, tick):
        s = master.network.conduit("control_to_enterprise").stats()
        return s["bytes_sent"], s["injected"]

    rec = ["hmi.state", "hmi.parts_good", "hmi.mode"]
    clean, _, base_rows, _ = run([], 3.5, traffic, record=rec)
    data, campaign, rows, _ = run([exfil], 3.5, traffic, record=rec)
    extra = np.diff(np.array(rows)[:, 0], prepend=0) - np.diff(np.array(base_rows)[:, 0], prepend=0)
    t = times(len(extra))
    (attack,) = campaign.attacks
    read, done = attack.events
    assert read["kind"] == "model_read" and read["bytes"] > 10_000 and done["kind"] == "exfiltrated"
    assert extra[(t < 0.995) | (t > 3.005)].sum() == 0
    assert extra[(t > 1.0) & (t < 3.0)].sum() >= read["bytes"]  # the model went out, headers on top
    assert 1.0 < done["t"] < 3.0
    assert 0 < extra.max() <= 100000 * 0.01 + 200  # at the attacker's rate
    for key in rec:  # the receiver discards the frames: the operator's screen is unchanged
        np.testing.assert_array_equal(data[key], clean[key])
    interval = campaign.ground_truth.intervals[0]
    assert (interval.kind, interval.physical) == ("exfiltration", False)
