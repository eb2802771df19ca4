"""Fuzzing the framework: random attack scenarios and conduit settings, invariants checked.

    python -m benchmarks.fuzz --scenarios 1000 --out fuzz.json      # ~1 s per scenario
    python -m benchmarks.fuzz --scenarios 50 --network 500 --out /tmp/fuzz.json

Two harnesses share the strategies with ``tests/reliability/test_fuzz.py``:

* **episode** (:func:`run_scenario`): a short smart-factory episode (``run_episode`` of
  ``experiments.run``, plant + twin + network, a few seconds of simulated time) with

  - random conduit settings on every conduit of ``conf/network/cell.yaml`` (latency, jitter,
    loss, bandwidth, queue limit, HMAC);
  - a random attack scenario of 1-3 events drawn from the whole attack library (14 kinds),
    each on a target that is valid for the plant, at random times, with parameters in their
    documented ranges and random traits (insider, stealth, persistence); lateral movements
    get random hops;
  - a defence policy built here that demands safe mode (plus random other containment
    actions: cut, secure, rate limit, quarantine, rollback, notify) when the probe detector
    :class:`FuzzProbe` raises its scripted alerts;
  - or, in one scenario of four, an *invalid* input: one mutation of the above (unknown kind,
    target, mode, key or trait; a non-finite, negative or mistyped number; an impossible
    conduit setting), which must be refused with a :class:`~cosim.errors.CosimError`.

  Properties (:func:`check_outcome`): no exception but a ``CosimError``, and that only for
  invalid input; an invalid input is never accepted; every figure of the summary is finite
  or ``None`` (JSON without NaN/inf) and no non-finite float was silently replaced by ``None``
  on its way into the summary; every ``safe_mode`` decision reaches the plant's safe state
  (``plc.safe_state``, read by the probe every tick) within the policy's ``bound_s`` when
  the episode lasts that long and the attacks are over (an attack still running may, on
  purpose, keep the plant from its safe state); no message is delivered over a conduit
  while it is cut (the probe counts deliveries from the moment of the cut); the audit chain
  verifies (``verify_audit`` with the head and count of the summary).

* **network** (:func:`run_network_case`): a bare :class:`~cosim.network.Network` with 2-4
  zones, random conduits and random traffic, random run-time control (cut, restore, rate
  limit, allow, divert) and random attack hooks (drop, alter, inject) at random ticks.
  Properties: no crash; counters consistent (``delivered <= sent + injected``) and finite;
  no delivery while cut; an authenticated conduit never delivers an altered frame.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from cosim.core.observer import Observer
from cosim.errors import CosimError

REPO = Path(__file__).resolve().parents[1]
PROBE = "fuzz"  # the probe detector's name (the policy's rule matches it)
SAFE_BOUND_S = 3.0  # bound_s of the fuzz policy's safe mode
# conduits whose loss of service keeps the PLC from seeing or commanding its safe state: the
# fuzz policy cuts, rate-limits and quarantines only the others
CRITICAL_CONDUITS = ("field_to_control", "control_to_field")
# ... and their drawn settings may starve the control loop by themselves (the cell sends about
# 41 kB/s and 5 frames per tick over field_to_control): below these, reaching the safe state in
# its bound is not owed, only an honest report of it (see check_outcome)
CONTROL_MIN_BPS = 2e5
CONTROL_MIN_QUEUE = 10
SAFE_SIGNALS = ("plc.safe_mode_cmd", "plc.reset_cmd", "hmi.safe_mode_cmd")


# The plant's catalogue of valid targets -------------------------------------------------
@dataclass(frozen=True)
class Catalog:
    """What the smart-factory system offers an attacker (read from the built system)."""

    sources: tuple[str, ...]  # outputs feeding a connection (spoofing, replay)
    commands: tuple[str, ...]  # plc outputs into the field (injection, mitm)
    twin_fed: tuple[str, ...]  # outputs feeding a twin_ unit (poisoning)
    inputs: tuple[str, ...]  # unit inputs (logic)
    parameters: tuple[str, ...]  # unit.parameter of FMU units (tamper)
    twin_fmus: dict[str, tuple[str, ...]] = field(default_factory=dict)  # twin FMU unit -> parameters
    conduits: tuple[str, ...] = ()
    hmi_tags: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def base_config() -> Any:
    """The composed ``run`` config of the fuzz episodes (smart factory, twin, network)."""
    from hydra import compose, initialize_config_dir

    from experiments.plant import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("run", overrides=[
            "plant=smart_factory", "twin=replica", "network=cell", "attack=none", "detector=none",
            "defense=none", "progress=false", "plot=false", "baseline.enabled=false", "mlflow.enabled=false",
            "record.formats=[]", "duration=4"])


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    from cosim.core.variables import Causality
    from cosim.units.fmu import FMUUnit
    from experiments.plant import build_system

    built = build_system(base_config())
    m = built.master
    try:
        conns = [(str(c.source), str(c.target)) for c in m.connections]
        sources = sorted({s for s, _ in conns if s not in SAFE_SIGNALS})
        commands = sorted({s for s, t in conns if s.startswith("plc.") and not t.startswith("twin_")
                           and s not in SAFE_SIGNALS})
        twin_fed = sorted({s for s, t in conns if t.startswith("twin_") and not s.startswith("twin_")})
        inputs = sorted(f"{u}.{v.name}" for u, unit in m.units.items() if u.startswith("plc")
                        for v in unit.variables.values() if v.causality is Causality.INPUT
                        and f"{u}.{v.name}" not in SAFE_SIGNALS)
        params, twin_fmus = [], {}
        for u, unit in m.units.items():
            if isinstance(unit, FMUUnit):
                names = tuple(sorted(v.name for v in unit.variables.values()
                                     if v.causality is Causality.PARAMETER and v.type.name == "REAL"))
                params += [f"{u}.{p}" for p in names]
                if u.startswith("twin_") and names:
                    twin_fmus[u] = names
        conduits = tuple(m.network.conduits) if m.network is not None else ()
        hmi = m.units.get("hmi")
        tags = tuple(t for t in ("mode_cmd", "press_time_sp", "conveyor_speed_sp", "recipe_cmd")
                     if hmi is not None and t in hmi.variables)
    finally:
        m.terminate()
    return Catalog(tuple(sources), tuple(commands), tuple(twin_fed), tuple(inputs), tuple(params), twin_fmus,
                   conduits, tags)


# Strategies ------------------------------------------------------------------------------
def _f(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 4))


@st.composite
def conduit_settings(draw: Any, name: str) -> dict[str, Any]:
    """Valid settings of one conduit (latency, jitter, loss, bandwidth, queue limit, auth)."""
    out: dict[str, Any] = {
        "latency_s": draw(st.sampled_from([0.0, 0.0, 0.005, 0.01]) | _f(0.0, 0.1)),
        "jitter_s": draw(st.sampled_from([0.0, 0.0]) | _f(0.0, 0.02)),
        "loss": draw(st.sampled_from([0.0, 0.0]) | _f(0.0, 0.3)),
        "bandwidth_bps": draw(st.none() | _f(5e4, 1e7)),
        "queue_limit": draw(st.none() | st.integers(0, 200)),
    }
    if name == "enterprise_to_control":
        out["auth"] = "hmac"  # the HMI's command path stays authenticated (as in conf/network/cell.yaml)
    else:
        out["auth"] = draw(st.sampled_from([None, None, "hmac"]))
    return out


def network_config(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``conf/network/cell.yaml`` with ``settings`` applied to its conduits."""
    from omegaconf import OmegaConf

    net = OmegaConf.to_container(base_config().network, resolve=True)
    for c in net["conduits"]:
        c.update(settings.get(c["name"], {}))
    return net


