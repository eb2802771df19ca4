"""The containment orchestrator: alerts in, containment actions out, by policy; audited.

It is the episode's defence (:class:`~cosim.episode.Defence`): ``attach(ctx)`` subscribes it to
the alert bus, and as the last observer of the master it sees the system after every step.
Alerts are handled synchronously, in the master step in which they are raised:

1. the alert is audited and opens an *incident* if none is open;
2. the first matching rule (see :mod:`cosim.containment.policy`) decides; each of its actions
   runs unless an action with the same effect is already in force, and is audited with the
   wall time from the alert to the action being done;
3. after every step: actions pending effectiveness are polled (safe mode), escalations fire if
   matching alerts persist after containment, the twin watch rolls the twin back when its
   deviation passes the threshold, healthy snapshots are taken, and recovery releases what
   blocks production once no alert came for the quiet period and the checks pass.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosim.containment.actions import Action, ActionRecord
from cosim.containment.audit import AuditLog, verify_audit
from cosim.containment.policy import Policy, Rule, load_policy
from cosim.containment.quarantine import QuarantineManager
from cosim.containment.recovery import TwinRecovery, clean_intervals
from cosim.core.observer import Observer
from cosim.detection.alert import Alert
from cosim.errors import ConfigurationError
from cosim.twin.integrity import KeyStore

if TYPE_CHECKING:
    from cosim.core.master import Master
    from cosim.episode import EpisodeContext
    from cosim.network.network import Network


class ContainmentOrchestrator(Observer):
    """Turns alerts into containment actions by a declarative policy.

    Args:
        policy: the policy mapping (validated here) or a :class:`Policy`.
        name: the defence's name (e.g. ``dt_framework``).
        keystore_dir: key directory for snapshot signatures and conduit keys (default: the
            installation's).
    """

    def __init__(self, policy: Mapping[str, Any] | Policy, name: str = "defence",
                 keystore_dir: str | None = None) -> None:
        self.name = name
        self.policy = load_policy(policy, name)
        self.keystore = KeyStore(keystore_dir)
        self.ctx: EpisodeContext | None = None
        self.master: Master | None = None
        self.audit = AuditLog(None)
        self.records: list[ActionRecord] = []
        self.notifications: list[dict[str, Any]] = []
        self.alerts: list[Alert] = []
        self.incidents: list[dict[str, Any]] = []
        self.incident_id = 0
        self.incident_start_tick: int | None = None
        self.first_alert_t: float | None = None
        self.safe_intervals: list[list[float | None]] = []
        self.retrains: list[dict[str, Any]] = []
        self.recovery = TwinRecovery(self, self.policy.snapshots, self.keystore)
        self.quarantine = QuarantineManager(self.recovery.sandbox)
        self._active: dict[tuple[Any, ...], ActionRecord] = {}
        self._pending: list[tuple[Action, ActionRecord]] = []
        self._rule_state: dict[str, dict[str, Any]] = {}
        self._watch_run = 0
        self._last_alert_t: float | None = None
        self._last_check_t = -float("inf")
        self._twin_bad: list[list[float]] = []
        self._early: list[Alert] = []

    # Defence protocol --------------------------------------------------------------------
    def attach(self, ctx: EpisodeContext) -> None:
        self.ctx = ctx
        ctx.bus.subscribe(self._on_alert)
        path = Path(ctx.out_dir) / self.policy.audit_file if ctx.out_dir is not None and self.policy.audit_file \
            else None
        self.audit = AuditLog(path)
        ctx.extra["update_gate"] = self.quarantine.gate
        ctx.extra["containment"] = self

    def on_start(self, master: Master) -> None:
        if self.ctx is None:
            raise ConfigurationError(f"defence '{self.name}': attach(ctx) must be called before the run")
        self.master = master
        self.audit.append("start", t=self.time, tick=self.tick, reason=f"defence '{self.name}' armed",
                          rules=[r.name for r in self.policy.rules],
                          twin_watch=self.watch_threshold, network=master.network is not None)
        self.recovery.on_start(master)
        self.quarantine.gate.bind(master, self.recovery.sandbox, self._replica_of)
        self.quarantine.gate.on_submit = self._update_submitted
        self._hook_update_endpoint(master)
        early, self._early = self._early, []
        for alert in early:
            self._on_alert(alert)

    def after_step(self, tick: int) -> None:
        rec = self.recovery
        rec.record(tick)
        if self._pending:
            for action, record in list(self._pending):
                # most actions act once: only those that define a poll are polled
                if type(action).poll is not Action.poll and record.active:
                    action.poll(self, record)
        self._watch(tick)
        # escalation and recovery only act on an open incident
        if self.incident_start_tick is not None:
            self._escalate()
        healthy = self.incident_start_tick is None and self._watch_run == 0
        rec.maybe_snapshot(tick, healthy)
        if self.incident_start_tick is not None:
            self._maybe_recover()

    def on_stop(self) -> None:
        self.audit.append("stop", t=self.time, tick=self.tick, reason="the run stopped")

    def close(self) -> None:
        """Close the audit file and the sandbox twin (the episode calls this at its end)."""
        self.audit.close()
        self.recovery.close()

    # time ------------------------------------------------------------------------------
    @property
    def tick(self) -> int:
        return self.master.tick if self.master is not None else 0

    @property
    def time(self) -> float:
        return self.master.time if self.master is not None else 0.0

    @property
    def network(self) -> Network | None:
        return self.master.network if self.master is not None else None

    @property
    def watch_threshold(self) -> float | None:
        return self.policy.twin_watch.threshold if self.policy.twin_watch is not None else None

    # alerts ----------------------------------------------------------------------------
    def _on_alert(self, alert: Alert) -> None:
        if self.master is None:
            self._early.append(alert)
            return
        self.alerts.append(alert)
        self.audit.append("alert", t=alert.time, tick=alert.tick, reason=f"{alert.detector}: score {alert.score:.4g} "
                          f"> threshold {alert.threshold:.4g}", evidence=dict(alert.evidence),
                          detector=alert.detector, attack_kind=alert.kind, target=alert.target, score=alert.score)
        self._open_incident(alert)
        self._last_alert_t = max(self._last_alert_t or alert.time, alert.time)
        rules = self.policy.rule_for(alert)
        if not rules:
            self.audit.append("decision", t=alert.time, tick=alert.tick, reason="no rule matches: logged only",
                              alert_kind=alert.kind, target=alert.target)
            return
        for rule in rules:
            state = self._rule_state.setdefault(rule.name, {"incident": None})
            if state["incident"] != self.incident_id:
                state.update(incident=self.incident_id, targets={}, escalated=False)
            # alarms persist per target: a new target alarming later has its own containment time
            target = state["targets"].setdefault(alert.target, {"first_effective": None})
            target["last_alert_t"] = alert.time
            self._decide(rule.name, rule.actions, alert, f"rule '{rule.name}' matches {alert.kind} on {alert.target}")
            if target["first_effective"] is None:
                eff = [r.effective_t for r in self.records if r.rule == rule.name and r.effective_t is not None
                       and r.containment and r.decided_t >= self.incidents[-1]["start_t"]]
                target["first_effective"] = max(min(eff), alert.time) if eff else None

    def _open_incident(self, alert: Alert) -> None:
        if self.incident_start_tick is None:
            self.incident_id += 1
            self.incident_start_tick = alert.tick
            self.incidents.append({"id": self.incident_id, "start_t": alert.time, "first_alert": alert.as_dict()
                                   if hasattr(alert, "as_dict") else {}, "contained_t": None, "recovered_t": None,
                                   "alerts": 0})
            if self.first_alert_t is None:
                self.first_alert_t = alert.time
            self.audit.append("incident_opened", t=alert.time, tick=alert.tick,
                              reason=f"first alert ({alert.kind} on {alert.target})", incident=self.incident_id)
        self.incidents[-1]["alerts"] += 1

    def _decide(self, rule: str, actions: list[Action], alert: Alert, reason: str, direct: bool = True) -> None:
        t_recv = time.perf_counter()
        self.audit.append("decision", t=self.time, tick=self.tick, reason=reason, evidence={"alert": alert.as_dict()},
                          rule=rule, actions=[a.name for a in actions], incident=self.incident_id)
        for action in actions:
            key = action.key(self, alert)
            existing = self._active.get(key)
            if existing is not None and existing.active:
                continue  # the same effect is in force already
            record = ActionRecord(len(self.records), action.name, rule, alert.target, self.time, self.tick,
                                  containment=action.containment, alert_t=alert.time if direct else None)
            self.records.append(record)
            try:
                action.execute(self, record, alert)
            except Exception as exc:  # an action failing must not stop the others, nor the plant
                record.ok = False
                record.detail["error"] = f"{type(exc).__name__}: {exc}"
            start = alert.wall_time if alert.wall_time > 0 else t_recv
            record.wall_ms = (time.perf_counter() - start) * 1e3
            self.audit.append("action", t=self.time, tick=self.tick,
                              reason=f"{action.name} by rule '{rule}'" + ("" if record.ok else " (not effective)"),
                              evidence={k: v for k, v in record.detail.items() if not k.startswith("_")},
                              action=action.name, record=record.id, target=record.target, ok=record.ok,
                              effective_t=record.effective_t, wall_ms=record.wall_ms)
            if record.ok:
                self._active[key] = record
                self._pending.append((action, record))
                if record.containment and record.effective_t is not None and self.incidents:
                    inc = self.incidents[-1]
                    if inc["contained_t"] is None:
                        inc["contained_t"] = record.effective_t
                        inc["latency_s"] = record.effective_t - inc["start_t"]

    def audit_event(self, kind: str, record: ActionRecord, reason: str) -> None:
        """Audit a later event of an action (effective, safe state reached, bound exceeded)."""
        self.audit.append(kind, t=self.time, tick=self.tick, reason=reason, action=record.action, record=record.id)
        if kind == "effective" and record.containment and self.incidents:
            inc = self.incidents[-1]
            if inc["contained_t"] is None:
                inc["contained_t"] = record.effective_t
                inc["latency_s"] = (record.effective_t or 0.0) - inc["start_t"]

    # per step --------------------------------------------------------------------------
    def _watch(self, tick: int) -> None:
        watch = self.policy.twin_watch
        ctx = self.ctx
        twin = ctx.twin if ctx is not None else None
        if watch is None or twin is None or not twin.deviation:
            return
        dev = twin.deviation[-1]
        if dev > watch.threshold:
            if self._watch_run == 0:
                self._twin_bad.append([self.time, self.time])
            self._watch_run += 1
            self._twin_bad[-1][1] = self.time
            every = self.recovery.every if self.recovery.enabled else 1
            if self._watch_run * every * self.master.grid.base_step >= watch.persist_s:  # type: ignore[union-attr]
                alert = Alert(self.time, tick, "twin_watch", float(dev), watch.threshold, "twin", "sync",
                              {"twin_deviation": float(dev)}, time.perf_counter())
                self.audit.append("alert", t=self.time, tick=tick, reason=f"twin deviation {dev:.3g} above "
                                  f"{watch.threshold} for {watch.persist_s} s", detector="twin_watch",
                                  attack_kind="sync", target="twin", score=float(dev))
                self._open_incident(alert)
                self._last_alert_t = self.time
                self._decide("twin_watch", watch.actions, alert, "twin deviation passed the threshold")
                self._watch_run = 0
        else:
            self._watch_run = 0

    def _escalate(self) -> None:
        for rule in self.policy.rules:
            if rule.escalate_after_s is None:
                continue
            state = self._rule_state.get(rule.name)
            if not state or state["incident"] != self.incident_id or state["escalated"]:
                continue
            if self.incident_start_tick is None:
                continue
            for name, target in state["targets"].items():
                first, last = target["first_effective"], target["last_alert_t"]
                if first is None or last - first < rule.escalate_after_s:
                    continue
                alert = next((a for a in reversed(self.alerts) if a.target == name and rule.match.matches(a)), None)
                if alert is None:
                    continue
                state["escalated"] = True
                self._decide(rule.name, rule.escalate, alert,
                             f"alerts on {name} matching rule '{rule.name}' persist {last - first:.3f} s after "
                             "containment: escalate", direct=False)
                break

    def _maybe_recover(self) -> None:
        settings = self.policy.recovery
        if self.incident_start_tick is None or not settings.auto_resume or self._last_alert_t is None:
            return
        t = self.time
        if t - self._last_alert_t < settings.quiet_s or t - self._last_check_t < settings.quiet_s:
            return
        blocking = [(a, r) for a, r in self._pending if r.active and r.blocks_production]
        safe = [r for _, r in blocking if r.action == "safe_mode"]
        if safe and t - min(r.decided_t for r in safe) < settings.restart_delay_s:
            return
        problems = []
        ctx = self.ctx
        watch = self.policy.twin_watch
        twin = ctx.twin if ctx is not None else None
        if settings.check_twin and watch is not None and twin is not None and twin.deviation:
            recent = twin.deviation[-20:]
            if max(recent) > watch.threshold:
                problems.append(f"twin deviation {max(recent):.3g} above {watch.threshold}")
        for r in self.records:
            if r.action == "rollback" and r.decided_t >= self.incidents[-1]["start_t"] \
                    and r.detail.get("revalidated") is False:
                problems.append(f"twin revalidation failed (RMS {r.detail.get('revalidation_rms'):.3g})")
        self._last_check_t = t
        if problems:
            self.audit.append("recovery_deferred", t=t, tick=self.tick, reason="; ".join(problems),
                              incident=self.incident_id)
            return
        released = []
        for action, record in self._pending:
            if not record.active:
                continue
            if record.blocks_production:
                action.release(self, record)
                released.append(record.action)
            record.released_t = t
            self.audit.append("release", t=t, tick=self.tick, reason="threat contained: quiet period passed",
                              action=record.action, record=record.id, target=record.target)
        self._pending = []
        self._active = {}
        inc = self.incidents[-1]
        inc["recovered_t"] = t
        inc["time_to_recovery_s"] = t - inc["start_t"]
        self.incident_start_tick = None
        self.audit.append("recovery", t=t, tick=self.tick, reason=f"no alert for {t - self._last_alert_t:.3f} s, "
                          "checks passed: production resumes", incident=inc["id"], released=released,
                          time_to_recovery_s=inc["time_to_recovery_s"])
        if settings.retrain:
            self._retrain()

    # safe mode bookkeeping -------------------------------------------------------------
    def safe_mode_entered(self, record: ActionRecord) -> None:
        self.safe_intervals.append([self.time, None])
        self.audit.append("safe_mode_entered", t=self.time, tick=self.tick, reason=f"by rule '{record.rule}'",
                          record=record.id)

    def safe_mode_exited(self, record: ActionRecord) -> None:
        if self.safe_intervals and self.safe_intervals[-1][1] is None:
            self.safe_intervals[-1][1] = self.time
        self.audit.append("safe_mode_exited", t=self.time, tick=self.tick, reason="recovery", record=record.id)

    # retraining ------------------------------------------------------------------------
    def dirty_intervals(self, until: float) -> list[tuple[float, float]]:
        """Alert windows, safe mode, twin faults: time that must not train a detector."""
        dirty: list[tuple[float, float]] = []
        for inc in self.incidents:
            dirty.append((inc["start_t"], inc["recovered_t"] if inc["recovered_t"] is not None else until))
        dirty += [(a.time, a.time) for a in self.alerts]
        dirty += [(a, b if b is not None else until) for a, b in self.safe_intervals]  # type: ignore[misc]
        dirty += [(a, b) for a, b in self._twin_bad]
        ctx = self.ctx
        if ctx is not None and ctx.twin is not None:
            dirty += [(float(e["t"]), float(e["t"])) for e in ctx.twin.events]
        return dirty

    def _retrain(self) -> None:
        settings = self.policy.recovery
        ctx = self.ctx
        detectors = [d for d in (ctx.extra.get("detectors") or []) if callable(getattr(d, "retrain", None))] \
            if ctx is not None else []
        t = self.time
        start = self.master.grid.start_time if self.master is not None else 0.0
        intervals = clean_intervals(start, t, self.dirty_intervals(t), settings.retrain_margin_s,
                                    settings.retrain_min_interval_s)
        total = sum(b - a for a, b in intervals)
        entry = {"t": t, "intervals": intervals, "clean_s": total, "detectors": [], "skipped": None}
        if not detectors:
            entry["skipped"] = "no detector offers retrain(intervals)"
        elif len(self.retrains) >= settings.max_retrains:
            entry["skipped"] = f"retrain limit {settings.max_retrains} reached (poisoning guard)"
        elif total < settings.retrain_min_total_s:
            entry["skipped"] = f"only {total:.1f} s of clean data (< {settings.retrain_min_total_s} s)"
        else:
            for det in detectors:
                try:
                    det.retrain([tuple(i) for i in intervals])
                    entry["detectors"].append(getattr(det, "name", type(det).__name__))
                except Exception as exc:
                    entry.setdefault("errors", []).append(f"{getattr(det, 'name', det)}: {exc}")
        self.retrains.append(entry)
        self.audit.append("retrain", t=t, tick=self.tick, reason=entry["skipped"] or
                          f"{len(intervals)} clean interval(s), {total:.1f} s, margin {settings.retrain_margin_s} s",
                          evidence={"intervals": intervals}, detectors=entry["detectors"])

    # model updates ---------------------------------------------------------------------
    def _hook_update_endpoint(self, master: Master) -> None:
        """Route the attack layer's model updates (OTA, supply chain) through the gate: while
        it is closed, an update is applied to the sandbox twin only and never reaches
        production."""
        try:
            from cosim.attacks.deployment import update_endpoint
        except ImportError:
            return
        gate = self.quarantine.gate

        def intercept(update: Any) -> str | None:
            if not gate.closed:
                return None
            gate.quarantined.append(update)
            box = self.recovery.sandbox()
            replica = self._replica_of(update.unit)
            if box is not None and replica is not None and replica in box.master.units:
                try:
                    box.master.units[replica].set(list(update.parameters), list(update.parameters.values()))
                    update.meta["sandbox_unit"] = replica
                except Exception as exc:  # observed in the sandbox: a failure there is a finding
                    update.meta["sandbox_error"] = str(exc)
            self.audit.append("model_update", t=self.time, tick=self.tick,
                              reason=f"update of {update.unit} from {update.origin or 'unknown'}: quarantined",
                              evidence={"parameters": dict(update.parameters)})
            return "quarantined"

        update_endpoint(master).intercept(intercept)

    def _replica_of(self, unit: str) -> str | None:
        layout = self.ctx.layout if self.ctx is not None else None
        if layout is None:
            return None
        if unit in layout.replicas.values():
            return unit
        return layout.replicas.get(unit)

    def _update_submitted(self, update: Any, outcome: str) -> None:
        self.audit.append("model_update", t=self.time, tick=self.tick,
                          reason=f"update of {update.unit} from {update.source}: {outcome}",
                          evidence={"parameters": dict(update.parameters), "version": update.version})

    # results ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        contained = [r for r in self.records if r.containment and r.effective_t is not None]
        # alert to effect, for containment actions that answer an alert directly (escalations
        # answer a persisting condition): the first one, and over all of them
        answered = sorted((r for r in contained if r.alert_t is not None), key=lambda r: (r.effective_t, r.id))
        latencies = [r.effective_t - r.alert_t for r in answered]  # type: ignore[operator]
        latency = latencies[0] if latencies else None
        first = min(contained, key=lambda r: (r.effective_t, r.id)) if contained else None
        walls = [r.wall_ms for r in self.records if r.wall_ms is not None and r.ok]
        safe_s = sum((b if b is not None else self.time) - a for a, b in self.safe_intervals)  # type: ignore[operator]
        safe_reach = [r.detail.get("reach_time_s") for r in self.records if r.action == "safe_mode"]
        recoveries = [i["time_to_recovery_s"] for i in self.incidents if i.get("time_to_recovery_s") is not None]
        if self.audit.path is not None:
            verified = verify_audit(self.audit.path, expected_head=self.audit.head, expected_count=len(self.audit))
        else:
            verified = verify_audit(self.audit.records, expected_head=self.audit.head)
        return {
            "defence": self.name,
            "containment_latency_s": latency,
            "containment_latency_max_s": max(latencies) if latencies else None,
            "decision_wall_ms": first.wall_ms if first is not None else None,
            "decision_wall_ms_mean": sum(walls) / len(walls) if walls else None,
            "decision_wall_ms_max": max(walls) if walls else None,
            "alerts": len(self.alerts),
            "incidents": len(self.incidents),
            "incident_log": [{k: v for k, v in i.items() if k != "first_alert"} for i in self.incidents],
            "actions": [r.as_dict() for r in self.records],
            "actions_by_kind": dict(Counter(r.action for r in self.records if r.ok)),
            "safe_mode_entries": len(self.safe_intervals),
            "safe_mode_exits": sum(1 for _, b in self.safe_intervals if b is not None),
            "safe_mode_intervals": [list(i) for i in self.safe_intervals],
            "time_in_safe_mode_s": safe_s,
            "safe_state_reach_s": safe_reach,
            "recoveries": len(recoveries),
            "time_to_recovery_s": recoveries,
            "rollbacks": len(self.recovery.rollbacks),
            "snapshots_taken": self.recovery.taken,
            "snapshots_refused": len(self.recovery.refused),
            "quarantined_messages": dict(self.quarantine.received),
            "quarantined_updates": len(self.quarantine.gate.quarantined),
            "notifications": len(self.notifications),
            "retrains": self.retrains,
            "audit_log": str(self.audit.path) if self.audit.path is not None else None,
            "audit_records": len(self.audit),
            "audit_head": self.audit.head,
            "audit_chain_verified": verified.ok,
        }


def rule_names(policy: Policy) -> list[str]:
    return [r.name for r in policy.rules]


__all__ = ["ContainmentOrchestrator", "Rule", "rule_names"]
