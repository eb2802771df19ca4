"""Data-level attacks: poisoning the data a detector learns from.

:class:`DataPoisoning` acts on the telemetry path to the twin (and any historian or
training-data receiver), never on the control path: the PLC keeps its true values, so the
process is untouched, while what is *recorded and learned from* shifts by a small, bounded
amount. A detector retrained on such a window learns a shifted "normal".

How a retraining routine must treat it: the interval is labelled ``poisoning`` in the
ground truth (``physical=False``), but nothing in the data shows it — that is the attack.
A routine that wants a clean model trains only on
``campaign.ground_truth.training_mask(times, kinds=["poisoning"])`` (or on every attack
excluded, ``training_mask(times)``); a study of the attack trains on everything and compares
the two models on clean test data. Scoring per sample treats poisoned samples as attack
samples like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cosim.attacks.base import Attack, number, register
from cosim.attacks.library import ConnectionHook, links_from
from cosim.core.variables import Value
from cosim.errors import ConfigurationError

if TYPE_CHECKING:
    from cosim.core.master import Master


@register("poisoning")
class DataPoisoning(Attack):
    """Shifts the telemetry the twin (or a historian) receives within a stealth budget.

    Args:
        signals: plant signals ``unit.var`` to poison (default: the target).
        budget: the largest shift, in noise scales (``k``): it stays under a detector's
            threshold of a few scales.
        noise: the sensor noise scale, one number or ``{signal: scale}``.
        mode: ``drift`` (grows by ``rate`` scales per second up to the budget), ``offset``
            (the whole budget at once), ``noise`` (a uniform random shift in
            ``[-budget, budget]`` scales each tick; booleans flip with ``flip_prob`` — the
            time-series form of label flipping).
        direction: sign of the drift or offset (+1 or -1).
        receivers: unit name prefixes of the receivers poisoned (default the twin's).
    """

    kind = "poisoning"
    physical = False
    MODES = ("drift", "offset", "noise")

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 signals: str | Sequence[str] | None = None, budget: float = 2.0,
                 noise: float | Mapping[str, float] = 1.0, mode: str = "drift", rate: float = 0.1,
                 direction: float = 1.0, flip_prob: float = 0.1, receivers: Sequence[str] = ("twin_",)) -> None:
        super().__init__(name, target, start, duration, seed)
        if mode not in self.MODES:
            raise ConfigurationError(f"attack '{name}': unknown poisoning mode '{mode}'; modes are {self.MODES}")
        where = f"attack '{name}'"
        budget, rate = number(where, "budget", budget, positive=True), number(where, "rate", rate, positive=True)
        direction, flip_prob = number(where, "direction", direction), number(where, "flip_prob", flip_prob)
        if isinstance(noise, Mapping):
            noise = {str(k): number(where, f"noise[{k}]", v, positive=True) for k, v in noise.items()}
        else:
            noise = number(where, "noise", noise, positive=True)
        if direction not in (1, -1, 1.0, -1.0) or not 0 <= flip_prob <= 1:
            raise ConfigurationError(f"attack '{name}': needs budget > 0, rate > 0, direction +1/-1, "
                                     "flip_prob in [0, 1]")
        self.signals = [signals] if isinstance(signals, str) else list(signals or [target])
        self.noise = dict(noise) if isinstance(noise, Mapping) else {s: float(noise) for s in self.signals}
        missing = [s for s in self.signals if s not in self.noise]
        if missing:
            raise ConfigurationError(f"attack '{name}': no noise scale for {missing}")
        self.budget, self.mode, self.rate, self.direction = float(budget), mode, float(rate), float(direction)
        self.flip_prob, self.receivers = float(flip_prob), tuple(receivers)
        self.rng = np.random.default_rng(seed)
        self.max_shift = {s: 0.0 for s in self.signals}  # largest shift applied, in noise scales

    def bound(self, signal: str) -> float:
        """The budget of ``signal`` in its own units."""
        return self.budget * float(self.noise[signal])

    def install(self, master: Master) -> None:
        start, end = self.ticks(master)
        dt = master.grid.base_step
        for signal in self.signals:
            links = [link for link in links_from(master, signal)
                     if link.split("->")[1].strip().startswith(self.receivers)]
            if not links:
                raise ConfigurationError(
                    f"attack '{self.name}': '{signal}' feeds no receiver named {list(self.receivers)}* (the twin's "
                    "telemetry receiver or a historian); poisoning never touches the control path")
            scale, bound = float(self.noise[signal]), self.bound(signal)
            draws: dict[int, float] = {}

            def fn(tick: int, value: Value, signal: str = signal, scale: float = scale, bound: float = bound,
                   draws: dict[int, float] = draws) -> Value:
                if tick not in draws:  # one draw per tick, the same on every link of the signal
                    draws.clear()
                    draws[tick] = float(self.rng.random())
                u = draws[tick]
                if isinstance(value, bool):
                    return (not value) if self.mode == "noise" and u < self.flip_prob else value
                if self.mode == "drift":
                    shift = self.direction * min(bound, self.rate * scale * (tick - start) * dt)
                elif self.mode == "offset":
                    shift = self.direction * bound
                else:
                    shift = (2.0 * u - 1.0) * bound
                self.max_shift[signal] = max(self.max_shift[signal], abs(shift) / scale)
                return value + shift  # type: ignore[operator]

            for link in links:
                self.add_manipulator(master, ConnectionHook(link, start, end, fn))

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "max_shift_scales": dict(self.max_shift)}
