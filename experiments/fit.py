"""Fit the online detectors of a detector config on a generated dataset, and score them on
its held-out runs.

    python -m experiments.generate                        # the dataset (train and test seeds)
    python -m experiments.fit detector=dt                  # fit, save, evaluate
    python -m experiments.fit detector=cps

A validation split is carved from the *training* runs (by run: every ``validation_every``-th
training run of each kind, normal and attack, by seed); the test runs never take part in
fitting or tuning. Unsupervised models (CUSUM on twin residuals, static limits) learn from the
remaining training normal runs, the supervised stacked ensemble from all remaining training
runs (with the labels of ``fit.labels``); the first ``fit.warmup_s`` seconds of every run are
left out of fitting, and the models raise no alarm in them online either. Then each model's
threshold, ``confirm`` and ``hold`` are chosen on the validation runs (``tune``): the combined
alarm (any detector) with the highest point-wise F1 under effect labels among the settings
whose false alarms on validation stay within ``fit.fa_budget_per_hour``.

Scores come from the test split alone (other seeds, other drawn attacks), under both label
definitions (``label``: interval, the attack is active; ``effect``: it also changed what its
victim received). The report (``<name>_report.json`` and ``.md`` beside the models) gives,
per attack kind and overall: point-wise precision, recall, F1 and accuracy, event recall,
median detection delay, false alarms per hour (every alarm onset while no attack is active,
and with ``fit.grace_s`` — onsets within that grace after an attack's end counted with the
attack), and false alarms per hour on the held-out *normal* runs alone (normal operation).
"""

from __future__ import annotations

import fnmatch
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from cosim.detection.metrics import effect_intervals, false_alarm_onsets, pointwise, score_run
from cosim.detection.models import MODELS, AlarmFilter, DetectionModel
from cosim.errors import ConfigurationError, CosimError
from experiments.plant import plain, register_resolvers

register_resolvers()
NORMAL = "normal"
LABELS = {"label": "interval", "effect": "effect"}  # dataset column -> name of the definition

#: How the fit is run when a detector config has no ``fit`` section.
FIT_DEFAULTS: dict[str, Any] = {"labels": "effect", "validation_every": 3, "validation_normal_every": None,
                                "warmup_s": 0.0, "grace_s": 0.0, "fa_budget_per_hour": 1.0, "tune": True,
                                "objective_kinds": None}
#: Candidate settings tried on the validation runs, per model type (``models.<key>.tune`` overrides).
TUNE_GRID: dict[str, dict[str, list[float]]] = {
    "cusum": {"threshold": [0.6, 0.8, 1.0, 1.2, 1.4, 1.7], "confirm": [1, 2, 3], "hold": [0, 4, 10, 20]},
    "limits": {"threshold": [0.0, 0.05, 0.1, 0.25, 0.5, 1.0], "confirm": [1, 2, 3], "hold": [0, 2, 10, 20]},
    "stacked": {"threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], "confirm": [1, 2, 3, 4, 6],
                "hold": [0, 2, 4, 10, 20]},
}


def load_dataset(data: str | Path) -> list[dict[str, Any]]:
    """The runs of a generated dataset, each with its table (pandas), split, seed and truth."""
    import pandas as pd

    root = Path(data)
    manifest = root / "runs.json"
    if not manifest.is_file():
        raise ConfigurationError(f"dataset '{root}': no runs.json (make one with python -m experiments.generate "
                                 f"out={root})")
    runs = json.loads(manifest.read_text())["runs"]
    for run in runs:
        path = root / f"{run['name']}.parquet"
        if not path.is_file():
            raise ConfigurationError(f"dataset '{root}': run file {path.name} is missing")
        run["table"] = table = pd.read_parquet(path)
        if "effect" not in table.columns:  # a dataset from before effect labels: effect == interval
            table["effect"] = table["label"]
    train = {r["seed"] for r in runs if r["split"] == "train"}
    leaked = sorted(train & {r["seed"] for r in runs if r["split"] == "test"})
    if leaked:
        raise ConfigurationError(f"dataset '{root}': seeds {leaked} are in both the training and the test split")
    return runs


