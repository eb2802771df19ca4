"""Securing a conduit at run time: in-path changes and forged frames are refused and counted."""

from __future__ import annotations

import pytest

from cosim.core.manipulator import Override
from cosim.core.master import Master
from cosim.core.unit import PythonUnit
from cosim.core.variables import Causality, Variable, VarType
from cosim.errors import ConfigurationError
from cosim.network import ConduitConfig, Network
from cosim.network.conduit import TRAFFIC_FIELDS


class Source(PythonUnit):
    def __init__(self, name: str) -> None:
        super().__init__(name, [Variable("y", Causality.OUTPUT, VarType.REAL, 0.0)])

    def do_step(self, t: float, h: float) -> None:
        self.values["y"] = round(t + h, 9)


class Sink(PythonUnit):
    def __init__(self, name: str) -> None:
        super().__init__(name, [Variable("u", Causality.INPUT, VarType.REAL, 0.0)])
        self.seen: list[float] = []

    def do_step(self, t: float, h: float) -> None:
        self.seen.append(self.values["u"])


def _system(credentials: bool = False) -> tuple[Master, Network, Override]:
    master = Master(base_step=0.1)
    master.add_unit(Source("src"))
    sink = master.add_unit(Sink("dst"))
    master.connect("src.y", "dst.u")
    net = Network({"field": ["src"], "control": ["dst"]},
                  [ConduitConfig(name="f2c", source_zone="field", target_zone="control", channel="telemetry")], seed=1)
    master.attach_network(net)
    forged = Override("src.y -> dst.u", -1.0, start_tick=5)
    forged.credentials = credentials
    master.add_manipulator(forged)
    master.build()
    assert isinstance(sink, Sink)
    return master, net, forged


def test_manipulator_sits_on_the_conduit_of_its_connection() -> None:
    _master, net, forged = _system()
    assert forged.path is net.conduit("f2c")


def test_securing_stops_in_path_change_and_counts_each_attempt() -> None:
    master, net, _ = _system()
    conduit = net.conduit("f2c")
    master.run(until_tick=10)
    sink = master.units["dst"]
    assert sink.seen[5:10] == [-1.0] * 5  # the in-path change acts before securing
    conduit.secure(b"k" * 32)
    master.run(until_tick=20)
    assert sink.seen[10:20] == pytest.approx([round(0.1 * k, 9) for k in range(10, 20)])
    assert conduit.stats()["auth_failures"] == 10
    assert conduit.authenticated


def test_an_insider_with_the_key_is_not_stopped() -> None:
    master, net, _ = _system(credentials=True)
    net.conduit("f2c").secure(b"k" * 32)
    master.run(until_tick=10)
    assert master.units["dst"].seen[5:10] == [-1.0] * 5
    assert net.conduit("f2c").stats()["auth_failures"] == 0


def test_secure_needs_a_key() -> None:
    _, net, _ = _system()
    with pytest.raises(ConfigurationError, match="f2c"):
        net.conduit("f2c").secure(b"")


def test_snapshot_keeps_the_manipulator_on_its_conduit() -> None:
    master, net, forged = _system()
    master.run(until_tick=3)
    snap = master.save_snapshot()
    master.run(until_tick=8)
    master.restore_snapshot(snap)
    assert forged.path is net.conduit("f2c")


def _keyed_run(hook: bool) -> tuple[list[float], dict[str, object], list[int], object, tuple[int, ...]]:
    from tests.network.helpers import pair

    master, net = pair(base_step=0.01, variables=("t", "n", "x"), auth="hmac", hmac_keys={"f2c": b"k" * 32})
    conduit = net.conduit("f2c")
    if hook:
        conduit.add_hook(lambda msg: msg)  # the general path: the frame is signed, then passed on as is
    master.run(until_tick=50)
    stats = dict(conduit.stats())
    ch = conduit.channels[0]
    return (master.units["r"].get(["t", "n", "x"]), stats, [ch.seq, ch.last_seq, ch.gaps], ch.last_sent_time,
            conduit.traffic())


def test_a_keyed_conduit_without_delay_delivers_as_the_general_path_does() -> None:
    from tests.network.helpers import pair

    fast_values, fast_stats, fast_seq, fast_ts, fast_traffic = _keyed_run(hook=False)
    slow_values, slow_stats, slow_seq, slow_ts, slow_traffic = _keyed_run(hook=True)
    assert fast_values == slow_values and fast_seq == slow_seq and fast_ts == slow_ts
    assert fast_stats == slow_stats
    assert fast_stats["delivered"] == 50 and fast_stats["auth_failures"] == 0
    assert fast_traffic == slow_traffic == tuple(fast_stats[k] for k in TRAFFIC_FIELDS)
    _master, net = pair(base_step=0.01, auth="hmac", hmac_keys={"f2c": b"k" * 32})
    assert net.conduit("f2c").fast  # ... without computing a tag nobody checks
    net.conduit("f2c").add_hook(lambda msg: msg)
    assert not net.conduit("f2c").fast
