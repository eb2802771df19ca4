"""Twin synchronisation and twin deviation.

:class:`TwinSync` watches the twin after every step. For every sensor signal it compares the
twin's prediction (the replica's output) with the plant's measurement as the twin received
it over the telemetry conduit, and keeps per-signal and aggregated deviation. It corrects
the twin from telemetry by a policy at a given period, and reports synchronisation faults
instead of absorbing them:

* ``late``: telemetry older than ``max_age_s`` (a conduit delayed, cut or flooded);
* ``lost``: sequence gaps in the telemetry stream;
* ``inconsistent``: a signal whose measurement and prediction disagree beyond ``k`` scales
  (numbers) or at all (booleans, integers) for ``persist_s`` seconds in a row.

Policies: ``none`` (the twin runs open loop from the commands it observes) and ``state``
(every ``period_s`` the replicas' observable state is set from telemetry: the arm's joint
positions, keeping the replica's own joint velocities).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cosim.core.connection import Port
from cosim.core.observer import Observer, PortReader
from cosim.core.variables import VarType
from cosim.errors import ConfigurationError
from cosim.twin.replica import TwinLayout

if TYPE_CHECKING:
    from cosim.core.master import Master

POLICIES = ("none", "state")


def signal_scale(signal: str, scales: Mapping[str, float], default: float) -> float:
    """The scale of deviation of a plant signal ``unit.var``: that of its exact name in
    ``scales``, else of the first ``fnmatch`` pattern there that matches it, else ``default``.
    One rule for the twin's deviation, its recovery checks and the attacks' effect labels."""
    if signal in scales:
        return float(scales[signal])
    for pattern, scale in scales.items():
        if fnmatch.fnmatchcase(signal, pattern):
            return float(scale)
    return float(default)


class TwinSync(Observer):
    """Twin deviation, synchronisation faults and correction.

    Args:
        layout: what :func:`~cosim.twin.replica.add_twin` added.
        scales: ``{pattern: scale}`` normalising each real signal (exact names or ``fnmatch``
            patterns on the plant signal ``unit.var``; see :func:`signal_scale`); default
            ``default_scale``.
        policy: ``none`` or ``state``.
        period_s: correction period (s).
        max_age_s: telemetry older than this (plus its source's own step) is late.
        k: numeric disagreement threshold, in scales.
        persist_s: how long a disagreement must last to be a fault.
        bound_exclude: signals left out of the aggregated deviation (patterns), e.g. those
            the twin cannot know (the quality of a part comes from the process, not a model).
        every_ticks: compare every this many ticks (default: the replicas' fastest step,
            i.e. at every twin step).
    """

    def __init__(self, layout: TwinLayout, scales: Mapping[str, float] | None = None, default_scale: float = 1.0,
                 policy: str = "state", period_s: float = 1.0, max_age_s: float = 0.1, k: float = 6.0,
                 persist_s: float = 0.5, bound_exclude: Sequence[str] = (), every_ticks: int | None = None) -> None:
        if policy not in POLICIES:
            raise ConfigurationError(f"twin sync: unknown policy '{policy}'; policies are {list(POLICIES)}")
        for name, value in (("period_s", period_s), ("max_age_s", max_age_s), ("k", k), ("persist_s", persist_s)):
            if not value > 0:
                raise ConfigurationError(f"twin sync: {name} must be positive, got {value!r}")
        self.layout = layout
        self.scales = dict(scales or {})
        self.default_scale = float(default_scale)
        self.policy = policy
        self.period_s, self.max_age_s, self.k, self.persist_s = float(period_s), float(max_age_s), float(k), \
            float(persist_s)
        self.bound_exclude = list(bound_exclude)
        if every_ticks is not None and (int(every_ticks) != every_ticks or every_ticks < 1):
            raise ConfigurationError(f"twin sync: every_ticks must be a positive integer, got {every_ticks!r}")
        self.every_ticks = every_ticks
        self._master: Master | None = None
        self.signals = [s.plant for s in layout.signals]
        self.events: list[dict[str, Any]] = []
        self.corrections = 0

    def _scale(self, signal: str) -> float:
        return signal_scale(signal, self.scales, self.default_scale)

    def on_start(self, master: Master) -> None:
        self._master = master
        self._dt = master.grid.base_step
        n = len(self.layout.signals)
        self._meas = PortReader(master, [s.measured_at for s in self.layout.signals], "twin sync")
        self._pred = PortReader(master, [s.predicted_at for s in self.layout.signals], "twin sync")
        types = []
        for s in self.layout.signals:
            port = Port.parse(s.predicted_at)
            types.append(master.units[port.unit].variables[port.variable].type)
        real = [t is VarType.REAL for t in types]
        self._real = real
        scale_v = [self._scale(s) if r else 1.0 for s, r in zip(self.signals, real, strict=True)]
        in_bound = [r and not any(fnmatch.fnmatchcase(s, p) for p in self.bound_exclude)
                    for s, r in zip(self.signals, real, strict=True)]
        self._info = list(zip(real, scale_v, in_bound, strict=True))
        self._meas_buf: list[Any] = [0.0] * n
        self._sum_sq = [0.0] * n
        self._max_abs = [0.0] * n
        self._mismatch = [0] * n
        self._bad_run = [0] * n
        self._count = 0
        self.deviation: list[float] = []  # aggregated normalised RMS, one per step
        self.latest = [0.0] * n  # last residuals (real: in scales; others: 0/1 mismatch)
        self._every = int(self.every_ticks or min(master.step_ticks[r] for r in self.layout.replicas.values()))
        self._period_ticks = max(self._every, round(self.period_s / self._dt))
        self._persist_ticks = max(1, round(self.persist_s / (self._dt * self._every)))  # in comparisons
        self._hist: dict[int, list[Any]] = {}
        self._keep = 256  # twin steps of prediction history kept for delayed telemetry
        self._sources = [Port.parse(sig).unit for sig in self.signals]
        self._source_names = list(dict.fromkeys(self._sources))
        self._source_of = [self._source_names.index(u) for u in self._sources]
        self._channel_cache: dict[str, Any] | None = None
        self._late: dict[str, bool] = {}
        self._gaps: dict[str, int] = {}
        self._arm_sync = self._arm_targets(master)
        self.events, self.corrections = [], 0

    def _arm_targets(self, master: Master) -> list[tuple[Any, list[int], list[int]]]:
        """Replicas with arm joints whose positions arrive as telemetry (``q_<i>``)."""
        found = []
        for plant_unit, replica in self.layout.replicas.items():
            unit = master.units[replica]
            if not hasattr(unit, "arm_joints") or not hasattr(unit, "client"):
                continue
            joints, sig_index = [], []
            for i, joint in enumerate(unit.arm_joints):
                sig = f"{plant_unit}.q_{i}"
                if sig in self.signals:
                    joints.append(joint)
                    sig_index.append(self.signals.index(sig))
            if joints:
                found.append((unit, joints, sig_index))
        return found

    def after_step(self, tick: int) -> None:
        every = self._every
        if tick % every == 0:  # the replicas have just reached this tick: keep their prediction
            self._hist[tick] = self._pred.read()
            self._hist.pop(tick - self._keep * every, None)
        if (tick - 1) % every:
            return
        assert self._master is not None
        # the receiver now holds what the plant sent at the previous tick (later, with network
        # latency): compare it with the twin's prediction for that same instant
        meas = self._meas.read(self._meas_buf)
        hist = self._hist
        # the prediction for the instant each source's telemetry was sampled at
        rows = [hist.get(s - s % every) if s >= 0 else None for s in self._source_ticks(tick - 1)]
        source_of = self._source_of
        latest, sum_sq, max_abs, runs = self.latest, self._sum_sq, self._max_abs, self._bad_run
        k, persist, bound_sq, n_bound = self.k, self._persist_ticks, 0.0, 0
        t = self._master.grid.time(tick)
        for i, (is_real, scale, in_bound) in enumerate(self._info):
            pred = rows[source_of[i]]
            if pred is None:
                continue  # older than the kept history (a long delay): reported as late
            if is_real:
                r = (meas[i] - pred[i]) / scale
                a = abs(r)
                bad = a > k
                if in_bound:
                    bound_sq += r * r
                    n_bound += 1
            else:
                r = a = 0.0 if meas[i] == pred[i] else 1.0
                bad = a > 0.0
                if bad:
                    self._mismatch[i] += 1
            latest[i] = r
            sum_sq[i] += r * r
            if a > max_abs[i]:
                max_abs[i] = a
            if bad:
                runs[i] += 1
                if runs[i] == persist:
                    self._event(t, "inconsistent", f"{self.signals[i]}: twin and plant disagree for {self.persist_s} s")
            else:
                runs[i] = 0
        self._count += 1
        self.deviation.append(math.sqrt(bound_sq / n_bound) if n_bound else 0.0)
        self._check_telemetry(t)
        if self.policy == "state" and (tick - 1) % self._period_ticks == 0:
            self._correct(meas)

    def _source_ticks(self, default: int) -> list[int]:
        """The tick the telemetry of each source (in :attr:`_source_names` order) was sampled
        at, from the network's time stamps (-1: routed but nothing delivered yet)."""
        network = getattr(self._master, "network", None)
        if network is None:
            return [default] * len(self._source_names)
        grid = self._master.grid  # type: ignore[union-attr]
        channels = self._channels(network)
        ticks = []
        for source in self._source_names:
            channel = channels.get(source)
            if channel is None:  # direct (same-zone) telemetry: sampled at the previous tick
                ticks.append(default)
                continue
            sent = channel.last_sent_time
            ticks.append(-1 if sent is None else round((sent - grid.start_time) / grid.base_step))
        return ticks

    def _channels(self, network: Any) -> dict[str, Any]:
        """Telemetry channel per source unit (looked up once; same-zone sources have none)."""
        if self._channel_cache is None:
            self._channel_cache = {}
            for source in dict.fromkeys(self._sources):
                try:
                    self._channel_cache[source] = network.channel(source, self.layout.receiver)
                except Exception:
                    continue
        return self._channel_cache

    def _check_telemetry(self, t: float) -> None:
        network = getattr(self._master, "network", None)
        if network is None:
            return
        for source, channel in self._channels(network).items():
            if t <= self.max_age_s:
                continue  # nothing can be late yet
            sent = getattr(channel, "last_sent_time", None)
            # a source that steps every n ticks sends fresh values only every n ticks
            allowed = self.max_age_s + self._master.step_ticks[source] * self._dt  # type: ignore[union-attr]
            late = sent is None or (t - sent) > allowed + 1e-12
            if late and not self._late.get(source, False):
                age = "nothing received" if sent is None else f"{(t - sent) * 1000:.0f} ms old"
                self._event(t, "late", f"telemetry from {source}: {age}")
            self._late[source] = late
            gaps = int(getattr(channel, "gaps", 0))
            if gaps > self._gaps.get(source, 0):
                missing = gaps - self._gaps.get(source, 0)
                self._event(t, "lost", f"telemetry from {source}: {missing} message(s) missing")
            self._gaps[source] = gaps

    def _correct(self, meas: list[Any]) -> None:
        for unit, joints, sig_index in self._arm_sync:
            if any(self._late.get(self._sources[i], False) for i in sig_index):
                continue  # never correct from stale telemetry: it would set the twin back in time
            client, body = unit.client, unit.body_id
            for joint, i in zip(joints, sig_index, strict=True):
                velocity = client.getJointState(body, joint)[1]
                client.resetJointState(body, joint, float(meas[i]), velocity)
            unit.refresh()
            self.corrections += 1

    def _event(self, t: float, kind: str, detail: str) -> None:
        self.events.append({"t": t, "kind": f"sync_{kind}", "detail": detail})

    def save_state(self) -> Any:
        keys = ("_sum_sq", "_max_abs", "_mismatch", "_bad_run", "latest")
        return ({k: list(getattr(self, k)) for k in keys}, self._count, len(self.deviation), list(self.events),
                dict(self._late), dict(self._gaps), self.corrections, dict(self._hist))

    def restore_state(self, state: Any) -> None:
        arrays, self._count, n_dev, events, self._late, self._gaps, self.corrections, hist = state
        self._hist = dict(hist)
        for k, v in arrays.items():
            setattr(self, k, list(v))
        del self.deviation[n_dev:]
        self.events = list(events)

    def summary(self) -> dict[str, Any]:
        """Per-signal and aggregated deviation, mismatch rates, faults."""
        count = max(self._count, 1)
        rms = np.sqrt(np.asarray(self._sum_sq) / count)
        per_signal = {s: {"rms": float(rms[i]), "max": float(self._max_abs[i])}
                      for i, s in enumerate(self.signals) if self._real[i]}
        mismatch = {s: float(self._mismatch[i] / count) for i, s in enumerate(self.signals) if not self._real[i]}
        dev = np.asarray(self.deviation) if self.deviation else np.zeros(1)
        kinds: dict[str, int] = {}
        for e in self.events:
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
        return {
            "twin_deviation_rms": float(math.sqrt(float(np.mean(dev * dev)))),
            "twin_deviation_max": float(dev.max()),
            "twin_deviation_p99": float(np.percentile(dev, 99)),
            "signals": per_signal,
            "mismatch_rate": mismatch,
            "sync_faults": kinds,
            "corrections": self.corrections,
        }
