"""Containment on the real smart-factory cell (plant, twin, network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cosim.attacks import Campaign, load_scenario
from cosim.containment import ContainmentOrchestrator
from cosim.detection.alert import AlertBus
from cosim.episode import EpisodeContext
from experiments.plant import network_factory, plant_observers, register_resolvers, system_spec, twin_sync
from tests.containment.helpers import ResidualDetector, ScriptedDetector

REPO = Path(__file__).resolve().parents[2]
register_resolvers()


def defence(name: str, **recovery) -> dict:
    policy = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "defense" / f"{name}.yaml").orchestrator.policy)
    policy["recovery"].update(recovery)
    policy["snapshots"]["period_s"] = 1.0
    return policy


def cell(policy=None, events=(), detector=None, tmp_path=None, name="dt_framework"):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=["plant=smart_factory", "twin=replica", "network=cell", "seed=0"])
    spec, layout = system_spec(cfg)
    master = spec.build(record=["plc.parts_good"], network=network_factory(cfg))
    monitor = plant_observers(cfg.plant)["monitor"]
    sync = twin_sync(cfg, layout)
    for obs in (monitor, sync):
        master.add_observer(obs)
    if events:
        master.add_observer(Campaign(load_scenario({"events": list(events)}, seed=0)))
    bus = AlertBus()
    ctx = EpisodeContext(bus=bus, spec=spec, twin=sync, layout=layout, seed=0, out_dir=tmp_path)
    orch = None
    if detector is not None:
        master.add_observer(detector(bus))
    if policy is not None:
        orch = ContainmentOrchestrator(policy, name=name)
        orch.attach(ctx)
        master.add_observer(orch)
    master.build()
    return master, monitor, orch, ctx


@pytest.fixture(scope="module")
def baseline():
    master, monitor, _, _ = cell()
    master.run(duration=45.0)
    master.terminate()
    return monitor.summary()


@pytest.mark.slow
def test_dt_framework_secures_a_spoofed_sensor_and_production_goes_on(baseline, tmp_path):
    spoof = {"attack": "spoofing", "target": "press.pressure_meas", "at": 10.0, "duration": 25.0,
             "params": {"mode": "constant", "value": 0.0}}
    master, monitor, orch, _ = cell(defence("dt_framework"), [spoof], tmp_path=tmp_path, detector=lambda bus: (
        ResidualDetector(bus, "press.pressure_meas", "plc.pressure_meas", "spoofing", "press.pressure_meas",
                         tol=1e-9, every=2)))
    master.run(duration=45.0)
    s, m = orch.summary(), monitor.summary()
    master.terminate()
    orch.close()
    assert s["containment_latency_s"] is not None and s["containment_latency_s"] <= 0.05
    segment = next(a for a in s["actions"] if a["action"] == "segment")
    # the zone of the spoofed sensor: every conduit into or out of the field zone is secured
    assert set(segment["detail"]["conduits"]) == {"field_to_control", "control_to_field", "field_to_twin"}
    assert master.network.conduit("field_to_control").stats()["auth_failures"] > 1000
    assert s["safe_mode_entries"] == 0 and s["recoveries"] == 1
    assert m["unsafe_events"] == 0
    assert m["parts_completed"] == baseline["parts_completed"]
    assert m["downtime_s"] <= 0.01 * 45.0
    assert s["audit_chain_verified"]
    print("spoofing/dt_framework:", {k: s[k] for k in ("containment_latency_s", "decision_wall_ms",
                                                         "time_to_recovery_s")}, "parts", m["parts_completed"],
          "baseline", baseline["parts_completed"], "downtime", m["downtime_s"])


@pytest.mark.slow
def test_safe_mode_reaches_the_safe_state_within_its_bound_and_production_resumes(tmp_path):
    policy = defence("cps_only", restart_delay_s=5.0)
    master, monitor, orch, _ = cell(policy, detector=lambda bus: ScriptedDetector(
        bus, [(12.0, "injection", "plc.valve_cmd")]), tmp_path=tmp_path, name="cps_only")
    master.run(duration=12.5)
    assert master.get("plc.safe_mode_cmd") and not master.get("plc.producing")
    assert master.network.conduit("enterprise_to_control").is_cut
    master.run(duration=55.0 - 12.5)
    s, m = orch.summary(), monitor.summary()
    master.terminate()
    orch.close()
    (sm,) = [a for a in s["actions"] if a["action"] == "safe_mode"]
    assert sm["effective_t"] - 12.0 <= 0.05
    reach = sm["detail"]["reach_time_s"]
    assert reach is not None and reach <= sm["detail"]["bound_s"] and not sm["detail"]["bound_exceeded"]
    (interval,) = s["safe_mode_intervals"]
    assert interval[0] == pytest.approx(12.0) and interval[1] == pytest.approx(17.0)
    assert not master.get("plc.safe_mode_cmd") and not master.network.conduit("enterprise_to_control").is_cut
    after = [t for t, _ in monitor.completions if t > interval[1]]
    assert after, "production did not resume after safe mode"
    assert m["unsafe_events"] == 0
    print("safe mode reached in", reach, "s; parts after resume at", after)


@pytest.mark.slow
def test_rollback_restores_a_verified_snapshot_and_refuses_a_tampered_one(tmp_path):
    tamper = {"attack": "tamper", "target": "twin_conveyor.gain", "at": 6.0, "duration": None,
              "params": {"value": 0.25}}
    master, _, orch, _ = cell(defence("dt_framework"), [tamper], tmp_path=tmp_path, detector=lambda bus: (
        ScriptedDetector(bus, [(7.0, "tamper", "twin_conveyor.gain")])))
    master.run(duration=6.5)
    assert master.get("twin_conveyor.gain") == 0.25
    newest = orch.recovery.snapshots[-1]
    good = orch.recovery.snapshots[-2]
    # an attacker edits the newest snapshot in storage
    forged = newest.data[:-1] + bytes([newest.data[-1] ^ 1])
    orch.recovery.snapshots[-1] = type(newest)(forged, newest.manifest, newest.keystore)
    master.run(duration=0.5)
    s = orch.summary()
    (rb,) = [a for a in s["actions"] if a["action"] == "rollback"]
    assert rb["ok"] and rb["effective_t"] == pytest.approx(7.0)
    assert rb["detail"]["restored_version"] == good.manifest.version
    assert [r["version"] for r in rb["detail"]["refused"]] == [newest.manifest.version]
    assert rb["detail"]["refused"][0]["reason"] == "hash mismatch"
    assert master.get("twin_conveyor.gain") == 0.5  # the tampered parameter is gone
    assert rb["detail"]["revalidated"] and rb["detail"]["revalidation_samples"] > 0
    master.run(duration=3.0)  # the twin steps on from the rolled-forward state
    assert max(orch.ctx.twin.deviation[-100:]) < 8.0
    assert any(r["kind"] == "snapshot_refused" for r in orch.audit.records)
    master.terminate()
    orch.close()
    print("rollback:", {k: rb["detail"][k] for k in ("replayed_ticks", "revalidation_rms")}, "wall ms", rb["wall_ms"])
