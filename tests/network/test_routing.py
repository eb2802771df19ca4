"""Routing through zones and conduits: identical to direct connections at zero delay,
clear errors for what cannot be routed, statistics readable as a unit."""

from __future__ import annotations

import numpy as np
import pytest

from cosim import Bias, ConfigurationError, Master, Observer, Override, Recorder, Transform
from cosim.network import ConduitConfig, Network, NetworkStats, network_from_config
from tests.conftest import Clock, Integrator, Noisy
from tests.network.helpers import Receiver, Sensor, pair, zone_per_unit

UNITS = ["n", "x", "y", "c", "a"]


def mixed_system(algorithm: str, network: bool, order: list[str] | None = None) -> tuple[Master, Recorder]:
    """Multi-rate loop with noise, a fan-out, manipulators on routed links and inputs."""
    m = Master(0.01, algorithm=algorithm, order=order)
    m.add_unit(Noisy("n", seed=5))
    m.add_unit(Integrator("x", parameters={"k": -1.0, "y0": 1.0}))
    m.add_unit(Integrator("y"), step_ticks=2)
    m.add_unit(Clock("c"), step_ticks=3)
    m.add_unit(Integrator("a"))
    m.connect("y.y", "x.u")
    m.connect("x.y", "y.u")
    m.connect("x.y", "n.u")
    m.connect("c.t", "a.u")
    m.add_manipulator(Transform("y.u", lambda tick, v: v + 0.001 * (tick % 5), start_tick=20))
    m.add_manipulator(Override("c.t -> a.u", -3.0, start_tick=30, end_tick=40))
    m.add_manipulator(Bias("n.u", 0.25, start_tick=10))
    if network:
        m.attach_network(zone_per_unit(UNITS))
    rec = m.add_observer(Recorder(["n.y", "x.y", "y.y", "c.t", "c.n", "a.y", "a.u", "x.u", "y.u", "n.u"]))
    return m.build(), rec


@pytest.mark.parametrize(("algorithm", "order"), [
    ("jacobi", None),
    ("gauss_seidel", None),
    ("gauss_seidel", ["a", "y", "n", "x", "c"]),  # receivers before their sources
])
def test_zero_delay_network_is_bit_identical_to_direct_connections(algorithm, order):
    direct, rec_d = mixed_system(algorithm, network=False, order=order)
    routed, rec_r = mixed_system(algorithm, network=True, order=order)
    direct.step(50)
    routed.step(50)
    # a manipulator added while running (recompiles the plan) keeps routing intact
    routed.add_manipulator(Bias("c.t -> a.u", 1.0, start_tick=60))
    direct.add_manipulator(Bias("c.t -> a.u", 1.0, start_tick=60))
    direct.step(250)
    routed.step(250)
    a, b = rec_d.as_dict(), rec_r.as_dict()
    assert len(a["time"]) == 301
    for key in a:
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    net = routed.network
    assert net is not None
    stats = net.stats()
    # every connection crossed a zone: 4 channels (x -> y, y -> x, x -> n, c -> a)
    assert len(net.channels) == 4
    assert sum(s["delivered"] for s in stats.values()) == sum(s["sent"] for s in stats.values()) > 300
    assert all(s["lost"] == s["gaps"] == s["out_of_order"] == 0 for s in stats.values())


def test_latency_delays_by_whole_ticks_and_input_keeps_its_start_value_until_then():
    slow, _ = pair(base_step=0.01, latency_s=0.02)
    rec = slow.add_observer(Recorder(["r.t"]))
    slow.build().step(10)
    # recorded after tick k-1: the receiver got (at tick k-1) what was sent at tick k-3,
    # the sensor's time at the start of that tick; its start value before anything arrived
    expected = [-1.0, -1.0, -1.0, *[slow.grid.time(k - 3) for k in range(3, 11)]]
    assert list(rec.column("r.t")) == expected
    direct = Master(0.01)
    direct.add_unit(Sensor("s"))
    direct.add_unit(Receiver("r"))
    direct.connect("s.t", "r.t")
    rec_d = direct.add_observer(Recorder(["r.t"]))
    direct.build().step(10)
    assert list(rec_d.column("r.t"))[3:] == [direct.grid.time(k - 1) for k in range(3, 11)]


def test_same_zone_connections_stay_direct_and_only_cross_zone_pairs_get_channels():
    m = Master(0.01)
    for name in ("s1", "s2", "r"):
        m.add_unit(Sensor(name) if name.startswith("s") else Receiver(name))
    m.connect("s1.t", "r.t")
    m.connect("s2.n", "r.n")
    m.connect("s2.x", "r.x")
    net = Network({"field": ["s1"], "control": ["s2", "r"]},
                  [ConduitConfig("f2c", "field", "control", "telemetry", latency_s=0.01)])
    m.attach_network(net)
    m.build()
    assert [(ch.source, ch.target, ch.tags) for ch in net.channels] == [("s1", "r", ("s1.t",))]
    assert net.routes.keys() == {m.connections[0].target}
    with pytest.raises(ConfigurationError, match="no routed channel from 's2' to 'r'"):
        net.channel("s2", "r")


