"""Online scoring cost per sample, inside the co-simulation loop and against scikit-learn.

    python -m benchmarks.detection_online [--duration 60] [--detector dt]

Runs the cell with its twin and network for ``--duration`` simulated seconds with the
detectors of ``conf/detector/<detector>.yaml`` (fitted models from ``experiments.fit``) and
reports, per detector, the wall time per scored sample (feature extraction + model +
alarm logic), and for the stacked ensemble the same samples scored one by one through
``pipeline.predict_proba`` (scikit-learn's own path) — the ratio is measured in one run —
and, in a tight loop over those samples, the model alone in its three forms: scikit-learn,
the numpy form (``cosim.detection.fast``) and the C kernel (``cosim.detection.native``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from cosim.detection import AlertBus
from cosim.detection.fast import compile_stack
from cosim.detection.models import StackedModel
from cosim.detection.online import OnlineDetector
from cosim.episode import EpisodeContext
from experiments.plant import build_system, register_resolvers

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--detector", default="dt")
    args = parser.parse_args()
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("fit", overrides=[f"detector={args.detector}"])
    built = build_system(cfg)
    master, sync = built.master, built.sync
    assert sync is not None
    master.add_observer(sync)
    ctx = EpisodeContext(bus=AlertBus(), twin=sync, layout=built.layout)
    detectors = []
    for entry in cfg.detector.detectors.values():
        det = OnlineDetector(str(entry.name), str(entry.model), dict(entry.features), int(entry.every_ticks))
        det.attach(ctx)
        master.add_observer(det)
        detectors.append(det)
    t0 = time.perf_counter()
    master.run(duration=args.duration)
    wall = time.perf_counter() - t0
    master.terminate()
    print(f"{args.duration:.0f} s simulated in {wall:.2f} s wall ({args.duration / wall:.1f}x real time)")
    print(f"{'detector':<16} {'samples':>8} {'us/sample':>10} {'sklearn us/sample':>18} {'ratio':>7}")
    for det in detectors:
        summary = det.summary()
        ours = summary["wall_us_per_sample"]
        ref = ""
        ratio = ""
        if isinstance(det.model, StackedModel):
            z = det.model.prepare([np.vstack(det.rows)])[0][:, det.model.keep]
            t1 = time.perf_counter()
            for row in z:
                det.model.pipeline.predict_proba(row.reshape(1, -1))
            sk = 1e6 * (time.perf_counter() - t1) / len(z)
            ref, ratio = f"{sk:.0f}", f"{ours / sk:.3f}"
        print(f"{det.name:<16} {summary['samples']:>8} {ours:>10.1f} {ref:>18} {ratio:>7}")
    for det in detectors:
        if isinstance(det.model, StackedModel):
            _model_forms(det.model, np.vstack(det.rows))


def _model_forms(model: StackedModel, rows: np.ndarray) -> None:
    """The stacked model alone on the episode's samples: scikit-learn, numpy form, C kernel."""
    from cosim.detection.native import compile_native

    z = model.prepare([rows])[0][:, model.keep]
    forms = {"scikit-learn": lambda r: model.pipeline.predict_proba(r.reshape(1, -1))[0],
             "numpy form": compile_stack(model.pipeline), "C kernel": compile_native(model.pipeline)}
    print(f"stacked model alone, {len(z)} samples, tight loop:")
    for name, proba in forms.items():
        if proba is None:
            print(f"  {name:<14} unavailable")
            continue
        t0 = time.perf_counter()
        for row in z:
            proba(row)
        print(f"  {name:<14} {1e6 * (time.perf_counter() - t0) / len(z):8.1f} us/sample")


if __name__ == "__main__":
    main()
