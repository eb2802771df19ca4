"""Lateral movement: one attack made of hops across zones, each its own ground truth.

A scenario event::

    - attack: lateral
      name: pivot
      target: enterprise->control->field      # a description of the path
      at: 20.0
      params:
        hops:
          - {attack: api, target: hmi, at: 20.0, duration: 10.0,
             params: {tag: press_time_sp, value: 3.0, user: operator}}
          - {attack: injection, target: plc.valve_cmd, at: 25.0, duration: 2.0, params: {value: true}}

Every hop is an ordinary attack (any registered kind or ``module.Class``, with its own
``traits``) installed by this one; the ground truth has one interval per hop, named
``<name>.hop<i>``, of the hop's kind and marked with the ``lateral`` trait. Hop times are
absolute and may not come before the event's ``at``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cosim.attacks.base import Attack, Interval, register
from cosim.errors import ConfigurationError

if TYPE_CHECKING:
    from cosim.core.master import Master


@register("lateral")
class LateralMovement(Attack):
    """A sequence of attack steps (``hops``) across zones (see the module documentation)."""

    kind = "lateral"
    physical = False

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 hops: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(name, target, start, duration, seed)
        from cosim.attacks.scenario import EVENT_KEYS, make_attack

        if not hops or isinstance(hops, Mapping | str):
            raise ConfigurationError(f"attack '{name}': lateral movement needs a list of hops")
        self.hops: list[Attack] = []
        for i, hop in enumerate(hops):
            where = f"attack '{name}', hop {i + 1}"
            if not isinstance(hop, Mapping):
                raise ConfigurationError(f"{where}: expected a mapping, got {hop!r}")
            unknown, missing = set(hop) - EVENT_KEYS, {"attack", "target", "at"} - set(hop)
            if unknown or missing:
                raise ConfigurationError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
            if float(hop["at"]) < self.start:
                raise ConfigurationError(f"{where}: starts at {hop['at']}, before the movement's at={self.start}")
            if hop["attack"] == "lateral":
                raise ConfigurationError(f"{where}: a hop cannot itself be a lateral movement")
            self.hops.append(make_attack(hop, str(hop.get("name") or f"{name}.hop{i + 1}"), seed * 100 + i, where))

    def install(self, master: Master) -> None:
        for hop in self.hops:
            if self.traits.insider is not None and hop.traits.insider is None:
                hop.traits = replace(hop.traits, insider=self.traits.insider)
            hop.install(master)
            self._installed += hop._installed  # persistence of the movement re-arms every hop

    def intervals(self) -> list[Interval]:
        out = []
        for hop in self.hops:
            for interval in hop.intervals():
                traits = tuple(dict.fromkeys((*interval.traits, *self.traits.names(), "lateral")))
                out.append(replace(interval, traits=traits))
        return out

    @property
    def end(self) -> float | None:  # type: ignore[override]
        ends = [h.end for h in self.hops] if getattr(self, "hops", None) else [None]
        return None if any(e is None for e in ends) else max(e for e in ends if e is not None)

    def parts(self) -> list[Attack]:
        return [self, *self.hops]

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "hops": [h.summary() for h in self.hops]}
