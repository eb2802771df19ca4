"""Real-time factor of the smart-factory cell: alone, with its twin, with twin and network.

Runs ``plant=smart_factory`` for ``--seconds`` of simulated time with its recorder (the
plant's signals at its record interval) and its production monitor, best of ``--repeat``
interleaved runs:

* the cell alone (no twin, no attack), for each robot, and without recorder and monitor
  (the ratio shows what observing costs);
* the cell with its twin (``twin=replica``, with the twin's synchroniser);
* the cell with its twin and the interface layer (``network=cell``).

    .venv/bin/python benchmarks/cell_realtime.py [--seconds 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from experiments.plant import build_system, plant_observers, register_resolvers

REPO = Path(__file__).resolve().parents[1]


def run(robot: str, seconds: float, observe: bool, twin: bool = False, network: bool = False) -> tuple[float, int]:
    overrides = ["plant=smart_factory", f"plant.robot={robot}", f"twin={'replica' if twin else 'none'}",
                 f"network={'cell' if network else 'none'}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=overrides)
    built = build_system(cfg, list(cfg.plant.record) if observe else False, int(cfg.plant.record_interval))
    master = built.master
    monitor = None
    if observe:
        monitor = plant_observers(cfg.plant)["monitor"]
        master.add_observer(monitor)
    if built.sync is not None:
        master.add_observer(built.sync)
    t0 = time.perf_counter()
    master.run(duration=seconds)
    wall = time.perf_counter() - t0
    parts = monitor.summary()["parts_completed"] if monitor is not None else -1
    master.terminate()
    return wall, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    register_resolvers()
    figures: dict[str, object] = {"machine": platform.platform(), "sim_seconds": args.seconds}
    for robot in ("kuka", "panda"):
        walls_on, walls_off, parts = [], [], 0
        for _ in range(args.repeat):  # interleaved, best of each
            w, parts = run(robot, args.seconds, observe=True)
            walls_on.append(w)
            walls_off.append(run(robot, args.seconds, observe=False)[0])
        figures[f"{robot}_realtime_factor_recorder_on"] = args.seconds / min(walls_on)
        figures[f"{robot}_realtime_factor_bare"] = args.seconds / min(walls_off)
        figures[f"{robot}_observing_cost_ratio"] = min(walls_on) / min(walls_off)
        figures[f"{robot}_parts_completed"] = parts
    alone, twin, both = [], [], []
    for _ in range(args.repeat):
        alone.append(run("kuka", args.seconds, observe=True)[0])
        twin.append(run("kuka", args.seconds, observe=True, twin=True)[0])
        both.append(run("kuka", args.seconds, observe=True, twin=True, network=True)[0])
    figures["kuka_cell_alone_realtime_factor"] = args.seconds / min(alone)
    figures["kuka_cell_twin_realtime_factor"] = args.seconds / min(twin)
    figures["kuka_cell_twin_network_realtime_factor"] = args.seconds / min(both)
    figures["twin_cost_ratio"] = min(twin) / min(alone)
    figures["network_cost_ratio"] = min(both) / min(twin)
    for key, value in figures.items():
        print(f"{key:<38} {value:.4g}" if isinstance(value, float) else f"{key:<38} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
