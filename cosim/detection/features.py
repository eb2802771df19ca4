"""Features an online detector sees at each sample: physics, twin residuals and network traffic.

Three families, each optional, so a CPS-only configuration (physics as the controller sees
it, plus network traffic) can be compared with the twin-based one (plus twin residuals):

- ``physics``: values of ``unit.var`` ports, typically the controller's inputs (what the PLC
  received) and its commands;
- ``residuals``: the twin's last normalised residual per signal (absolute value, in scales),
  from :class:`~cosim.twin.sync.TwinSync`;
- ``network``: per conduit and sample, how many frames were delivered, gaps in sequence
  numbers, authentication failures, out-of-order and malformed frames, drops at the gateway,
  bytes on the link, queue length and the age of the last delivery. Counters the attacker
  alone would know (frames injected, dropped by an attack hook) are never used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cosim.core.observer import PortReader
from cosim.errors import ConfigurationError
from cosim.network.conduit import TRAFFIC_FIELDS

if TYPE_CHECKING:
    from cosim.core.master import Master
    from cosim.twin.sync import TwinSync

#: Cumulative conduit counters turned into per-sample increments.
NETWORK_DELTAS = TRAFFIC_FIELDS[:10]
#: Instantaneous conduit values.
NETWORK_LEVELS = TRAFFIC_FIELDS[10:11]


@dataclass
class FeatureSpec:
    """Which features to extract.

    Attributes:
        physics: ``unit.var`` ports read as they are.
        residuals: use the twin's residuals (all real signals of the twin, or ``residual_signals``).
        residual_signals: plant signals whose residuals are used (default: every real one).
        network: conduits whose traffic is used (``["*"]``: every conduit; empty: none).
    """

    physics: list[str] = field(default_factory=list)
    residuals: bool = False
    residual_signals: list[str] | None = None
    network: list[str] = field(default_factory=list)


class FeatureExtractor:
    """Reads one feature vector from a running master; bind with :meth:`bind` at ``on_start``."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.names: list[str] = []
        self._physics: PortReader | None = None
        self._twin: TwinSync | None = None
        self._res_index: list[int] = []
        self._conduits: list[Any] = []
        self._last: np.ndarray | None = None
        self._master: Master | None = None

    def bind(self, master: Master, twin: TwinSync | None) -> list[str]:
        """Resolve the ports, residual signals and conduits; return the feature names."""
        spec = self.spec
        self._master = master
        names = list(spec.physics)
        self._physics = PortReader(master, spec.physics, "detector features") if spec.physics else None
        self._twin = None
        self._res_index = []
        if spec.residuals:
            if twin is None:
                raise ConfigurationError("detector features: twin residuals asked for, but the system has no twin "
                                         "(twin=replica)")
            self._twin = twin
            real = [i for i, r in enumerate(twin._real) if r]
            if spec.residual_signals is not None:
                unknown = [s for s in spec.residual_signals if s not in twin.signals]
                if unknown:
                    raise ConfigurationError(f"detector features: {unknown} are not signals of the twin; "
                                             f"they are {twin.signals}")
                real = [twin.signals.index(s) for s in spec.residual_signals]
            self._res_index = real
            names += [f"res:{twin.signals[i]}" for i in real]
        self._conduits = []
        if spec.network:
            network = getattr(master, "network", None)
            if network is None:
                raise ConfigurationError("detector features: network features asked for, but the system has no "
                                         "interface layer (network=cell)")
            chosen = list(network.conduits) if "*" in spec.network else list(spec.network)
            self._conduits = [network.conduit(c) for c in chosen]
            for c in self._conduits:
                names += [f"net:{c.name}:{k}" for k in (*NETWORK_DELTAS, *NETWORK_LEVELS, "age_s")]
            n, m, k = len(NETWORK_DELTAS), len(NETWORK_LEVELS) + 1, len(self._conduits)
            self._net_order = np.asarray([i for j in range(k) for i in (*range(j * n, (j + 1) * n),
                                                                         *range(k * n + j * m, k * n + (j + 1) * m))])
            self._net_key = ("detection.features.network", tuple(c.name for c in self._conduits))
        if not names:
            raise ConfigurationError("detector features: no features (give physics, residuals or network)")
        self.names = names
        self._last = None
        return names

    def sample(self) -> np.ndarray:
        """The feature vector now (network counters as increments since the previous sample)."""
        master = self._master
        assert master is not None, "FeatureExtractor.sample before bind"
        parts: list[Any] = []
        if self._physics is not None:
            parts += self._physics.read()
        if self._twin is not None:
            latest = self._twin.latest
            parts += [abs(float(latest[i])) for i in self._res_index]
        if not self._conduits:
            return np.asarray(parts, dtype=float)
        counters, levels = self._network_now(master)
        delta = counters - self._last if self._last is not None else np.zeros_like(counters)
        self._last = counters
        # per conduit: its increments, then its levels
        return np.concatenate([np.asarray(parts, dtype=float), np.concatenate([delta, levels])[self._net_order]])

    def _network_now(self, master: Master) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative counters and levels (queue length, age of the last delivery) of the
        conduits now; read once per tick however many detectors ask for the same conduits."""
        key = self._net_key
        cached = master.tick_cache.get(key)
        if cached is not None and cached[0] == master.tick:
            return cached[1]
        t = master.time
        time_of = master.grid.time
        counters: list[int] = []
        levels: list[float] = []
        for c in self._conduits:
            *deltas, queue, last_tick = c.traffic()
            counters += deltas
            levels += (queue, t - time_of(last_tick) if last_tick >= 0 else t)
        out = (np.asarray(counters, dtype=float), np.asarray(levels, dtype=float))
        master.tick_cache[key] = (master.tick, out)
        return out

    def save_state(self) -> Any:
        return None if self._last is None else self._last.copy()

    def restore_state(self, state: Any) -> None:
        self._last = None if state is None else np.asarray(state).copy()


def window_features(rows: np.ndarray, width: int) -> np.ndarray:
    """Stack each row with the mean of the last ``width`` rows (a short memory that turns
    single-sample features into ones that see trends and bursts)."""
    if width <= 1:
        return rows
    n, d = rows.shape
    out = np.empty((n, 2 * d))
    out[:, :d] = rows
    csum = np.cumsum(np.vstack([np.zeros((1, d)), rows]), axis=0)
    lo = np.maximum(0, np.arange(n) - width + 1)
    out[:, d:] = (csum[1:] - csum[lo]) / (np.arange(n) + 1 - lo)[:, None]
    return out


class RollingWindow:
    """Online counterpart of :func:`window_features` (same values, one row at a time)."""

    def __init__(self, width: int) -> None:
        self.width = max(1, int(width))
        self.rows: list[np.ndarray] = []

    def push(self, x: np.ndarray) -> np.ndarray:
        if self.width <= 1:
            return x
        rows = self.rows
        rows.append(x)
        if len(rows) > self.width:
            rows.pop(0)
        return np.concatenate([x, np.add.reduce(rows) / len(rows)])


def check_names(expected: Sequence[str], got: Sequence[str], what: str) -> None:
    """A fitted model must see the features it was fitted on, in the same order."""
    if list(expected) != list(got):
        missing = [n for n in expected if n not in got]
        extra = [n for n in got if n not in expected]
        raise ConfigurationError(
            f"{what}: the system's features differ from those the model was fitted on "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, new {extra[:5]}"
            f"{'...' if len(extra) > 5 else ''}); refit it for this plant"
        )
