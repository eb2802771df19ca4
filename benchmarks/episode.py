"""Real-time factor of a full episode against the cell alone, and wall time of a sweep.

In one process, interleaved, best of ``--repeat``:

* the cell alone: ``plant=smart_factory`` with its recorder and monitor, no twin, no
  network, no attack, no detector, no defence;
* the full episode of ``experiments.run``: cell + twin + network + attack + detectors +
  defence (``--defense``, default ``dt_framework``; its detector models must be fitted),
  simulation loop only (no baseline, no plots, no MLflow).

With ``--ids-forms`` it alternates, in one process, full episodes whose stacked IDS scores
through its C kernel (``cosim.detection.native``) and through the numpy form it falls back to
(``--repeat`` pairs), and reports both and their ratio.

With ``--instructions`` it counts instead, under valgrind's callgrind, the machine
instructions the simulation loop of one full episode executes per simulated second (setup
excluded), for this checkout and with ``--against TREE`` for another one (a ``git worktree`` of
the commit before a change), and their ratio. Unlike wall time, the count is the same from
run to run whatever else the machine does: it measures a change on a noisy machine (it does
not see memory stalls, and runs the loop ~50x slower). Needs ``valgrind`` and
``callgrind_control`` on the PATH.

With ``--fresh N`` each episode runs instead as the first of a fresh process (what
``experiments.run`` and every sweep job do), N of each alternated, and the range and median
are reported; with ``--against TREE`` full episodes of this checkout and of TREE alternate
instead, and the ratio within each pair is reported (the machine's speed drifts, so only
alternated runs compare). With ``--sweep`` it also runs ``python -m experiments.run -m
experiment=paper_table`` (or ``--experiment``) in a subprocess with a throw-away MLflow store
and reports its wall time.

    .venv/bin/python benchmarks/episode.py [--seconds 60] [--repeat 2] [--defense dt_framework]
    .venv/bin/python benchmarks/episode.py --fresh 10 [--against /tmp/before]
    .venv/bin/python benchmarks/episode.py --ids-forms --repeat 6
    .venv/bin/python benchmarks/episode.py --instructions --seconds 10 [--against /tmp/before]
    .venv/bin/python benchmarks/episode.py --instructions --set plant.units.cell.solver_iterations=5 \
        --set detector=dt --set detector.model_dir=.cache/detectors/<setting>   # a plant setting changes
        # the detectors' setting key: point them at fitted ones, or the episode fits its own first
    .venv/bin/python benchmarks/episode.py --sweep [--experiment paper_table]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
# --tree (one episode of another checkout, for --instructions --against) is read before the
# project's modules are imported, so that they come from that checkout
TREE = Path(sys.argv[sys.argv.index("--tree") + 1]).resolve() if "--tree" in sys.argv[:-1] else REPO
sys.path.insert(0, str(TREE))

from experiments.run import resolve_detector, run_episode  # noqa: E402


def episode(overrides: list[str], out_dir: Path) -> dict[str, float]:
    with initialize_config_dir(config_dir=str(TREE / "conf"), version_base="1.3"):
        cfg = compose("run", overrides=["progress=false", "plot=false", "baseline.enabled=false",
                                        "record.formats=[]", "mlflow.enabled=false", *overrides])
    resolve_detector(cfg)
    ep = run_episode(cfg, out_dir)
    return {"sim_s": ep.summary["sim_time_s"], "wall_s": ep.summary["wall_time_s"],
            "rtf": ep.summary["realtime_factor"]}


def sweep(experiment: str, extra: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        cmd = [sys.executable, "-m", "experiments.run", "-m", f"experiment={experiment}", "progress=false",
               f"hydra.sweep.dir={tmp}/sweep", *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        jobs = [json.loads(p.read_text()) for p in Path(tmp, "sweep").glob("*/summary.json")]
    failed = [j for j in jobs if j.get("status") != "FINISHED"]
    return {"experiment": experiment, "wall_s": round(wall, 1), "jobs": len(jobs), "failed": len(failed),
            "first_error": failed[0].get("error") if failed else None, "exit": proc.returncode,
            "episode_wall_mean_s": round(sum(j["wall_time_s"] or 0 for j in jobs) / max(len(jobs), 1), 2)}


def _set_args(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides, passed on to an episode's own process."""
    return [f"--set={o}" for o in args.set]


