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
from cosim.core.observer import Observer
from cosim.core.variables import VarType
from cosim.errors import ConfigurationError
from cosim.twin.replica import TwinLayout

if TYPE_CHECKING:
    from cosim.core.master import Master

POLICIES = ("none", "state")


class TwinSync(Observer):
    """Twin deviation, synchronisation faults and correction.

    Args:
        layout: what :func:`~cosim.twin.replica.add_twin` added.
        scales: ``{pattern: scale}`` normalising each real signal (``fnmatch`` patterns on
            the plant signal ``unit.var``; first match wins); default ``default_scale``.
        policy: ``none`` or ``state``.
        period_s: correction period (s).
        max_age_s: telemetry older than this is late.
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
        for pattern, scale in self.scales.items():
            if fnmatch.fnmatchcase(signal, pattern):
                return float(scale)
        return self.default_scale

    def on_start(self, master: Master) -> None:
        self._master = master
        self._dt = master.grid.base_step
        n = len(self.layout.signals)
        self._meas = self._group([s.measured_at for s in self.layout.signals], master)
        self._pred = self._group([s.predicted_at for s in self.layout.signals], master)
        types = []
        for s in self.layout.signals:
            port = Port.parse(s.predicted_at)
            types.append(master.units[port.unit].variables[port.variable].type)
        self._real = np.array([t is VarType.REAL for t in types])
        self._scale_v = np.array([self._scale(s) if r else 1.0 for s, r in zip(self.signals, self._real, strict=True)])
        in_bound = np.array([not any(fnmatch.fnmatchcase(s, p) for p in self.bound_exclude) for s in self.signals])
        self._bound = self._real & in_bound
        self._sum_sq = np.zeros(n)
        self._max_abs = np.zeros(n)
        self._mismatch = np.zeros(n, dtype=np.int64)
        self._bad_run = np.zeros(n, dtype=np.int64)
        self._faulty = np.zeros(n, dtype=bool)
        self._count = 0
        self.deviation: list[float] = []  # aggregated normalised RMS, one per step
        self.latest = np.zeros(n)  # last residuals (real: in scales; others: 0/1 mismatch)
        self._every = int(self.every_ticks or min(master.step_ticks[r] for r in self.layout.replicas.values()))
        self._period_ticks = max(self._every, round(self.period_s / self._dt))
        self._persist_ticks = max(1, round(self.persist_s / (self._dt * self._every)))  # in comparisons
        self._late: dict[str, bool] = {}
        self._gaps: dict[str, int] = {}
        self._arm_sync = self._arm_targets(master)
        self.events, self.corrections = [], 0

    @staticmethod
    def _group(ports: Sequence[str], master: Master) -> list[tuple[list[int], Any]]:
        by_unit: dict[str, list[tuple[int, str]]] = {}
        for i, text in enumerate(ports):
            port = Port.parse(text)
            by_unit.setdefault(port.unit, []).append((i, port.variable))
        return [([i for i, _ in pairs], master.units[u].reader([v for _, v in pairs])) for u, pairs in by_unit.items()]

    @staticmethod
    def _read(groups: list[tuple[list[int], Any]], n: int) -> np.ndarray:
        out = np.empty(n)
        for idx, reader in groups:
            out[idx] = reader()
        return out

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
        if tick % self._every:
            return
        assert self._master is not None
        n = len(self.signals)
        meas = self._read(self._meas, n)
        pred = self._read(self._pred, n)
        diff = meas - pred
        r = np.where(self._real, diff / self._scale_v, (diff != 0).astype(float))
        self.latest = r
        self._count += 1
        absr = np.abs(r)
        self._sum_sq += r * r
        np.maximum(self._max_abs, absr, out=self._max_abs)
        self._mismatch += (~self._real) & (absr > 0)
        bound = r[self._bound]
        self.deviation.append(float(np.sqrt(np.mean(bound * bound))) if bound.size else 0.0)
        t = self._master.grid.time(tick)
        self._check_consistency(t, absr)
        self._check_telemetry(t)
        if self.policy == "state" and tick % self._period_ticks == 0:
            self._correct(meas)

    def _check_consistency(self, t: float, absr: np.ndarray) -> None:
        bad = np.where(self._real, absr > self.k, absr > 0)
        self._bad_run = np.where(bad, self._bad_run + 1, 0)
        now_faulty = self._bad_run >= self._persist_ticks
        for i in np.flatnonzero(now_faulty & ~self._faulty):
            self._event(t, "inconsistent", f"{self.signals[i]}: twin and plant disagree for {self.persist_s} s")
        self._faulty = now_faulty

    def _check_telemetry(self, t: float) -> None:
        network = getattr(self._master, "network", None)
        if network is None:
            return
        for source in {Port.parse(s).unit for s in self.signals}:
            try:
                channel = network.channel(source, self.layout.receiver)
            except Exception:  # noqa: BLE001 - same-zone (direct) telemetry has no channel
                continue
            sent = getattr(channel, "last_sent_time", None)
            late = sent is None or (t - sent) > self.max_age_s + 1e-12
            if late and not self._late.get(source, False) and t > self.max_age_s:
                age = "nothing received" if sent is None else f"{(t - sent) * 1000:.0f} ms old"
                self._event(t, "late", f"telemetry from {source}: {age}")
            self._late[source] = late
            gaps = int(getattr(channel, "gaps", 0))
            if gaps > self._gaps.get(source, 0):
                self._event(t, "lost", f"telemetry from {source}: {gaps - self._gaps.get(source, 0)} message(s) missing")
            self._gaps[source] = gaps

    def _correct(self, meas: np.ndarray) -> None:
        for unit, joints, sig_index in self._arm_sync:
            client, body = unit.client, unit.body_id
            for joint, i in zip(joints, sig_index, strict=True):
                velocity = client.getJointState(body, joint)[1]
                client.resetJointState(body, joint, float(meas[i]), velocity)
            unit.refresh()
        if self._arm_sync:
            self.corrections += 1

    def _event(self, t: float, kind: str, detail: str) -> None:
        self.events.append({"t": t, "kind": f"sync_{kind}", "detail": detail})

    def save_state(self) -> Any:
        keys = ("_sum_sq", "_max_abs", "_mismatch", "_bad_run", "_faulty", "latest")
        return ({k: getattr(self, k).copy() for k in keys}, self._count, len(self.deviation), list(self.events),
                dict(self._late), dict(self._gaps), self.corrections)

    def restore_state(self, state: Any) -> None:
        arrays, self._count, n_dev, events, self._late, self._gaps, self.corrections = state
        for k, v in arrays.items():
            setattr(self, k, v.copy())
        del self.deviation[n_dev:]
        self.events = list(events)

    def summary(self) -> dict[str, Any]:
        """Per-signal and aggregated deviation, mismatch rates, faults."""
        count = max(self._count, 1)
        rms = np.sqrt(self._sum_sq / count)
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
