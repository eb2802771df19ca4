"""Building the cell with a campaign in-process, and probing it after every step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cosim.attacks import Campaign, load_scenario
from cosim.core.observer import Observer
from experiments.plant import network_factory, register_resolvers, system_spec

REPO = Path(__file__).resolve().parents[2]
register_resolvers()


def config(overrides: Sequence[str] = ()) -> Any:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("simulate", overrides=["plant=smart_factory", *overrides])


class Probe(Observer):
    """Calls ``fn(master, tick)`` after every step and keeps what it returns."""

    def __init__(self, fn: Callable[[Any, int], Any]) -> None:
        self.fn, self.rows, self.master = fn, [], None

    def on_start(self, master: Any) -> None:
        self.master = master

    def after_step(self, tick: int) -> None:
        self.rows.append(self.fn(self.master, tick))


def build(events: list[dict] | None = None, *, twin: bool = True, network: bool = True,
          record: Sequence[str] | bool = False, overrides: Sequence[str] = (), seed: int = 0,
          scenario: Any = None) -> tuple[Any, Campaign]:
    """The cell (with twin and network by default) and a campaign of ``events`` (or of the
    ``attack`` group of the composed config when ``scenario`` is ``"config"``)."""
    cfg = config([f"twin={'replica' if twin else 'none'}", f"network={'cell' if network else 'none'}",
                  f"seed={seed}", *overrides])
    if scenario == "config":
        scenario = OmegaConf.to_container(cfg.attack, resolve=True)
    campaign = Campaign(load_scenario(scenario if scenario is not None else {"events": events or []}, seed=seed))
    spec, _ = system_spec(cfg)
    master = spec.build(record=list(record) if not isinstance(record, bool) else record,
                        network=network_factory(cfg))
    master.add_observer(campaign)
    return master, campaign


def run(events: list[dict] | None, duration: float, probe: Callable[[Any, int], Any] | None = None,
        **kwargs: Any) -> tuple[dict[str, np.ndarray], Campaign, list[Any], Any]:
    """Run ``duration`` seconds; returns the recording, the campaign, the probe rows and the
    network statistics at the end."""
    master, campaign = build(events, **kwargs)
    rows: list[Any] = []
    if probe is not None:
        p = master.add_observer(Probe(probe))
        rows = p.rows
    master.run(duration=duration)
    data = master.observers[0].as_dict() if kwargs.get("record") else {}
    stats = master.network.stats() if master.network is not None else {}
    master.terminate()
    return data, campaign, rows, stats


def times(n: int, dt: float = 0.01) -> np.ndarray:
    """Times of probe rows (row i is taken after step i, at tick i + 1)."""
    return (np.arange(n) + 1) * dt
