"""What an attack is, its ground truth, the registry of attack kinds and their contract check."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from cosim.errors import ConfigurationError, ContractError

if TYPE_CHECKING:
    from cosim.core.master import Master


@dataclass(frozen=True)
class Interval:
    """Ground truth of one attack: what, where, when, and whether it touched the process."""

    attack: str  # the attack's name in its scenario
    kind: str  # taxonomy label, e.g. "spoofing"
    target: str
    start: float
    end: float | None  # None: until the end of the run
    physical: bool

    def covers(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Attack(ABC):
    """An attack: installs manipulators or conduit hooks acting in ``[start, end)``.

    Subclasses set :attr:`kind` and :attr:`physical` and implement :meth:`install`; they
    never touch plant, PLC or twin code, only the master's connections and the network's
    conduits.

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
        if start < 0 or (duration is not None and duration <= 0):
            raise ConfigurationError(f"attack '{name}': needs start >= 0 and duration > 0, got {start}, {duration}")
        self.name, self.target, self.start, self.duration, self.seed = name, target, float(start), duration, int(seed)

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
        return Interval(self.name, self.kind, self.target, self.start, self.end, self.physical)


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
