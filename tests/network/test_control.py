"""Run-time control of conduits (containment) and the hooks of the attack layer."""

from __future__ import annotations

import pytest

from cosim import ConfigurationError, Observer
from cosim.network import Message, sign, verify
from tests.network.helpers import pair

KEY = b"0123456789abcdef0123456789abcdef"


class At(Observer):
    """Calls ``fn()`` once after the master reached ``tick``."""

    def __init__(self, tick: int, fn) -> None:
        self.tick, self.fn = tick, fn

    def after_step(self, tick: int) -> None:
        if tick == self.tick:
            self.fn()


@pytest.mark.parametrize("latency", [0.0, 0.003])
def test_cut_delivers_nothing_counts_drops_and_restore_resumes(latency):
    m, net = pair(base_step=1e-3, latency_s=latency)
    c = net.conduits["f2c"]
    m.build().step(100)
    held = m.get("r.t")
    c.cut()
    assert c.is_cut and not c.fast
    m.step(50)
    s = net.stats()["f2c"]
    assert m.get("r.t") == held  # the receiver holds the last delivered value
    in_flight_at_cut = round(latency / 1e-3)
    assert s["dropped_cut"] == 50 + in_flight_at_cut  # sent while cut, and arriving while cut
    assert s["delivered"] == 100 - in_flight_at_cut
    c.restore()
    m.step(50)
    s = net.stats()["f2c"]
    assert s["delivered"] == 150 - 2 * in_flight_at_cut
    assert m.get("r.t") == m.grid.time(199 - in_flight_at_cut)
    assert net.channel("s", "r").gaps == 50 + in_flight_at_cut


def test_rate_limit_is_a_token_bucket():
    m, net = pair(base_step=1e-3)  # 1000 frames/s
    c = net.conduits["f2c"]
    c.rate_limit(100.0, burst=5)
    m.build().step(2000)
    s = net.stats()["f2c"]
    # a full bucket of 5, then 100/s for (2000 - 1) ms
    assert s["delivered"] == pytest.approx(5 + 100 * 1.999, abs=1)
    assert s["dropped_rate"] == 2000 - s["delivered"]
    c.rate_limit(None)
    m.step(100)
    assert net.stats()["f2c"]["dropped_rate"] == s["dropped_rate"]
    with pytest.raises(ConfigurationError, match="rate_limit must be finite and > 0"):
        c.rate_limit(0)


def test_allow_list_by_tag_or_unit():
    m, net = pair(base_step=1e-3, variables=("t", "n"))
    c = net.conduits["f2c"]
    m.build()
    c.allow(["s.t"])  # the frame also carries s.n: dropped
    m.step(10)
    assert net.stats()["f2c"]["dropped_filter"] == 10 and m.get("r.n") == -1
    c.allow(["s.t", "s.n"])
    m.step(10)
    assert net.stats()["f2c"]["delivered"] == 10 and m.get("r.n") == 19
    c.allow(["other"])
    m.step(5)
    c.allow(["s"])  # every tag of unit s
    m.step(5)
    c.allow(None)
    m.step(5)
    s = net.stats()["f2c"]
    assert (s["dropped_filter"], s["delivered"]) == (15, 20)


def test_inspection_drops_junk_before_it_takes_the_device_capacity():
    """A flood of stale frames eats a 2-frames-per-tick capacity; inspection at the gateway
    drops the junk first, so every authentic frame gets through again."""

    def flood(m, c, ticks):
        for _ in range(ticks):
            for _ in range(5):
                c.inject("r", {"s.t": 0.0}, seq=0)
            m.step(1)

    m, net = pair(base_step=1e-3)
    c = net.conduits["f2c"]
    m.build().step(10)
    c.rate_limit(2000.0, burst=2.0)  # the receiving device handles 2 frames per tick
    flood(m, c, 100)
    before = net.stats()["f2c"]
    assert before["delivered"] < 10 + 100  # authentic frames lost behind the junk
    c.inspect(True)
    assert not c.fast
    flood(m, c, 100)
    after = net.stats()["f2c"]
    assert after["delivered"] - before["delivered"] == 100  # every authentic frame
    assert after["dropped_filter"] - before["dropped_filter"] == 500  # all the junk, at the gateway
    assert after["dropped_rate"] == before["dropped_rate"]
    assert m.get("r.t") == m.grid.time(m.tick - 1)
    c.secure(KEY)  # forged frames with a fresh sequence number but no valid tag: dropped too
    c.inject("r", {"s.t": -1.0})
    m.step(1)
    assert net.stats()["f2c"]["dropped_filter"] == after["dropped_filter"] + 1 and m.get("r.t") >= 0.0
    c.inspect(False)
    c.rate_limit(None)
    m.step(10)
    assert net.stats()["f2c"]["delivered"] == after["delivered"] + 11


