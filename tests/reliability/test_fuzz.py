"""Property-based fuzzing: random attack scenarios and conduit settings never crash the
framework, never put NaN in a summary, and keep its invariants (safe mode reached when the
policy demands it, nothing delivered over a cut conduit, the audit chain verifies).

The strategies, the harnesses and the checks live in ``benchmarks/fuzz.py``; this test runs
a small share of what ``python -m benchmarks.fuzz --scenarios 1000`` runs (see its figures
in the report of that script). Fixed hypothesis seeds: the same examples on every run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from benchmarks import fuzz
from cosim.attacks import ATTACKS, load_scenario
from cosim.errors import CosimError
from cosim.network import ConduitConfig

pytestmark = pytest.mark.filterwarnings("ignore:.*is validated against ConfigStore schema:UserWarning")

FUZZ = settings(deadline=None, database=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck), print_blob=True)
EPISODES = 25  # ~1 s each
NETWORK_CASES = 150  # ~0.05 s each


def test_the_library_has_its_fourteen_kinds() -> None:
    assert len(ATTACKS) == 14  # a new kind needs a branch in benchmarks.fuzz.attack_event


@pytest.mark.slow
@settings(FUZZ, max_examples=EPISODES)
@given(sc=fuzz.scenarios(invalid_share=0.25))
def test_fuzzed_episodes_keep_their_invariants(sc: fuzz.Scenario, tmp_path_factory: pytest.TempPathFactory) -> None:
    out = fuzz.run_scenario(sc, tmp_path_factory.mktemp("ep"))
    assert out.status != "crash", out.error
    assert not out.nan, f"non-finite figures in the summary: {out.nan}"
    assert not out.broken, out.broken
    if sc.invalid is not None:
        assert out.status == "refused" and out.error, f"invalid input ({sc.invalid}) was not refused"


@settings(FUZZ, max_examples=NETWORK_CASES)
@given(case=fuzz.network_cases())
def test_fuzzed_networks_never_deliver_over_a_cut_conduit(case: fuzz.NetCase) -> None:
    out = fuzz.run_network_case(case)
    assert out.status == "ok", out.error
    assert not out.nan and not out.broken, (out.nan, out.broken)


# Invalid input is refused with one clear error, never a crash ------------------------------
BAD = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, "abc", None, [1, 2], True])


@settings(FUZZ, max_examples=200)
@given(kind=st.sampled_from(sorted(ATTACKS)), key=st.sampled_from(["at", "duration", "param"]), bad=BAD,
       param=st.sampled_from(["value", "factor", "rate", "record_s", "delay_s", "frames_per_tick", "every",
                              "window", "budget", "noise", "rate_bps", "capacity_fps", "parameters", "hops",
                              "low", "flip_prob", "direction"]))
def test_bad_numbers_in_a_scenario_are_refused_by_name(kind: str, key: str, bad: object, param: str) -> None:
    event: dict = {"attack": kind, "target": "conveyor.speed_meas", "at": 1.0, "duration": 1.0, "params": {}}
    if key == "param":
        event["params"][param] = bad
    else:
        event[key] = bad
    try:
        load_scenario({"events": [event]})
    except CosimError as exc:
        assert "event 1" in str(exc)  # names the event at fault
        return
    # accepted: only values that are valid for that kind (a parameter it does not check, e.g.
    # a boolean where any value is allowed, or None = its default)
    assert key == "param" or (key == "duration" and bad is None), (kind, key, bad)


@settings(FUZZ, max_examples=200)
@given(key=st.sampled_from(["latency_s", "jitter_s", "loss", "bandwidth_bps", "queue_limit", "auth"]),
       bad=st.sampled_from([math.nan, math.inf, -1.0, -0.001, 1.5, 0.0, "fast", [1], True, 2.5]))
def test_bad_conduit_settings_are_refused_by_name(key: str, bad: object) -> None:
    valid = {"latency_s": bad not in (-1.0, -0.001) and isinstance(bad, float) and math.isfinite(bad),
             "jitter_s": bad not in (-1.0, -0.001) and isinstance(bad, float) and math.isfinite(bad),
             "loss": isinstance(bad, float) and 0.0 <= bad <= 1.0,
             "bandwidth_bps": isinstance(bad, float) and math.isfinite(bad) and bad > 0,
             "queue_limit": False, "auth": False}[key]
    try:
        ConduitConfig("c", "a", "b", "telemetry", **{key: bad})
    except CosimError as exc:
        assert not valid and "conduit 'c'" in str(exc) and key in str(exc)
        return
    assert valid, (key, bad)


def test_a_fixed_parameter_tampered_at_run_time_is_recorded_not_fatal(tmp_path: Path) -> None:
    """Found by the fuzzer: the FMU refuses to change a fixed parameter while stepping; the
    attack records the refusal and the episode goes on."""
    sc = fuzz.Scenario(seed=1, duration=2.0, conduits={}, alerts=[], policy={
        "rules": [], "audit": {"file": "audit.jsonl"}}, events=[
        {"attack": "tamper", "name": "t", "target": "feeder.tau_retract", "at": 0.5, "duration": 0.5,
         "params": {"value": 1.5}}])
    out = fuzz.run_scenario(sc, tmp_path)
    assert out.status == "ok" and not out.broken, (out.error, out.broken)


def test_a_scaled_boolean_command_stays_boolean(tmp_path: Path) -> None:
    """Found by the fuzzer: a man-in-the-middle scaling a boolean command sent a float to a
    boolean FMU input, and the FMU refused it mid-run."""
    sc = fuzz.Scenario(seed=1, duration=2.0, conduits={}, alerts=[[1.0, "mitm", "plc.release_cmd"]],
                       policy={"rules": [{"name": "r", "match": {}, "actions": [{"action": "safe_mode"}]}],
                               "safe_mode": {"signals": {"plc.safe_mode_cmd": True}, "reached": "plc.safe_state"},
                               "audit": {"file": "audit.jsonl"}},
                       events=[{"attack": "mitm", "name": "m", "target": "plc.release_cmd", "at": 0.2,
                                "duration": 1.0, "params": {"factor": 0.16}},
                               {"attack": "spoofing", "name": "s", "target": "feeder.magazine_empty", "at": 0.2,
                                "duration": 1.0, "params": {"mode": "random"}}])
    out = fuzz.run_scenario(sc, tmp_path)
    assert out.status == "ok" and not out.broken and not out.nan, (out.error, out.broken, out.nan)