def fresh(args: argparse.Namespace) -> dict[str, object]:
    """``--fresh``: each episode the first of its own process, the two kinds alternated (with
    ``--against``: full episodes of this checkout and of the other one)."""
    base = [sys.executable, str(Path(__file__).resolve()), "--seconds", str(args.seconds),
            "--defense", args.defense, "--attack", args.attack, *_set_args(args)]
    if args.against:
        return fresh_against(args, base)
    rtf: dict[str, list[float]] = {"cell_alone": [], "full_episode": []}
    for _ in range(args.fresh):
        for name in rtf:
            out = subprocess.run([*base, "--one", name], cwd=REPO, capture_output=True, text=True, check=True)
            rtf[name].append(json.loads(out.stdout.strip().splitlines()[-1])["rtf"])
    result: dict[str, object] = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                                 "seconds": args.seconds, "defense": args.defense, "attack": args.attack,
                                 "set": args.set, "processes": args.fresh, "target_rtf": 30.0}
    for name, values in rtf.items():
        result[f"{name}_rtf"] = {"min": round(min(values), 1), "median": round(statistics.median(values), 1),
                                 "max": round(max(values), 1)}
    result["full_over_alone_median"] = round(statistics.median(
        a / f for a, f in zip(rtf["cell_alone"], rtf["full_episode"], strict=True)), 2)
    return result


def fresh_against(args: argparse.Namespace, base: list[str]) -> dict[str, object]:
    """``--fresh N --against TREE``: full episodes of this checkout and of TREE, each the first
    of a fresh process, alternated N times; their ranges, medians and per-pair ratios."""
    trees = {"this": REPO, "against": args.against.resolve()}
    rtf: dict[str, list[float]] = {"this": [], "against": []}
    for i in range(args.fresh):
        for name in (("against", "this") if i % 2 else ("this", "against")):  # neither always goes first
            out = subprocess.run([*base, "--one", "full_episode", "--tree", str(trees[name])], cwd=trees[name],
                                 capture_output=True, text=True, check=True)
            rtf[name].append(json.loads(out.stdout.strip().splitlines()[-1])["rtf"])
    ratios = [t / a for t, a in zip(rtf["this"], rtf["against"], strict=True)]
    result: dict[str, object] = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                                 "seconds": args.seconds, "defense": args.defense, "attack": args.attack,
                                 "set": args.set, "pairs": args.fresh, "against": str(trees["against"]),
                                 "target_rtf": 30.0}
    for name, values in rtf.items():
        result[f"{name}_rtf"] = {"min": round(min(values), 1), "median": round(statistics.median(values), 1),
                                 "max": round(max(values), 1), "at_or_above_target": sum(v >= 30.0 for v in values)}
    result["this_over_against"] = {"median": round(statistics.median(ratios), 3),
                                   "faster_pairs": sum(r > 1.0 for r in ratios)}
    return result


