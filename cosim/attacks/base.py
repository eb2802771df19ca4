"""What an attack is, its ground truth, the registry of attack kinds and their contract check."""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cosim.core.manipulator import Manipulator
from cosim.core.observer import Observer
from cosim.core.variables import Value
from cosim.errors import ConfigurationError, ContractError
from cosim.network.message import Message, sign

if TYPE_CHECKING:
    from cosim.core.master import Master
    from cosim.network.conduit import Conduit


@dataclass(frozen=True)
class Interval:
    """Ground truth of one attack: what, where, when, and whether it touched the process."""

    attack: str  # the attack's name in its scenario
    kind: str  # taxonomy label, e.g. "spoofing"
    target: str
    start: float
    end: float | None  # None: until the end of the run
    physical: bool
    traits: tuple[str, ...] = ()  # campaign traits: insider, stealth, persistence, lateral

    def covers(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["traits"] = list(self.traits)
        return out


class Attack(ABC):
    """An attack: installs manipulators or conduit hooks acting in ``[start, end)``.

    Subclasses set :attr:`kind` and :attr:`physical` and implement :meth:`install`; they
    never touch plant, PLC or twin code, only the master's connections and the network's
    conduits. They install through :meth:`add_manipulator`, :meth:`add_hook` and
    :meth:`add_timer` (or the master's and conduit's own methods): what goes through these
    helpers is recorded, so the campaign traits work on any attack — ``stealth`` bounds the
    values it changes, ``insider`` gives it valid credentials, ``persistence`` re-installs
    whatever was removed (a rollback, a containment action) at its next period.

    Args:
        name: the attack's name in its scenario.
        target: what it aims at (a signal ``unit.var``, a conduit name...).
        start: simulated time it begins (s).
        duration: how long it lasts (s); ``None``: until the end.
        seed: for attacks with randomness (derived from the run's seed by the campaign).
    """

    kind: ClassVar[str] = ""
    physical: ClassVar[bool] = False

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0) -> None:
        start = number(f"attack '{name}'", "at", start, minimum=0.0)
        if duration is not None:
            duration = number(f"attack '{name}'", "duration", duration, positive=True)
        self.name, self.target, self.start, self.duration, self.seed = name, target, float(start), duration, int(seed)
        self.traits: Traits = Traits()
        self.events: list[dict[str, Any]] = []  # observable events (refused updates, exfiltrated bytes...)
        self._installed: list[tuple[str, Any, Any]] = []  # (what, object, where)

    @property
    def end(self) -> float | None:
        return None if self.duration is None else self.start + float(self.duration)

    def ticks(self, master: Master) -> tuple[int, int | None]:
        """The attack's window in ticks of ``master``'s grid."""
        grid = master.grid
        start = round((self.start - grid.start_time) / grid.base_step)
        end = None if self.end is None else round((self.end - grid.start_time) / grid.base_step)
        return start, end

    def active(self, master: Master, tick: int) -> bool:
        start, end = self.ticks(master)
        return start <= tick and (end is None or tick < end)

    @abstractmethod
    def install(self, master: Master) -> None:
        """Install the manipulators/hooks (once, when the campaign starts)."""

    def ground_truth(self) -> Interval:
        return Interval(self.name, self.kind, self.target, self.start, self.end, self.physical, self.traits.names())

    def intervals(self) -> list[Interval]:
        """Every labelled interval of this attack (one; several for multi-step attacks)."""
        return [self.ground_truth()]

    def record(self, t: float, what: str, **detail: Any) -> dict[str, Any]:
        """Append an observable event ``{"t", "kind", "attack", ...}`` to :attr:`events`."""
        event = {"t": float(t), "kind": what, "attack": self.name, **detail}
        self.events.append(event)
        return event

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "target": self.target, "events": list(self.events)}

    def parts(self) -> list[Attack]:
        """This attack and the attacks it is made of (the hops of a lateral movement)."""
        return [self]

    # Installing (recorded, so traits apply and persistence can re-arm) ------------------
    def add_manipulator(self, master: Master, manipulator: Manipulator) -> Manipulator:
        """Add a manipulator on a connection or input, with this attack's traits applied."""
        if self.traits.stealth is not None:
            manipulator = StealthBound(manipulator, self.traits.stealth, master.grid.base_step)
        if self.traits.insider is not None:
            manipulator.credentials = True  # holds the conduit's key: authentication does not stop it
        master.add_manipulator(manipulator)
        self._installed.append(("manipulator", manipulator, master))
        return manipulator

    def add_hook(self, conduit: Conduit, fn: Callable[[Message], Message | None]) -> Callable[..., Any]:
        """Add a hook on ``conduit``; with ``stealth`` the values it changes are bounded, as
        ``insider`` the frames it changes are signed with the conduit's key."""
        stealth, key = self.traits.stealth, self.conduit_key(conduit)
        if stealth is None and key is None:
            hook = fn
        else:
            def hook(msg: Message) -> Message | None:
                out = fn(msg)
                if out is None or out is msg:
                    return out
                if stealth is not None and out.tags == msg.tags:
                    out = out._replace(values=tuple(stealth.clamp(v, o) for v, o in zip(out.values, msg.values,
                                                                                         strict=True)))
                if key is not None:
                    out = out._replace(auth=sign(key, out))
                return out
        conduit.add_hook(hook)
        self._installed.append(("hook", hook, conduit))
        return hook

    def add_timer(self, master: Master, fn: Callable[[int], None]) -> Observer:
        """Call ``fn(tick)`` after every step of ``master``."""
        timer = master.add_observer(Timer(fn))
        self._installed.append(("observer", timer, master))
        return timer

    def conduit_key(self, conduit: Conduit) -> bytes | None:
        """The HMAC key of an authenticated conduit if this attack is an ``insider`` (from the
        installation's key store, like the legitimate endpoints), else ``None``."""
        insider = self.traits.insider
        if insider is None or not conduit.authenticated:
            return None
        from cosim.twin.integrity import KeyStore

        store = KeyStore(insider.get("keys"))
        return store.hmac_key(str(insider.get("key_name", f"conduit-{conduit.name}")))

    def missing(self) -> list[tuple[str, Any, Any]]:
        """What this attack installed that is no longer in place (removed or rolled back)."""
        out = []
        for what, obj, where in self._installed:
            present = (obj in where.manipulators if what == "manipulator" else
                       obj in where.hooks if what == "hook" else obj in where.observers)
            if not present:
                out.append((what, obj, where))
        return out

    def rearm(self) -> int:
        """Re-install everything :meth:`missing` lists; returns how many items came back."""
        gone = self.missing()
        for what, obj, where in gone:
            if what == "manipulator":
                where.add_manipulator(obj)
            elif what == "hook":
                where.add_hook(obj)
            else:
                where.observers.append(obj)  # already started: no second on_start
        return len(gone)


