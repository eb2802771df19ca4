"""Containment actions: small classes in a registry, each recording when it became effective.

An action is built from a policy rule's parameters (validated against its :attr:`Action.params`
when the policy is loaded), executed by the orchestrator when the rule fires, polled after
every step until it is effective, and released on recovery. Add your own with::

    @register_action("my_action")
    class MyAction(Action):
        params = {"level": Param(int, 1, check=lambda v: v > 0, doc="how hard")}

        def execute(self, orch, record, alert):
            ...                                   # act on orch.master / orch.network
            record.mark_effective(orch.tick, orch.time)

Built in: ``segment`` (cut / allow-list / secure / rate-limit conduits), ``quarantine`` (divert
a flow or the model updates into the sandbox twin), ``rollback`` (restore the twin from its
last verified signed snapshot), ``safe_mode`` (drive the plant to its safe state through
manipulators on configured inputs), ``notify`` (operator / twin / PLC notifications).
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from cosim.core.connection import Port
from cosim.core.manipulator import Override
from cosim.errors import ConfigurationError, CosimError

if TYPE_CHECKING:
    from cosim.containment.orchestrator import ContainmentOrchestrator
    from cosim.detection.alert import Alert
    from cosim.network.conduit import Conduit

_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One parameter of an action: accepted type(s), default, allowed values, extra check."""

    kind: type | tuple[type, ...]
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass
class ActionRecord:
    """What one execution of an action did and when.

    Attributes:
        id: running number within the episode.
        action: action name.
        rule: the rule (or watch) that decided it.
        target: what it acted on (conduits, signals, units).
        decided_t: simulated time of the decision.
        effective_t: simulated time it became effective (``None``: not (yet) effective).
        alert_t: simulated time of the alert it answers directly (``None`` for escalations and
            watches, which answer a persisting condition rather than one alert).
        wall_ms: wall time from the alert being raised to the action being done.
        released_t: when recovery released it (``None``: still in force).
        detail: action specific facts (conduits secured, snapshot restored, ...).
    """

    id: int
    action: str
    rule: str
    target: str | None
    decided_t: float
    decided_tick: int
    effective_t: float | None = None
    effective_tick: int | None = None
    alert_t: float | None = None  # the alert that decided it (None: an escalation or a watch)
    wall_ms: float | None = None
    released_t: float | None = None
    ok: bool = True
    detail: dict[str, Any] = field(default_factory=dict)
    containment: bool = True  # counts for containment latency (notifications do not)
    blocks_production: bool = False

    def mark_effective(self, tick: int, t: float) -> None:
        if self.effective_t is None:
            self.effective_t, self.effective_tick = t, tick

    @property
    def active(self) -> bool:
        return self.released_t is None and self.ok

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("id", "action", "rule", "target", "decided_t", "effective_t",
                                             "wall_ms", "released_t", "ok")}
        out["detail"] = {k: v for k, v in self.detail.items() if not k.startswith("_")}  # "_": live objects
        return out