def _traits(draw: Any) -> dict[str, Any] | None:
    traits: dict[str, Any] = {}
    if draw(st.booleans()):
        traits["insider"] = draw(st.sampled_from([True, {"user": "operator"}, {"user": "engineer"}]))
    if draw(st.booleans()):
        traits["stealth"] = draw(st.sampled_from([True]) | st.fixed_dictionaries(
            {"k": _f(0.5, 5.0), "noise": _f(0.001, 0.5)}, optional={"max_rate": _f(0.001, 1.0)})
            | st.fixed_dictionaries({"bound": _f(0.01, 2.0)}))
    if draw(st.booleans()):
        traits["persistence"] = draw(st.sampled_from([True]) | st.fixed_dictionaries({"period_s": _f(0.05, 2.0)}))
    return traits or None


@st.composite
def attack_event(draw: Any, duration: float, kinds: tuple[str, ...] | None = None, hop: bool = False) -> dict:
    """One valid scenario event for the smart factory (``attack``, ``target``, ``at``, ...)."""
    from cosim.attacks import ATTACKS

    cat = catalog()
    choices = kinds or tuple(sorted(k for k in ATTACKS if not (hop and k == "lateral")))
    kind = draw(st.sampled_from(choices))
    at = draw(_f(0.05, max(0.1, duration / 2)))
    length = draw(st.sampled_from([None]) | _f(0.05, duration / 2) | _f(0.05, duration / 2))
    params: dict[str, Any] = {}
    if kind == "spoofing":
        target = draw(st.sampled_from(cat.sources))
        mode = draw(st.sampled_from(["constant", "random", "scale", "ramp", "drift"]))
        params = {"mode": mode}
        if mode == "constant":
            params["value"] = draw(_f(-5.0, 5.0))
        elif mode == "random":
            lo = draw(_f(-5.0, 5.0))
            params.update(low=lo, high=lo + draw(_f(0.0, 5.0)))
        elif mode == "scale":
            params["factor"] = draw(_f(0.0, 3.0))
        else:
            params["rate"] = draw(_f(-1.0, 1.0))
            if mode == "drift":
                params["limit"] = draw(_f(0.01, 2.0))
    elif kind == "injection":
        target = draw(st.sampled_from(cat.commands))
        params = {"value": draw(st.booleans() | _f(-2.0, 2.0) | st.integers(0, 6))}
    elif kind == "replay":
        target = draw(st.sampled_from(cat.sources))
        params = {"record_s": draw(_f(0.01, 1.0)) * at if at > 0 else at}
        params["record_s"] = max(0.01, min(at, params["record_s"]))
    elif kind == "mitm":
        target = draw(st.sampled_from(cat.commands))
        params = {"factor": draw(_f(0.05, 3.0))}
        if draw(st.booleans()):
            params["hide"] = draw(st.sampled_from(cat.sources))
    elif kind == "api":
        target = "hmi"
        params = {"tag": draw(st.sampled_from(cat.hmi_tags)),
                  "value": draw(st.integers(0, 2) | _f(0.0, 3.0)),
                  "user": draw(st.sampled_from(["attacker", "operator", "engineer", "viewer"]))}
        if draw(st.booleans()):
            params["restore"] = draw(st.integers(0, 2))
    elif kind == "dos":
        target = draw(st.sampled_from(cat.conduits))
        params = {"mode": draw(st.sampled_from(["drop", "delay", "flood"])), "delay_s": draw(_f(0.01, 1.0)),
                  "frames_per_tick": draw(st.integers(1, 40))}
        if params["mode"] == "flood":
            params["capacity_fps"] = draw(_f(10.0, 2000.0))
    elif kind == "sync":
        target = draw(st.sampled_from([c for c in cat.conduits if c.endswith("_to_twin")] or list(cat.conduits)))
        params = {"mode": draw(st.sampled_from(["drop", "delay", "reorder"])), "delay_s": draw(_f(0.01, 1.0)),
                  "every": draw(st.integers(1, 5)), "window": draw(st.integers(2, 6)), "shuffle": draw(st.booleans())}
    elif kind == "tamper":
        target = draw(st.sampled_from(cat.parameters))
        params = {"value": draw(_f(0.05, 5.0))}
    elif kind == "poisoning":
        target = draw(st.sampled_from(cat.twin_fed))
        params = {"budget": draw(_f(0.1, 5.0)), "noise": draw(_f(0.001, 1.0)),
                  "mode": draw(st.sampled_from(["drift", "offset", "noise"])), "rate": draw(_f(0.01, 2.0)),
                  "direction": draw(st.sampled_from([1, -1])), "flip_prob": draw(_f(0.0, 1.0))}
    elif kind == "logic":
        target = draw(st.sampled_from(cat.inputs))
        mode = draw(st.sampled_from(["set", "scale", "offset", "mask", "on_delay"]))
        params = {"mode": mode, "value": draw(st.booleans() | _f(-2.0, 2.0)), "factor": draw(_f(0.0, 3.0)),
                  "delay_s": draw(_f(0.01, 2.0))}
    elif kind == "exfiltration":
        units = draw(st.lists(st.sampled_from(sorted(cat.twin_fmus)), min_size=1, max_size=2, unique=True))
        target = ",".join(units)
        params = {"conduit": draw(st.sampled_from(cat.conduits)), "rate_bps": draw(_f(1e3, 1e6))}
    elif kind in ("ota", "supply_chain"):
        target = draw(st.sampled_from(sorted(cat.twin_fmus)))
        names = draw(st.lists(st.sampled_from(cat.twin_fmus[target]), min_size=1, max_size=2, unique=True))
        params = {"parameters": {n: draw(_f(0.05, 5.0)) for n in names}, "verify": draw(st.booleans())}
        if kind == "ota":
            params["mode"] = draw(st.sampled_from(["unsigned", "foreign", "modified"]))
    elif kind == "lateral":
        hops = draw(st.lists(attack_event(duration, hop=True), min_size=1, max_size=3))
        at = min(h["at"] for h in hops)
        for i, h in enumerate(hops):
            h.pop("name", None)
            h["name"] = f"hop{i}"
        target = "enterprise->control->field"
        params = {"hops": hops}
        length = None
    else:  # a kind registered later: its own defaults on a source signal
        target = draw(st.sampled_from(cat.sources))
    event: dict[str, Any] = {"attack": kind, "target": target, "at": at, "params": params}
    if length is not None:
        event["duration"] = length
    traits = _traits(draw)
    if traits:
        event["traits"] = traits
    return event