def feature_columns(features: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    """The dataset columns a detector with ``features`` reads, in the extractor's order."""
    names = list(features.get("physics") or [])
    if features.get("residuals"):
        wanted = features.get("residual_signals")
        res = [c for c in columns if c.startswith("res:")]
        names += [f"res:{s}" for s in wanted] if wanted else res
    nets = list(features.get("network") or [])
    if nets:
        names += [c for c in columns if c.startswith("net:")
                  and any(fnmatch.fnmatchcase(c.split(":")[1], n) for n in nets)]
    missing = [n for n in names if n not in columns]
    if missing:
        raise ConfigurationError(f"the dataset has no columns {missing[:5]}; regenerate it with these features")
    return names


def split_runs(runs: Sequence[Mapping[str, Any]], split: str, normal_only: bool = False) -> list[Mapping[str, Any]]:
    chosen = [r for r in runs if r["split"] == split]
    return [r for r in chosen if not r["truth"]] if normal_only else chosen


def validation_split(runs: Sequence[Mapping[str, Any]], every: int,
                     normal_every: int | None = None) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """``(fit runs, validation runs)`` from the *training* runs only, by run, stratified: the
    attack training runs are grouped by what they attack (kind and target of their first
    interval) and, within each group sorted by seed, every ``every``-th (the 3rd, 6th... for
    ``every=3``) is a validation run; of the normal runs every ``normal_every``-th (default
    ``every``). A group keeps at least one run to fit on. ``every`` of 0: no validation split."""
    train = split_runs(runs, "train")
    if every <= 0:
        return list(train), []
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in train:
        key = ("normal", "") if not r["truth"] else (str(r["truth"][0]["kind"]), str(r["truth"][0]["target"]))
        groups.setdefault(key, []).append(r)
    fit, val = [], []
    for key, group in sorted(groups.items()):
        k = int(normal_every or every) if key[0] == "normal" else int(every)
        group = sorted(group, key=lambda r: r["seed"])
        held = [r for i, r in enumerate(group) if i % k == k - 1 and len(group) > 1]
        val += held
        fit += [r for r in group if r not in held]
    if any(r["split"] != "train" for r in val):
        raise ConfigurationError("validation runs must come from the training split")
    return sorted(fit, key=lambda r: r["name"]), sorted(val, key=lambda r: r["name"])


def sample_period(runs: Sequence[Mapping[str, Any]]) -> float:
    t = runs[0]["table"]["time"].to_numpy(dtype=float)
    return float(np.median(np.diff(t))) if t.size > 1 else 0.0


def fit_model(model_cfg: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], names: list[str],
              seed: int = 0, labels: str = "label", warmup_s: float = 0.0) -> DetectionModel:
    """Fit one model on the runs given (the fit part of the training split): unsupervised
    models on its normal runs, supervised ones on all with the ``labels`` column; the first
    ``warmup_s`` seconds of each run are left out."""
    kind = str(model_cfg.get("type"))
    if kind not in MODELS:
        raise ConfigurationError(f"unknown model type '{kind}'; types are {sorted(MODELS)}")
    params = dict(model_cfg.get("params") or {})
    if kind == "stacked":
        params.setdefault("seed", seed)
    params.setdefault("warmup_s", warmup_s)
    model = MODELS[kind](**params)
    train = [r for r in runs if model.supervised or not r["truth"]]
    if not train:
        raise ConfigurationError(f"model '{kind}': no training runs")
    if any(r["split"] != "train" for r in train):
        raise ConfigurationError(f"model '{kind}': only training runs may be fitted on")
    model.sample_s = sample_period(train)
    tables = [r["table"][r["table"]["time"] >= model.warmup_s - 1e-9] for r in train]
    label_col = str(model_cfg.get("labels") or labels)
    if label_col not in LABELS:
        raise ConfigurationError(f"model '{kind}': labels must be one of {sorted(LABELS)}, got '{label_col}'")
    data = [t[names].to_numpy(dtype=float) for t in tables]
    return model.fit(data, names, [list(t[label_col]) for t in tables] if model.supervised else None)


