"""Snapshots include the network: restore-then-step is bit-identical with messages in flight."""

from __future__ import annotations

import numpy as np

from cosim import Master, Observer, Recorder
from cosim.network import ConduitConfig, Message, Network, NetworkStats
from tests.conftest import Integrator, Noisy
from tests.network.helpers import Receiver, Sensor

KEY = b"k" * 32


class Containment(Observer):
    """Cuts, limits and restores conduits at fixed ticks (as the containment layer will)."""

    def __init__(self, net: Network) -> None:
        self.net = net

    def after_step(self, tick: int) -> None:
        wan, lan = self.net.conduits["f2c"], self.net.conduits["c2f"]
        if tick == 60:
            wan.rate_limit(300.0, burst=2)
        elif tick == 90:
            lan.cut()
        elif tick == 110:
            lan.restore()
            wan.allow(["n", "s"])
        elif tick == 130:
            wan.allow(None)
            wan.rate_limit(None)


def system(seed: int = 7) -> tuple[Master, Recorder, Network]:
    m = Master(0.001)
    m.add_unit(Noisy("n", seed=seed))
    m.add_unit(Sensor("s"), step_ticks=2)
    m.add_unit(Integrator("x", parameters={"k": -1.0, "y0": 1.0}))
    m.add_unit(Receiver("r"))
    m.connect("n.y", "x.u")
    m.connect("x.y", "n.u")
    m.connect("s.t", "r.t")
    m.connect("s.n", "r.n")
    net = Network(
        {"field": ["n", "s"], "control": ["x", "r"]},
        [ConduitConfig("f2c", "field", "control", "telemetry", latency_s=0.004, jitter_s=0.003, loss=0.05,
                       bandwidth_bps=52 * 1500, queue_limit=3, auth="hmac"),
         ConduitConfig("c2f", "control", "field", "command")],
        seed=seed, hmac_keys={"f2c": KEY},
    )
    m.attach_network(net)
    m.add_unit(NetworkStats(net))
    # a man-in-the-middle that alters every fifth frame (its tag no longer fits)
    net.conduits["f2c"].add_hook(
        lambda msg: msg._replace(values=tuple(v * 2 for v in msg.values)) if msg.seq % 5 == 0 else msg)
    m.add_observer(Containment(net))
    rec = m.add_observer(Recorder(["n.y", "x.y", "x.u", "r.t", "r.n", "net.f2c__delivered", "net.f2c__lost",
                                   "net.f2c__out_of_order", "net.f2c__auth_failures", "net.f2c__dropped_rate",
                                   "net.f2c__dropped_queue", "net.c2f__dropped_cut", "net.f2c__queue_length",
                                   "net.f2c__latency_sum_s", "net.f2c__in_flight"]))
    return m.build(), rec, net


def test_restore_then_step_is_bit_identical_with_messages_in_flight():
    m, rec, net = system()
    m.step(80)  # past the rate limit, before the cut
    assert net.stats()["f2c"]["in_flight"] > 0
    snap = m.save_snapshot()
    m.step(120)
    first = rec.as_dict()
    stats = net.stats()
    assert all(stats["f2c"][k] > 0 for k in ("lost", "out_of_order", "auth_failures", "dropped_rate", "delivered"))
    assert stats["c2f"]["dropped_cut"] > 0
    for _ in range(2):  # a snapshot can be restored more than once
        m.restore_snapshot(snap)
        m.step(120)
        again = rec.as_dict()
        for key in first:
            np.testing.assert_array_equal(again[key], first[key], err_msg=key)
        assert net.stats() == stats
    # and equals a run that never restored
    fresh, rec2, net2 = system()
    fresh.step(200)
    for key, values in rec2.as_dict().items():
        np.testing.assert_array_equal(values, first[key], err_msg=key)
    assert net2.stats() == stats
    # another seed gives another run
    other, rec3, _ = system(seed=8)
    other.step(200)
    assert not np.array_equal(rec3.column("net.f2c__lost"), first["net.f2c__lost"])


def test_restore_brings_back_run_time_control_and_hooks():
    m, _, net = system()
    m.step(10)
    c = net.conduits["c2f"]
    c.cut()
    sink: list[Message] = []
    net.conduits["f2c"].divert(sink.append)
    snap = m.save_snapshot()
    c.restore()
    net.conduits["f2c"].divert(None)
    extra = net.conduits["f2c"].add_hook(lambda msg: None)
    m.step(10)
    m.restore_snapshot(snap)
    assert c.is_cut and extra not in net.conduits["f2c"].hooks
    m.step(10)
    assert net.stats()["f2c"]["diverted"] == len(sink) > 0


def test_restore_after_the_plan_was_recompiled_keeps_held_values():
    from cosim import Override
    from tests.network.helpers import pair

    def run(attack: bool) -> tuple[list[float], dict]:
        m, net = pair(base_step=1e-3, variables=("t", "n"), latency_s=0.003, jitter_s=0.002)
        rec = m.add_observer(Recorder(["r.t", "r.n"]))
        m.build().step(40)
        if attack:
            snap = m.save_snapshot()
            attack_m = m.add_manipulator(Override("r.x", 5.0))  # an unconnected input: new buffer slot
            m.step(20)
            m.restore_snapshot(snap)
            m.remove_manipulator(attack_m)  # recompiled again: another layout object
        m.step(60)
        return list(rec.column("r.t")) + list(rec.column("r.n")), net.stats()

    assert run(attack=True) == run(attack=False)
