"""Fit the online detectors of a detector config on a generated dataset, and score them on
its held-out runs.

    python -m experiments.generate                        # the dataset (train and test seeds)
    python -m experiments.fit detector=dt                  # fit, save, evaluate
    python -m experiments.fit detector=cps

Unsupervised models (CUSUM on twin residuals, static limits) learn from the training split's
normal runs only; the supervised stacked ensemble from all training runs. Scores come from
the test split alone (other seeds, other drawn attacks). The report (``report.json`` and
``report.md`` beside the models) gives point-wise precision, recall, F1 and accuracy,
event-wise recall, detection delay and false alarms per hour, per attack kind and overall.
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
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cosim.detection.metrics import score_run
from cosim.detection.models import MODELS, DetectionModel
from cosim.errors import ConfigurationError, CosimError

NORMAL = "normal"


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


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
        run["table"] = pd.read_parquet(path)
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


def fit_model(model_cfg: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], names: list[str],
              seed: int = 0) -> DetectionModel:
    kind = str(model_cfg.get("type"))
    if kind not in MODELS:
        raise ConfigurationError(f"unknown model type '{kind}'; types are {sorted(MODELS)}")
    params = dict(model_cfg.get("params") or {})
    if kind == "stacked":
        params.setdefault("seed", seed)
    model = MODELS[kind](**params)
    train = split_runs(runs, "train", normal_only=not model.supervised)
    if not train:
        raise ConfigurationError(f"model '{kind}': no training runs")
    tables = [r["table"][names].to_numpy(dtype=float) for r in train]
    labels = [list(r["table"]["label"]) for r in train] if model.supervised else None
    return model.fit(tables, names, labels)


def evaluate(alarms_by_run: Mapping[str, np.ndarray], runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Metrics over the test runs: overall and per attack kind (with the normal runs)."""
    test = split_runs(runs, "test")
    kinds = sorted({iv["kind"] for r in test for iv in r["truth"]})
    report: dict[str, Any] = {}
    for group in ["all", *kinds]:
        chosen = [r for r in test if group == "all" or not r["truth"] or any(iv["kind"] == group
                                                                           for iv in r["truth"])]
        times, y_true, y_pred, intervals = [], [], [], []
        offset = 0.0
        for r in chosen:
            t = r["table"]["time"].to_numpy(dtype=float)
            times.append(t + offset)
            y_true.append((r["table"]["label"] != NORMAL).to_numpy(dtype=int))
            y_pred.append(alarms_by_run[r["name"]])
            intervals += [(iv["start"] + offset, (iv["end"] if iv["end"] is not None else t[-1]) + offset)
                          for iv in r["truth"]]
            offset += float(t[-1]) + 1000.0  # runs laid end to end, far apart
        if not times:
            continue
        scored = score_run(np.concatenate(times), np.concatenate(y_true), np.concatenate(y_pred), intervals)
        scored["runs"] = len(chosen)
        report[group] = scored
    return report


def fit_and_evaluate(cfg: DictConfig) -> dict[str, Any]:
    runs = load_dataset(str(cfg.data))
    det = cfg.detector
    entries = _plain(det.get("detectors")) or {}
    models_cfg = _plain(det.get("models")) or {}
    if not entries:
        raise ConfigurationError(f"detector '{det.get('name')}' has no detectors to fit")
    columns = list(runs[0]["table"].columns)
    alarms: dict[str, dict[str, np.ndarray]] = {}
    saved: dict[str, str] = {}
    timing: dict[str, float] = {}
    for key, entry in entries.items():
        if key not in models_cfg:
            raise ConfigurationError(f"detector '{det.get('name')}': no entry models.{key} saying how to fit '{key}'")
        names = feature_columns(entry.get("features") or {}, columns)
        t0 = time.perf_counter()
        model = fit_model(models_cfg[key], runs, names, seed=int(cfg.seed))
        timing[key] = time.perf_counter() - t0
        saved[key] = str(model.save(entry["model"]))
        alarms[key] = {}
        for r in split_runs(runs, "test"):
            alarms[key][r["name"]] = model.alarms_run(r["table"][names].to_numpy(dtype=float))
    test_names = [r["name"] for r in split_runs(runs, "test")]
    combined = {n: np.max(np.vstack([alarms[k][n] for k in alarms]), axis=0) for n in test_names}
    report = {
        "detector": str(det.get("name")),
        "data": str(cfg.data),
        "train_seeds": sorted(r["seed"] for r in split_runs(runs, "train")),
        "test_seeds": sorted(r["seed"] for r in split_runs(runs, "test")),
        "models": saved,
        "fit_seconds": timing,
        "combined": evaluate(combined, runs),
        "per_detector": {k: evaluate(v, runs) for k, v in alarms.items()},
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
    for group, scores in report["combined"].items():
        for key in ("precision", "recall", "f1", "accuracy", "event_recall", "false_alarms_per_hour"):
            if isinstance(scores.get(key), float | int):
                mlf.log_metric(run_id, f"{group}.{key}", float(scores[key]))
    for path in report["models"].values():
        mlf.log_artifact(run_id, path, "models")
    mlf.log_artifact(run_id, str(out / f"{report['detector']}_report.md"))
    mlf.set_terminated(run_id, "FINISHED")
    return run_id


def missing_models(detector: DictConfig) -> list[str]:
    """Model files a detector config names that do not exist yet."""
    entries = _plain(detector.get("detectors")) or {}
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
    for node in (gen_cfg, fit_cfg):
        node.plant = cfg.plant
    for key in ("twin", "network"):
        if cfg.get(key) is not None:
            gen_cfg[key] = cfg[key]
    fit_cfg.detector = cfg.detector
    fit_cfg.data = gen_cfg.out
    if not (Path(str(gen_cfg.out)) / "runs.json").is_file():
        log(f"detector '{cfg.detector.get('name')}': no fitted models; generating the training dataset in "
            f"{gen_cfg.out} (once)")
        generate(gen_cfg)
    log(f"detector '{cfg.detector.get('name')}': fitting {', '.join(missing_models(cfg.detector))}")
    report = fit_and_evaluate(fit_cfg)
    return list(report["models"].values())


def markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# Detector `{report['detector']}` on held-out runs",
             "", f"Training seeds: {report['train_seeds']}", f"Test seeds: {report['test_seeds']}", "",
             "| group | runs | precision | recall | F1 | accuracy | event recall | median delay (s) | false alarms/h |",
             "|---|---|---|---|---|---|---|---|---|"]

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    for group, m in report["combined"].items():
        lines.append(f"| {group} | {m['runs']} | {fmt(m['precision'])} | {fmt(m['recall'])} | {fmt(m['f1'])} | "
                     f"{fmt(m['accuracy'])} | {fmt(m['event_recall'])} | {fmt(m['median_delay_s'])} | "
                     f"{fmt(m['false_alarms_per_hour'])} |")
    return "\n".join(lines) + "\n"


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
