"""What an episode hands to its detectors and defences, and what it expects back.

An episode (``experiments.run``) builds the system, then creates an :class:`EpisodeContext`
and calls ``attach(ctx)`` on every detector and on the defence before the run starts.
Detectors and defences are also :class:`~cosim.core.observer.Observer` objects added to the
master (detectors after the twin synchronisation, the defence last), so they see the system
after every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from cosim.detection.alert import AlertBus
    from cosim.system import SystemSpec
    from cosim.twin.replica import TwinLayout
    from cosim.twin.sync import TwinSync


@dataclass
class EpisodeContext:
    """Shared by the parts of one episode.

    Attributes:
        bus: alerts from detectors to the defence.
        spec: the system description the master was built from (plant and twin units).
        twin: the twin's synchronisation observer (deviation, faults), ``None`` without a twin.
        layout: the twin's layout (which units are replicas of which), ``None`` without a twin.
        seed: the episode's seed.
        out_dir: where the episode writes its files (audit log, plots), if anywhere.
        extra: anything else a component publishes for others (by name).
    """

    bus: AlertBus
    spec: SystemSpec | None = None
    twin: TwinSync | None = None
    layout: TwinLayout | None = None
    seed: int = 0
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class EpisodeDetector(Protocol):
    """An online detector: an observer that publishes alerts on ``ctx.bus``."""

    name: str

    def attach(self, ctx: EpisodeContext) -> None: ...

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(times, scores, alarms)`` of every sample it scored (alarms as 0/1)."""
        ...

    def summary(self) -> dict[str, Any]: ...


@runtime_checkable
class Defence(Protocol):
    """A containment layer: an observer that turns alerts into containment actions."""

    def attach(self, ctx: EpisodeContext) -> None: ...

    def summary(self) -> dict[str, Any]:
        """At least ``containment_latency_s`` (first alarm to first effective action, simulated
        seconds, ``None`` if nothing was contained), ``decision_wall_ms`` and ``actions``."""
        ...