@st.composite
def defence_policy(draw: Any, rnd: random.Random | None = None) -> dict[str, Any]:
    """A policy that demands safe mode (in most draws) and random other actions on the probe's alerts."""
    rnd = rnd or random.Random(draw(st.integers(0, 2**32 - 1)))
    safe_cuttable = [c for c in catalog().conduits if c not in CRITICAL_CONDUITS]
    actions: list[dict[str, Any]] = []
    if rnd.random() < 0.9:
        actions.append({"action": "safe_mode"})
    if draw(st.booleans()):
        actions.append({"action": "segment", "mode": "cut", "scope": "conduit",
                        "conduits": draw(st.lists(st.sampled_from(safe_cuttable), min_size=1, unique=True))})
    if draw(st.booleans()):
        actions.append({"action": "segment", "mode": "secure", "scope": draw(st.sampled_from(["signal", "zone"]))})
    if draw(st.booleans()):
        actions.append({"action": "segment", "mode": "rate_limit", "scope": "conduit", "rate": draw(_f(50.0, 2000.0)),
                        "conduits": draw(st.lists(st.sampled_from(safe_cuttable), min_size=1, unique=True))})
    if draw(st.booleans()):
        actions.append({"action": "quarantine", "flow": draw(st.booleans()), "updates": draw(st.booleans()),
                        "scope": "conduit",
                        "conduits": draw(st.lists(st.sampled_from(safe_cuttable), min_size=1, unique=True))})
    if draw(st.booleans()):
        actions.append({"action": "rollback"})
    actions.append({"action": "notify", "to": ["operator"]})
    rule: dict[str, Any] = {"name": "fuzz_alarm", "match": {"detector": [PROBE]}, "actions": actions}
    if draw(st.booleans()):
        rule["escalate"] = {"after_s": draw(_f(0.1, 2.0)), "actions": [{"action": "safe_mode"}]}
    return {
        "rules": [rule],
        "safe_mode": {"signals": {"plc.safe_mode_cmd": True}, "reached": "plc.safe_state", "bound_s": SAFE_BOUND_S,
                      "read_only": [], "reset": {"plc.reset_cmd": True}},
        "snapshots": {"period_s": draw(_f(0.5, 2.0)), "keep": draw(st.integers(1, 4)), "history_s": 10.0,
                      "prewarm_sandbox": draw(st.booleans())},
        "recovery": {"auto_resume": rnd.random() < 0.5, "quiet_s": round(rnd.uniform(0.5, 3.0), 3),
                     "restart_delay_s": round(rnd.uniform(0.0, 6.0), 3), "check_twin": draw(st.booleans()),
                     "retrain": False},
        "audit": {"file": "audit.jsonl"},
    }


@st.composite
def alert_script(draw: Any, duration: float, events: list[dict[str, Any]], rnd: random.Random | None = None,
                 after: bool = True) -> list[list[Any]]:
    """When the probe raises alerts: ``[[t, kind, target], ...]`` (targets of the attacks or random)."""
    from cosim.containment.policy import KINDS

    cat = catalog()
    targets = [e["target"] for e in events] + list(cat.sources[:5]) + list(cat.conduits)
    rnd = rnd or random.Random(draw(st.integers(0, 2**32 - 1)))
    n = rnd.randint(0, 4)
    lo = 0.05
    ends = [attack_end(e) for e in events]
    over = max(ends) if ends else 0.0
    if over + 0.05 + SAFE_BOUND_S < duration and after:
        lo = over + 0.05  # only after the attacks: safe mode must then be reached within the bound
        n = max(n, 1)
    return sorted([[round(rnd.uniform(lo, duration), 4), rnd.choice(KINDS), rnd.choice(targets)]
                   for _ in range(n)])


