"""Each action does what it says, on a small two-zone system (fast)."""

from __future__ import annotations

import gc
import weakref

import pytest

from cosim.containment import ContainmentOrchestrator, ModelUpdate, register_action
from cosim.containment.actions import ACTIONS, Action
from cosim.core.manipulator import Override
from cosim.core.master import Master
from cosim.core.unit import PythonUnit
from cosim.core.variables import Causality, Variable, VarType
from cosim.detection.alert import AlertBus
from cosim.episode import EpisodeContext
from cosim.network import ConduitConfig, Network
from tests.containment.helpers import ResidualDetector, ScriptedDetector


class Source(PythonUnit):
    def __init__(self, name: str) -> None:
        super().__init__(name, [Variable("y", Causality.OUTPUT, VarType.REAL, 0.0)])

    def do_step(self, t: float, h: float) -> None:
        self.values["y"] = round(t + h, 9)


class Sink(PythonUnit):
    def __init__(self, name: str) -> None:
        super().__init__(name, [Variable("u", Causality.INPUT, VarType.REAL, 0.0),
                                Variable("gain", Causality.PARAMETER, VarType.REAL, 1.0)])
        self.seen: list[float] = []

    def do_step(self, t: float, h: float) -> None:
        self.seen.append(self.values["u"])


def system(policy, script=(), forged_from=None, tmp_path=None, residual=False):
    master = Master(base_step=0.01)
    master.add_unit(Source("src"))
    master.add_unit(Sink("dst"))
    master.connect("src.y", "dst.u")
    net = Network({"field": ["src"], "control": ["dst"]},
                  [ConduitConfig(name="f2c", source_zone="field", target_zone="control", channel="telemetry")], seed=1)
    master.attach_network(net)
    if forged_from is not None:
        master.add_manipulator(Override("src.y -> dst.u", -1.0, start_tick=forged_from))
    bus = AlertBus()
    ctx = EpisodeContext(bus=bus, out_dir=tmp_path)
    orch = ContainmentOrchestrator(policy, name="test")
    orch.attach(ctx)
    det = ResidualDetector(bus, "src.y", "dst.u", "spoofing", "src.y", tol=0.011) if residual else \
        ScriptedDetector(bus, list(script))
    master.add_observer(det)
    master.add_observer(orch)
    master.build()
    return master, net, orch, ctx


def rule(*actions, kind="spoofing", quiet=1.0):
    return {"rules": [{"name": "r", "match": {"kind": [kind]}, "actions": list(actions)}],
            "recovery": {"quiet_s": quiet}}


def test_a_cut_conduit_carries_nothing_and_is_restored_on_recovery(tmp_path):
    master, net, orch, _ = system(rule({"action": "segment", "mode": "cut"}), [(0.5, "spoofing", "src.y")],
                                  tmp_path=tmp_path)
    master.run(duration=1.0)
    sink = master.units["dst"]
    held = sink.seen[-1]
    assert set(sink.seen[52:100]) == {held}  # nothing delivered while cut: the input holds
    stats = net.conduit("f2c").stats()
    assert stats["dropped_cut"] >= 49 and stats["cut"]
    master.run(duration=1.0)  # quiet for 1 s: recovery lifts the cut
    assert not net.conduit("f2c").is_cut
    assert sink.seen[-1] == pytest.approx(1.99)  # fresh values again
    s = orch.summary()
    assert s["containment_latency_s"] == 0.0 and s["recoveries"] == 1
    assert s["time_to_recovery_s"] == [pytest.approx(1.0)]
    assert s["audit_chain_verified"] and (tmp_path / "audit.jsonl").is_file()


def test_securing_the_signals_conduit_stops_the_in_path_manipulator_and_production_goes_on(tmp_path):
    master, net, orch, _ = system(rule({"action": "segment", "mode": "secure", "scope": "signal"}),
                                  forged_from=50, tmp_path=tmp_path, residual=True)
    master.run(duration=3.0)
    sink = master.units["dst"]
    assert sink.seen[50] == -1.0  # forged before the alarm ...
    assert sink.seen[52:] == pytest.approx([round(0.01 * k, 9) for k in range(52, 300)])  # ... not after
    assert net.conduit("f2c").authenticated and net.conduit("f2c").stats()["auth_failures"] > 200
    s = orch.summary()
    assert s["containment_latency_s"] == 0.0
    assert s["actions_by_kind"] == {"segment": 1}
    assert s["recoveries"] == 1  # alarms stopped once secured: recovered, the conduit stays secured
    assert net.conduit("f2c").authenticated


def test_a_quarantined_flow_never_reaches_production():
    master, net, orch, _ = system(rule({"action": "quarantine", "flow": True, "sandbox": False}, kind="api",
                                       quiet=100.0), [(0.3, "api", "f2c")])
    master.run(duration=1.0)
    sink = master.units["dst"]
    assert set(sink.seen[32:]) == {sink.seen[31]}
    assert orch.quarantine.received["f2c"] == net.conduit("f2c").stats()["diverted"] >= 68
    assert max(m.values[0] for m in orch.quarantine.messages) > 0.9  # observed in quarantine instead