def number(where: str, key: str, value: Any, *, minimum: float | None = None, positive: bool = False,
           finite: bool = True, integer: bool = False) -> float:
    """``value`` as a float (an int with ``integer``), or a :class:`ConfigurationError` naming
    ``key`` when it is not a number (booleans and strings are not), not finite, or out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigurationError(f"{where}: {key} must be a number, got {value!r}")
    out = float(value)
    if math.isnan(out) or (finite and math.isinf(out)):
        raise ConfigurationError(f"{where}: {key} must be a finite number, got {value!r}")
    if positive and not out > 0:
        raise ConfigurationError(f"{where}: {key} must be positive, got {value!r}")
    if minimum is not None and out < minimum:
        raise ConfigurationError(f"{where}: {key} must be >= {minimum}, got {value!r}")
    if integer:
        if out != int(out):
            raise ConfigurationError(f"{where}: {key} must be a whole number, got {value!r}")
        return int(out)
    return out


def like(value: Value, out: Value) -> Value:
    """``out`` with the type of ``value`` (the signal it replaces): an attack that scales or
    shifts a boolean or integer signal still delivers a boolean or an integer (rounded)."""
    if isinstance(value, bool):
        return out if isinstance(out, bool) else bool(round(float(out)))  # type: ignore[arg-type]
    if isinstance(value, int):
        return out if isinstance(out, int) and not isinstance(out, bool) else round(float(out))  # type: ignore[arg-type]
    if isinstance(value, float) and isinstance(out, bool | int):
        return float(out)
    return out


def plain_value(where: str, key: str, value: Any) -> Any:
    """A value an attack writes into a signal: a boolean or a finite number."""
    if isinstance(value, bool):
        return value
    return number(where, key, value)


class Timer(Observer):
    """Calls ``fn(tick)`` after every step (how an attack acts at its own times)."""

    def __init__(self, fn: Callable[[int], None]) -> None:
        self.fn = fn

    def after_step(self, tick: int) -> None:
        self.fn(tick)


@dataclass(frozen=True)
class Stealth:
    """Keeps a change under a detection threshold: the manipulated value stays within
    ``bound`` of the true one (``bound`` = ``k`` noise scales ``noise``), and the deviation
    changes by at most ``max_rate`` per second."""

    bound: float = math.inf
    max_rate: float = math.inf

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None, where: str) -> Stealth | None:
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            raise ConfigurationError(f"{where}: stealth must be a mapping, got {spec!r}")
        unknown = set(spec) - {"bound", "k", "noise", "max_rate"}
        if unknown:
            raise ConfigurationError(f"{where}: unknown stealth key(s) {sorted(unknown)}; use bound or k and noise, "
                                     "max_rate")
        bound = spec.get("bound")
        if bound is None and spec.get("k") is not None:
            bound = float(spec["k"]) * float(spec.get("noise", 1.0))
        bound = math.inf if bound is None else float(bound)
        rate = math.inf if spec.get("max_rate") is None else float(spec["max_rate"])
        if not bound > 0 or not rate > 0:
            raise ConfigurationError(f"{where}: stealth bound and max_rate must be positive, got {bound}, {rate}")
        return cls(bound, rate)

    def clamp(self, value: Value, truth: Value) -> Value:
        if isinstance(value, bool) or not isinstance(value, int | float) or isinstance(truth, bool):
            return value
        return min(truth + self.bound, max(truth - self.bound, value))  # type: ignore[operator]


class StealthBound(Manipulator):
    """Wraps a manipulator so that its change stays within a :class:`Stealth` budget."""

    def __init__(self, inner: Manipulator, stealth: Stealth, dt: float) -> None:
        super().__init__(inner.target, inner.start_tick, inner.end_tick)
        self.inner, self.stealth, self.dt = inner, stealth, dt
        self.deviation = 0.0
        self.last_tick: int | None = None

    def apply(self, tick: int, value: Value) -> Value:
        out = self.inner.apply(tick, value)
        if isinstance(out, bool) or not isinstance(out, int | float) or isinstance(value, bool):
            return out
        bound = self.stealth.bound
        dev = min(bound, max(-bound, out - value))  # type: ignore[operator]
        if self.stealth.max_rate < math.inf:  # per elapsed time: receivers may read every few ticks
            elapsed = 1 if self.last_tick is None else max(1, tick - self.last_tick)
            step = self.stealth.max_rate * self.dt * elapsed
            dev = min(self.deviation + step, max(self.deviation - step, dev))
        self.deviation, self.last_tick = dev, tick
        return value + dev if isinstance(out, float) else type(out)(value + dev)  # type: ignore[operator]

    def save_state(self) -> Any:
        return {"inner": self.inner.save_state(), "deviation": self.deviation, "last_tick": self.last_tick}

    def restore_state(self, state: Any) -> None:
        self.inner.restore_state(state["inner"])
        self.deviation, self.last_tick = state["deviation"], state["last_tick"]


@dataclass(frozen=True)
class Traits:
    """Campaign traits of one attack (a scenario event's ``traits`` mapping).

    ``insider``: valid credentials (``{user: operator}`` for HMI/API calls; the HMAC key of
    an authenticated conduit from the installation's key store for frames it changes or
    forges; ``keys``/``key_name`` select another store or key). ``stealth``: see
    :class:`Stealth`. ``persistence``: ``{period_s: 1.0}``, re-arm what was removed at that
    period while the attack's window lasts. ``lateral``: set on the hops of a lateral
    movement.
    """

    insider: Mapping[str, Any] | None = None
    stealth: Stealth | None = None
    persistence: Mapping[str, Any] | None = None
    lateral: bool = False

    KEYS: ClassVar[tuple[str, ...]] = ("insider", "stealth", "persistence")

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None, where: str) -> Traits:
        if not spec:
            return cls()
        if not isinstance(spec, Mapping):
            raise ConfigurationError(f"{where}: traits must be a mapping, got {spec!r}")
        unknown = set(spec) - set(cls.KEYS)
        if unknown:
            raise ConfigurationError(f"{where}: unknown trait(s) {sorted(unknown)}; traits are {list(cls.KEYS)}")

        def table(key: str) -> Mapping[str, Any] | None:
            value = spec.get(key)
            if value is None or value is False:
                return None
            if value is True:
                return {}
            if not isinstance(value, Mapping):
                raise ConfigurationError(f"{where}: trait '{key}' must be true or a mapping, got {value!r}")
            return dict(value)

        persistence = table("persistence")
        if persistence is not None:
            unknown = set(persistence) - {"period_s"}
            period = persistence.get("period_s", 1.0)
            if unknown or isinstance(period, bool) or not isinstance(period, int | float) or not 0 < period < math.inf:
                raise ConfigurationError(f"{where}: persistence takes period_s > 0, got {dict(persistence)}")
        stealth = spec.get("stealth")
        return cls(table("insider"), Stealth.parse({} if stealth is True else stealth or None, where)
                   if stealth not in (None, False) else None, persistence)

    def names(self) -> tuple[str, ...]:
        flags = (("insider", self.insider is not None), ("stealth", self.stealth is not None),
                 ("persistence", self.persistence is not None), ("lateral", self.lateral))
        return tuple(name for name, on in flags if on)


ATTACKS: dict[str, type[Attack]] = {}


def register(kind: str):
    """Register an attack class under ``kind`` (used in scenario files)."""

    def deco(cls: type[Attack]) -> type[Attack]:
        check_attack(cls)
        if kind in ATTACKS and ATTACKS[kind] is not cls:
            raise ConfigurationError(f"attack kind '{kind}' is already registered by {ATTACKS[kind].__name__}")
        ATTACKS[kind] = cls
        return cls

    return deco


def check_attack(cls: Any) -> None:
    """Contract check for an attack class: raise :class:`ContractError` listing every problem."""
    subject = f"attack class {getattr(cls, '__name__', cls)!r}"
    problems: list[str] = []
    if not inspect.isclass(cls) or not issubclass(cls, Attack):
        raise ContractError(subject, ["does not derive from cosim.attacks.Attack"])
    if not isinstance(cls.kind, str) or not cls.kind:
        problems.append("class attribute 'kind' (a taxonomy label, e.g. 'spoofing') is missing")
    if not isinstance(cls.physical, bool):
        problems.append("class attribute 'physical' must be True or False")
    if getattr(cls.install, "__isabstractmethod__", False):
        problems.append("method 'install(self, master)' is not implemented")
    params = inspect.signature(cls.__init__).parameters
    for needed in ("name", "target", "start", "duration", "seed"):
        if needed not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            problems.append(f"__init__ does not accept '{needed}' (pass it on to Attack.__init__)")
    if problems:
        raise ContractError(subject, problems)


class GroundTruth:
    """The labelled intervals of a run, and per-sample labels."""

    def __init__(self, intervals: list[Interval]) -> None:
        self.intervals = list(intervals)

    def label(self, t: float) -> str:
        """``"normal"`` or the kind of the (first) attack active at ``t``."""
        for interval in self.intervals:
            if interval.covers(t):
                return interval.kind
        return "normal"

    def labels(self, times: Any) -> list[str]:
        return [self.label(float(t)) for t in times]

    def as_list(self) -> list[dict[str, Any]]:
        return [i.as_dict() for i in self.intervals]

    def training_mask(self, times: Any, kinds: Any = None) -> Any:
        """``True`` where a sample is clean enough to train (or retrain) a detector on.

        Every attack interval is excluded (``kinds=None``), or only those of the given kinds
        (e.g. ``["poisoning"]``). A retraining routine that wants a clean model takes only
        these samples; one that measures the effect of data poisoning trains on everything
        and compares.
        """
        import numpy as np

        t = np.asarray(times, dtype=float)
        keep = np.ones(t.shape, dtype=bool)
        for interval in self.intervals:
            if kinds is not None and interval.kind not in kinds:
                continue
            end = np.inf if interval.end is None else interval.end
            keep &= ~((t >= interval.start) & (t < end))
        return keep
