"""Declarative defence policies: rules that map alerts to containment actions.

Schema (a mapping, e.g. ``orchestrator.policy`` in ``conf/defense/<name>.yaml``)::

    rules:                                   # in order; the first rule that matches decides
      - name: secure_attacked_signal
        match: {detector: [dt, cps], kind: [spoofing, injection], target: "press.*", min_score: 0.0}
        actions:
          - {action: segment, mode: secure, scope: signal}
          - {action: notify, to: [operator, twin]}
        escalate: {after_s: 1.0, actions: [{action: safe_mode}]}   # alerts go on: a hazard persists
        continue: false                      # also try the rules after this one
    twin_watch: {threshold: 8.0, persist_s: 0.2, actions: [{action: rollback}]}
    safe_mode: {signals: {plc.safe_mode_cmd: true}, reached: plc.safe_state, bound_s: 10.0}
    snapshots: {period_s: 2.0, keep: 5, history_s: 60.0, prewarm_sandbox: true}
    recovery: {auto_resume: true, quiet_s: 2.0, restart_delay_s: 0.0, retrain: true, ...}
    audit: {file: audit.jsonl}

``safe_mode`` gives the defaults of every ``safe_mode`` action (the plant's own safe-state
inputs: nothing about the cell is hard-coded). Everything is validated by
:func:`load_policy`; an error names the rule and the key at fault.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cosim.containment.actions import ACTIONS, Action, instantiate, validate_params
from cosim.errors import ConfigurationError

if TYPE_CHECKING:
    from cosim.detection.alert import Alert

KINDS = ("injection", "spoofing", "dos", "replay", "mitm", "api", "sync", "tamper", "poisoning", "logic",
         "exfiltration", "ota", "other")


@dataclass(frozen=True)
class Match:
    """Which alerts a rule applies to (``None``: any)."""

    detectors: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None  # fnmatch patterns
    min_score: float | None = None

    def matches(self, alert: Alert) -> bool:
        if self.detectors is not None and alert.detector not in self.detectors:
            return False
        if self.kinds is not None and (alert.kind or "other") not in self.kinds:
            return False
        if self.targets is not None and not (
                alert.target is not None and any(fnmatch.fnmatchcase(alert.target, p) for p in self.targets)):
            return False
        return not (self.min_score is not None and not alert.score >= self.min_score)


@dataclass
class Rule:
    name: str
    match: Match
    actions: list[Action]
    escalate_after_s: float | None = None
    escalate: list[Action] = field(default_factory=list)
    cont: bool = False


@dataclass
class TwinWatch:
    threshold: float
    persist_s: float
    actions: list[Action]


@dataclass(frozen=True)
class SnapshotSettings:
    period_s: float = 2.0
    keep: int = 5
    history_s: float = 60.0
    prewarm_sandbox: bool = True


@dataclass(frozen=True)
class RecoverySettings:
    """When and how production resumes.

    Attributes:
        auto_resume: release blocking actions automatically once the threat is contained.
        quiet_s: no new alert for this long means contained.
        restart_delay_s: blocking actions (safe mode) last at least this long (an operator's
            restart; the conventional approach waits 300 s).
        check_twin: require the twin deviation to be below the twin watch threshold.
        retrain: call the detectors' ``retrain(intervals)`` after recovery.
        retrain_margin_s: clean intervals keep this far from any alert, safe mode or twin fault.
        retrain_min_interval_s: shorter clean stretches are not used.
        retrain_min_total_s: retrain only with at least this much clean data.
        max_retrains: at most this many retrains per episode (guards against a poisoning loop).
    """

    auto_resume: bool = True
    quiet_s: float = 2.0
    restart_delay_s: float = 0.0
    check_twin: bool = True
    retrain: bool = False
    retrain_margin_s: float = 5.0
    retrain_min_interval_s: float = 5.0
    retrain_min_total_s: float = 20.0
    max_retrains: int = 3


@dataclass
class Policy:
    name: str
    rules: list[Rule]
    twin_watch: TwinWatch | None
    snapshots: SnapshotSettings
    recovery: RecoverySettings
    safe_mode: dict[str, Any]
    audit_file: str | None = "audit.jsonl"

    def rule_for(self, alert: Alert) -> list[Rule]:
        """The rules that apply to ``alert``, in order (the first, plus those after a ``continue``)."""
        out = []
        for rule in self.rules:
            if rule.match.matches(alert):
                out.append(rule)
                if not rule.cont:
                    break
        return out


_TOP = {"rules", "twin_watch", "safe_mode", "snapshots", "recovery", "audit"}
_RULE = {"name", "match", "actions", "escalate", "continue"}
_MATCH = {"detector", "kind", "target", "min_score"}


def _fail(policy: str, where: str, detail: str) -> ConfigurationError:
    return ConfigurationError(f"defence policy '{policy}': {where}: {detail}")


def _names(policy: str, where: str, key: str, value: Any, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(v, str) and v for v in items):
        raise _fail(policy, where, f"key '{key}' must be a name or a list of names, got {value!r}")
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise _fail(policy, where, f"key '{key}': unknown value(s) {bad}; allowed are {list(allowed)}")
    return tuple(items)


def _number(policy: str, where: str, key: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(policy, where, f"key '{key}' must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise _fail(policy, where, f"key '{key}' must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def _actions(policy: str, where: str, items: Any, safe_mode: Mapping[str, Any]) -> list[Action]:
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise _fail(policy, where, f"key 'actions' must be a non-empty list, got {items!r}")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"action": item}
        if not isinstance(item, Mapping) or "action" not in item:
            raise _fail(policy, where, f"actions[{i}] must be a mapping with an 'action' key, got {item!r}")
        name = item["action"]
        params = {k: v for k, v in item.items() if k != "action"}
        if name == "safe_mode":
            params = {**safe_mode, **params}
        if name not in ACTIONS:
            raise _fail(policy, where, f"actions[{i}]: unknown action '{name}'; actions are {sorted(ACTIONS)}")
        try:
            out.append(instantiate(str(name), where, params))
        except ConfigurationError as exc:
            raise ConfigurationError(f"defence policy '{policy}': {exc}") from None
    return out


def load_policy(cfg: Mapping[str, Any] | Policy, name: str = "policy") -> Policy:
    """Validate a policy mapping and build it.

    Raises:
        ConfigurationError: one message naming the policy, the rule and the key at fault.
    """
    if isinstance(cfg, Policy):
        return cfg
    if not isinstance(cfg, Mapping):
        raise ConfigurationError(f"defence policy '{name}' must be a mapping, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - _TOP)
    if unknown:
        raise _fail(name, "top level", f"unknown key(s) {unknown}; allowed are {sorted(_TOP)}")
    safe_mode = dict(cfg.get("safe_mode") or {})
    if safe_mode:
        try:
            validate_params("safe_mode", safe_mode, "safe_mode")
        except ConfigurationError as exc:
            raise ConfigurationError(f"defence policy '{name}': {exc}") from None
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, rcfg in enumerate(cfg.get("rules") or []):
        if not isinstance(rcfg, Mapping):
            raise _fail(name, f"rule #{i}", f"must be a mapping, got {rcfg!r}")
        rname = str(rcfg.get("name") or f"rule{i}")
        where = f"rule '{rname}'"
        if rname in seen:
            raise _fail(name, where, "two rules have this name")
        seen.add(rname)
        extra = sorted(set(rcfg) - _RULE)
        if extra:
            raise _fail(name, where, f"unknown key(s) {extra}; allowed are {sorted(_RULE)}")
        mcfg = rcfg.get("match") or {}
        if not isinstance(mcfg, Mapping):
            raise _fail(name, where, f"key 'match' must be a mapping, got {mcfg!r}")
        extra = sorted(set(mcfg) - _MATCH)
        if extra:
            raise _fail(name, where, f"unknown key(s) match.{extra}; allowed are {sorted(_MATCH)}")
        match = Match(
            detectors=_names(name, where, "match.detector", mcfg["detector"]) if mcfg.get("detector") else None,
            kinds=_names(name, where, "match.kind", mcfg["kind"], KINDS) if mcfg.get("kind") else None,
            targets=_names(name, where, "match.target", mcfg["target"]) if mcfg.get("target") else None,
            min_score=_number(name, where, "match.min_score", mcfg["min_score"], -float("inf"))
            if mcfg.get("min_score") is not None else None,
        )
        actions = _actions(name, where, rcfg.get("actions"), safe_mode)
        esc = rcfg.get("escalate")
        after, esc_actions = None, []
        if esc is not None:
            if not isinstance(esc, Mapping) or set(esc) - {"after_s", "actions"}:
                raise _fail(name, where, f"key 'escalate' must be {{after_s, actions}}, got {esc!r}")
            after = _number(name, where, "escalate.after_s", esc.get("after_s", 1.0))
            esc_actions = _actions(name, f"{where} (escalate)", esc.get("actions"), safe_mode)
        cont = rcfg.get("continue", False)
        if not isinstance(cont, bool):
            raise _fail(name, where, f"key 'continue' must be true or false, got {cont!r}")
        rules.append(Rule(rname, match, actions, after, esc_actions, cont))
    watch = None
    wcfg = cfg.get("twin_watch")
    if wcfg:
        if not isinstance(wcfg, Mapping) or set(wcfg) - {"threshold", "persist_s", "actions"}:
            raise _fail(name, "twin_watch", f"must be {{threshold, persist_s, actions}}, got {wcfg!r}")
        watch = TwinWatch(_number(name, "twin_watch", "threshold", wcfg.get("threshold"), strict=True),
                          _number(name, "twin_watch", "persist_s", wcfg.get("persist_s", 0.1)),
                          _actions(name, "twin_watch", wcfg.get("actions") or ["rollback"], safe_mode))
    snapshots = _dataclass(name, "snapshots", SnapshotSettings, cfg.get("snapshots") or {})
    recovery = _dataclass(name, "recovery", RecoverySettings, cfg.get("recovery") or {})
    acfg = cfg.get("audit") or {}
    if not isinstance(acfg, Mapping) or set(acfg) - {"file"}:
        raise _fail(name, "audit", f"must be {{file}}, got {acfg!r}")
    audit_file = acfg.get("file", "audit.jsonl")
    return Policy(name, rules, watch, snapshots, recovery, safe_mode, audit_file)


def _dataclass(policy: str, where: str, cls: type, values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise _fail(policy, where, f"must be a mapping, got {values!r}")
    defaults = cls()
    out = {}
    for key, value in values.items():
        if not hasattr(defaults, key):
            raise _fail(policy, where, f"unknown key '{key}'; allowed are {sorted(defaults.__dict__)}")
        want = type(getattr(defaults, key))
        if want is bool:
            if not isinstance(value, bool):
                raise _fail(policy, where, f"key '{key}' must be true or false, got {value!r}")
        elif want is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _fail(policy, where, f"key '{key}' must be a positive integer, got {value!r}")
        else:
            value = _number(policy, where, key, value)
        out[key] = value
    if where == "snapshots" and out.get("period_s", defaults.period_s) <= 0:
        raise _fail(policy, where, "key 'period_s' must be > 0")
    return cls(**out)
