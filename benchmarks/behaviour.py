"""Does a change keep the episodes' behaviour? Record reference episodes, then compare two records.

A speed-up must not change what an episode does. ``record`` runs a few full episodes (each
attack under ``dt_framework`` and ``cps_only``, one seed) and writes what they produced:
traces, alerts, audit trails and summaries, with every wall-time figure left out (and the
audit hashes chained over them). ``compare`` says whether two such records are identical, to
the bit, file by file. ``--tree`` records another checkout (a ``git worktree`` of the commit
before the change), so both records come from this script::

    git worktree add /tmp/before HEAD~1
    .venv/bin/python benchmarks/behaviour.py record /tmp/ref --tree /tmp/before
    .venv/bin/python benchmarks/behaviour.py record /tmp/new
    .venv/bin/python benchmarks/behaviour.py compare /tmp/ref /tmp/new [--tolerance 1e-9]

``--tolerance`` accepts numbers (in JSON and in CSV cells) that differ by at most that much,
for a change that is meant to round differently (a C kernel for a numpy computation) but to
do the same thing: every alarm, action and count must still be the same.

Detector models, FMUs and keys come from the usual places (the cache root ``COSIM_CACHE_DIR``
or ``COSIM_DETECTOR_DIR`` and ``COSIM_FMU_CACHE``, and ``COSIM_KEY_DIR``); point both records at
the same ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ATTACKS = ("injection", "spoofing", "mitm", "replay", "dos", "poisoning")
DEFENSES = ("dt_framework", "cps_only")
#: keys left out besides those naming a wall time: derived from wall time, where files were
#: written, and the audit fields chained over records that contain wall times
_DROP = frozenset({"realtime_factor", "files", "hash", "prev", "audit_head", "audit_log"})


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if "wall" not in k and k not in _DROP}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def comparable(path: Path) -> Any:
    """What of a recorded file must not change: JSON without wall times and chained hashes, text as is."""
    text = path.read_text()
    if path.suffix == ".json":
        return _strip(json.loads(text))
    if path.suffix == ".jsonl":
        return [_strip(json.loads(line)) for line in text.splitlines() if line]
    return text


def record(out: Path, tree: Path, attacks: list[str], defenses: list[str], seconds: float, seed: int) -> None:
    sys.path.insert(0, str(tree))
    from hydra import compose, initialize_config_dir

    import experiments.run
    from experiments.run import resolve_detector, run_episode

    print(f"recording the episodes of {Path(experiments.run.__file__).parents[1]}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    for attack in attacks:
        for defense in defenses:
            with initialize_config_dir(config_dir=str(tree / "conf"), version_base="1.3"):
                cfg = compose("run", overrides=[
                    "progress=false", "plot=false", "baseline.enabled=false", "record.formats=[csv]",
                    "mlflow.enabled=false", f"attack={attack}", f"defense={defense}", f"duration={seconds}",
                    f"seed={seed}"])
            resolve_detector(cfg)
            name = f"{attack}_{defense}"
            with tempfile.TemporaryDirectory() as tmp:
                ep = run_episode(cfg, Path(tmp))
                (out / f"{name}.summary.json").write_text(json.dumps(ep.summary, indent=1, sort_keys=True, default=str))
                for f in sorted(Path(tmp).iterdir()):
                    if f.suffix in (".csv", ".jsonl"):
                        (out / f"{name}.{f.name}").write_bytes(f.read_bytes())
            print(f"{name}: f1={ep.summary.get('f1')} realtime_factor={ep.summary.get('realtime_factor'):.1f}",
                  flush=True)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def same(x: Any, y: Any, tolerance: float = 0.0) -> bool:
    """``x == y``, numbers within ``tolerance`` (CSV text compared cell by cell)."""
    if tolerance <= 0.0:
        return x == y
    if isinstance(x, str) and isinstance(y, str) and "\n" in x:
        rows_x, rows_y = x.splitlines(), y.splitlines()
        return len(rows_x) == len(rows_y) and all(
            same(cx, cy, tolerance) for rx, ry in zip(rows_x, rows_y, strict=True)
            for cx, cy in _cells(rx, ry))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k], tolerance) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(same(u, v, tolerance) for u, v in zip(x, y, strict=True))
    nx, ny = _number(x), _number(y)
    if nx is not None and ny is not None:
        return nx == ny or abs(nx - ny) <= tolerance
    return x == y


def _cells(rx: str, ry: str) -> list[tuple[str, str]]:
    cx, cy = rx.split(","), ry.split(",")
    return list(zip(cx, cy, strict=True)) if len(cx) == len(cy) else [(rx, ry)]


def compare(a: Path, b: Path, tolerance: float = 0.0) -> list[str]:
    """Names of the files of ``a`` that ``b`` lacks or records differently (empty: identical;
    numbers within ``tolerance`` count as the same)."""
    differ = []
    for f in sorted(a.iterdir()):
        g = b / f.name
        if not g.is_file():
            differ.append(f"{f.name} (missing)")
        elif not same(comparable(f), comparable(g), tolerance):
            differ.append(f.name)
    differ += [f"{g.name} (extra)" for g in sorted(b.iterdir()) if not (a / g.name).exists()]
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the reference episodes into a directory")
    rec.add_argument("out", type=Path)
    rec.add_argument("--tree", type=Path, default=REPO, help="the checkout to run (default: this one)")
    rec.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    rec.add_argument("--defenses", nargs="+", default=list(DEFENSES))
    rec.add_argument("--seconds", type=float, default=70.0)
    rec.add_argument("--seed", type=int, default=3)
    cmp = sub.add_parser("compare", help="compare two records; exit 1 when they differ")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.add_argument("--tolerance", type=float, default=0.0,
                     help="numbers differing by at most this much count as the same (default: to the bit)")
    args = parser.parse_args()
    if args.command == "record":
        record(args.out, args.tree.resolve(), args.attacks, args.defenses, args.seconds, args.seed)
        return
    differ = compare(args.a, args.b, args.tolerance)
    for name in differ:
        print(f"differs: {name}")
    same_as = "identical" if args.tolerance <= 0 else f"the same within {args.tolerance:g}"
    print(same_as if not differ else f"{len(differ)} file(s) differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