class Action(ABC):
    """Base of containment actions.

    Class attributes:
        name: registry name (set by :func:`register_action`).
        params: accepted parameters.
        containment: whether it counts as a containment action for the latency metric.
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    containment: ClassVar[bool] = True

    def __init__(self, rule: str, **params: Any) -> None:
        self.rule = rule
        self.p = validate_params(self.name, params, rule)

    def key(self, orch: ContainmentOrchestrator, alert: Alert | None) -> tuple[Any, ...]:
        """Identity of the effect: an action whose key is already in force is not repeated."""
        return (self.name, alert.target if alert is not None else None)

    @abstractmethod
    def execute(self, orch: ContainmentOrchestrator, record: ActionRecord, alert: Alert | None) -> None:
        """Act now (the master's current tick); call ``record.mark_effective`` once it holds."""

    def poll(self, orch: ContainmentOrchestrator, record: ActionRecord) -> None:  # noqa: B027
        """Called after every step while the record is active (effectiveness, bounds)."""

    def release(self, orch: ContainmentOrchestrator, record: ActionRecord) -> None:  # noqa: B027
        """Undo what blocks production (called by recovery)."""


ACTIONS: dict[str, type[Action]] = {}


def register_action(name: str) -> Callable[[type[Action]], type[Action]]:
    """Class decorator: make an action available to policies under ``name``."""

    def deco(cls: type[Action]) -> type[Action]:
        if not (isinstance(cls, type) and issubclass(cls, Action)):
            raise ConfigurationError(f"register_action('{name}'): {cls!r} is not an Action subclass")
        cls.name = name
        ACTIONS[name] = cls
        return cls

    return deco


def validate_params(action: str, params: Mapping[str, Any], rule: str) -> dict[str, Any]:
    """Check ``params`` against the action's declared parameters; fill in defaults.

    Raises:
        ConfigurationError: naming the rule, the action and the key at fault.
    """
    cls = ACTIONS.get(action)
    if cls is None:
        raise ConfigurationError(f"defence policy rule '{rule}': unknown action '{action}'; actions are "
                                 f"{sorted(ACTIONS)}")
    where = f"defence policy rule '{rule}', action '{action}'"
    unknown = sorted(set(params) - set(cls.params))
    if unknown:
        raise ConfigurationError(f"{where}: unknown parameter(s) {unknown}; parameters are {sorted(cls.params)}")
    out: dict[str, Any] = {}
    for key, spec in cls.params.items():
        if key not in params:
            if spec.required:
                raise ConfigurationError(f"{where}: parameter '{key}' is required ({spec.doc or spec.kind})")
            out[key] = spec.default
            continue
        value = params[key]
        kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        bad_type = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        if value is None and type(None) in kinds:
            bad_type = False
        if bad_type:
            names = "/".join(k.__name__ for k in kinds)
            raise ConfigurationError(f"{where}: parameter '{key}' must be {names}, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise ConfigurationError(f"{where}: parameter '{key}' must be one of {list(spec.choices)}, got {value!r}")
        if spec.check is not None and value is not None and not spec.check(value):
            raise ConfigurationError(f"{where}: parameter '{key}' is invalid: {value!r} ({spec.doc})")
        out[key] = value
    return out


def _positive(v: Any) -> bool:
    return v > 0


def _str_list(v: Any) -> bool:
    return all(isinstance(x, str) and x for x in v)


# ------------------------------------------------------------------------- target resolution
def conduits_for(orch: ContainmentOrchestrator, target: str | None, scope: str,
                 explicit: list[str] | None = None, include: tuple[str, ...] = ()) -> list[Conduit]:
    """Conduits an action acts on.

    Args:
        target: the alert's target: a conduit name, a signal ``unit.var`` or a unit.
        scope: ``signal`` (the conduits carrying the signal: route of each connection from or
            to it), ``zone`` (every conduit into or out of the zone of the target's unit),
            ``conduit`` (the target must name a conduit).
        explicit: conduit names given by the policy (used instead of the target).
        include: fnmatch patterns a conduit name must match (empty: all).
    """
    net = orch.network
    if net is None:
        return []
    if explicit:
        found = [net.conduit(n) for n in explicit]
    elif target is None:
        found = []
    elif target in net.conduits:
        found = [net.conduits[target]]
    elif scope == "conduit":
        found = []
    else:
        master = orch.master
        unit = target.partition(".")[0]
        if scope == "zone":
            zone = net.zone_of(unit) if unit in master.units else None
            found = [c for c in net.conduits.values() if zone in (c.source_zone, c.target_zone)]
        else:
            found = []
            seen: set[str] = set()
            if "." in target:
                port = Port.parse(target)
                pairs = [(c.source.unit, c.target.unit) for c in master.connections
                         if c.source == port or c.target == port]
            else:
                pairs = [(c.source.unit, c.target.unit) for c in master.connections
                         if unit in (c.source.unit, c.target.unit)]
            for s, d in pairs:
                conduit = net.route_of(s, d)
                if conduit is not None and conduit.name not in seen:
                    seen.add(conduit.name)
                    found.append(conduit)
    if include:
        found = [c for c in found if any(fnmatch.fnmatchcase(c.name, p) for p in include)]
    return found


# ------------------------------------------------------------------------- segment
@register_action("segment")
class Segment(Action):
    """Microsegmentation of the conduits carrying the attacked signal (or of its zone).

    Modes: ``secure`` (authenticate every frame: in-path manipulators fail and stop; production
    goes on), ``cut`` (deliver nothing), ``allow`` (pass only the allow-listed tags/units),
    ``rate_limit`` (token bucket, ``rate`` messages/s), ``inspect`` (stateful inspection at the
    gateway: frames the receiver would reject — stale sequence numbers, failed authentication —
    are dropped before they take the link or the receiving device's capacity, which defeats a
    flood of junk frames). ``cut``, ``allow`` and ``rate_limit`` are lifted on recovery;
    securing and inspection stay (they never block production).
    """

    params: ClassVar[dict[str, Param]] = {
        "mode": Param(str, "secure", ("secure", "cut", "allow", "rate_limit", "inspect")),
        "scope": Param(str, "signal", ("signal", "zone", "conduit")),
        "conduits": Param((list, type(None)), None, check=_str_list, doc="explicit conduit names"),
        "include": Param(list, [], check=_str_list, doc="conduit name patterns to act on"),
        "allow": Param(list, [], check=_str_list, doc="tags or units still allowed (mode allow)"),
        "rate": Param(float, 100.0, check=_positive, doc="messages per second (mode rate_limit)"),
        "burst": Param((float, type(None)), None, check=lambda v: v >= 1, doc="token bucket size"),
    }

    def _conduits(self, orch: ContainmentOrchestrator, alert: Alert | None) -> list[Conduit]:
        target = alert.target if alert is not None else None
        return conduits_for(orch, target, self.p["scope"], self.p["conduits"], tuple(self.p["include"]))

    def key(self, orch: ContainmentOrchestrator, alert: Alert | None) -> tuple[Any, ...]:
        return (self.name, self.p["mode"], tuple(sorted(c.name for c in self._conduits(orch, alert))))

    def execute(self, orch: ContainmentOrchestrator, record: ActionRecord, alert: Alert | None) -> None:
        conduits = self._conduits(orch, alert)
        mode = self.p["mode"]
        record.target = ",".join(c.name for c in conduits) or None
        if not conduits:
            record.ok = False
            record.detail["skipped"] = "no network attached" if orch.network is None else \
                f"no conduit carries target {alert.target if alert else None!r}"
            return
        done = []
        for c in conduits:
            if mode == "secure":
                if not c.authenticated:
                    c.secure(orch.keystore.hmac_key(f"conduit-{c.name}"))
                    done.append(c.name)
            elif mode == "cut":
                c.cut()
                done.append(c.name)
            elif mode == "allow":
                c.allow(list(self.p["allow"]))
                done.append(c.name)
            elif mode == "inspect":
                c.inspect(True)
                done.append(c.name)
            else:
                c.rate_limit(self.p["rate"], self.p["burst"])
                done.append(c.name)
        record.detail.update(mode=mode, conduits=[c.name for c in conduits], changed=done,
                             already_authenticated=[c.name for c in conduits if c.name not in done]
                             if mode == "secure" else [])
        record.blocks_production = mode not in ("secure", "inspect")
        record.mark_effective(orch.tick, orch.time)  # the gateway acts on the next frame

    def release(self, orch: ContainmentOrchestrator, record: ActionRecord) -> None:
        if orch.network is None:
            return
        mode = record.detail.get("mode")
        for name in record.detail.get("changed", []):
            c = orch.network.conduit(name)
            if mode == "cut":
                c.restore()
            elif mode == "allow":
                c.allow(None)
            elif mode == "rate_limit":
                c.rate_limit(None)


# ------------------------------------------------------------------------- quarantine
@register_action("quarantine")
class Quarantine(Action):
    """Divert a suspicious flow (or the model updates) into the sandbox twin.

    ``flow: true`` diverts the conduits carrying the target (a command source such as the
    HMI/API, or a conduit named by the alert): their messages go to the sandbox
    (:meth:`~cosim.twin.sandbox.Sandbox.receive`) instead of production, whose inputs hold
    their last value. ``updates: true`` closes the :class:`~cosim.containment.quarantine.UpdateGate`:
    model updates are applied to the sandbox and never reach production. Both are lifted
    on recovery (the gate stays closed for updates already quarantined).
    """

    params: ClassVar[dict[str, Param]] = {
        "flow": Param(bool, True),
        "updates": Param(bool, False),
        "scope": Param(str, "signal", ("signal", "zone", "conduit")),
        "conduits": Param((list, type(None)), None, check=_str_list),
        "include": Param(list, [], check=_str_list),
        "sandbox": Param(bool, True, doc="replay diverted messages in the sandbox twin"),
    }

    def key(self, orch: ContainmentOrchestrator, alert: Alert | None) -> tuple[Any, ...]:
        names = [c.name for c in conduits_for(orch, alert.target if alert else None, self.p["scope"],
                                              self.p["conduits"], tuple(self.p["include"]))] if self.p["flow"] else []
        return (self.name, tuple(sorted(names)), self.p["updates"])

    def execute(self, orch: ContainmentOrchestrator, record: ActionRecord, alert: Alert | None) -> None:
        conduits = conduits_for(orch, alert.target if alert else None, self.p["scope"], self.p["conduits"],
                                tuple(self.p["include"])) if self.p["flow"] else []
        diverted = []
        for c in conduits:
            c.divert(orch.quarantine.sink(c.name, use_sandbox=self.p["sandbox"]))
            diverted.append(c.name)
        if self.p["updates"]:
            orch.quarantine.gate.close(reason=f"rule '{self.rule}'")
        record.target = ",".join(diverted) or ("model updates" if self.p["updates"] else None)
        record.detail.update(diverted=diverted, updates=self.p["updates"])
        if not diverted and not self.p["updates"]:
            record.ok = False
            record.detail["skipped"] = f"nothing to quarantine for target {alert.target if alert else None!r}"
            return
        record.blocks_production = bool(diverted)
        record.mark_effective(orch.tick, orch.time)

    def release(self, orch: ContainmentOrchestrator, record: ActionRecord) -> None:
        if orch.network is not None:
            for name in record.detail.get("diverted", []):
                orch.network.conduit(name).divert(None)
        if record.detail.get("updates"):
            orch.quarantine.gate.open()


# ------------------------------------------------------------------------- rollback
@register_action("rollback")
class Rollback(Action):
    """Restore the twin's replicas to the last snapshot that verifies, rolled forward to now.

    Snapshots are signed (:class:`~cosim.twin.integrity.SignedSnapshot`) and taken while the
    system is healthy; newest first, each is verified and a tampered one is refused (and
    audited). The verified state is loaded into the sandbox, which replays the commands the
    twin observed since (revalidation: its predictions are compared with the telemetry
    received before the incident), and the rolled-forward state is imported into the twin.
    """

    params: ClassVar[dict[str, Param]] = {
        "revalidate": Param(bool, True, doc="compare the replay with verified telemetry"),
        "tolerance": Param((float, type(None)), None, check=_positive,
                           doc="revalidation RMS (in scales); default the twin watch threshold"),
    }

    def key(self, orch: ContainmentOrchestrator, alert: Alert | None) -> tuple[Any, ...]:
        return (self.name, orch.incident_id)

    def execute(self, orch: ContainmentOrchestrator, record: ActionRecord, alert: Alert | None) -> None:
        result = orch.recovery.rollback(self.p["revalidate"], self.p["tolerance"])
        record.detail.update(result)
        record.target = "twin"
        if result.get("restored_version") is None:
            record.ok = False
            return
        record.mark_effective(orch.tick, orch.time)


# ------------------------------------------------------------------------- safe mode
@register_action("safe_mode")
class SafeMode(Action):
    """Drive the plant to its safe state: hold the configured inputs (e.g. the PLC's
    ``safe_mode_cmd``) through manipulators, optionally cut the conduits that write to the
    controllers (read-only monitoring), and watch the ``reached`` signal.

    Effective when every held input reads its value; the safe state is reached when
    ``reached`` is true; exceeding ``bound_s`` is audited. On release the manipulators are
    removed, the cut conduits restored and ``reset`` inputs pulsed for ``reset_ticks``.
    """

    params: ClassVar[dict[str, Param]] = {
        "signals": Param(dict, doc="{unit.input: value} held while in safe mode"),
        "reached": Param((str, type(None)), None, doc="signal that is true once the safe state is reached"),
        "bound_s": Param(float, 10.0, check=_positive, doc="time allowed to reach the safe state"),
        "read_only": Param(list, [], check=_str_list, doc="conduits cut while in safe mode"),
        "reset": Param(dict, {}, doc="{unit.input: value} pulsed on release"),
        "reset_ticks": Param(int, 4, check=_positive),
    }

    def key(self, orch: ContainmentOrchestrator, alert: Alert | None) -> tuple[Any, ...]:
        return (self.name,)

    def execute(self, orch: ContainmentOrchestrator, record: ActionRecord, alert: Alert | None) -> None:
        master = orch.master
        manips = []
        for port, value in self.p["signals"].items():
            manips.append(master.add_manipulator(Override(str(port), value, start_tick=master.tick)))
        cut = []
        for name in self.p["read_only"]:
            if orch.network is not None:
                c = orch.network.conduit(name)
                if not c.is_cut:
                    c.cut()
                    cut.append(name)
        record.target = ",".join(self.p["signals"])
        record.blocks_production = True
        record.detail.update(signals=dict(self.p["signals"]), read_only=cut, reached_t=None, bound_s=self.p["bound_s"],
                             bound_exceeded=False)
        record.detail["_manips"] = manips
        orch.safe_mode_entered(record)
        self.poll(orch, record)

    def poll(self, orch: ContainmentOrchestrator, record: ActionRecord) -> None:
        master = orch.master
        if record.effective_t is None and all(master.get(p) == v for p, v in self.p["signals"].items()):
            record.mark_effective(orch.tick, orch.time)
            orch.audit_event("effective", record, "safe mode commands hold at the controller")
        reached = self.p["reached"]
        if reached is not None and record.detail["reached_t"] is None and master.get(reached):
            record.detail["reached_t"] = orch.time
            record.detail["reach_time_s"] = orch.time - record.decided_t
            orch.audit_event("safe_state_reached", record, f"{reached} is true "
                             f"{orch.time - record.decided_t:.3f} s after the decision")
        if (reached is not None and record.detail["reached_t"] is None and not record.detail["bound_exceeded"]
                and orch.time - record.decided_t > self.p["bound_s"]):
            record.detail["bound_exceeded"] = True
            orch.audit_event("safe_state_bound_exceeded", record,
                             f"safe state not reached within {self.p['bound_s']} s")

    def release(self, orch: ContainmentOrchestrator, record: ActionRecord) -> None:
        master = orch.master
        for m in record.detail.pop("_manips", []):
            if m in master.manipulators:
                master.remove_manipulator(m)
        for name in record.detail.get("read_only", []):
            if orch.network is not None:
                orch.network.conduit(name).restore()
        for port, value in self.p["reset"].items():
            master.add_manipulator(Override(str(port), value, start_tick=master.tick,
                                            end_tick=master.tick + self.p["reset_ticks"]))
        orch.safe_mode_exited(record)


# ------------------------------------------------------------------------- notify
@register_action("notify")
class Notify(Action):
    """Notifications upstream and downstream, recorded in the audit log and the summary."""

    containment = False
    params: ClassVar[dict[str, Param]] = {
        "to": Param(list, ["operator"], check=lambda v: _str_list(v) and bool(v),
                    doc="recipients: operator, twin, plc, ..."),
        "message": Param(str, "{kind} on {target} (detector {detector}, score {score:.3g})"),
    }

    def key(self, orch: ContainmentOrchestrator, alert: Alert | None) -> tuple[Any, ...]:
        return (self.name, self.rule, alert.target if alert else None, orch.incident_id)

    def execute(self, orch: ContainmentOrchestrator, record: ActionRecord, alert: Alert | None) -> None:
        fields = {"kind": alert.kind if alert else None, "target": alert.target if alert else None,
                  "detector": alert.detector if alert else None, "score": alert.score if alert else float("nan"),
                  "rule": self.rule}
        try:
            text = self.p["message"].format(**fields)
        except (KeyError, ValueError, IndexError) as exc:
            text = f"{self.p['message']} ({fields}; format failed: {exc})"
        for who in self.p["to"]:
            orch.notifications.append({"t": orch.time, "to": who, "message": text, "rule": self.rule})
        record.target = ",".join(self.p["to"])
        record.detail.update(message=text)
        record.mark_effective(orch.tick, orch.time)


def instantiate(name: str, rule: str, params: Mapping[str, Any]) -> Action:
    """The action ``name`` of ``rule`` with validated ``params``."""
    cls = ACTIONS.get(name)
    if cls is None:
        raise ConfigurationError(f"defence policy rule '{rule}': unknown action '{name}'; actions are "
                                 f"{sorted(ACTIONS)}")
    try:
        return cls(rule, **dict(params))
    except CosimError:
        raise
    except TypeError as exc:
        raise ConfigurationError(f"defence policy rule '{rule}', action '{name}': {exc}") from None
