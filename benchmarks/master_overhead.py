"""Master overhead and per-step cost, reported as ratios measured in one run.

1. The demo plant's units (3 station FMUs — conveyor and press in C, inspection exported with
   pythonfmu — the KUKA arm in PyBullet, and the Python sequencer) at a 10 ms base step:
   a. stepped by our master (Jacobi, multi-rate as configured, no recorder);
   b. the same, recording 14 signals every step;
   c. a bare hand-written loop over the same FMU instances (fmpy's own API), the same
      PyBullet client and the same sequencer: the reference for our overhead.
   Reported: wall time, real-time factor, and the ratio master / bare loop.
2. One FMU (the conveyor) for N steps with every output recorded every step:
   our master against fmpy's ``simulate_fmu`` on the same grid; per-step cost and ratio.

Runs are interleaved and repeated; the best of ``--repeat`` is reported for each.

    .venv/bin/python benchmarks/master_overhead.py [--seconds 60] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pybullet
from fmpy import simulate_fmu
from hydra import compose, initialize_config_dir

from cosim import FMUUnit, Master, Recorder, TimeGrid
from cosim.units.bullet import BulletArm
from experiments.plant import plant_spec, register_resolvers
from models.build import build_fmu
from models.demo import DemoSequencer

REPO = Path(__file__).resolve().parents[1]
BASE_STEP = 0.01


def demo_spec() -> Any:
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=["plant=demo"])
    return cfg, plant_spec(cfg.plant)


def run_master(spec: Any, ticks: int, record: list[str] | None) -> float:
    master = spec.build(record=record if record else False)
    t0 = time.perf_counter()
    master.step(ticks)
    wall = time.perf_counter() - t0
    master.terminate()
    return wall


def run_bare(spec: Any, ticks: int) -> float:
    """The same units, stepped by hand: fmpy calls on the FMUs, PyBullet calls on the arm."""
    units = {u.name: u.factory() for u in spec.units}
    rates = {u.name: u.step_ticks for u in spec.units}
    seq: DemoSequencer = units["sequencer"]  # type: ignore[assignment]
    arm: BulletArm = units["arm"]  # type: ignore[assignment]
    conv, press, insp = (units[n] for n in ("conveyor", "press", "inspection"))
    for u in units.values():
        u.setup(TimeGrid(BASE_STEP))
    fc, fp, fi = conv._fmu, press._fmu, insp._fmu  # type: ignore[attr-defined]
    vr = {u.name: {v.name: v.valueReference for v in u.md.modelVariables} for u in (conv, press, insp)}  # type: ignore[attr-defined]
    c_in, p_in = [vr["conveyor"]["motor_cmd"]], [vr["press"]["valve_cmd"]]
    i_in_b, i_in_r = [vr["inspection"]["part_present"]], [vr["inspection"]["part_quality"]]
    client, body = arm.client, arm.body_id
    joints = list(arm.arm_joints)
    n = len(joints)
    sub = round(BASE_STEP / arm.physics_step)
    forces = [arm._forces[i] for i in range(n)]  # type: ignore[attr-defined]
    kps = [arm._kps[i] for i in range(n)]  # type: ignore[attr-defined]
    kds = [arm._kds[i] for i in range(n)]  # type: ignore[attr-defined]
    zero = [0.0] * n
    qnames = [f"q_target_{i}" for i in range(n)]
    insp_rate = rates["inspection"]
    sv = seq.values
    t0 = time.perf_counter()
    for k in range(ticks):
        t = k * BASE_STEP
        h = (k + 1) * BASE_STEP - t
        # Jacobi exchange: every due unit's inputs from outputs at the start of the tick
        fc.setReal(c_in, [sv["motor_cmd"]])
        fp.setBoolean(p_in, [sv["valve_cmd"]])
        if k % insp_rate == 0:
            fi.setBoolean(i_in_b, [sv["part_present"]])
            fi.setReal(i_in_r, [sv["part_quality"]])
        targets = [sv[q] for q in qnames]
        client.setJointMotorControlArray(body, joints, pybullet.POSITION_CONTROL, targetPositions=targets,
                                         targetVelocities=zero, forces=forces, positionGains=kps,
                                         velocityGains=kds)
        seq.do_step(t, h)
        fc.doStep(t, h)
        fp.doStep(t, h)
        if k % insp_rate == 0:
            fi.doStep(t, (k + insp_rate) * BASE_STEP - t)
        for _ in range(sub):
            client.stepSimulation()
        client.getJointStates(body, joints)
        client.getLinkState(body, joints[-1], 0, 1)
    wall = time.perf_counter() - t0
    for u in units.values():
        u.terminate()
    return wall


def one_fmu(steps: int) -> tuple[float, float]:
    path = build_fmu("conveyor")
    outputs = ["belt_speed", "belt_position", "belt_phase", "encoder_count", "motor_current"]
    stop = steps * BASE_STEP
    t0 = time.perf_counter()
    simulate_fmu(str(path), stop_time=stop, step_size=BASE_STEP, output_interval=BASE_STEP,
                 start_values={"motor_cmd": 0.5}, output=outputs)
    fmpy_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = Master(BASE_STEP)
    m.add_unit(FMUUnit("conveyor", path))
    m.set_input("conveyor.motor_cmd", 0.5)
    rec = m.add_observer(Recorder([f"conveyor.{o}" for o in outputs]))
    m.run(until_tick=steps)
    data = rec.as_dict()  # same end product as simulate_fmu: arrays of every column
    m.terminate()
    ours_wall = time.perf_counter() - t0
    assert len(data["time"]) == steps + 1
    return ours_wall, fmpy_wall


def best(fn: Callable[[], float], results: list[float]) -> None:
    results.append(fn())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per plant run")
    parser.add_argument("--fmu-steps", type=int, default=20000, help="steps of the single-FMU run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    cfg, spec = demo_spec()
    record = list(cfg.plant.record)
    ticks = round(args.seconds / BASE_STEP)
    runs: dict[str, list[float]] = {"master": [], "master+recorder": [], "bare": [], "fmu_ours": [], "fmu_fmpy": []}
    run_master(spec, 100, None)  # warm caches (FMU builds, imports)
    for _ in range(args.repeat):
        best(lambda: run_bare(spec, ticks), runs["bare"])
        best(lambda: run_master(spec, ticks, None), runs["master"])
        best(lambda: run_master(spec, ticks, record), runs["master+recorder"])
        ours, ref = one_fmu(args.fmu_steps)
        runs["fmu_ours"].append(ours)
        runs["fmu_fmpy"].append(ref)
    b = {k: min(v) for k, v in runs.items()}
    figures = {
        "machine": platform.platform(),
        "plant": "3 station FMUs (conveyor, press: C; inspection: pythonfmu) + KUKA arm + sequencer",
        "base_step_s": BASE_STEP,
        "sim_seconds": args.seconds,
        "bare_loop_wall_s": b["bare"],
        "master_wall_s": b["master"],
        "master_recorder_wall_s": b["master+recorder"],
        "overhead_ratio_master_vs_bare": b["master"] / b["bare"],
        "overhead_ratio_master_recorder_vs_bare": b["master+recorder"] / b["bare"],
        "realtime_factor_master": args.seconds / b["master"],
        "realtime_factor_master_recorder": args.seconds / b["master+recorder"],
        "realtime_factor_bare": args.seconds / b["bare"],
        "one_fmu_steps": args.fmu_steps,
        "one_fmu_ours_us_per_step": 1e6 * b["fmu_ours"] / args.fmu_steps,
        "one_fmu_fmpy_simulate_fmu_us_per_step": 1e6 * b["fmu_fmpy"] / args.fmu_steps,
        "one_fmu_ratio_ours_vs_fmpy": b["fmu_ours"] / b["fmu_fmpy"],
        "spread_master_rel": float(np.ptp(runs["master"]) / b["master"]),
        "spread_bare_rel": float(np.ptp(runs["bare"]) / b["bare"]),
    }
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
