"""Run a plant alone (no twin, no attack) and write the recorded signals.

    python -m experiments.simulate                      # the default plant
    python -m experiments.simulate plant=demo duration=5
    python -m experiments.simulate plant=ssp plant.path=/abs/path/cell.ssp plant.base_step=0.01

Outputs go to the Hydra run directory: ``trace.csv``, ``trace.parquet`` and ``simulate.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cosim.core.observer import Recorder
from cosim.errors import ConfigurationError, CosimError
from cosim.tracking.plots import timeline
from cosim.tracking.progress import Progress
from experiments.plant import (
    build_system,
    frozen_heap,
    instantiate_observer,
    plant_observers,
    recording,
    register_resolvers,
)

register_resolvers()


def simulate(cfg: DictConfig, out_dir: Path) -> dict[str, object]:
    """Build the plant of ``cfg``, run it, write traces, plot and pictures; return a summary."""
    built = build_system(cfg, *recording(cfg))
    spec, master = built.spec, built.master
    duration = cfg.duration if cfg.get("duration") is not None else spec.stop_time
    if duration is None:
        master.terminate()
        raise ConfigurationError("no duration: set duration=... (the plant gives no stop time)")
    recorder = master.observers[0]
    assert isinstance(recorder, Recorder)
    observers = plant_observers(cfg.plant)
    if built.sync is not None:
        observers["twin"] = built.sync
    attack = cfg.get("attack")
    if attack is not None and attack.get("events"):
        from cosim.attacks import Campaign, load_scenario

        observers["attack"] = Campaign(load_scenario(OmegaConf.to_container(attack, resolve=True),
                                                     seed=int(cfg.seed)))
    if cfg.get("render") and cfg.render.enabled:
        observers["frames"] = instantiate_observer("render", cfg.plant.get("renderer"),
                                                   every=int(cfg.render.every_ticks),
                                                   width=int(cfg.render.width), height=int(cfg.render.height))
    for observer in observers.values():
        master.add_observer(observer)
    t0 = time.perf_counter()
    try:
        with frozen_heap():
            result = master.run(duration=float(duration) - (master.time - spec.start_time),
                                progress=Progress(f"simulate {spec.name}", cfg.progress))
    finally:
        wall = time.perf_counter() - t0
        files = {}
        if "csv" in cfg.record.formats:
            files["csv"] = str(recorder.write_csv(out_dir / "trace.csv"))
        if "parquet" in cfg.record.formats:
            files["parquet"] = str(recorder.write_parquet(out_dir / "trace.parquet"))
        master.terminate()
    sim_time = master.time - spec.start_time
    summary: dict[str, object] = {
        "status": "FINISHED",
        "plant": spec.name,
        "units": [u.name for u in spec.units],
        "ticks": result.end_tick,
        "sim_time_s": sim_time,
        "wall_time_s": wall,
        "realtime_factor": sim_time / wall if wall > 0 else None,
        "completed": result.completed,
        "stopped_by": str(result.discarded) if result.discarded else None,
        "samples": len(recorder.rows),
    }
    events: list[dict[str, object]] = []
    intervals: dict[str, list[list[float]]] = {}
    for name, observer in observers.items():
        if hasattr(observer, "summary"):
            summary[name] = observer.summary()
        events += list(getattr(observer, "events", []))
        if getattr(observer, "downtime", None):
            intervals["downtime"] = list(observer.downtime)
        if hasattr(observer, "write"):
            files.update(observer.write(out_dir))
    panels = cfg.plant.get("plot_panels")
    if cfg.get("plot", True) and panels:
        files["timeline"] = str(timeline(recorder.as_dict(), OmegaConf.to_container(panels),
                                         out_dir / "timeline.png", events=events, intervals=intervals,
                                         title=f"{spec.name}: {sim_time:.0f} s simulated"))
    summary["files"] = files
    (out_dir / "simulate.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def print_table(summary: dict[str, object], indent: str = "") -> None:
    """Print a summary as an aligned two-column table (nested dicts indented)."""
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            print(f"{indent}{key}")
            print_table(value, indent + "  ")
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        print(f"{indent}{key:<{width}}  {value}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="simulate")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = simulate(cfg, out_dir)
    except (CosimError, OmegaConfBaseException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "simulate.json").write_text(json.dumps({"status": "FAILED", "error": str(exc)}, indent=2))
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return  # the sweep goes on with its other jobs
        sys.exit(1)
    print_table(summary)


if __name__ == "__main__":
    main()
