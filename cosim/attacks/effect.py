"""Effect labels: did an attack actually change what its victim received?

An attack's interval (:class:`~cosim.attacks.base.Interval`) says when it was *active*. It
does not say whether it changed anything: a ``scale`` spoof on a signal that is 0 (the press
open, the belt stopped) delivers 0, exactly the true value; a forged ``valve_cmd = true``
while the controller itself commands ``true`` changes nothing. No detector can see such a
no-op, yet interval labels count those samples as attack. :class:`EffectProbe` records, for
every attack of a campaign, the ticks at which one of its manipulators delivered a value that
differs from the true one by more than the signal's scale:

- a signal with a scale (``plant.twin.scales``, glob patterns such as ``cell.q_*``) changes
  when ``|manipulated - true| > scale``;
- a signal without one (commands, set points, flags) changes on any difference;
- attacks that act without manipulators on connections (conduit hooks: DoS, sync attacks;
  timers: parameter tampering, API calls, updates) are not value manipulations the probe can
  compare: their effect is their interval (``measured=False``).

A manipulation refused by an authenticated conduit never reaches :meth:`apply`, so it has no
effect. :meth:`EffectProbe.labels` turns the record into one label per sample: the attack's
kind when the attack is active at the sample time *and* changed a value in the sampling period
ending there (the steps ``k - every .. k - 1`` before a sample taken at tick ``k``), else
``"normal"``. The effect label is therefore never an attack where the interval label is not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cosim.core.observer import Observer
from cosim.twin.sync import signal_scale

if TYPE_CHECKING:
    from cosim.attacks.base import Attack
    from cosim.attacks.scenario import Campaign
    from cosim.core.manipulator import Manipulator
    from cosim.core.master import Master

NORMAL = "normal"


def signal_of(manipulator_target: str) -> str:
    """The signal a manipulator changes: the source port of a connection (``"src.out -> dst.in"``)
    or the input it targets (``"dst.in"``)."""
    return manipulator_target.split("->")[0].strip()


def scale_of(signal: str, scales: Mapping[str, float] | None) -> float:
    """The signal's scale by the twin's rule (:func:`~cosim.twin.sync.signal_scale`); 0 without one."""
    return signal_scale(signal, scales or {}, 0.0)


def changed(true: Any, manipulated: Any, scale: float) -> bool:
    """Whether ``manipulated`` differs from ``true`` by more than ``scale`` (any difference
    for non-numeric values, booleans and ``scale == 0``; a non-finite value always differs)."""
    if isinstance(true, bool) or isinstance(manipulated, bool) or scale <= 0:
        return bool(manipulated != true)
    try:
        diff = abs(float(manipulated) - float(true))
    except (TypeError, ValueError):
        return bool(manipulated != true)
    return not math.isfinite(diff) or diff > scale


class EffectProbe(Observer):
    """Records, per attack, the ticks at which it changed a value its victim received.

    Add it to the master *after* the campaign (it wraps the manipulators the campaign installed
    at ``on_start``). Attributes: ``ticks`` (attack name -> sorted list of ticks with an
    effect) and ``measured`` (attack name -> whether the probe could compare values).
    """

    def __init__(self, campaign: Campaign, scales: Mapping[str, float] | None = None) -> None:
        self.campaign = campaign
        self.scales = dict(scales or {})
        self.ticks: dict[str, list[int]] = {}
        self.measured: dict[str, bool] = {}

    def on_start(self, master: Master) -> None:
        self._grid = master.grid
        for attack in self.campaign.attacks:
            for part in attack.parts():
                if part is not attack or len(attack.parts()) == 1:
                    self._watch(part)

    def _watch(self, attack: Attack) -> None:
        mans = [obj for what, obj, _ in attack._installed if what == "manipulator"]
        self.measured[attack.name] = bool(mans)
        hits = self.ticks.setdefault(attack.name, [])
        for m in mans:
            self._wrap(m, scale_of(signal_of(m.target), self.scales), hits)

    @staticmethod
    def _wrap(m: Manipulator, scale: float, hits: list[int]) -> None:
        inner = m.apply

        def apply(tick: int, value: Any) -> Any:
            out = inner(tick, value)
            if (not hits or hits[-1] != tick) and changed(value, out, scale):
                hits.append(tick)
            return out

        m.apply = apply  # type: ignore[method-assign]

    def labels(self, sample_ticks: Sequence[int], every: int) -> list[str]:
        """One effect label per sample taken at ``sample_ticks`` (the tick count an observer's
        ``after_step`` receives: the step just done was ``tick - 1``), one every ``every`` ticks."""
        grid = self._grid
        k = np.asarray(sample_ticks, dtype=int)
        times = np.asarray([grid.time(int(t)) for t in k])
        out = np.full(len(k), NORMAL, dtype=object)
        for interval in self.campaign.ground_truth.intervals:
            end = np.inf if interval.end is None else interval.end
            inside = (times >= interval.start) & (times < end) & (out == NORMAL)
            if not self.measured.get(interval.attack, False):
                out[inside] = interval.kind
                continue
            hits = np.asarray(self.ticks.get(interval.attack, []), dtype=int)
            if hits.size == 0:
                continue
            # any hit in [k - every, k): the first hit >= k - every exists and is < k
            j = np.searchsorted(hits, k - every, side="left")
            has = (j < hits.size) & (hits[np.minimum(j, hits.size - 1)] < k)
            out[inside & has] = interval.kind
        return [str(v) for v in out]