def test_divert_sends_messages_to_a_sink_and_the_destination_holds():
    m, net = pair(base_step=1e-3, variables=("t", "x"), latency_s=0.002)
    c = net.conduits["f2c"]
    quarantine: list[Message] = []
    m.build().step(10)
    held = m.get("r.x")
    c.divert(quarantine.append)
    m.step(20)
    assert len(quarantine) == 20 and net.stats()["f2c"]["diverted"] == 20
    assert m.get("r.x") == 2.0 * m.grid.time(9) + 1.0 != held  # in flight before the divert
    held = m.get("r.x")
    msg = quarantine[-1]
    assert (msg.source, msg.destination, msg.tags, msg.seq) == ("s", "r", ("s.t", "s.x"), 30)
    assert msg.timestamp == m.grid.time(29) and msg.value("s.x") == 2.0 * m.grid.time(29) + 1.0
    m.step(5)
    assert m.get("r.x") == held
    c.divert(None)
    m.step(5)
    assert m.get("r.x") == 2.0 * m.grid.time(37) + 1.0


def test_hmac_lets_legitimate_messages_pass():
    m, net = pair(base_step=1e-3, latency_s=0.001, auth="hmac", hmac_keys={"f2c": KEY})
    seen: list[Message] = []
    net.conduits["f2c"].add_hook(lambda msg: seen.append(msg) or msg)  # observe, change nothing
    m.build().step(100)
    s = net.stats()["f2c"]
    assert s["delivered"] == 99 and s["auth_failures"] == 0
    assert all(verify(KEY, msg) and msg.auth == sign(KEY, msg) for msg in seen)
    assert not verify(b"another key", seen[0])


@pytest.mark.parametrize("auth", [None, "hmac"])
def test_man_in_the_middle_is_detected_only_with_hmac(auth):
    keys = {"f2c": KEY} if auth else None
    m, net = pair(base_step=1e-3, variables=("t", "x"), auth=auth, hmac_keys=keys)
    c = net.conduits["f2c"]
    m.build().step(10)
    assert m.get("r.x") == 2.0 * m.grid.time(9) + 1.0

    def tamper(msg: Message) -> Message:
        return msg._replace(values=(msg.values[0], 99.0))  # keeps the original tag

    c.add_hook(tamper)
    m.step(10)
    s = net.stats()["f2c"]
    if auth:
        assert s["auth_failures"] == 10 and s["delivered"] == 10
        assert m.get("r.x") == 2.0 * m.grid.time(9) + 1.0  # held: nothing forged got through
    else:
        assert s["auth_failures"] == 0 and s["delivered"] == 20
        assert m.get("r.x") == 99.0  # unnoticed
    c.remove_hook(tamper)
    m.step(1)
    assert m.get("r.x") == 2.0 * m.grid.time(20) + 1.0


def test_hook_returning_none_drops_the_message():
    m, net = pair(base_step=1e-3)
    net.conduits["f2c"].add_hook(lambda msg: None if msg.seq % 2 else msg)
    m.build().step(10)
    s = net.stats()["f2c"]
    assert s["dropped_hook"] == 5 and s["delivered"] == 5 and s["gaps"] == 5


@pytest.mark.parametrize("latency", [0.0, 0.002])
def test_injected_message_without_the_key_is_rejected(latency):
    m, net = pair(base_step=1e-3, variables=("t", "x"), latency_s=latency, auth="hmac", hmac_keys={"f2c": KEY})
    c = net.conduits["f2c"]
    m.add_observer(At(50, lambda: c.inject("r", {"s.x": 1e6})))
    m.build().step(60)
    s = net.stats()["f2c"]
    assert s["injected"] == 1 and s["auth_failures"] == 1
    assert m.get("r.x") < 1e3
    # with the key (stolen), the forgery is accepted
    forged = Message("s", "r", ("s.x",), (1e6,), m.time, net.channel("s", "r").seq + 1)
    c.inject("r", {"s.x": 1e6}, auth=sign(KEY, forged))
    m.step(1 + round(latency / 1e-3))
    assert net.stats()["f2c"]["auth_failures"] == 1
    assert net.stats()["f2c"]["injected"] == 2


def test_injection_on_an_unauthenticated_conduit_succeeds_and_later_older_frames_are_discarded():
    m, net = pair(base_step=1e-3, variables=("t", "x"))
    c = net.conduits["f2c"]
    m.build().step(10)
    msg = c.inject("r", {"s.x": -5.0}, seq=1000)  # delivered now (no delay), read at r's next step
    assert msg.source == "s" and msg.tags == ("s.x",) and msg.timestamp == m.time
    m.step(1)
    assert m.get("r.x") == -5.0 and m.get("r.t") == m.grid.time(9)  # only the forged tag changed
    m.step(19)
    s = net.stats()["f2c"]
    # the sender's next 20 frames (seq 11..30) are older than seq 1000: discarded
    assert s["out_of_order"] == 20 and m.get("r.x") == -5.0
    assert net.channel("s", "r").last_seq == 1000
    with pytest.raises(ConfigurationError, match="no channel from 's' to 'nobody'"):
        c.inject("nobody", {"s.x": 1.0})
    with pytest.raises(ConfigurationError, match=r"carries \['s.t', 's.x'\], not \['s.n'\]"):
        c.inject("r", {"s.n": 1})