def attack_end(event: Mapping[str, Any]) -> float:
    """When a scenario event's last effect ends (``inf``: at the end of the run)."""
    if event.get("attack") == "lateral":
        return max((attack_end(h) for h in event["params"]["hops"]), default=math.inf)
    if event.get("duration") is None:
        return math.inf
    return float(event["at"]) + float(event["duration"])


@dataclass
class Scenario:
    """One fuzzed episode (``invalid``: which mutation makes it invalid, ``None`` if valid)."""

    seed: int
    duration: float
    conduits: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]
    policy: dict[str, Any]
    alerts: list[list[Any]]
    invalid: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "duration": self.duration, "conduits": self.conduits, "events": self.events,
                "policy": self.policy, "alerts": self.alerts, "invalid": self.invalid}


NAN, INF = float("nan"), float("inf")
# (label, function(event or conduits, draw) that breaks the scenario); each must be refused
_BAD_NUMBERS = (NAN, INF, -INF, -1.0, "abc", None, [1, 2])


def _mutate(draw: Any, sc: Scenario, rnd: random.Random) -> Scenario:
    cat = catalog()
    sc = copy.deepcopy(sc)
    if not sc.events:
        sc.events.append(draw(attack_event(sc.duration)))
    ev = sc.events[rnd.randrange(len(sc.events))]
    what = rnd.choice(["kind", "at", "duration", "target", "mode", "number", "param_key", "trait",
                       "event_key", "missing_key", "conduit", "duplicate_name"])
    if what == "kind":
        ev["attack"] = draw(st.sampled_from(["nonexistent", "spoofin", "no.such.Class", "cosim.attacks.base.Timer"]))
    elif what == "at":
        ev["at"] = draw(st.sampled_from([NAN, INF, -INF, -1.0, "soon"]))
    elif what == "duration":
        ev["duration"] = draw(st.sampled_from([NAN, INF, 0.0, -2.0, "long"]))
    elif what == "target":
        bogus = {"dos": "no_such_conduit", "sync": "no_such_conduit", "api": "no_such_hmi",
                 "exfiltration": "no_such_unit", "ota": "no_such_unit", "supply_chain": "no_such_unit",
                 "tamper": "conveyor.no_such_parameter", "logic": "plc.no_such_input"}
        if ev["attack"] == "lateral":
            ev["params"]["hops"][0]["target"] = "nosuch.signal"
            ev["params"]["hops"][0]["attack"] = "spoofing"
        else:
            ev["target"] = bogus.get(ev["attack"], "nosuch.signal")
    elif what == "mode":
        ev["attack"] = draw(st.sampled_from(["spoofing", "dos", "sync", "poisoning", "logic", "ota"]))
        ev["params"] = {"mode": "bogus_mode", "parameters": {"gain": 1.0}}
        ev["target"] = {"dos": cat.conduits[0], "sync": cat.conduits[0], "ota": sorted(cat.twin_fmus)[0]}.get(
            ev["attack"], cat.twin_fed[0] if ev["attack"] == "poisoning" else
            cat.inputs[0] if ev["attack"] == "logic" else cat.sources[0])
    elif what == "number":
        key = {"spoofing": "value", "injection": "value", "replay": "record_s", "mitm": "factor", "api": "value",
               "dos": "delay_s", "sync": "delay_s", "tamper": "value", "poisoning": "budget", "logic": "delay_s",
               "exfiltration": "rate_bps", "ota": "parameters", "supply_chain": "parameters", "lateral": "hops"}
        k = key.get(ev["attack"], "value")
        bad = draw(st.sampled_from(_BAD_NUMBERS))
        if k == "value" and bad in (-1.0,):
            bad = NAN  # -1 is a valid value
        if k == "value" and bad is None and ev["attack"] in ("injection", "api", "tamper", "spoofing"):
            bad = "abc"
        if ev["attack"] == "spoofing":
            ev["params"]["mode"] = "constant"
        if ev["attack"] == "dos":
            ev["params"]["mode"] = "delay"
        if ev["attack"] == "sync":
            ev["params"]["mode"] = "delay"
        if ev["attack"] == "logic":
            ev["params"]["mode"] = "on_delay"
        if ev["attack"] in ("ota", "supply_chain") and bad is not None:
            bad = {sorted(cat.twin_fmus[ev["target"]])[0]: bad} if isinstance(bad, float) or bad == "abc" else bad
        ev["params"][k] = bad
    elif what == "param_key":
        ev["params"]["bogus_param"] = 1.0
    elif what == "trait":
        ev["traits"] = draw(st.sampled_from([{"invisible": True}, {"stealth": {"k": -1.0}}, {"stealth": {"bound": NAN}},
                                             {"persistence": {"period_s": 0.0}}, {"persistence": {"period_s": NAN}},
                                             {"stealth": "yes"}, {"insider": 3}, {"stealth": {"max_rate": 0}}]))
    elif what == "event_key":
        ev["when"] = 3.0
    elif what == "missing_key":
        del ev[draw(st.sampled_from(["attack", "target", "at"]))]
    elif what == "conduit":
        name = draw(st.sampled_from(cat.conduits))
        key, bad = draw(st.sampled_from([
            ("latency_s", -0.01), ("latency_s", NAN), ("latency_s", INF), ("latency_s", "fast"),
            ("jitter_s", -1.0), ("jitter_s", NAN), ("loss", 1.5), ("loss", -0.1), ("loss", NAN),
            ("bandwidth_bps", 0.0), ("bandwidth_bps", -5.0), ("bandwidth_bps", INF), ("bandwidth_bps", "fast"),
            ("queue_limit", -1), ("queue_limit", 2.5), ("auth", "rsa"), ("auth", True)]))
        sc.conduits.setdefault(name, {})[key] = bad
    elif what == "duplicate_name":
        ev["name"] = "twice"
        other = copy.deepcopy(ev)
        sc.events.append(other)
    sc.invalid = what
    return sc