def test_one_frame_per_source_target_pair_and_tick():
    m, net = pair(variables=("t", "n", "x"), latency_s=0.002)
    m.build().step(100)
    ch = net.channel("s", "r")
    assert ch.tags == ("s.t", "s.n", "s.x")
    stats = net.stats()["f2c"]
    assert stats["sent"] == 100 and ch.seq == 100
    assert stats["bytes_sent"] == 100 * (40 + 3 * 12)
    assert stats["delivered"] == 98 and stats["in_flight"] == 2
    # the 98th frame (sent at tick 97, values as of its start) arrived at tick 99
    assert m.get("r.n") == 97 and m.get("r.x") == 2.0 * m.grid.time(97) + 1.0


def test_receiver_metadata_for_late_or_lost_telemetry():
    m, net = pair(base_step=0.01, latency_s=0.03)
    m.build()
    ch = net.channel("s", "r")
    assert (ch.last_seq, ch.last_sent_time, ch.last_arrival_tick, ch.gaps) == (0, None, -1, 0)
    m.step(10)
    assert ch.seq == 10 and ch.last_seq == 7
    assert ch.last_arrival_tick == 9 and ch.last_sent_time == m.grid.time(6)
    net.conduits["f2c"].cut()
    m.step(5)
    net.conduits["f2c"].restore()
    m.step(5)
    # frames 11..15 were sent while cut; 8..10 were in flight and dropped on arrival
    assert ch.gaps == 8 and ch.last_seq == 17


def test_unrouted_cross_zone_connection_names_connection_and_zones():
    m = Master(0.01)
    m.add_unit(Sensor("s"))
    m.add_unit(Receiver("r"))
    m.connect("s.t", "r.t")
    m.attach_network(Network({"field": ["s"], "control": ["r"]},
                             [ConduitConfig("c2f", "control", "field", "command")]))
    with pytest.raises(ConfigurationError, match=r"connection s\.t -> r\.t crosses from zone 'field' .* to zone "
                                                 r"'control' .* no conduit leads from 'field' to 'control'"):
        m.build()


def test_every_unit_needs_a_zone_unless_there_is_a_default():
    def system(**kw: object) -> Master:
        m = Master(0.01)
        m.add_unit(Sensor("s"))
        m.add_unit(Receiver("r"))
        m.add_unit(Clock("clk"))
        m.connect("s.t", "r.t")
        m.attach_network(Network({"field": ["s"], "control": ["r"]},
                                 [ConduitConfig("f2c", "field", "control", "telemetry")], **kw))  # type: ignore[arg-type]
        return m

    with pytest.raises(ConfigurationError, match=r"unit\(s\) \['clk'\] are not assigned to any zone"):
        system().build()
    system(default_zone="control").build()
    system(exempt=["clk"]).build()
    with pytest.raises(ConfigurationError, match=r"default_zone 'contrl' is not a zone.*did you mean 'control'"):
        system(default_zone="contrl")


def test_network_stats_unit_is_read_through_a_recorder():
    m, net = pair(base_step=0.01, latency_s=0.02)
    m.add_unit(NetworkStats(net))  # exempt from routing, no zone needed
    rec = m.add_observer(Recorder(["net.f2c__sent", "net.f2c__delivered", "net.f2c__in_flight",
                                   "net.f2c__latency_mean_s", "net.f2c__last_delivery_tick", "net.f2c__cut"]))
    m.build().step(6)
    assert list(rec.column("net.f2c__sent")) == [0, 1, 2, 3, 4, 5, 6]
    assert list(rec.column("net.f2c__delivered")) == [0, 0, 0, 1, 2, 3, 4]
    assert list(rec.column("net.f2c__in_flight")) == [0, 1, 2, 2, 2, 2, 2]
    assert list(rec.column("net.f2c__last_delivery_tick")) == [-1, -1, -1, 2, 3, 4, 5]
    np.testing.assert_allclose(rec.column("net.f2c__latency_mean_s")[3:], 0.02)
    assert rec.column("net.f2c__cut").dtype == np.bool_
    assert net.stats()["f2c"]["delivered"] == m.get("net.f2c__delivered") == 4


def test_stats_unit_output_can_feed_a_detector_unit_directly():
    m = Master(0.01)
    m.add_unit(Sensor("s"))
    m.add_unit(Receiver("r"))
    m.connect("s.t", "r.t")
    net = Network({"field": ["s"], "control": ["r", "det"]},
                  [ConduitConfig("f2c", "field", "control", "telemetry", latency_s=0.01)])
    m.attach_network(net)
    m.add_unit(NetworkStats(net, name="traffic", fields=["delivered"]))
    m.add_unit(Receiver("det"))
    m.connect("traffic.f2c__delivered", "det.n")
    m.build().step(5)
    assert net.channels == [net.channel("s", "r")]  # the stats link is not routed
    # det.n was read at the start of tick 4, after the delivery of that tick: 4 frames
    assert m.get("det.n") == 4 and m.get("traffic.f2c__delivered") == 4


