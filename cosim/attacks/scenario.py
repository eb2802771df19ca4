"""Scenario files: a readable schedule of attack events that composes a campaign.

A scenario (YAML or JSON, or the same structure from a Hydra config)::

    name: spoof_then_inject
    events:
      - {attack: spoofing, name: blind_pressure, target: press.pressure_meas, at: 30.0, duration: 20.0,
         params: {mode: constant, value: 0.0}}
      - {attack: injection, target: plc.valve_cmd, at: 60.0, duration: 5.0, params: {value: true}}

``attack`` is a registered kind (:data:`cosim.attacks.ATTACKS`) or a ``module.Class`` path of
a user's attack class (checked by :func:`~cosim.attacks.check_attack`).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosim.attacks.base import ATTACKS, Attack, GroundTruth, Timer, Traits, check_attack
from cosim.core.observer import Observer
from cosim.errors import ConfigurationError, CosimError

if TYPE_CHECKING:
    from cosim.core.master import Master

EVENT_KEYS = {"attack", "name", "target", "at", "duration", "params", "traits"}


def attack_class(kind: str, where: str) -> type[Attack]:
    if kind in ATTACKS:
        return ATTACKS[kind]
    if "." in kind:
        module, _, cls_name = kind.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"{where}: cannot import attack class '{kind}': {exc}") from None
        check_attack(cls)
        return cls
    raise ConfigurationError(f"{where}: unknown attack '{kind}'; known attacks are {sorted(ATTACKS)}")


def load_scenario(source: str | Path | Mapping[str, Any], seed: int = 0) -> list[Attack]:
    """Attacks of a scenario file (``.yaml``/``.yml``/``.json``) or mapping, seeded from ``seed``."""
    where = "scenario"
    if isinstance(source, (str, Path)):
        path = Path(source)
        where = f"scenario '{path}'"
        if not path.is_file():
            raise ConfigurationError(f"{where}: file not found")
        text = path.read_text()
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:
            raise ConfigurationError(f"{where}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}") from None
    else:
        data = source
        if isinstance(data, Mapping) and data.get("name"):
            where = f"scenario '{data['name']}'"
    if not isinstance(data, Mapping) or not isinstance(data.get("events", []), Sequence):
        raise ConfigurationError(f"{where}: expected a mapping with a list 'events'")
    attacks: list[Attack] = []
    for i, event in enumerate(data.get("events") or []):
        here = f"{where}, event {i + 1}"
        if not isinstance(event, Mapping):
            raise ConfigurationError(f"{here}: expected a mapping, got {event!r}")
        unknown = set(event) - EVENT_KEYS
        missing = {"attack", "target", "at"} - set(event)
        if unknown or missing:
            problems = ([f"missing keys {sorted(missing)}"] if missing else []) + (
                [f"unknown keys {sorted(unknown)} (known: {sorted(EVENT_KEYS)})"] if unknown else [])
            raise ConfigurationError(f"{here}: {', '.join(problems)}")
        name = str(event.get("name") or f"{event['attack']}_{i + 1}")
        attacks.append(make_attack(event, name, seed * 1000 + i, here))
    names = [a.name for a in attacks]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{where}: event names must be unique, got {names}")
    return attacks


def make_attack(event: Mapping[str, Any], name: str, seed: int, where: str) -> Attack:
    """One attack from a scenario event (``attack``, ``target``, ``at``, ``duration``,
    ``params``, ``traits``), with a clear error naming the event."""
    cls = attack_class(str(event["attack"]), where)
    start = _seconds(event["at"], "at", where)
    duration = None if event.get("duration") is None else _seconds(event["duration"], "duration", where)
    try:
        attack = cls(name=name, target=str(event["target"]), start=start, duration=duration,
                     seed=seed, **dict(event.get("params") or {}))
        attack.traits = Traits.parse(event.get("traits"), where)
    except TypeError as exc:
        raise ConfigurationError(f"{where}: bad parameters for '{event['attack']}': {exc}") from None
    except (CosimError, ValueError) as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    return attack


def _seconds(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigurationError(f"{where}: {key} must be a number of seconds, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where}: {key} must be a number of seconds, got {value!r}") from None


class Campaign(Observer):
    """Installs a scenario's attacks on a master and keeps the ground truth.

    Attacks with the ``persistence`` trait get a watchdog: every ``period_s`` inside their
    window, whatever they installed and is gone (a manipulator removed, a conduit hook
    removed or rolled back with a snapshot) is installed again, and a ``rearmed`` event is
    recorded.
    """

    def __init__(self, attacks: Sequence[Attack]) -> None:
        self.attacks = list(attacks)
        self.ground_truth = GroundTruth([i for a in self.attacks for i in a.intervals()])

    def on_start(self, master: Master) -> None:
        for attack in self.attacks:
            try:
                attack.install(master)
            except CosimError as exc:
                raise ConfigurationError(f"attack '{attack.name}' on '{attack.target}': {exc}") from None
            for part in attack.parts():
                if part.traits.persistence is not None:
                    self._watch(master, part)

    @staticmethod
    def _watch(master: Master, attack: Attack) -> None:
        period = max(1, round(float(attack.traits.persistence.get("period_s", 1.0)) / master.grid.base_step))
        start, _ = attack.ticks(master)

        def watchdog(tick: int) -> None:
            if tick >= start and (tick - start) % period == 0 and attack.active(master, tick):
                n = attack.rearm()
                if n:
                    attack.record(master.grid.time(tick), "rearmed", items=n)

        master.add_observer(Timer(watchdog))

    @property
    def events(self) -> list[dict[str, Any]]:
        """Observable events of every attack, in time order."""
        return sorted((e for a in self.attacks for p in a.parts() for e in p.events), key=lambda e: e["t"])

    def summary(self) -> dict[str, Any]:
        return {"attacks": self.ground_truth.as_list(), "events": self.events}