@st.composite
def scenarios(draw: Any, invalid_share: float = 0.25) -> Scenario:
    """A fuzzed episode: conduit settings, 1-3 attack events, a policy, alert times; sometimes invalid."""
    cat = catalog()
    from cosim.attacks import ATTACKS

    # the structure (kinds, timing, valid or not) from a plain generator seeded by hypothesis:
    # uniform over the kinds and mutations (hypothesis' own choices favour the first ones)
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    duration = float(rnd.choice([5, 6, 7, 8]))
    conduits = {name: draw(conduit_settings(name)) for name in cat.conduits}
    kinds = tuple(sorted(ATTACKS))
    events = [draw(attack_event(duration, kinds=(rnd.choice(kinds),))) for _ in range(rnd.randint(1, 3))]
    if rnd.random() < 0.6:  # attacks over early: the policy's safe mode is then checked
        for ev in events:
            _finish_early(ev, rnd)
    for i, ev in enumerate(events):
        ev["name"] = f"{ev['attack']}_{i}"
    sc = Scenario(draw(st.integers(0, 2**31 - 1)), duration, conduits, events, draw(defence_policy(rnd)),
                  draw(alert_script(duration, events, rnd, after=rnd.random() < 0.7)))
    if rnd.random() < invalid_share:
        sc = _mutate(draw, sc, rnd)
    return sc


def _finish_early(event: dict[str, Any], rnd: random.Random) -> None:
    """Move an event (or a lateral movement's hops) into the first 3 s, with a finite window."""
    if event["attack"] == "lateral":
        for hop in event["params"]["hops"]:
            _finish_early(hop, rnd)
        event["at"] = min(h["at"] for h in event["params"]["hops"])
        return
    event["at"] = round(rnd.uniform(0.05, 1.5), 4)
    event["duration"] = round(rnd.uniform(0.05, 1.5), 4)
    if event["attack"] == "replay":
        event["params"]["record_s"] = round(min(event["params"]["record_s"], event["at"]), 4)


# The probe -------------------------------------------------------------------------------
class FuzzProbe(Observer):
    """The fuzz episodes' detector: raises scripted alerts and watches the invariants.

    Every tick it reads ``safe_signal`` (the plant's safe state) and checks that no conduit
    delivered a message while cut: ``cut``/``restore`` of every conduit are wrapped so that
    the delivered count is taken at the very moment of the cut.
    """

    def __init__(self, script: list[list[Any]], safe_signal: str = "plc.safe_state", name: str = PROBE) -> None:
        self.name, self.safe_signal = name, safe_signal
        self.script = sorted((float(t), str(k), str(g)) for t, k, g in script)
        self.t: list[float] = []
        self.s: list[float] = []
        self.a: list[int] = []
        self.safe: list[tuple[float, bool]] = []  # (t, safe state) every tick
        self.cut_violations: list[dict[str, Any]] = []
        self.cuts = 0
        self._cut_at: dict[str, int] = {}

    def attach(self, ctx: Any) -> None:
        self.ctx = ctx

    @staticmethod
    def delivered(conduit: Any) -> int:
        return int(conduit.stats()["delivered"])

    def on_start(self, master: Any) -> None:
        self.master = master
        net = getattr(master, "network", None)
        self.conduits = dict(net.conduits) if net is not None else {}
        for conduit in self.conduits.values():
            cut, restore = conduit.cut, conduit.restore

            def wrapped_cut(c: Any = conduit, cut: Any = cut) -> None:
                if not c.is_cut:
                    self._cut_at[c.name] = self.delivered(c)
                    self.cuts += 1
                cut()

            def wrapped_restore(c: Any = conduit, restore: Any = restore) -> None:
                self._check(c)
                self._cut_at.pop(c.name, None)
                restore()

            conduit.cut, conduit.restore = wrapped_cut, wrapped_restore

    def _check(self, conduit: Any) -> None:
        before = self._cut_at.get(conduit.name)
        if before is not None and conduit.is_cut:
            now = self.delivered(conduit)
            if now != before:
                self.cut_violations.append({"conduit": conduit.name, "t": self.master.time,
                                            "delivered_at_cut": before, "delivered_now": now})
                self._cut_at[conduit.name] = now

    def after_step(self, tick: int) -> None:
        from cosim.detection.alert import Alert

        t = self.master.grid.time(tick)
        for conduit in self.conduits.values():
            if conduit.is_cut:
                if conduit.name not in self._cut_at:  # cut by other means (a restored snapshot)
                    self._cut_at[conduit.name] = self.delivered(conduit)
                self._check(conduit)
            else:
                self._cut_at.pop(conduit.name, None)
        self.safe.append((t, bool(self.master.get(self.safe_signal))))
        alarm = 0
        while self.script and self.script[0][0] <= t + 1e-9:
            _, kind, target = self.script.pop(0)
            alarm = 1
            self.ctx.bus.publish(Alert(t, tick, self.name, 5.0, 1.0, target, kind, {"fuzz": True}, time.perf_counter()))
        if tick % 10 == 0 or alarm:
            self.t.append(t)
            self.s.append(5.0 * alarm)
            self.a.append(alarm)

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.asarray(self.t, dtype=float), np.asarray(self.s, dtype=float), np.asarray(self.a, dtype=float)

    def summary(self) -> dict[str, Any]:
        return {"alarms": int(sum(self.a)), "cuts": self.cuts, "cut_violations": list(self.cut_violations)}


# Running and checking an episode -------------------------------------------------------
_PROBES: list[FuzzProbe] = []


def make_probe(**kwargs: Any) -> FuzzProbe:
    """``_target_`` of the probe detector (keeps a reference for the checks)."""
    probe = FuzzProbe(**kwargs)
    _PROBES.append(probe)
    return probe


@dataclass
class Outcome:
    """What one scenario gave: ``status`` ok | refused | crash, broken invariants, NaN found."""

    status: str
    invalid: str | None
    error: str | None = None
    broken: list[str] = field(default_factory=list)
    nan: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    safe_checked: int = 0
    cuts: int = 0

    @property
    def failed(self) -> bool:
        return self.status == "crash" or bool(self.broken) or bool(self.nan)


