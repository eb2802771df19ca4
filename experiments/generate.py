"""Labelled datasets from seeded runs of the cell under the attack library.

    python -m experiments.generate                         # conf/generate.yaml
    python -m experiments.generate out=/tmp/cell duration=60 seeds.test_attack=[3000,3001]

The default ``out`` is ``<cache root>/detectors/<plant>-<key>/data`` (:mod:`cosim.paths`;
``$COSIM_DETECTOR_DIR`` replaces ``<cache root>/detectors``; ``<key>`` hashes the plant, twin
and network config: :func:`experiments.plant.setting_key`), where ``experiments.fit`` given the same overrides
looks for it.

One run per seed: normal runs, and attack runs with one attack drawn from ``templates``
(kind, target, window and parameters drawn from the seed). Each run's features (physics as
the PLC sees it, twin residuals, network traffic; :mod:`cosim.detection.features`) and the
labels of each sample go to ``<out>/<split>_<seed>.parquet``; ``<out>/runs.json`` lists the
runs, their split, scenario and ground truth. Training and test seeds must be disjoint: the
split is by run, never by random rows.

Two label columns, both ``normal`` or the attack kind:

- ``label`` (interval label): the attack is active at the sample time (its scheduled window);
- ``effect`` (effect label): the attack is active *and* changed what its victim received in
  the sampling period ending at the sample: a manipulated value off the true one by more than
  the signal's scale (``plant.twin.scales``), any change for signals without a scale
  (commands); attacks that do not manipulate values on connections (DoS, sync...) have
  effect == interval. See :mod:`cosim.attacks.effect`.

Runs are recorded in ``workers`` forked processes (default: one per core); normal runs last
``normal_duration`` seconds (default ``duration``) so that false alarms per hour of normal
operation can be measured on enough held-out normal time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from cosim.core.observer import Observer
from cosim.detection.features import FeatureExtractor, FeatureSpec
from cosim.errors import ConfigurationError, CosimError
from experiments.plant import build_system, frozen_heap, plain, register_resolvers

register_resolvers()

SPLITS = ("train_normal", "train_attack", "test_normal", "test_attack")


class FeatureLog(Observer):
    """Records the feature vector every ``every_ticks`` (for datasets)."""

    def __init__(self, spec: FeatureSpec, twin: Any, every_ticks: int) -> None:
        self.extractor = FeatureExtractor(spec)
        self.twin = twin
        self.every = int(every_ticks)
        self.times: list[float] = []
        self.ticks: list[int] = []
        self.rows: list[np.ndarray] = []

    def on_start(self, master: Any) -> None:
        self._master = master
        self.names = self.extractor.bind(master, self.twin)

    def after_step(self, tick: int) -> None:
        if tick % self.every == 0:
            self.times.append(self._master.grid.time(tick))
            self.ticks.append(tick)
            self.rows.append(self.extractor.sample())


def draw(value: Any, rng: np.random.Generator) -> Any:
    """A template value: a constant, ``{uniform: [lo, hi]}`` or ``{choice: [...]}``."""
    if isinstance(value, Mapping):
        if set(value) == {"uniform"}:
            lo, hi = value["uniform"]
            return round(float(rng.uniform(float(lo), float(hi))), 3)
        if set(value) == {"choice"}:
            options = list(value["choice"])
            return options[int(rng.integers(len(options)))]
        return {k: draw(v, rng) for k, v in value.items()}
    return value


def draw_scenario(templates: Sequence[Mapping[str, Any]], window: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """One attack event for ``seed`` (template, window and parameters drawn from it)."""
    if not templates:
        raise ConfigurationError("generate: no attack templates")
    rng = np.random.default_rng([seed, 7])
    template = templates[seed % len(templates)]  # consecutive seeds cycle through the templates
    event = {"attack": template["attack"], "name": f"{template['attack']}_{seed}", "target": template["target"],
             "at": draw(window["start"], rng), "duration": draw(window["duration"], rng),
             "params": draw(dict(template.get("params") or {}), rng)}
    return {"name": f"drawn_{seed}", "events": [event]}


def record_run(cfg: DictConfig, seed: int, scenario: Mapping[str, Any] | None,
               duration: float | None = None) -> dict[str, Any]:
    """Run one seed (optionally under ``scenario``); return times, features, interval and
    effect labels, ground truth."""
    from cosim.attacks import Campaign, load_scenario
    from cosim.attacks.effect import EffectProbe

    run_cfg = cfg.copy()
    run_cfg.seed = int(seed)
    built = build_system(run_cfg)
    master, sync = built.master, built.sync
    if sync is not None:
        master.add_observer(sync)
    campaign = Campaign(load_scenario(scenario, seed=int(seed))) if scenario else None
    probe = None
    if campaign is not None:
        master.add_observer(campaign)
        twin_cfg = plain(cfg.plant.get("twin")) or {}
        probe = master.add_observer(EffectProbe(campaign, twin_cfg.get("scales") or {}))
    features = plain(cfg.features)
    log = FeatureLog(FeatureSpec(physics=list(features.get("physics") or []),
                                 residuals=bool(features.get("residuals")),
                                 network=list(features.get("network") or [])), sync, int(cfg.every_ticks))
    master.add_observer(log)
    try:
        with frozen_heap():
            master.run(duration=float(cfg.duration if duration is None else duration))
    finally:
        master.terminate()
    truth = campaign.ground_truth if campaign is not None else None
    labels = truth.labels(log.times) if truth is not None else ["normal"] * len(log.times)
    effect = probe.labels(log.ticks, log.every) if probe is not None else list(labels)
    return {"times": np.asarray(log.times), "X": np.vstack(log.rows), "names": log.names, "labels": labels,
            "effect": effect, "truth": truth.as_list() if truth is not None else [],
            "measured": dict(probe.measured) if probe is not None else {}}


def check_split(seeds: Mapping[str, Sequence[int]]) -> None:
    """Training and test seeds must be disjoint (and no seed twice)."""
    unknown = set(seeds) - set(SPLITS)
    if unknown:
        raise ConfigurationError(f"generate: unknown seed lists {sorted(unknown)}; lists are {list(SPLITS)}")
    seen: dict[int, str] = {}
    for split in SPLITS:
        for s in seeds.get(split) or []:
            if int(s) in seen:
                raise ConfigurationError(f"generate: seed {s} is in both '{seen[int(s)]}' and '{split}'; "
                                         "a run belongs to one split only")
            seen[int(s)] = split


def write_run(out: Path, name: str, run: Mapping[str, Any]) -> Path:
    import pandas as pd

    frame = pd.DataFrame(run["X"], columns=run["names"])
    frame.insert(0, "effect", run.get("effect", run["labels"]))
    frame.insert(0, "label", run["labels"])
    frame.insert(0, "time", run["times"])
    path = out / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return path


def _job(cfg: DictConfig, split: str, seed: int, scenario: Mapping[str, Any] | None, duration: float,
         out: Path) -> dict[str, Any]:
    run = record_run(cfg, seed, scenario, duration)
    name = f"{split}_{seed}"
    write_run(out, name, run)
    effect = [v != "normal" for v in run["effect"]]
    return {"name": name, "split": split.split("_")[0], "seed": seed, "scenario": scenario,
            "truth": run["truth"], "samples": len(run["times"]), "duration": duration,
            "effect_samples": int(sum(effect)), "attack_samples": int(sum(v != "normal" for v in run["labels"])),
            "effect_measured": run["measured"]}


def _workers(cfg: DictConfig, jobs: int) -> int:
    value = cfg.get("workers")
    n = (os.cpu_count() or 1) if value in (None, "auto") else int(value)
    return max(1, min(n, jobs)) if hasattr(os, "fork") else 1


def generate(cfg: DictConfig) -> dict[str, Any]:
    seeds = {k: [int(s) for s in v] for k, v in plain(cfg.seeds).items()}
    check_split(seeds)
    out = Path(str(cfg.out))
    out.mkdir(parents=True, exist_ok=True)
    templates = plain(cfg.templates)
    window = plain(cfg.attack_window)
    normal_s = cfg.get("normal_duration")
    jobs = []
    for split in SPLITS:
        for seed in seeds.get(split, []):
            attack = split.endswith("attack")
            scenario = draw_scenario(templates, window, seed) if attack else None
            duration = float(cfg.duration if attack or normal_s is None else normal_s)
            jobs.append((split, seed, scenario, duration))
    jobs_by_length = sorted(range(len(jobs)), key=lambda i: -jobs[i][3])  # longest first: the pool ends together
    t0 = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}

    def done(i: int, entry: dict[str, Any]) -> None:
        results[i] = entry
        sc = entry["scenario"]
        print(f"[{len(results)}/{len(jobs)}] {entry['name']}: {sc['events'][0]['attack'] if sc else 'normal'} "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    workers = _workers(cfg, len(jobs))
    if workers == 1:
        for i in jobs_by_length:
            done(i, _job(cfg, *jobs[i], out))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {pool.submit(_job, cfg, *jobs[i], out): i for i in jobs_by_length}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
    runs = [results[i] for i in range(len(jobs))]
    manifest = {"every_ticks": int(cfg.every_ticks), "duration": float(cfg.duration),
                "normal_duration": float(cfg.duration if normal_s is None else normal_s), "runs": runs,
                "plant": str(cfg.plant.name),
                "labels": {"label": "interval: the attack is active (its scheduled window)",
                           "effect": "effect: the attack is active and changed what its victim received "
                                     "(cosim.attacks.effect)"}}
    (out / "runs.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    try:
        manifest = generate(cfg)
    except (CosimError, OmegaConfBaseException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"{len(manifest['runs'])} runs written to {cfg.out}")


if __name__ == "__main__":
    main()