def _laid_out(runs: Sequence[Mapping[str, Any]], label_col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                          list[tuple[float, float]], np.ndarray]:
    """Times, labels (0/1 of ``label_col``), interval labels, attack intervals and the time
    each sample stands for (the gaps between runs are no time at all) of ``runs`` laid end
    to end (far apart, so that no alarm or event runs from one into the next), in order."""
    times, y, y_att, intervals, durations = [], [], [], [], []
    offset = 0.0
    for r in runs:
        t = r["table"]["time"].to_numpy(dtype=float)
        times.append(t + offset)
        dt = np.diff(t)
        durations.append(np.append(dt, np.median(dt) if dt.size else 0.0))
        y.append((r["table"][label_col] != NORMAL).to_numpy(dtype=int))
        y_att.append((r["table"]["label"] != NORMAL).to_numpy(dtype=int))
        intervals += [(iv["start"] + offset, (iv["end"] if iv["end"] is not None else t[-1]) + offset)
                      for iv in r["truth"]]
        offset += float(t[-1]) + 1000.0
    if not times:
        return np.zeros(0), np.zeros(0, dtype=int), np.zeros(0, dtype=int), [], np.zeros(0)
    return np.concatenate(times), np.concatenate(y), np.concatenate(y_att), intervals, np.concatenate(durations)