def ids_forms(full: list[str], repeat: int) -> dict[str, object]:
    """``--ids-forms``: full episodes with the stacked IDS's C kernel and its numpy form, alternated."""
    import cosim.detection.native as native

    compile_native = native.compile_native
    rtf: dict[str, list[float]] = {"c_kernel": [], "numpy_form": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            for name in rtf:
                native.compile_native = compile_native if name == "c_kernel" else (lambda pipeline: None)
                try:
                    rtf[name].append(episode(full, Path(tmp) / f"{name}{i}")["rtf"])
                finally:
                    native.compile_native = compile_native
    result: dict[str, object] = {name: {"median_rtf": round(statistics.median(v), 1), "rtf": [round(x, 1) for x in v]}
                                 for name, v in rtf.items()}
    result["pair_ratio_median"] = round(statistics.median(
        c / n for c, n in zip(rtf["c_kernel"], rtf["numpy_form"], strict=True)), 3)
    return result


def _count_loop_instructions() -> None:
    """In a process under callgrind started with instrumentation off: switch it on for the
    simulation loop (``Master.run``) only."""
    from cosim.core.master import Master

    run = Master.run

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        toggle = ["callgrind_control", "-i"]
        subprocess.run([*toggle, "on", str(os.getpid())], capture_output=True, check=True)
        try:
            return run(self, *args, **kwargs)
        finally:
            subprocess.run([*toggle, "off", str(os.getpid())], capture_output=True, check=True)

    Master.run = counted  # type: ignore[method-assign]


def instructions(args: argparse.Namespace) -> dict[str, object]:
    """``--instructions``: loop instructions per simulated second, here and ``--against``."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"error: --instructions needs {' and '.join(missing)} on the PATH")
    trees = {"this": REPO} | ({"against": args.against.resolve()} if args.against else {})
    per_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, tree in trees.items():
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={tmp}/{name}.out",
                   sys.executable, str(Path(__file__).resolve()), "--one", "full_episode", "--callgrind",
                   "--tree", str(tree), "--seconds", str(args.seconds), "--defense", args.defense,
                   "--attack", args.attack, *_set_args(args)]
            proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
            found = re.search(r"Collected : (\d+)", proc.stderr)
            if proc.returncode != 0 or found is None:
                raise SystemExit(f"error: the episode of {tree} under callgrind failed:\n{proc.stderr[-2000:]}")
            sim_s = json.loads(proc.stdout.strip().splitlines()[-1])["sim_s"]
            per_s[name] = int(found.group(1)) / sim_s
    result: dict[str, object] = {"machine": platform.processor() or platform.machine(), "seconds": args.seconds,
                                 "defense": args.defense, "attack": args.attack, "set": args.set,
                                 "instructions_per_sim_s": {k: round(v) for k, v in per_s.items()}}
    if "against" in per_s:
        result["against"] = str(trees["against"])
        result["this_over_against"] = round(per_s["this"] / per_s["against"], 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per episode")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--defense", default="dt_framework")
    parser.add_argument("--attack", default="injection")
    parser.add_argument("--sweep", action="store_true", help="also time the paper_table sweep")
    parser.add_argument("--experiment", default="paper_table")
    parser.add_argument("--sweep-args", nargs="*", default=[], help="extra overrides for the sweep")
    parser.add_argument("--fresh", type=int, default=0, metavar="N",
                        help="N episodes of each, every one the first of a fresh process")
    parser.add_argument("--ids-forms", action="store_true",
                        help="alternate full episodes with the stacked IDS's C kernel and its numpy form")
    parser.add_argument("--instructions", action="store_true",
                        help="count the loop's instructions per simulated second under callgrind")
    parser.add_argument("--against", type=Path,
                        help="with --instructions or --fresh: another checkout (e.g. a git worktree) to measure too")
    parser.add_argument("--one", choices=("cell_alone", "full_episode"), help=argparse.SUPPRESS)
    parser.add_argument("--callgrind", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override of the full episode (repeatable): what a setting costs")
    args = parser.parse_args()

    alone = ["twin=none", "network=none", "attack=none", "defense=none", f"duration={args.seconds}"]
    full = [f"attack={args.attack}", f"defense={args.defense}", f"duration={args.seconds}", *args.set]
    if args.one:  # one episode in this (fresh) process, for --fresh and --instructions
        if args.callgrind:
            _count_loop_instructions()
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(episode(alone if args.one == "cell_alone" else full, Path(tmp) / "e")))
        return
    if args.fresh:
        print(json.dumps(fresh(args), indent=2))
        return
    if args.instructions:
        print(json.dumps(instructions(args), indent=2))
        return
    if args.ids_forms:
        print(json.dumps(ids_forms(full, args.repeat), indent=2))
        return
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for name, overrides in (("cell_alone", alone), ("full_episode", full)):
                r = episode(overrides, Path(tmp) / f"{name}{i}")
                if name not in best or r["wall_s"] < best[name]["wall_s"]:
                    best[name] = r
    result: dict[str, object] = {
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "seconds": args.seconds, "defense": args.defense, "attack": args.attack, "set": args.set,
        "cell_alone_rtf": round(best["cell_alone"]["rtf"], 1),
        "full_episode_rtf": round(best["full_episode"]["rtf"], 1),
        "full_over_alone_wall": round(best["full_episode"]["wall_s"] / best["cell_alone"]["wall_s"], 2),
        "target_rtf": 30.0,
    }
    if args.sweep:
        result["sweep"] = sweep(args.experiment, args.sweep_args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
