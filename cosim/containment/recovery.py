"""Recovery: verified twin snapshots, rollback with revalidation, clean intervals for retraining.

:class:`TwinRecovery` keeps, while the system is healthy, signed snapshots of the twin's
replicas and the recent stream of commands the twin observed and of the telemetry it
received. A rollback takes the newest snapshot that verifies (a tampered one is refused),
loads it into the sandbox twin, replays the observed commands up to now (the twin's state
moves forward in time with the plant), compares the replay with the telemetry received
before the incident (revalidation) and imports the rolled-forward state into the twin
(resynchronisation).
"""

from __future__ import annotations

import fnmatch
import math
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cosim.core.observer import PortReader
from cosim.core.state import aligned, export_units, import_units
from cosim.errors import CosimError, IntegrityError
from cosim.twin.integrity import KeyStore, SignedSnapshot
from cosim.twin.sync import signal_scale

if TYPE_CHECKING:
    from cosim.containment.orchestrator import ContainmentOrchestrator
    from cosim.containment.policy import SnapshotSettings
    from cosim.core.master import Master
    from cosim.twin.sandbox import Sandbox


class TwinRecovery:
    """Snapshots, command/telemetry history and rollback of the twin (inactive without a twin)."""

    def __init__(self, orch: ContainmentOrchestrator, settings: SnapshotSettings, keystore: KeyStore) -> None:
        self.orch = orch
        self.settings = settings
        self.keystore = keystore
        self.enabled = False
        self.snapshots: list[SignedSnapshot] = []
        self.version = 0
        self.taken = 0
        self.refused: list[dict[str, Any]] = []
        self.rollbacks: list[dict[str, Any]] = []
        self._sandbox: Sandbox | None = None
        self._sandbox_failed: str | None = None

    # setup -----------------------------------------------------------------------------
    def on_start(self, master: Master) -> None:
        ctx = self.orch.ctx
        layout = ctx.layout if ctx is not None else None
        self.enabled = bool(ctx is not None and ctx.twin is not None and layout is not None and ctx.spec is not None)
        if not self.enabled:
            return
        assert ctx is not None and layout is not None
        self.master = master
        self.layout = layout
        self.replicas = list(layout.replicas.values())
        self.every = min(master.step_ticks[r] for r in self.replicas)
        self.sources = list(dict.fromkeys(src for src, _ in layout.commands))
        self._cmd = PortReader(master, self.sources, "containment")
        self._meas = PortReader(master, [s.measured_at for s in layout.signals], "containment")
        self._cmd_buf: list[Any] = [None] * len(self.sources)  # read into, then recorded as tuples
        self._meas_buf: list[Any] = [None] * len(layout.signals)
        sync = ctx.twin
        self.signals = [s.plant for s in layout.signals]
        scales, default = dict(getattr(sync, "scales", {})), float(getattr(sync, "default_scale", 1.0))
        self.scales = [signal_scale(s, scales, default) for s in self.signals]
        excluded = list(getattr(sync, "bound_exclude", []))
        self.in_bound = [not any(fnmatch.fnmatchcase(s, p) for p in excluded) for s in self.signals]
        n = max(1, round(self.settings.history_s / (master.grid.base_step * self.every)))
        self.cmds: deque[tuple[int, tuple[Any, ...]]] = deque(maxlen=n)
        self.meas: deque[tuple[int, tuple[Any, ...]]] = deque(maxlen=n)
        self.period = max(1, round(self.settings.period_s / master.grid.base_step))
        self.take()
        if self.settings.prewarm_sandbox:
            self.sandbox()

    def sandbox(self) -> Sandbox | None:
        """The sandbox twin (built once, from the newest verified snapshot)."""
        if self._sandbox is None and self.enabled and self._sandbox_failed is None and self.snapshots:
            from cosim.twin.sandbox import Sandbox

            ctx = self.orch.ctx
            assert ctx is not None and ctx.spec is not None
            try:
                self._sandbox = Sandbox(ctx.spec, self.layout, self.snapshots[-1], self.keystore,
                                        record=[self.layout.signals[0].predicted_at] if self.layout.signals else [])
                self._pred = PortReader(self._sandbox.master, [s.predicted_at for s in self.layout.signals],
                                        "containment sandbox")
            except CosimError as exc:
                self._sandbox_failed = str(exc)
                self.orch.audit.append("sandbox_failed", t=self.orch.time, tick=self.orch.tick, reason=str(exc))
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    # every step ------------------------------------------------------------------------
    def record(self, tick: int) -> None:
        if not self.enabled:
            return
        if tick % self.every == 0:
            self.cmds.append((tick, tuple(self._cmd.read(self._cmd_buf))))
        if (tick - 1) % self.every == 0:
            self.meas.append((tick - 1, tuple(self._meas.read(self._meas_buf))))

    def maybe_snapshot(self, tick: int, healthy: bool) -> None:
        if self.enabled and healthy and tick % self.period == 0 and aligned(self.master):
            self.take()

    def take(self) -> SignedSnapshot:
        self.version += 1
        snap = SignedSnapshot.take(self.master, self.replicas, self.keystore, self.version, name="twin")
        self.snapshots.append(snap)
        del self.snapshots[:-self.settings.keep]
        self.taken += 1
        return snap

    # rollback --------------------------------------------------------------------------
    def rollback(self, revalidate: bool = True, tolerance: float | None = None) -> dict[str, Any]:
        """Restore the twin from the newest snapshot that verifies, rolled forward to now."""
        orch = self.orch
        if not self.enabled:
            return {"restored_version": None, "reason": "no twin to roll back"}
        refused = []
        chosen = None
        for snap in reversed(self.snapshots):
            try:
                snap.verify(self.keystore)
            except IntegrityError as exc:
                item = {"version": snap.manifest.version, "tick": snap.tick, "reason": exc.reason, "detail": str(exc)}
                refused.append(item)
                self.refused.append(item)
                orch.audit.append("snapshot_refused", t=orch.time, tick=orch.tick, reason=str(exc), evidence=item)
                continue
            chosen = snap
            break
        if chosen is None:
            return {"restored_version": None, "refused": refused, "reason": "no snapshot verifies"}
        box = self.sandbox()
        if box is None:
            return {"restored_version": None, "refused": refused, "reason": f"no sandbox: {self._sandbox_failed}"}
        chosen.restore_into(box.master, self.keystore)  # verifies again before importing
        clean_end = orch.incident_start_tick if orch.incident_start_tick is not None else self.master.tick
        rms, n = self._replay(box, chosen.tick, self.master.tick, clean_end)
        tol = tolerance if tolerance is not None else orch.watch_threshold
        passed = (not revalidate) or n == 0 or tol is None or rms <= tol
        states = export_units(box.master, self.replicas, allow_unaligned=True)
        import_units(self.master, states, set_tick=False)
        result = {"restored_version": chosen.manifest.version, "snapshot_tick": chosen.tick,
                  "snapshot_t": self.master.grid.time(chosen.tick), "refused": refused,
                  "replayed_ticks": self.master.tick - chosen.tick, "revalidation_rms": rms,
                  "revalidation_samples": n, "revalidation_tolerance": tol, "revalidated": passed,
                  "resynchronised": True}
        self.rollbacks.append(result)
        return result

    def _replay(self, box: Sandbox, start: int, end: int, clean_end: int) -> tuple[float, int]:
        """Run the sandbox from ``start`` to ``end`` on the observed commands; RMS deviation
        (in scales) against the telemetry received in ``[start, clean_end)``."""
        meas = {tick: values for tick, values in self.meas if start <= tick < clean_end}
        sq, n = 0.0, 0
        real = [isinstance(v, float) for v in (self.meas[-1][1] if self.meas else ())]
        m = box.master
        for tick, values in self.cmds:
            if tick < start or tick >= end:
                continue
            if tick > m.tick:
                m.run(until_tick=tick)
            if m.tick in meas:
                pred = self._pred.read()
                for i, (mv, pv) in enumerate(zip(meas[m.tick], pred, strict=True)):
                    if real[i] and self.in_bound[i]:
                        r = (float(mv) - float(pv)) / self.scales[i]
                        sq += r * r
                        n += 1
            box.feed(dict(zip(self.sources, values, strict=True)))
        if end > m.tick:
            m.run(until_tick=end)
        return (math.sqrt(sq / n) if n else 0.0), n


def clean_intervals(start: float, end: float, dirty: Sequence[tuple[float, float]], margin: float,
                    min_len: float) -> list[tuple[float, float]]:
    """Parts of ``[start, end]`` farther than ``margin`` from every dirty interval, at least
    ``min_len`` long."""
    spans = sorted((a - margin, b + margin) for a, b in dirty)
    out: list[tuple[float, float]] = []
    cursor = start
    for a, b in spans:
        if a > cursor:
            out.append((cursor, min(a, end)))
        cursor = max(cursor, b)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return [(a, b) for a, b in out if b - a >= min_len]