@contextmanager
def nonfinite_watch(found: list[str]) -> Iterator[None]:
    """Record non-finite floats that ``experiments.run`` would silently turn into ``None``."""
    import experiments.run as run_mod
    from cosim.tracking import summary as summary_mod

    original = summary_mod.jsonable

    def walk(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            if not np.all(np.isfinite(value)):
                found.append(path)
        elif isinstance(value, float | np.floating) and not math.isfinite(float(value)):
            found.append(path)

    def checking(value: Any) -> Any:
        walk(value, "summary")
        return original(value)

    saved = run_mod.jsonable
    run_mod.jsonable = checking
    try:
        yield
    finally:
        run_mod.jsonable = saved


def episode_config(sc: Scenario) -> Any:
    from omegaconf import OmegaConf, open_dict

    cfg = copy.deepcopy(base_config())
    with open_dict(cfg):
        cfg.seed = sc.seed
        cfg.duration = sc.duration
        cfg.network = OmegaConf.create({"enabled": True, **network_config(sc.conduits)})
        cfg.attack = OmegaConf.create({"name": "fuzz", "events": sc.events})
        cfg.detector = OmegaConf.create({"name": "fuzz", "detectors": {
            "probe": {"_target_": "benchmarks.fuzz.make_probe", "script": sc.alerts}}})
        cfg.defense = OmegaConf.create({"name": "fuzz", "detector": "none", "orchestrator": {
            "_target_": "cosim.containment.ContainmentOrchestrator", "name": "fuzz", "policy": sc.policy}})
    return cfg


def _finite_json(value: Any, path: str, bad: list[str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _finite_json(v, f"{path}.{k}", bad)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite_json(v, f"{path}[{i}]", bad)
    elif isinstance(value, float) and not math.isfinite(value):
        bad.append(path)


def run_scenario(sc: Scenario, out_dir: Path) -> Outcome:
    """Run one fuzzed episode and check its properties (never raises)."""
    from benchmarks import fuzz as this  # the probes live there, also when run as __main__
    from experiments.run import run_episode

    t0 = time.perf_counter()
    probes = this._PROBES
    probes.clear()
    found: list[str] = []
    try:
        cfg = episode_config(sc)
        with nonfinite_watch(found):
            ep = run_episode(cfg, out_dir)
    except CosimError as exc:
        out = Outcome("refused", sc.invalid, f"{type(exc).__name__}: {exc}")
        if sc.invalid is None:
            out.broken.append(f"valid scenario refused: {out.error}")
        out.wall_s = time.perf_counter() - t0
        return out
    except Exception as exc:
        tb = traceback.format_exc(limit=-6)
        out = Outcome("crash", sc.invalid, f"{type(exc).__name__}: {exc}\n{tb}")
        out.wall_s = time.perf_counter() - t0
        return out
    from cosim.tracking.summary import write_summary

    write_summary(out_dir, ep.summary)
    out = Outcome("ok", sc.invalid)
    if sc.invalid is not None:
        out.broken.append(f"invalid input ({sc.invalid}) accepted")
    out.nan = sorted(set(found))
    check_outcome(sc, ep.summary, probes[-1] if probes else None, out_dir, out)
    out.wall_s = time.perf_counter() - t0
    return out


def control_path_has_capacity(sc: Scenario) -> bool:
    """Whether the drawn settings of the PLC's conduits carry the cell's control traffic."""
    for name in CRITICAL_CONDUITS:
        c = sc.conduits.get(name) or {}
        bw, queue = c.get("bandwidth_bps"), c.get("queue_limit")
        if bw is not None and (bw < CONTROL_MIN_BPS or (queue is not None and queue < CONTROL_MIN_QUEUE)):
            return False
    return True


def check_outcome(sc: Scenario, summary: Mapping[str, Any], probe: FuzzProbe | None, out_dir: Path,
                  out: Outcome) -> None:
    from cosim.containment.audit import verify_audit

    bad: list[str] = []
    _finite_json(summary, "summary", bad)
    try:
        json.dumps(summary, allow_nan=False)
    except ValueError as exc:
        bad.append(f"summary is not strict JSON: {exc}")
    out.nan += bad
    if summary.get("status") != "FINISHED" or summary.get("sim_time_s") is None:
        out.broken.append(f"episode did not finish: status {summary.get('status')}, stopped by "
                          f"{summary.get('stopped_by')}")
    if probe is None:
        out.broken.append("the probe detector was not built")
        return
    # no message crosses a cut conduit
    out.cuts = probe.cuts
    for v in probe.cut_violations:
        out.broken.append(f"delivery over cut conduit: {v}")
    # the audit chain verifies
    defence = summary.get("defence") or {}
    if not defence.get("audit_chain_verified"):
        out.broken.append("audit chain not verified by the orchestrator")
    audit = out_dir / "audit.jsonl"
    result = verify_audit(audit, expected_head=defence.get("audit_head"), expected_count=defence.get("audit_records"))
    if not result.ok:
        out.broken.append(f"audit chain does not verify: {result}")
    # safe mode reached within the bound once the attacks are over
    end = float(summary["sim_time_s"])
    attack_end = 0.0
    for iv in summary.get("attack_intervals") or []:
        attack_end = max(attack_end, math.inf if iv.get("end") is None else float(iv["end"]))
    for a in defence.get("actions") or []:
        if a.get("action") != "safe_mode" or not a.get("ok", True):
            continue
        decided = float(a["decided_t"])
        bound = float((a.get("detail") or {}).get("bound_s", SAFE_BOUND_S))
        if decided + bound > end - 1e-9 or attack_end > decided:
            continue
        released = a.get("released_t")
        if released is not None and released < decided + bound:
            continue
        out.safe_checked += 1
        reached = bool([t for t, s in probe.safe if decided - 1e-9 <= t <= decided + bound + 1e-9 and s])
        exceeded = bool((a.get("detail") or {}).get("bound_exceeded"))
        if not reached and control_path_has_capacity(sc):
            out.broken.append(f"safe mode decided at {decided:.2f} s not reached within {bound} s "
                              f"(episode ends {end:.2f} s)")
        if exceeded == reached:  # the orchestrator's report must match what the plant did
            out.broken.append(f"safe mode decided at {decided:.2f} s: reached {reached}, but the orchestrator "
                              f"reports the bound {'exceeded' if exceeded else 'kept'}")


# The network-level harness -----------------------------------------------------------------
ALTERED = 1e6  # what the fuzz hooks add to the values of a frame they alter
@dataclass
class NetCase:
    seed: int
    zones: int
    conduits: list[dict[str, Any]]
    sensors: list[int]  # step_ticks of each sensor
    ticks: int
    events: list[tuple[int, str, int, Any]]  # (tick, action, conduit index, argument)


@st.composite
def network_cases(draw: Any) -> NetCase:
    n = draw(st.integers(2, 4))
    conduits = []
    for a in range(n):
        for b in range(n):
            if a != b and draw(st.booleans()):
                settings = draw(conduit_settings("x"))
                settings["latency_s"] = draw(_f(0.0, 0.02))
                settings["bandwidth_bps"] = draw(st.none() | _f(500.0, 1e6))
                settings["queue_limit"] = draw(st.none() | st.integers(0, 20))
                conduits.append({"from": a, "to": b, **settings})
    if not conduits:
        conduits.append({"from": 0, "to": 1})
    ticks = draw(st.integers(20, 300))
    actions = ["cut", "restore", "rate_limit", "unlimit", "allow", "allow_all", "divert", "undivert",
               "drop_hook", "alter_hook", "remove_hooks", "inject", "secure"]
    events = draw(st.lists(st.tuples(st.integers(0, ticks - 1), st.sampled_from(actions),
                                     st.integers(0, len(conduits) - 1), _f(1.0, 500.0)), max_size=20))
    return NetCase(draw(st.integers(0, 2**31 - 1)), n, conduits, draw(st.lists(st.integers(1, 5), min_size=n,
                                                                              max_size=n)), ticks, sorted(events))


def run_network_case(case: NetCase) -> Outcome:
    """Random zones, conduits, traffic, control and hooks on a bare network; check the counters."""
    from cosim import Master, PythonUnit
    from cosim.core.unit import real
    from cosim.network import ConduitConfig, Network

    class Src(PythonUnit):
        VARIABLES = (real("x", "output"), real("y", "output"))

        def do_step(self, t: float, h: float) -> None:
            self.values["x"] = t + h
            self.values["y"] = -(t + h)

    class Dst(PythonUnit):
        VARIABLES = tuple(real(f"in{i}_{v}", "input") for i in range(4) for v in "xy")

        def do_step(self, t: float, h: float) -> None:
            pass

    t0 = time.perf_counter()
    out = Outcome("ok", None)
    try:
        m = Master(0.01)
        for i, ticks in enumerate(case.sensors):
            m.add_unit(Src(f"s{i}"), step_ticks=ticks)
            m.add_unit(Dst(f"d{i}"))
        configs, keys = [], {}
        for k, c in enumerate(case.conduits):
            name = f"c{k}"
            configs.append(ConduitConfig(name, f"z{c['from']}", f"z{c['to']}", "telemetry",
                                         latency_s=c.get("latency_s", 0.0), jitter_s=c.get("jitter_s", 0.0),
                                         loss=c.get("loss", 0.0), bandwidth_bps=c.get("bandwidth_bps"),
                                         queue_limit=c.get("queue_limit"), auth=c.get("auth")))
            if c.get("auth") == "hmac":
                keys[name] = f"key-{k}".encode()
            m.connect(f"s{c['from']}.x", f"d{c['to']}.in{c['from']}_x")
            m.connect(f"s{c['from']}.y", f"d{c['to']}.in{c['from']}_y")
        zones = {f"z{i}": [f"s{i}", f"d{i}"] for i in range(case.zones)}
        net = Network(zones, configs, seed=case.seed, hmac_keys=keys)
        m.attach_network(net)
        m.build()
        conduits = list(net.conduits.values())
        altered: dict[str, int] = {c.name: 0 for c in conduits}
        cut_at: dict[str, int] = {}
        pending = list(case.events)
        inputs = {c.name: [f"{ch.target}.{i}" for ch in c.channels for ins in ch.inputs.values() for i in ins]
                  for c in conduits}
        last: dict[str, float] = {}

        def delivered(c: Any) -> int:
            return int(c.stats()["delivered"])

        for tick in range(case.ticks):
            while pending and pending[0][0] <= tick:
                _, action, k, arg = pending.pop(0)
                c = conduits[k % len(conduits)]
                if action == "cut":
                    if not c.is_cut:
                        cut_at[c.name] = delivered(c)
                    c.cut()
                elif action == "restore":
                    cut_at.pop(c.name, None)
                    c.restore()
                elif action == "rate_limit":
                    c.rate_limit(arg)
                elif action == "unlimit":
                    c.rate_limit(None)
                elif action == "allow":
                    c.allow([c.channels[0].tags[0]] if c.channels else ["nobody"])
                elif action == "allow_all":
                    c.allow(None)
                elif action == "divert":
                    c.divert(lambda msg: None)
                elif action == "undivert":
                    c.divert(None)
                elif action == "drop_hook":
                    c.add_hook(lambda msg: None)
                elif action == "alter_hook":
                    def alter(msg: Any, c: Any = c) -> Any:
                        altered[c.name] += 1
                        return msg._replace(values=tuple(v + ALTERED for v in msg.values))
                    c.add_hook(alter)
                elif action == "remove_hooks":
                    for h in c.hooks:
                        c.remove_hook(h)
                elif action == "inject" and c.channels:
                    ch = c.channels[0]
                    c.inject(ch.target, {ch.tags[0]: arg}, source=ch.source)
                elif action == "secure":
                    c.secure(f"new-key-{c.name}".encode())
            m.step()
            for c in conduits:
                if c.is_cut and c.name in cut_at and delivered(c) != cut_at[c.name]:
                    out.broken.append(f"conduit {c.name}: delivered while cut at tick {tick}")
                    cut_at[c.name] = delivered(c)
                for port in inputs[c.name]:
                    value = float(m.get(port))
                    if c.authenticated and value >= ALTERED / 2 and value != last.get(port):
                        out.broken.append(f"conduit {c.name}: an altered frame reached {port} at tick {tick}")
                    last[port] = value
        for c in conduits:
            s = c.stats()
            for key, value in s.items():
                if isinstance(value, float) and not math.isfinite(value):
                    out.nan.append(f"{c.name}.{key}")
            if s["delivered"] > s["sent"] + s["injected"]:
                out.broken.append(f"conduit {c.name}: delivered {s['delivered']} > sent {s['sent']} + injected "
                                  f"{s['injected']}")
            if min(v for v in s.values() if isinstance(v, int | float) and not isinstance(v, bool)
                   and v is not s["last_delivery_tick"]) < 0:
                out.broken.append(f"conduit {c.name}: a negative counter {s}")
        m.terminate()
    except CosimError as exc:
        out.status, out.error = "refused", f"{type(exc).__name__}: {exc}"
        out.broken.append(f"valid network case refused: {out.error}")
    except Exception as exc:
        out.status, out.error = "crash", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-6)}"
    out.wall_s = time.perf_counter() - t0
    return out


# The script ---------------------------------------------------------------------------------
def _drive(strategy: Any, n: int, fn: Any, seed: int) -> None:
    """Call ``fn`` on ``n`` examples of ``strategy`` (generation only, no shrinking, no database)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    @hseed(seed)
    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(example: Any) -> None:
        fn(example)

    run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=1000, help="fuzzed episodes")
    parser.add_argument("--network", type=int, default=0, help="fuzzed bare-network cases")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    parser.add_argument("--keep", type=Path, default=None, help="directory for the episodes' files")
    args = parser.parse_args(argv)

    figures: dict[str, Any] = {"scenarios": 0, "valid": 0, "invalid": 0, "invalid_refused": 0, "ok": 0,
                               "crashes": 0, "broken_invariants": 0, "nan": 0, "safe_mode_checks": 0,
                               "cuts_watched": 0, "refused_by_mutation": {}, "failures": []}
    walls: list[float] = []
    work = Path(tempfile.mkdtemp(prefix="cosim-fuzz-")) if args.keep is None else args.keep
    t_start = time.perf_counter()
    failures_log = args.out.with_suffix(".failures.jsonl")
    failures_log.parent.mkdir(parents=True, exist_ok=True)
    failures_log.write_text("")
    catalog()

    def dump(partial: bool) -> None:
        done = dict(figures, wall_s_total=round(time.perf_counter() - t_start, 1), finished=not partial)
        if walls:
            done["wall_s_per_scenario"] = {"mean": round(float(np.mean(walls)), 3),
                                           "median": round(float(np.median(walls)), 3),
                                           "max": round(float(np.max(walls)), 3)}
        args.out.write_text(json.dumps(done, indent=2, default=str))

    def record(sc: Scenario | None, out: Outcome, kind: str) -> None:
        figures["scenarios"] += kind == "episode"
        walls.append(out.wall_s)
        if kind == "episode" and sc is not None:
            figures["invalid" if sc.invalid else "valid"] += 1
            if sc.invalid and out.status == "refused":
                figures["invalid_refused"] += 1
                by = figures["refused_by_mutation"]
                by[sc.invalid] = by.get(sc.invalid, 0) + 1
            figures["safe_mode_checks"] += out.safe_checked
            figures["cuts_watched"] += out.cuts
        figures["ok"] += out.status == "ok"
        figures["crashes"] += out.status == "crash"
        figures["broken_invariants"] += bool(out.broken)
        figures["nan"] += bool(out.nan)
        if out.failed:
            failure = {"harness": kind, "status": out.status, "error": out.error, "broken": out.broken,
                       "nan": out.nan, "scenario": sc.as_dict() if sc is not None else None}
            figures["failures"].append(failure)
            with failures_log.open("a") as fh:  # as they come: a long run can be looked at while it goes
                fh.write(json.dumps(failure, default=str) + "\n")
        n = len(walls)
        if n % 25 == 0:
            dump(partial=True)
            print(f"{n} cases, {figures['crashes']} crashes, {figures['broken_invariants']} broken, "
                  f"{figures['nan']} NaN, {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)

    def episode(sc: Scenario) -> None:
        d = work / f"ep{figures['scenarios']:05d}"
        record(sc, run_scenario(sc, d), "episode")
        if args.keep is None:
            import shutil

            shutil.rmtree(d, ignore_errors=True)

    if args.scenarios:
        _drive(scenarios(), args.scenarios, episode, args.seed)
    ep_wall = list(walls)
    net_figures = {"cases": 0, "crashes": 0, "broken_invariants": 0, "nan": 0}
    if args.network:
        before = dict(figures)

        def network(case: NetCase) -> None:
            net_figures["cases"] += 1
            out = run_network_case(case)
            net_figures["crashes"] += out.status == "crash"
            net_figures["broken_invariants"] += bool(out.broken)
            net_figures["nan"] += bool(out.nan)
            if out.failed:
                figures["failures"].append({"harness": "network", "status": out.status, "error": out.error,
                                            "broken": out.broken, "nan": out.nan})
            walls.append(out.wall_s)

        _drive(network_cases(), args.network, network, args.seed)
        del before
    total = time.perf_counter() - t_start
    figures["wall_s_total"] = round(total, 1)
    figures["finished"] = True
    if ep_wall:
        figures["wall_s_per_scenario"] = {"mean": round(float(np.mean(ep_wall)), 3),
                                          "median": round(float(np.median(ep_wall)), 3),
                                          "max": round(float(np.max(ep_wall)), 3)}
    figures["network_cases"] = net_figures
    figures["hypothesis_seed"] = args.seed
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps({k: v for k, v in figures.items() if k != "failures"}, indent=2, default=str))
    return 1 if figures["crashes"] or figures["broken_invariants"] or figures["nan"] or net_figures["crashes"] \
        or net_figures["broken_invariants"] or net_figures["nan"] else 0


if __name__ == "__main__":
    sys.exit(main())
