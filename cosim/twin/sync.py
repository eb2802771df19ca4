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
from collections.abc import Callable, Mapping, Sequence
from operator import eq, itemgetter
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


def _picker(idx: tuple[int, ...]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """``seq -> tuple(seq[i] for i in idx)``."""
    if len(idx) == 1:
        only = idx[0]
        return lambda seq: (seq[only],)
    return itemgetter(*idx)


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

    def on_start(self, master: Master) -> None:
        self._master = master
        self._dt = master.grid.base_step
        n = len(self.layout.signals)
        self._meas = PortReader(master, [s.measured_at for s in self.layout.signals], "twin sync")
        # predictions are read unit by unit (each unit's values copied as one slice); the
        # prediction of signal i is at _at[i] of a row
        predicted = [Port.parse(s.predicted_at).unit for s in self.layout.signals]
        order = sorted(range(n), key=lambda i: (predicted.index(predicted[i]), i))
        self._pred = PortReader(master, [self.layout.signals[i].predicted_at for i in order], "twin sync")
        self._at = [0] * n
        for j, i in enumerate(order):
            self._at[i] = j
        types = []
        for s in self.layout.signals:
            port = Port.parse(s.predicted_at)
            types.append(master.units[port.unit].variables[port.variable].type)
        real = [t is VarType.REAL for t in types]
        self._real = real
        scale_v = [signal_scale(s, self.scales, self.default_scale) if r else 1.0
                   for s, r in zip(self.signals, real, strict=True)]
        in_bound = [r and not any(fnmatch.fnmatchcase(s, p) for p in self.bound_exclude)
                    for s, r in zip(self.signals, real, strict=True)]
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
        # real signals in signal order (their squares are summed in that order); the others
        # (booleans, integers) per source, compared as a group first: they rarely disagree
        self._real_signals = [(i, self._at[i], scale_v[i], in_bound[i], self._source_of[i])
                              for i in range(n) if real[i]]
        self._discrete_groups = []
        for src in range(len(self._source_names)):
            idx = tuple(i for i in range(n) if not real[i] and self._source_of[i] == src)
            if idx:
                self._discrete_groups.append((src, idx, _picker(idx), _picker(tuple(self._at[i] for i in idx))))
        self._links: list[Any] | None = None
        self._watched: list[tuple[str, int, Any, float]] = []
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
        master = self._master
        assert master is not None
        # the receiver now holds what the plant sent at the previous tick (later, with network
        # latency): compare it with the twin's prediction for that same instant
        meas = self._meas.read(self._meas_buf)
        hist = self._hist
        sent = self._sent_times(master)
        # the prediction for the instant each source's telemetry was sampled at
        rows = [hist.get(s - s % every) if s >= 0 else None for s in self._source_ticks(tick - 1, sent)]
        latest, sum_sq, max_abs, runs = self.latest, self._sum_sq, self._max_abs, self._bad_run
        k, persist, bound_sq, n_bound = self.k, self._persist_ticks, 0.0, 0
        persisting: list[int] = []
        for i, at, scale, in_bound, src in self._real_signals:
            pred = rows[src]
            if pred is None:
                continue  # older than the kept history (a long delay): reported as late
            r = (meas[i] - pred[at]) / scale
            a = abs(r)
            if in_bound:
                bound_sq += r * r
                n_bound += 1
            latest[i] = r
            sum_sq[i] += r * r
            if a > max_abs[i]:
                max_abs[i] = a
            if a > k:
                runs[i] += 1
                if runs[i] == persist:
                    persisting.append(i)
            else:
                runs[i] = 0
        for src, idx, pick_meas, pick_pred in self._discrete_groups:
            pred = rows[src]
            if pred is None:
                continue
            if all(map(eq, pick_meas(meas), pick_pred(pred))):
                for i in idx:  # all agree: residual 0, nothing else to count
                    latest[i] = 0.0
                    runs[i] = 0
                continue
            self._compare_discrete(idx, meas, pick_pred(pred), persisting)
        self._count += 1
        self.deviation.append(math.sqrt(bound_sq / n_bound) if n_bound else 0.0)
        t = master.grid.time(tick)
        for i in sorted(persisting):
            self._event(t, "inconsistent", f"{self.signals[i]}: twin and plant disagree for {self.persist_s} s")
        self._check_telemetry(t, sent)
        if self.policy == "state" and (tick - 1) % self._period_ticks == 0:
            self._correct(meas)

    def _compare_discrete(self, idx: Sequence[int], meas: list[Any], pred: Sequence[Any],
                          persisting: list[int]) -> None:
        """Residuals (0: same, 1: different) of the booleans and integers ``idx`` with their
        predictions ``pred`` (in ``idx`` order); appends to ``persisting`` those whose
        disagreement has just lasted ``persist_s``."""
        latest, sum_sq, max_abs, runs = self.latest, self._sum_sq, self._max_abs, self._bad_run
        for i, p in zip(idx, pred, strict=True):
            r = 0.0 if meas[i] == p else 1.0
            latest[i] = r
            sum_sq[i] += r * r
            if r > max_abs[i]:
                max_abs[i] = r
            if r > 0.0:
                self._mismatch[i] += 1
                runs[i] += 1
                if runs[i] == self._persist_ticks:
                    persisting.append(i)
            else:
                runs[i] = 0

    def _sent_times(self, master: Master) -> list[float | None] | None:
        """Time stamp of the last telemetry delivered from each source (in
        :attr:`_source_names` order; ``None``: nothing delivered yet, or same-zone telemetry),
        or ``None`` without a network."""
        network = getattr(master, "network", None)
        if network is None:
            return None
        links = self._links
        if links is None:
            links = self._bind_channels(master, network)
        return [None if channel is None else channel.last_sent_time for channel in links]

    def _bind_channels(self, master: Master, network: Any) -> list[Any]:
        """Look the telemetry channels up once: per source (``None``: same zone), and those
        watched for late or lost telemetry with their age limit."""
        channels = {}  # same-zone sources have none
        for source in self._source_names:
            try:
                channels[source] = network.channel(source, self.layout.receiver)
            except Exception:
                continue
        self._links = [channels.get(source) for source in self._source_names]
        self._watched = []
        for source, channel in channels.items():
            # a source that steps every n ticks sends fresh values only every n ticks
            allowed = self.max_age_s + master.step_ticks[source] * self._dt
            self._watched.append((source, self._source_names.index(source), channel, allowed + 1e-12))
        return self._links

    def _source_ticks(self, default: int, sent: list[float | None] | None) -> list[int]:
        """The tick the telemetry of each source (in :attr:`_source_names` order) was sampled
        at, from the network's time stamps ``sent`` (-1: routed but nothing delivered yet)."""
        if sent is None:
            return [default] * len(self._source_names)
        grid = self._master.grid  # type: ignore[union-attr]
        start, step = grid.start_time, grid.base_step
        ticks = []
        for channel, when in zip(self._links, sent, strict=True):  # type: ignore[arg-type]
            if channel is None:  # direct (same-zone) telemetry: sampled at the previous tick
                ticks.append(default)
            else:
                ticks.append(-1 if when is None else round((when - start) / step))
        return ticks

    def _check_telemetry(self, t: float, sent: list[float | None] | None) -> None:
        if sent is None or t <= self.max_age_s:
            return  # no network, or nothing can be late yet
        late_state, gap_state = self._late, self._gaps
        for source, pos, channel, limit in self._watched:
            when = sent[pos]
            late = when is None or (t - when) > limit
            if late and not late_state.get(source, False):
                age = "nothing received" if when is None else f"{(t - when) * 1000:.0f} ms old"
                self._event(t, "late", f"telemetry from {source}: {age}")
            late_state[source] = late
            gaps = int(getattr(channel, "gaps", 0))
            seen = gap_state.get(source, 0)
            if gaps > seen:
                self._event(t, "lost", f"telemetry from {source}: {gaps - seen} message(s) missing")
            gap_state[source] = gaps

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