def test_a_quarantined_model_update_never_reaches_production():
    master, _, orch, ctx = system(rule({"action": "quarantine", "flow": False, "updates": True}, kind="ota",
                                       quiet=100.0), [(0.5, "ota", "dst")])
    gate = ctx.extra["update_gate"]
    master.run(duration=0.2)
    assert gate.submit(ModelUpdate("dst", {"gain": 2.0}, version="1")) == "applied"  # open: a normal update
    assert master.get("dst.gain") == 2.0
    master.run(duration=0.5)
    assert gate.submit(ModelUpdate("dst", {"gain": 99.0}, source="attacker", version="2")) == "quarantined"
    master.run(duration=0.5)
    assert master.get("dst.gain") == 2.0
    assert [u.version for u in gate.quarantined] == ["2"]
    assert any(r["kind"] == "model_update" and "quarantined" in r["reason"] for r in orch.audit.records)


def test_rearmed_attack_is_contained_again():
    master, net, orch, _ = system(rule({"action": "segment", "mode": "cut"}, quiet=0.5),
                                  [(0.5, "spoofing", "src.y"), (2.0, "spoofing", "src.y")])
    cuts = []
    for _ in range(30):
        master.run(duration=0.1)
        cuts.append(net.conduit("f2c").is_cut)
    # cut at 0.5, lifted at 1.0, cut again at 2.0, lifted at 2.5
    assert cuts == [False] * 4 + [True] * 5 + [False] * 10 + [True] * 5 + [False] * 6
    s = orch.summary()
    assert s["incidents"] == 2 and s["recoveries"] == 2
    assert [i["latency_s"] for i in s["incident_log"]] == [0.0, 0.0]


@pytest.mark.parametrize(("script", "escalated"), [
    ([(0.2, "src.y"), (0.8, "src.y"), (1.4, "src.y")], True),    # the contained target keeps alarming
    ([(0.2, "src.y"), (0.5, "src.y"), (1.5, "other.x")], False),  # a new target: its own containment time
])
def test_escalation_needs_alarms_on_the_same_target_to_persist(script, escalated):
    policy = {"rules": [{"name": "r", "match": {"kind": ["spoofing"]},
                         "actions": [{"action": "segment", "mode": "secure", "scope": "zone"}],
                         "escalate": {"after_s": 1.0, "actions": [{"action": "notify", "to": ["operator"]}]}}],
              "recovery": {"quiet_s": 5.0}}
    master, _, orch, _ = system(policy, [(t, "spoofing", target) for t, target in script])
    master.run(duration=2.0)
    escalations = [r for r in orch.records if r.action == "notify"]
    assert len(escalations) == int(escalated)
    if escalated:
        assert escalations[0].decided_t == pytest.approx(1.4) and escalations[0].alert_t is None


def test_a_finished_system_is_freed():
    """Nothing global keeps a finished system alive (the update endpoint goes with its master)."""
    master, net, orch, ctx = system(rule({"action": "notify", "to": ["operator"]}), [(0.05, "spoofing", "src.y")])
    master.run(duration=0.1)
    orch.close()
    master.terminate()
    ref = weakref.ref(master)
    del master, net, orch, ctx
    gc.collect()
    assert ref() is None


def test_users_can_register_their_own_action():
    @register_action("log_twice")
    class LogTwice(Action):
        params = {}

        def execute(self, orch, record, alert):
            orch.notifications += [{"n": 1}, {"n": 2}]
            record.mark_effective(orch.tick, orch.time)

    try:
        master, _, orch, _ = system(rule({"action": "log_twice"}), [(0.1, "spoofing", "src.y")])
        master.run(duration=0.2)
        assert len(orch.notifications) == 2 and orch.summary()["actions_by_kind"] == {"log_twice": 1}
    finally:
        ACTIONS.pop("log_twice")


def test_retraining_gets_only_clean_intervals():
    from cosim.containment import clean_intervals

    assert clean_intervals(0.0, 100.0, [(30.0, 40.0)], 5.0, 10.0) == [(0.0, 25.0), (45.0, 100.0)]
    assert clean_intervals(0.0, 100.0, [(30.0, 40.0), (50.0, 50.0)], 5.0, 10.0) == [(0.0, 25.0), (55.0, 100.0)]

    class Learner:
        name = "learner"

        def __init__(self):
            self.calls = []

        def retrain(self, intervals):
            self.calls.append(intervals)

    p = rule({"action": "notify"}, quiet=1.0)
    p["recovery"].update(retrain=True, retrain_margin_s=2.0, retrain_min_interval_s=1.0, retrain_min_total_s=3.0)
    master, _, _orch, ctx = system(p, [(5.0, "spoofing", "src.y")])
    learner = Learner()
    ctx.extra["detectors"] = [learner]
    master.run(duration=12.0)
    (intervals,) = learner.calls
    assert intervals == [(0.0, 3.0)]  # before the alert minus the margin; after it too short still
    assert all(b <= 5.0 - 2.0 or a >= 6.0 + 2.0 for a, b in intervals)


def test_the_attack_layers_update_endpoint_is_quarantined_too():
    from cosim.attacks.deployment import ModelUpdate as AttackUpdate
    from cosim.attacks.deployment import update_endpoint

    master, _, orch, _ = system(rule({"action": "quarantine", "flow": False, "updates": True}, kind="ota",
                                     quiet=100.0), [(0.5, "ota", "dst")])
    master.run(duration=0.6)
    update = AttackUpdate("dst", "parameters", b"{}", None, {"gain": 42.0}, "dst", origin="ota_attack")
    assert update_endpoint(master).submit(update) == "quarantined"
    master.run(duration=0.2)
    assert master.get("dst.gain") == 1.0 and orch.summary()["quarantined_updates"] == 1