def tune(models: Mapping[str, DetectionModel], scores: Mapping[str, Mapping[str, np.ndarray]],
         val: Sequence[Mapping[str, Any]], grids: Mapping[str, Mapping[str, Sequence[float]]],
         fa_budget_per_hour: float, grace_s: float, labels: str = "effect", rounds: int = 2,
         objective_kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Choose each model's threshold, confirm and hold on the validation runs ``val``.

    ``scores[key][run name]`` are the model's scores on each validation run. The combined
    alarm (any model) is scored; among the settings whose alarm onsets while no attack is
    active (those within ``grace_s`` after an attack's end left out) stay within
    ``fa_budget_per_hour`` of the validation's normal time, the one with the highest
    point-wise F1 under ``labels`` wins (fewest false alarms first when none stays within).
    With ``objective_kinds`` the F1 is that of the validation runs of those attack kinds and
    the normal runs (the operating point is chosen for them); false alarms are always counted
    on every validation run. Coordinate ascent, one model at a time, ``rounds`` times; the models are updated in
    place. Returns what was chosen and its validation figures.
    """
    if any(r["split"] != "train" for r in val):
        raise ConfigurationError("tuning: validation runs must be training runs, never test runs")
    t, y, y_att, intervals, durations = _laid_out(val, labels)
    hours = float(np.sum(durations[y_att == 0])) / 3600.0
    budget = int(np.floor(fa_budget_per_hour * hours + 1e-9))
    names = [r["name"] for r in val]
    kinds = set(objective_kinds or [])
    in_objective = np.concatenate([np.full(len(r["table"]), not kinds or not r["truth"]
                                           or any(iv["kind"] in kinds for iv in r["truth"])) for r in val]
                                  ) if val else np.zeros(0, dtype=bool)

    def alarms_for(key: str, thr: float, confirm: int, hold: int) -> np.ndarray:
        model = models[key]
        filt = AlarmFilter(thr, confirm, hold, model.warmup_samples)
        return np.concatenate([filt.run(scores[key][n]) for n in names])

    grid_alarms: dict[str, dict[tuple[float, int, int], np.ndarray]] = {}
    for key, model in models.items():
        grid = grids[key]
        grid_alarms[key] = {(float(a), int(c), int(h)): alarms_for(key, float(a), int(c), int(h))
                            for a in grid["threshold"] for c in grid["confirm"] for h in grid["hold"]}
        grid_alarms[key].setdefault((model.threshold, model.confirm, model.hold),
                                    alarms_for(key, model.threshold, model.confirm, model.hold))
    chosen = {key: (float(m.threshold), int(m.confirm), int(m.hold)) for key, m in models.items()}

    def objective(alarm: np.ndarray) -> tuple[int, float, int]:
        fa = false_alarm_onsets(t, y_att, alarm, intervals, grace_s)
        f1 = float(pointwise(y[in_objective], alarm[in_objective])["f1"])
        return (0 if fa <= budget else -fa), f1, -fa

    def combined(choice: Mapping[str, tuple[float, int, int]]) -> np.ndarray:
        return np.max(np.vstack([grid_alarms[k][choice[k]] for k in models]), axis=0)

    best = objective(combined(chosen))
    for _ in range(rounds):
        for key in models:
            for setting in grid_alarms[key]:
                trial = {**chosen, key: setting}
                value = objective(combined(trial))
                if value > best:
                    best, chosen = value, trial
    for key, (thr, confirm, hold) in chosen.items():
        m = models[key]
        m.threshold, m.confirm, m.hold = thr, confirm, hold
        m.tuning = {"threshold": thr, "confirm": confirm, "hold": hold, "validation_runs": names}
    alarm = combined(chosen)
    return {"chosen": {k: {"threshold": v[0], "confirm": v[1], "hold": v[2]} for k, v in chosen.items()},
            "validation_runs": names, "validation_normal_hours": hours, "fa_budget": budget,
            "validation": {"f1": best[1], "false_alarms": false_alarm_onsets(t, y_att, alarm, intervals, grace_s),
                           "labels": labels, "objective_kinds": sorted(kinds) or "all"}}


def evaluate(alarms_by_run: Mapping[str, np.ndarray], runs: Sequence[Mapping[str, Any]],
             grace_s: float = 0.0) -> dict[str, Any]:
    """Metrics over the test runs, overall and per attack kind (each with the normal runs),
    under both label definitions: ``{"interval": {...}, "effect": {...}}``.

    Under effect labels the events are the attacks that changed something (from their first
    sample with an effect; :func:`~cosim.detection.metrics.effect_intervals`); false alarms
    are alarm onsets while no attack is active under both (an alarm during an attack that
    momentarily changes nothing is a point-wise false positive, not a false alarm)."""
    test = split_runs(runs, "test")
    kinds = sorted({iv["kind"] for r in test for iv in r["truth"]})
    report: dict[str, Any] = {name: {} for name in LABELS.values()}
    for group in ["all", *kinds]:
        chosen = [r for r in test if group == "all" or not r["truth"] or any(iv["kind"] == group
                                                                           for iv in r["truth"])]
        if not chosen:
            continue
        pred = np.concatenate([alarms_by_run[r["name"]] for r in chosen])
        for col, definition in LABELS.items():
            t, y, y_att, intervals, durations = _laid_out(chosen, col)
            if col == "effect":
                events = effect_intervals(t, y, intervals)
                scored = score_run(t, y, pred, events, grace_s=grace_s, y_attack=y_att, durations=durations)
                scored["no_effect_attacks"] = len(intervals) - len(events)
            else:
                scored = score_run(t, y, pred, intervals, grace_s=grace_s, durations=durations)
            scored["runs"] = len(chosen)
            report[definition][group] = scored
    return report


def normal_operation(alarms_by_run: Mapping[str, np.ndarray], runs: Sequence[Mapping[str, Any]],
                     warmup_s: float = 0.0) -> dict[str, Any]:
    """False alarms on the held-out normal runs alone (no attack at all): alarm onsets per
    hour of monitored normal operation (the warm-up at each run's start, when no alarm can be
    raised, is not counted as monitored time)."""
    normal = split_runs(runs, "test", normal_only=True)
    onsets, seconds = 0, 0.0
    per_run = {}
    for r in normal:
        t = r["table"]["time"].to_numpy(dtype=float)
        a = np.asarray(alarms_by_run[r["name"]], dtype=bool)
        n = int(np.sum(a & ~np.concatenate(([False], a[:-1]))))
        onsets += n
        dt = np.append(np.diff(t), np.median(np.diff(t)) if t.size > 1 else 0.0)
        seconds += float(np.sum(dt[t >= warmup_s]))
        per_run[r["name"]] = n
    hours = seconds / 3600.0
    return {"runs": len(normal), "hours": hours, "false_alarms": onsets,
            "false_alarms_per_hour": onsets / hours if hours > 0 else None, "per_run": per_run,
            "warmup_s": float(warmup_s)}


def fit_settings(det: Any) -> dict[str, Any]:
    settings = {**FIT_DEFAULTS, **(plain(det.get("fit")) or {})}
    unknown = set(settings) - set(FIT_DEFAULTS)
    if unknown:
        raise ConfigurationError(f"detector '{det.get('name')}': unknown fit settings {sorted(unknown)}; "
                                 f"they are {sorted(FIT_DEFAULTS)}")
    if settings["labels"] not in LABELS:
        raise ConfigurationError(f"detector '{det.get('name')}': fit.labels must be one of {sorted(LABELS)}")
    return settings


def fit_and_evaluate(cfg: DictConfig) -> dict[str, Any]:
    runs = load_dataset(str(cfg.data))
    det = cfg.detector
    entries = plain(det.get("detectors")) or {}
    models_cfg = plain(det.get("models")) or {}
    if not entries:
        raise ConfigurationError(f"detector '{det.get('name')}' has no detectors to fit")
    settings = fit_settings(det)
    warmup_s, grace_s = float(settings["warmup_s"]), float(settings["grace_s"])
    fit_runs, val_runs = validation_split(runs, int(settings["validation_every"]) if settings["tune"] else 0,
                                          settings["validation_normal_every"])
    kinds = set(settings["objective_kinds"] or [])
    untunable = None
    if settings["tune"] and not any(iv["kind"] in kinds or not kinds for r in val_runs for iv in r["truth"]):
        untunable = f"no validation run of the kinds tuned for ({sorted(kinds) or 'any attack'})"
    elif settings["tune"] and not any(not r["truth"] for r in val_runs):
        untunable = "no normal validation run"
    if untunable:  # too few training runs to carve a useful validation split: fit on all of them, tune nothing
        fit_runs, val_runs = validation_split(runs, 0)
    test = split_runs(runs, "test")
    if {r["seed"] for r in val_runs} & {r["seed"] for r in test}:
        raise ConfigurationError("validation and test seeds overlap")
    columns = list(runs[0]["table"].columns)
    models: dict[str, DetectionModel] = {}
    names_of: dict[str, list[str]] = {}
    timing: dict[str, float] = {}
    for key, entry in entries.items():
        if key not in models_cfg:
            raise ConfigurationError(f"detector '{det.get('name')}': no entry models.{key} saying how to fit '{key}'")
        names_of[key] = names = feature_columns(entry.get("features") or {}, columns)
        t0 = time.perf_counter()
        models[key] = fit_model(models_cfg[key], fit_runs, names, seed=int(cfg.seed), labels=settings["labels"],
                                warmup_s=warmup_s)
        timing[key] = time.perf_counter() - t0

    def scores_on(chosen: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
        return {key: {r["name"]: m.score_run(r["table"][names_of[key]].to_numpy(dtype=float)) for r in chosen}
                for key, m in models.items()}

    tuning: dict[str, Any] | None = {"skipped": untunable} if untunable else None
    if settings["tune"] and val_runs:
        grids = {}
        for key, m in models.items():
            grids[key] = {**TUNE_GRID.get(m.kind_name, {}), **(models_cfg[key].get("tune") or {})}
        tuning = tune(models, scores_on(val_runs), val_runs, grids, float(settings["fa_budget_per_hour"]), grace_s,
                      labels="effect", objective_kinds=settings["objective_kinds"])
    saved = {key: str(m.save(entries[key]["model"])) for key, m in models.items()}
    test_scores = scores_on(test)
    alarms = {key: {n: m.alarm_filter().run(sc) for n, sc in test_scores[key].items()} for key, m in models.items()}
    test_names = [r["name"] for r in test]
    combined = {n: np.max(np.vstack([alarms[k][n] for k in alarms]), axis=0) for n in test_names}
    report = {
        "detector": str(det.get("name")),
        "data": str(cfg.data),
        "train_seeds": sorted(r["seed"] for r in split_runs(runs, "train")),
        "fit_seeds": sorted(r["seed"] for r in fit_runs),
        "validation_seeds": sorted(r["seed"] for r in val_runs),
        "test_seeds": sorted(r["seed"] for r in test),
        "settings": settings,
        "labels": {"interval": "label column: the attack is active (its scheduled window)",
                   "effect": "effect column: the attack is active and changed what its victim received "
                             "(beyond the signal's scale; any change for commands; DoS/sync: = interval)"},
        "models": saved,
        "model_settings": {k: {"threshold": m.threshold, "confirm": m.confirm, "hold": m.hold,
                               "warmup_s": m.warmup_s} for k, m in models.items()},
        "tuning": tuning,
        "fit_seconds": timing,
        "combined": evaluate(combined, runs, grace_s),
        "normal_operation": normal_operation(combined, runs, warmup_s),
        "per_detector": {k: evaluate(v, runs, grace_s) for k, v in alarms.items()},
    }
    out = Path(next(iter(saved.values()))).parent
    (out / f"{det.get('name')}_report.json").write_text(json.dumps(report, indent=2, default=float))
    (out / f"{det.get('name')}_report.md").write_text(markdown(report))
    if cfg.get("mlflow") is not None and cfg.mlflow.get("enabled"):
        report["mlflow_run_id"] = log_fit(report, out, str(cfg.mlflow.experiment))
    return report


def log_fit(report: Mapping[str, Any], out: Path, experiment: str) -> str:
    """Log the fitted models and their held-out scores as one MLflow run; episodes can then
    load a model as ``runs:/<run id>/models/<file>``."""
    from cosim.tracking.mlflow_log import client, experiment_id

    mlf = client()
    run = mlf.create_run(experiment_id(mlf, experiment), run_name=f"fit {report['detector']}",
                         tags={"kind": "detector_fit", "detector": str(report["detector"])})
    run_id = run.info.run_id
    mlf.log_param(run_id, "train_seeds", ",".join(map(str, report["train_seeds"])))
    mlf.log_param(run_id, "test_seeds", ",".join(map(str, report["test_seeds"])))
    for definition, groups in report["combined"].items():
        for group, scores in groups.items():
            for key in ("precision", "recall", "f1", "accuracy", "event_recall", "median_delay_s",
                        "false_alarms_per_hour", "false_alarms_per_hour_grace"):
                if isinstance(scores.get(key), float | int):
                    mlf.log_metric(run_id, f"{definition}.{group}.{key}", float(scores[key]))
    normal = report.get("normal_operation") or {}
    if isinstance(normal.get("false_alarms_per_hour"), float | int):
        mlf.log_metric(run_id, "normal_operation.false_alarms_per_hour", float(normal["false_alarms_per_hour"]))
    for path in report["models"].values():
        mlf.log_artifact(run_id, path, "models")
    mlf.log_artifact(run_id, str(out / f"{report['detector']}_report.md"))
    mlf.set_terminated(run_id, "FINISHED")
    return run_id


def missing_models(detector: DictConfig) -> list[str]:
    """Model files a detector config names that do not exist yet."""
    entries = plain(detector.get("detectors")) or {}
    return [str(e["model"]) for e in entries.values() if "model" in e and not Path(str(e["model"])).is_file()]


def ensure_models(cfg: DictConfig, log: Any = print) -> list[str]:
    """Fit the models of ``cfg.detector`` that are missing, from the generated dataset of
    ``cfg``'s plant, twin and network (generated first when it is not there either).

    The dataset and training seeds are those of ``conf/generate.yaml`` (disjoint from the
    seeds episodes are usually scored on: 0-999); returns the model files it wrote. Parallel
    callers wait for one another (a file lock beside the models).
    """
    if not missing_models(cfg.detector):
        return []
    import fcntl

    lock_dir = Path(missing_models(cfg.detector)[0]).parent
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".fit.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sweep jobs: one fits, the others wait and load
        try:
            if not missing_models(cfg.detector):
                return []
            return _fit_missing(cfg, log)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fit_missing(cfg: DictConfig, log: Any) -> list[str]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from experiments.generate import generate

    conf_dir = str(Path(__file__).resolve().parents[1] / "conf")

    def configs() -> tuple[DictConfig, DictConfig]:
        return compose("generate"), compose("fit")

    if GlobalHydra.instance().is_initialized():
        gen_cfg, fit_cfg = configs()
    else:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            gen_cfg, fit_cfg = configs()
    for node in (gen_cfg, fit_cfg):  # the run's setting: the dataset and the models are keyed by it
        for key in ("plant", "twin", "network"):
            node[key] = cfg.get(key)
    fit_cfg.detector = cfg.detector
    fit_cfg.detector.model_dir = str(cfg.detector.model_dir)  # where the run will look for them
    fit_cfg.data = gen_cfg.out
    if not (Path(str(gen_cfg.out)) / "runs.json").is_file():
        log(f"detector '{cfg.detector.get('name')}': no fitted models; generating the training dataset in "
            f"{gen_cfg.out} (once)")
        generate(gen_cfg)
    log(f"detector '{cfg.detector.get('name')}': fitting {', '.join(missing_models(cfg.detector))}")
    report = fit_and_evaluate(fit_cfg)
    return list(report["models"].values())


def _tuning_line(tuning: Mapping[str, Any] | None) -> str:
    if not tuning:
        return "Thresholds, confirm and hold: as configured (not tuned)."
    if "skipped" in tuning:
        return f"Thresholds, confirm and hold: as configured; not tuned: {tuning['skipped']}."
    chosen = "; ".join(f"{k}: threshold {v['threshold']:g}, confirm {v['confirm']}, hold {v['hold']}"
                       for k, v in tuning["chosen"].items())
    val = tuning["validation"]
    return (f"Chosen on the validation runs ({chosen}): F1 {val['f1']:.3f} under {val['labels']} labels on "
            f"{val['objective_kinds']} attacks, {val['false_alarms']} false alarms in "
            f"{tuning['validation_normal_hours']:.2f} h of validation normal time (budget {tuning['fa_budget']}).")


def markdown(report: Mapping[str, Any]) -> str:
    settings = report.get("settings") or {}
    normal = report.get("normal_operation") or {}

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = [f"# Detector `{report['detector']}` on held-out runs",
             "", f"Training seeds: {report['train_seeds']}",
             f"Validation seeds (from the training seeds, for thresholds/confirm/hold): "
             f"{report.get('validation_seeds', [])}",
             f"Test seeds: {report['test_seeds']}", "",
             f"Warm-up: no alarm in the first {fmt(float(settings.get('warmup_s', 0.0)))} s of a run. "
             "Grace after an attack's end (event-wise false alarms only): "
             f"{fmt(float(settings.get('grace_s', 0.0)))} s.",
             "",
             _tuning_line(report.get("tuning")), "",
             f"Normal operation (held-out normal runs only): {normal.get('runs', 0)} runs, "
             f"{fmt(normal.get('hours'))} h, {normal.get('false_alarms', 'n/a')} false alarms = "
             f"**{fmt(normal.get('false_alarms_per_hour'))} per hour**.", ""]
    titles = {"interval": "Interval labels (the attack is active; the dataset's `label` column)",
              "effect": "Effect labels (the attack is active and changed what its victim received; `effect`)"}
    for definition, groups in report["combined"].items():
        lines += [f"## {titles.get(definition, definition)}", "",
                  "| group | runs | precision | recall | F1 | accuracy | events | event recall | median delay (s) "
                  "| false alarms/h | false alarms/h with grace |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for group, m in groups.items():
            events = str(m["events"]) + (f" (+{m['no_effect_attacks']} without effect)"
                                         if m.get("no_effect_attacks") else "")
            lines.append(f"| {group} | {m['runs']} | {fmt(m['precision'])} | {fmt(m['recall'])} | {fmt(m['f1'])} | "
                         f"{fmt(m['accuracy'])} | {events} | {fmt(m['event_recall'])} | {fmt(m['median_delay_s'])} | "
                         f"{fmt(m['false_alarms_per_hour'])} | {fmt(m.get('false_alarms_per_hour_grace'))} |")
        lines.append("")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="fit")
def main(cfg: DictConfig) -> None:
    try:
        report = fit_and_evaluate(cfg)
    except (CosimError, OmegaConfBaseException, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(markdown(report))
    print(f"models: {report['models']}")


if __name__ == "__main__":
    main()