class _Cutter(Observer):
    def __init__(self, net: Network, at: int) -> None:
        self.net, self.at = net, at

    def after_step(self, tick: int) -> None:
        if tick == self.at:
            self.net.conduits["f2c"].cut()


def test_config_builds_the_same_network():
    cfg = {
        "zones": {"field": ["s"], "control": {"units": ["r"], "description": "SL-2"}},
        "default_zone": None,
        "exempt": [],
        "conduits": [{"name": "f2c", "from": "field", "to": "control", "channel": "telemetry",
                      "latency_s": 0.002, "jitter_s": 0.0, "loss": 0.0, "bandwidth_bps": None,
                      "queue_limit": None, "auth": "hmac"}],
    }
    net = network_from_config(cfg, ["s", "r"], seed=1, hmac_keys={"f2c": b"secret"})
    assert net.zones["control"].description == "SL-2"
    assert net.conduits["f2c"].authenticated and net.conduits["f2c"].config.latency_s == 0.002
    m = Master(0.001)
    m.add_unit(Sensor("s"))
    m.add_unit(Receiver("r"))
    m.connect("s.t", "r.t")
    m.attach_network(net)
    m.build().step(10)
    assert net.stats()["f2c"]["delivered"] == 8 and net.stats()["f2c"]["auth_failures"] == 0


BASE = {"name": "f2c", "from": "field", "to": "control", "channel": "telemetry"}


@pytest.mark.parametrize(("cfg", "message"), [
    ({"zones": {"field": ["s"], "control": ["r", "ghost"]}}, r"zone 'control': unknown unit 'ghost'"),
    ({"zones": {"field": ["s"]}}, r"unit\(s\) \['r'\] are not assigned"),
    ({"zones": {"field": ["s", "r"], "control": ["r"]}}, "assigned to two zones"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "to": "contrl"}]},
     "unknown target_zone 'contrl'.*did you mean 'control'"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "latency_s": -1}]},
     "latency_s must be finite and >= 0"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "loss": 1.5}]}, r"loss must be .*<= 1"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "jitter_s": "fast"}]},
     "jitter_s must be a number"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "bandwidth_bps": 0}]},
     "bandwidth_bps must be finite and > 0"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "queue_limit": 2.5}]},
     "queue_limit must be a whole number"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "channel": "video"}]},
     "unknown channel 'video'"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "auth": "rsa"}]}, "auth must be None"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "latncy_s": 1}]},
     r"unknown key\(s\) \['latncy_s'\]"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{k: v for k, v in BASE.items() if k != "channel"}]},
     r"missing \['channel'\]"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [BASE, {**BASE, "channel": "command"}]},
     "two conduits are named 'f2c'"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [BASE, {**BASE, "name": "other"}]},
     "conduits 'f2c' and 'other' both lead from zone 'field' to zone 'control'"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "to": "field"}]}, "to itself"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "conduits": [{**BASE, "auth": "hmac"}]},
     "uses auth 'hmac' but no key was given"),
    ({"zones": {"field": ["s"], "control": ["r"]}, "zonez": {}}, r"unknown key\(s\) \['zonez'\]"),
])
def test_bad_configs_give_one_clear_error(cfg, message):
    with pytest.raises(ConfigurationError, match=message):
        network_from_config(cfg, ["s", "r"], seed=0)


def test_cut_observer_changes_stats_field():
    m, net = pair(base_step=0.01)
    m.add_observer(_Cutter(net, 3))
    m.add_unit(NetworkStats(net))
    m.build().step(5)
    assert m.get("net.f2c__cut") is True
    assert m.get("net.f2c__dropped_cut") == 2
    assert m.get("r.t") == m.grid.time(2)  # the last value sent before the cut


def test_one_output_feeding_two_inputs_travels_once_per_frame():
    m = Master(0.01)
    m.add_unit(Sensor("s"))
    m.add_unit(Receiver("r"))
    m.connect("s.t", "r.t")
    m.connect("s.t", "r.x")
    net = Network({"field": ["s"], "control": ["r"]},
                  [ConduitConfig("f2c", "field", "control", "telemetry", latency_s=0.02)])
    m.attach_network(net)
    m.build().step(2)
    assert net.channel("s", "r").tags == ("s.t",) and net.channel("s", "r").size == 52
    assert m.get("r.t") == m.get("r.x") == -1.0  # nothing delivered yet: the first input's start value
    m.step(3)
    assert m.get("r.t") == m.get("r.x") == m.grid.time(2)


def test_network_stats_rejects_unknown_fields_and_networks_refuse_a_second_master():
    m, net = pair()
    with pytest.raises(ConfigurationError, match=r"unknown field\(s\) \['deliverd'\]"):
        NetworkStats(net, fields=["deliverd"])
    m.build()
    other, _ = pair()
    other.network = None
    other.attach_network(net)
    with pytest.raises(ConfigurationError, match="already attached to another master"):
        other.build()
