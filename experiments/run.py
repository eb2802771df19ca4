"""Run one episode — plant, twin, network, attack, detectors, defence, one seed — and log it.

    python -m experiments.run                                       # the default attack episode
    python -m experiments.run attack=spoofing defense=cps_only seed=3 duration=90
    python -m experiments.run -m attack=spoofing,dos defense=none,dt_framework seed='range(5)'
    python -m experiments.run -m experiment=paper_table             # the paper's evaluation

Writes to the Hydra run directory: ``summary.json`` (keys in
:data:`cosim.tracking.summary.SUMMARY_KEYS` first), ``trace.csv``/``trace.parquet``,
``timeline.png``, ``confusion.png``, ``alerts.jsonl``, ``config.yaml`` (and whatever the
defence writes, e.g. ``audit.jsonl``), and logs the same to MLflow (see
:mod:`cosim.tracking.mlflow_log`). In a sweep every job is a child of the sweep's parent run.

Bad input gives one ``error: ...`` line, a FAILED MLflow run and a FAILED ``summary.json``;
a single run exits with status 1, a sweep goes on with its other jobs.

Faults inside the framework (see ``docs/sweeps.md``):

- ``isolation: process`` (the default on POSIX) runs each episode in a forked process, so a
  model that crashes the process (SIGSEGV, abort) or a kill (SIGKILL, the OOM killer) fails
  only its job: the supervising process writes the FAILED ``summary.json``, marks the MLflow
  run FAILED and keeps the trace checkpointed up to the fault (``record.checkpoint_s``).
- ``watchdog.step_timeout_s``: a tick that does not finish in that wall time (a hung model)
  ends the episode with the traces up to the last completed tick, a FAILED summary naming
  the unit and call, and a FAILED MLflow run.
- A tracking server that goes away keeps the results in the run directory (one error line;
  ``python -m experiments.relog <run dir>`` logs them later).
- ``resume=true`` with the sweep's ``hydra.sweep.dir`` skips the jobs that finished with the
  same config.
"""

from __future__ import annotations

import copy
import faulthandler
import gc
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from cosim import paths
from cosim.core.observer import Observer, Recorder
from cosim.detection.alert import AlertBus
from cosim.episode import EpisodeContext
from cosim.errors import ConfigurationError, CosimError, JobKilled, StepTimeout, TrackingError
from cosim.tracking.baseline import baseline_key, cached_baseline
from cosim.tracking.callbacks import one_line
from cosim.tracking.progress import Progress
from cosim.tracking.summary import (
    SUMMARY_KEYS,
    detection_figures,
    empty_summary,
    hold,
    jsonable,
    ordered,
    production_figures,
    write_summary,
)
from experiments.plant import (
    build_system,
    frozen_heap,
    instantiate_observer,
    plant_observers,
    recording,
    register_resolvers,
)

register_resolvers()
# conf/hydra/launcher/joblib.yaml shares its name with the plugin's schema on purpose (it is
# validated against it); Hydra 1.3 warns about that on every start.
warnings.filterwarnings("ignore", message=r"\s*.hydra/launcher/joblib. is validated against ConfigStore schema",
                        category=UserWarning)

REPO_ROOT = paths.REPO_ROOT
CONF_DIR = REPO_ROOT / "conf"
CHOICE_KEYS = ("plant", "twin", "network", "attack", "detector", "defense", "experiment")
PARTIAL_TRACE = "trace.partial.csv"  # the recorder's checkpoint while an episode runs
EXIT_HUNG = 3  # exit status of an episode process ended by the watchdog (its failure is recorded)
EXIT_BUG = 70  # exit status of an episode process that raised an unexpected exception
# Keys that do not change an episode's results: left out of the config hash resume compares.
OPERATIONAL_KEYS = ("resume", "progress", "watchdog", "isolation")
_HEARTBEAT: Any = None  # shared with the supervising process: simulated time reached
_IN_CHILD = False  # in an episode's forked process: its supervisor prints the error lines


def _say_error(text: str) -> None:
    """One ``error:`` line on stderr (in an episode's process: left to its supervisor)."""
    if not _IN_CHILD:
        print(f"error: {text}", file=sys.stderr, flush=True)


def describe_error(exc: BaseException, cfg: DictConfig | None = None) -> str:
    """One line saying what is wrong. A config value that refers to a key the config lacks
    (OmegaConf's ``InterpolationKeyError``) names both, and the plant when the key is one of
    the plant's (another plant may not define what the chosen detector or defence reads)."""
    from omegaconf.errors import InterpolationKeyError

    if isinstance(exc, InterpolationKeyError):
        missing = str(exc.msg).partition("'")[2].rpartition("'")[0] or str(exc.msg)
        text = f"{exc.full_key or 'the config'} refers to '{missing}', which is not in the config"
        plant = OmegaConf.select(cfg, "plant.name", default=None) if cfg is not None else None
        if missing.startswith("plant.") and plant is not None:
            text += (f": plant '{plant}' does not define it (conf/plant/smart_factory.yaml shows every section "
                     f"the twin, network, detectors and defences read)")
        return text
    if isinstance(exc, OmegaConfBaseException) and getattr(exc, "msg", None):
        return f"{exc.msg}" + (f" (at {exc.full_key})" if getattr(exc, "full_key", None) else "")
    return str(exc).strip() or type(exc).__name__


def _errors() -> tuple[type[BaseException], ...]:
    """What counts as bad input (reported as one ``error:`` line), not as a bug."""
    from hydra.errors import InstantiationException
    from mlflow.exceptions import MlflowException

    return (CosimError, OmegaConfBaseException, OSError, HydraException, InstantiationException, MlflowException)


# Configuration -------------------------------------------------------------------------
def resolve_detector(cfg: DictConfig, search_dirs: Sequence[str | Path] = ()) -> str:
    """With ``detector: auto`` load ``conf/detector/<defense.detector>.yaml`` into ``cfg.detector``.

    Returns:
        The name of the detector config in use.
    """
    det = cfg.get("detector")
    if det is None:
        with open_dict(cfg):
            cfg.detector = {"name": "none", "detectors": {}}
        return "none"
    if det.get("name") != "auto":
        if not isinstance(det.get("detectors", {}), Mapping | DictConfig):
            raise ConfigurationError("detector.detectors must be a mapping {name: {_target_: ...}}")
        return str(det.get("name", "?"))
    defense = cfg.get("defense")
    wanted = str(defense.get("detector") or "none") if defense else "none"
    dirs = [Path(d) / "detector" for d in [*search_dirs, CONF_DIR]]
    for d in dirs:
        path = d / f"{wanted}.yaml"
        if path.is_file():
            node = OmegaConf.load(path)
            with open_dict(cfg):
                cfg.detector = node
                cfg.detector.resolved_from = "auto"
            return wanted
    raise ConfigurationError(f"detector=auto: defense.detector is '{wanted}' but there is no "
                             f"detector/{wanted}.yaml in {', '.join(str(d) for d in dirs)}")


def episode_duration(cfg: DictConfig, spec: Any) -> float:
    value = cfg.get("duration")
    if value is None:
        value = spec.stop_time
    if value is None:
        raise ConfigurationError("no duration: set duration=... (the plant gives no stop time)")
    try:
        duration = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"duration must be a number of seconds, got {value!r}") from None
    if not duration > 0 or not math.isfinite(duration):
        raise ConfigurationError(f"duration must be positive, got {value!r}")
    return duration


def _instantiate(what: str, node: Any) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if node is None or not OmegaConf.is_dict(node) or "_target_" not in node:
        raise ConfigurationError(f"{what} needs a _target_ (got {node!r})")
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, CosimError):
            raise cause from None
        raise ConfigurationError(f"{what}: cannot instantiate {node.get('_target_')}: {cause or exc}") from None


# The episode ---------------------------------------------------------------------------
@dataclass
class EpisodeResult:
    """What an episode produced (the summary plus what the logging needs)."""

    summary: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    data: dict[str, np.ndarray] = field(default_factory=dict)
    series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    y_pred: np.ndarray | None = None
    intervals: list[Any] = field(default_factory=list)


def _monitor(observers: Mapping[str, Observer]) -> Observer | None:
    for obs in observers.values():
        if hasattr(obs, "summary") and hasattr(obs, "downtime") and hasattr(obs, "completions"):
            return obs
    return None


def simulate_baseline(cfg: DictConfig, progress: bool = False) -> dict[str, Any]:
    """The episode's plant, twin, network and duration without attack, detectors and defence.

    Returns:
        ``{"monitor": <monitor summary or None>, "sim_time_s", "wall_time_s"}``.
    """
    built = build_system(cfg)
    spec, master = built.spec, built.master
    duration = episode_duration(cfg, spec)
    observers = plant_observers(cfg.plant)
    if built.sync is not None:
        observers["twin"] = built.sync
    for obs in observers.values():
        master.add_observer(obs)
    t0 = time.perf_counter()
    try:
        with frozen_heap():
            master.run(duration=duration - (master.time - spec.start_time),
                       progress=Progress(f"baseline seed={cfg.seed}", progress))
    finally:
        master.terminate()
    monitor = _monitor(observers)
    return {"monitor": jsonable(monitor.summary()) if monitor is not None else None,
            "sim_time_s": master.time - spec.start_time, "wall_time_s": time.perf_counter() - t0}


def baseline_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of the config a baseline depends on (resolved: FMU paths carry their hashes)."""
    return {
        "plant": OmegaConf.to_container(cfg.plant, resolve=True),
        "twin": OmegaConf.to_container(cfg.twin, resolve=True) if cfg.get("twin") else None,
        "network": OmegaConf.to_container(cfg.network, resolve=True) if cfg.get("network") else None,
        "duration": cfg.get("duration"),
    }


def baseline(cfg: DictConfig) -> dict[str, Any] | None:
    """The cached baseline of ``cfg`` (computed once per config and seed)."""
    if not cfg.get("baseline") or not cfg.baseline.get("enabled", True):
        return None
    key = baseline_key(baseline_config(cfg), int(cfg.seed))

    def compute() -> dict[str, Any]:  # only when the cache does not have it
        base_cfg = copy.deepcopy(cfg)
        with open_dict(base_cfg):
            base_cfg.attack = {"name": "none", "events": []}
            base_cfg.detector = {"name": "none", "detectors": {}}
            base_cfg.defense = None
        return simulate_baseline(base_cfg, bool(cfg.get("progress", False)))

    return cached_baseline(cfg.baseline.get("cache_dir") or paths.cache_dir("baselines"), key, compute)


def run_episode(cfg: DictConfig, out_dir: Path,
                on_timeout: Any = None) -> EpisodeResult:
    """Build the system of ``cfg``, run it with attack, detectors and defence, write its files.

    ``cfg.detector`` must already be resolved (:func:`resolve_detector`).

    Args:
        on_timeout: with ``watchdog.step_timeout_s`` set, called (from the watchdog's thread,
            after the traces up to the last completed tick are written) with the
            :class:`~cosim.errors.StepTimeout` of a hung step; it must end the process.
            Default: print the error and exit with status :data:`EXIT_HUNG`.
    """
    from cosim.attacks import Campaign, load_scenario
    from cosim.core.watchdog import StepWatchdog

    out_dir.mkdir(parents=True, exist_ok=True)
    built = build_system(cfg, *recording(cfg))
    spec, layout, master, sync = built.spec, built.layout, built.master, built.sync
    duration = episode_duration(cfg, spec)
    recorder = master.observers[0]
    assert isinstance(recorder, Recorder)
    checkpoint_s = cfg.record.get("checkpoint_s")
    if checkpoint_s:
        sample_s = master.grid.time(recorder.interval) - master.grid.time(0)
        recorder.checkpoint_to(out_dir / PARTIAL_TRACE, max(1, math.ceil(float(checkpoint_s) / sample_s)))
    observers: dict[str, Observer] = dict(plant_observers(cfg.plant))
    if sync is not None:
        observers["twin"] = sync
    campaign = None
    attack = cfg.get("attack")
    if attack is not None and attack.get("events"):
        campaign = Campaign(load_scenario(OmegaConf.to_container(attack, resolve=True), seed=int(cfg.seed)))
        observers["attack"] = campaign
    ctx = EpisodeContext(bus=AlertBus(), spec=spec, twin=sync, layout=layout, seed=int(cfg.seed),
                         out_dir=out_dir, extra={"detectors": []})
    detectors: dict[str, Any] = {}
    for name, node in (cfg.detector.get("detectors") or {}).items():
        if node is None:
            continue  # switched off by an override
        det = _instantiate(f"detector '{name}'", node)
        if not isinstance(det, Observer) or not hasattr(det, "attach") or not hasattr(det, "series"):
            raise ConfigurationError(f"detector '{name}': {type(det).__name__} is not an episode detector "
                                     "(an Observer with attach(ctx) and series())")
        det.attach(ctx)
        ctx.extra["detectors"].append(det)
        detectors[str(getattr(det, "name", name))] = det
        observers[f"detector:{name}"] = det
    if cfg.get("render") and cfg.render.enabled:
        observers["frames"] = instantiate_observer("render", cfg.plant.get("renderer"),
                                                   every=int(cfg.render.every_ticks),
                                                   width=int(cfg.render.width), height=int(cfg.render.height))
    defence = None
    defense_cfg = cfg.get("defense")
    if defense_cfg is not None and defense_cfg.get("orchestrator") is not None:
        defence = _instantiate("defense.orchestrator", defense_cfg.orchestrator)
        if not isinstance(defence, Observer) or not hasattr(defence, "attach") or not hasattr(defence, "summary"):
            raise ConfigurationError(f"defense.orchestrator: {type(defence).__name__} is not a defence "
                                     "(an Observer with attach(ctx) and summary())")
        defence.attach(ctx)
        observers["defence"] = defence
    for obs in observers.values():
        master.add_observer(obs)

    files: dict[str, str] = {}

    def write_records() -> None:
        formats = list(cfg.record.get("formats") or [])
        if "csv" in formats:
            path = recorder.finish_checkpoint(out_dir / "trace.csv") or recorder.write_csv(out_dir / "trace.csv")
            files["trace"] = str(path)
        if "parquet" in formats:
            files["trace_parquet"] = str(recorder.write_parquet(out_dir / "trace.parquet"))
        recorder.close_checkpoint()
        alerts = [a.as_dict() for a in ctx.bus.alerts]
        if alerts or detectors:
            path = out_dir / "alerts.jsonl"
            path.write_text("".join(json.dumps(jsonable(a), default=str) + "\n" for a in alerts))
            files["alerts"] = str(path)

    def hung(exc: StepTimeout) -> None:  # the watchdog's thread; the episode's thread is stuck
        try:
            write_records()
        finally:
            (on_timeout or _exit_hung)(exc)

    bar = Progress(f"episode {cfg.attack.get('name', '?')} seed={cfg.seed}", bool(cfg.get("progress", True)))

    def progress(done: int, total: int) -> None:
        bar(done, total)
        if _HEARTBEAT is not None:
            _HEARTBEAT.value = master.time

    timeout = (cfg.get("watchdog") or {}).get("step_timeout_s")
    watchdog = StepWatchdog(master, timeout, hung) if timeout is not None else None
    t0 = time.perf_counter()
    try:
        if watchdog is not None:
            watchdog.start()
        with frozen_heap():
            result = master.run(duration=duration - (master.time - spec.start_time), progress=progress)
    finally:
        if watchdog is not None:
            watchdog.stop()
        wall = time.perf_counter() - t0
        write_records()
        master.terminate()
        for obs in observers.values():  # what holds resources of its own: the defence's sandbox twin, files
            close = getattr(obs, "close", None)
            if callable(close):
                close()
    sim_time = master.time - spec.start_time
    for obs in observers.values():
        if hasattr(obs, "write"):
            files.update({k: str(v) for k, v in obs.write(out_dir).items()})

    monitor = _monitor(observers)
    mon_summary = monitor.summary() if monitor is not None else None
    base = baseline(cfg) if mon_summary is not None else None
    data = recorder.as_dict()
    grid = data["time"]
    intervals = list(campaign.ground_truth.intervals) if campaign is not None else []
    series = {name: tuple(np.asarray(a) for a in det.series()) for name, det in detectors.items()}
    det_figures = detection_figures(grid, intervals, series)
    defence_summary = jsonable(defence.summary()) if defence is not None else None
    twin_summary = sync.summary() if sync is not None else None

    summary = empty_summary()
    summary.update(production_figures(mon_summary, base["monitor"] if base else None, sim_time))
    summary.update({k: det_figures[k] for k in ("detected", "detection_latency_s", "f1", "precision", "recall",
                                                 "accuracy", "false_alarms_per_hour")})
    if defence_summary is not None:
        summary["containment_latency_s"] = defence_summary.get("containment_latency_s")
        summary["decision_wall_ms"] = defence_summary.get("decision_wall_ms")
    if twin_summary is not None:
        summary["twin_deviation_rms"] = twin_summary["twin_deviation_rms"]
    summary["sim_time_s"] = sim_time
    summary["wall_time_s"] = wall
    summary["realtime_factor"] = sim_time / wall if wall > 0 else None
    actions = defence_summary.get("actions") if defence_summary else None
    summary.update({
        "status": "FINISHED",
        "completed": result.completed,
        "stopped_by": str(result.discarded) if result.discarded else None,
        "event_recall": det_figures["event_recall"],
        "median_detection_delay_s": det_figures["median_delay_s"],
        "confusion": {k: det_figures[k] for k in ("tp", "fp", "tn", "fn")} if series else None,
        "alerts": len(ctx.bus.alerts),
        "containment_actions": len(actions) if isinstance(actions, list) else actions,
        "parts_rejected": mon_summary.get("parts_rejected") if mon_summary else None,
        "downtime_s": mon_summary.get("downtime_s") if mon_summary else None,
        "downtime_frac_raw": mon_summary.get("downtime_frac") if mon_summary else None,
        "baseline_downtime_s": base["monitor"].get("downtime_s") if base and base["monitor"] else None,
        "baseline_cached": base.get("cached") if base else None,
        "attack_intervals": [iv.as_dict() for iv in intervals],
        "detectors": {name: det.summary() for name, det in detectors.items() if hasattr(det, "summary")},
        "defence": defence_summary,
        "monitor": mon_summary,
        "twin": {k: v for k, v in twin_summary.items() if k != "signals"} if twin_summary else None,
    })
    if (ctx.out_dir / "audit.jsonl").is_file():
        files["audit"] = str(ctx.out_dir / "audit.jsonl")
    ep = EpisodeResult(summary=jsonable(summary), files=files, data=data, series=series,
                       y_pred=det_figures["y_pred"], intervals=intervals)
    if cfg.get("plot", True):
        files.update(_plots(cfg, ep, observers, ctx, out_dir))
    return ep


def _panels(cfg: DictConfig) -> dict[str, list[str]]:
    """The plant's ``plot_panels`` as ``{label: [columns]}`` (a list of groups gets numbered labels)."""
    node = cfg.plant.get("plot_panels")
    if node is None:
        return {}
    panels = OmegaConf.to_container(node, resolve=True)
    if isinstance(panels, list):
        return {f"panel {i}": [str(c) for c in cols] for i, cols in enumerate(panels)}
    return {str(k): [str(c) for c in v] for k, v in panels.items()}


def _plots(cfg: DictConfig, ep: EpisodeResult, observers: Mapping[str, Observer], ctx: EpisodeContext,
           out_dir: Path) -> dict[str, str]:
    from cosim.tracking.plots import confusion_matrix, timeline

    files: dict[str, str] = {}
    data = dict(ep.data)
    panels: dict[str, list[str]] = {}
    for label, cols in _panels(cfg).items():
        present = [c for c in cols if c in data]
        if present:
            panels[str(label)] = present
    if ep.series:
        score_cols = []
        for name, (t, scores, _alarms) in ep.series.items():
            col = f"score:{name}"
            data[col] = hold(t, scores, data["time"], initial=np.nan)
            score_cols.append(col)
        panels["detector scores"] = score_cols
        if ep.y_pred is not None:
            data["alarm"] = ep.y_pred.astype(np.int64)
            panels["alarm (any detector)"] = ["alarm"]
    if panels:
        events: list[dict[str, Any]] = []
        last = -math.inf
        for alert in ctx.bus.alerts:  # alert onsets, not every alerting sample
            if alert.time - last > 1.0:
                events.append({"t": alert.time, "kind": "alert"})
            last = alert.time
        actions = (ep.summary.get("defence") or {}).get("actions")
        for action in actions if isinstance(actions, list) else []:
            if isinstance(action, Mapping) and action.get("ok", True):
                t = next((action[k] for k in ("effective_t", "decided_t", "t", "time") if action.get(k) is not None),
                         None)
                if t is not None:
                    events.append({"t": float(t), "kind": f"containment: {action.get('action', '?')}"})
        monitor = _monitor(observers)
        for e in getattr(monitor, "events", []) if monitor is not None else []:
            events.append({"t": float(e["t"]), "kind": "unsafe"})
        intervals: dict[str, list[list[float]]] = {}
        end = float(data["time"][-1]) if len(data["time"]) else 0.0
        if ep.intervals:
            intervals["attack"] = [[iv.start, end if iv.end is None else iv.end] for iv in ep.intervals]
        safe = (ep.summary.get("defence") or {}).get("safe_mode_intervals") or []
        if safe:
            intervals["safe mode"] = [[a, end if b is None else b] for a, b in safe]
        if monitor is not None and getattr(monitor, "downtime", None):
            intervals["downtime"] = [list(d) for d in monitor.downtime]
        s = ep.summary
        title = (f"{cfg.plant.get('name', '?')} | attack {cfg.attack.get('name', '?')} | "
                 f"defence {(cfg.get('defense') or {}).get('name', 'none')} | seed {cfg.seed}"
                 + (f" | F1 {s['f1']:.2f}" if s.get("f1") is not None else ""))
        files["timeline"] = str(timeline(data, panels, out_dir / "timeline.png", events=events,
                                         intervals=intervals, title=title))
    conf = ep.summary.get("confusion")
    if conf:
        files["confusion"] = str(confusion_matrix(conf["tp"], conf["fp"], conf["tn"], conf["fn"],
                                                  out_dir / "confusion.png"))
    return files


# MLflow --------------------------------------------------------------------------------
def _choices(cfg: DictConfig, choices: Mapping[str, Any]) -> dict[str, str]:
    out = {k: str(choices[k]) for k in CHOICE_KEYS if choices.get(k) is not None}
    out.setdefault("attack", str(cfg.get("attack", {}).get("name", "none")))
    defense = cfg.get("defense")
    out.setdefault("defense", str(defense.get("name", "?")) if defense else "none")
    return out


def episode_params(cfg: DictConfig, choices: Mapping[str, str], detector: str) -> dict[str, Any]:
    """Hydra choices and key values of the episode, as MLflow params."""
    params: dict[str, Any] = dict(choices)
    params["detector_config"] = detector
    params["detectors"] = ",".join(str(k) for k in (cfg.detector.get("detectors") or {})) or "-"
    params["seed"] = int(cfg.seed)
    params["duration"] = cfg.get("duration")
    params["plant.base_step"] = cfg.plant.get("base_step")
    for key in ("robot", "name"):
        if cfg.plant.get(key) is not None:
            params[f"plant.{key}"] = cfg.plant.get(key)
    if cfg.get("twin") and cfg.twin.get("enabled"):
        params["twin.sync.policy"] = (cfg.twin.get("sync") or {}).get("policy")
    params["network.enabled"] = bool(cfg.get("network") and cfg.network.get("enabled"))
    events = (cfg.get("attack") or {}).get("events") or []
    params["attack.events"] = ";".join(f"{e.get('attack')}@{e.get('target')}[{e.get('at')}+{e.get('duration')}]"
                                       for e in events) or "-"
    defense = cfg.get("defense")
    if defense and defense.get("orchestrator") is not None:
        params["defense.orchestrator"] = defense.orchestrator.get("_target_")
        if defense.orchestrator.get("policy") is not None:
            params["defense.policy"] = str(OmegaConf.to_container(defense.orchestrator, resolve=True).get("policy"))
    return {k: v for k, v in params.items() if v is not None}


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def start_mlflow(cfg: DictConfig, choices: Mapping[str, str], sweep_dir: str | None, job: str | None) -> Any:
    """The episode's MLflow run (a child of the sweep's parent inside a sweep)."""
    from cosim.tracking.mlflow_log import job_run

    name = cfg.mlflow.get("run_name") or f"{choices.get('attack')}/{choices.get('defense')}/seed{cfg.seed}"
    tags = {"attack": choices.get("attack"), "defense": choices.get("defense"), "seed": cfg.seed,
            "git_commit": _git_commit(), "host": socket.gethostname()}
    return job_run(name, str(cfg.mlflow.get("experiment", "cosim")), sweep_dir, job, tags)


def log_episode(run: Any, cfg: DictConfig, ep: EpisodeResult | None, out_dir: Path) -> None:
    """Metrics, series and artifacts of an episode (what exists, also after a failure)."""
    if ep is not None:
        metrics = {k: ep.summary.get(k) for k in SUMMARY_KEYS}
        metrics.update({k: ep.summary.get(k) for k in ("event_recall", "median_detection_delay_s", "alerts",
                                                       "downtime_s", "downtime_frac_raw", "parts_rejected")})
        if isinstance(ep.summary.get("containment_actions"), int):
            metrics["containment_actions"] = ep.summary["containment_actions"]
        run.log_metrics(metrics)
        if cfg.mlflow.get("log_series", True):
            series: dict[str, tuple[Any, Any]] = {}
            cols = [c for group in _panels(cfg).values() for c in group]
            for col in dict.fromkeys(cols):
                if col in ep.data and ep.data[col].dtype != object:
                    series[f"ts/{col}"] = (ep.data["time"], ep.data[col])
            for name, (t, scores, alarms) in ep.series.items():
                series[f"ts/score.{name}"] = (t, scores)
                series[f"ts/alarm.{name}"] = (t, alarms)
            run.log_series(series, max_points=int(cfg.mlflow.get("series_points", 400)))
    for name in ("summary.json", "config.yaml", "timeline.png", "confusion.png", "audit.jsonl", "alerts.jsonl"):
        run.log_artifact(out_dir / name)
    if cfg.mlflow.get("log_traces", True):
        for name in ("trace.csv", "trace.parquet"):
            run.log_artifact(out_dir / name, "traces")
    for gif in out_dir.glob("*.gif"):
        run.log_artifact(gif, "render")


# Entry ---------------------------------------------------------------------------------
def config_hash(cfg: DictConfig) -> str:
    """SHA-256 of the composed config without :data:`OPERATIONAL_KEYS` (resolved where it can be:
    FMU paths carry the hashes of their sources)."""
    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        data = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(data, dict)
    for key in (*OPERATIONAL_KEYS, "hydra"):
        data.pop(key, None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def isolation_mode(cfg: DictConfig) -> str:
    """``process`` (each episode in a forked process) or ``none``; ``process`` needs ``os.fork``."""
    mode = str(cfg.get("isolation") or "none")
    if mode not in ("process", "none"):
        raise ConfigurationError(f"isolation must be 'process' or 'none', got {mode!r}")
    return mode if hasattr(os, "fork") else "none"


def execute(cfg: DictConfig, out_dir: Path, choices: Mapping[str, Any] | None = None,
            sweep_dir: str | None = None, job: str | None = None,
            search_dirs: Sequence[str | Path] = ()) -> tuple[int, dict[str, Any], str | None]:
    """Run and log one episode; never raises on bad input or on a fault of its process.

    With ``isolation: process`` the episode runs in a forked process (see
    :func:`_execute_isolated`); with ``resume: true`` an episode that finished in ``out_dir``
    with the same config (:func:`config_hash`) is not run again.

    Returns:
        ``(exit status, summary, MLflow run id or None)``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        mode = isolation_mode(cfg)
        chash = config_hash(cfg)
    except _errors() as exc:
        return _execute_inline(cfg, out_dir, choices, sweep_dir, job, search_dirs, "", failed=exc)
    if cfg.get("resume"):
        done = finished_before(out_dir, chash)
        if done is not None:
            print(f"resume: {out_dir} finished before with the same config; not run again", file=sys.stderr)
            return 0, ordered(done), done.get("mlflow_run_id")
        supersede(out_dir)
    if mode == "process":
        return _execute_isolated(cfg, out_dir, choices, sweep_dir, job, search_dirs, chash)
    return _execute_inline(cfg, out_dir, choices, sweep_dir, job, search_dirs, chash)


def _execute_inline(cfg: DictConfig, out_dir: Path, choices: Mapping[str, Any] | None,
                    sweep_dir: str | None, job: str | None, search_dirs: Sequence[str | Path],
                    chash: str, failed: BaseException | None = None) -> tuple[int, dict[str, Any], str | None]:
    """:func:`execute` in this process."""
    from cosim.tracking.mlflow_log import server_error, tracking_exceptions, write_run_file

    run = None
    ep: EpisodeResult | None = None
    t0 = time.perf_counter()

    def fail(exc: BaseException) -> tuple[int, dict[str, Any], str | None]:
        nonlocal run
        error = describe_error(exc, cfg)
        _say_error(error)
        summary = empty_summary() | {"status": "FAILED", "error": error, "error_type": type(exc).__name__,
                                     "config_hash": chash or None}
        if isinstance(exc, StepTimeout):
            summary.update({"unit": exc.unit, "call": exc.call, "timeout_s": exc.timeout_s})
            summary["sim_time_s"] = _trace_end(out_dir)
        if run is None and not isinstance(exc, TrackingError):  # failed before its run started
            run = _failure_run(cfg, choices, sweep_dir, job, out_dir)
        if run is not None:
            summary["mlflow_run_id"] = run.run_id
        write_summary(out_dir, summary)
        if run is not None:
            try:
                try:
                    log_episode(run, cfg, None, out_dir)
                finally:
                    run.finish("FAILED", error=error)
            except (*_errors(), *tracking_exceptions()) as log_exc:
                summary["mlflow_error"] = f"could not record the failure in MLflow: {server_error(log_exc, run.uri)}"
                _say_error(summary["mlflow_error"])
                write_summary(out_dir, summary)
        return 1, ordered(summary), run.run_id if run is not None else None

    def hung(exc: StepTimeout) -> None:  # from the watchdog's thread: record, then end the process
        try:
            fail(exc)
        finally:
            _exit_hung(exc, quiet=True)

    if failed is not None:
        return fail(failed)
    try:
        detector = resolve_detector(cfg, search_dirs)
        if cfg.detector.get("auto_fit", False):
            from experiments.fit import ensure_models

            ensure_models(cfg, log=lambda message: print(message, file=sys.stderr, flush=True))
        try:
            (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        except OmegaConfBaseException:
            (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        chosen = _choices(cfg, choices or {})
        if cfg.mlflow.get("enabled", True):
            try:
                run = start_mlflow(cfg, chosen, sweep_dir, job)
                params = episode_params(cfg, chosen, detector)
                run.log_params(params)
                write_run_file(out_dir, run, params, _run_tags(cfg, chosen, sweep_dir, job), run.run.info.run_name)
            except tracking_exceptions() as exc:
                if isinstance(exc, TrackingError):
                    raise
                raise TrackingError(server_error(exc, run.uri if run is not None else None)) from None
        ep = run_episode(cfg, out_dir, on_timeout=hung)
        ep.summary["total_wall_s"] = time.perf_counter() - t0
        ep.summary["config_hash"] = chash or None
        if run is not None:
            ep.summary["mlflow_run_id"] = run.run_id
        write_summary(out_dir, ep.summary)
    except _errors() as exc:
        return fail(exc)
    if run is None:
        return 0, ordered(ep.summary), None
    try:
        log_episode(run, cfg, ep, out_dir)
        run.finish("FINISHED")
    except tracking_exceptions() as exc:  # the episode is done and on disk: say so, keep it
        error = (f"{server_error(exc, run.uri)}; the episode finished and its results are in {out_dir}: "
                 f"log them later with python -m experiments.relog {out_dir}")
        _say_error(error)
        ep.summary["tracking_error"] = error
        write_summary(out_dir, ep.summary)
        return 1, ordered(ep.summary), run.run_id
    return 0, ordered(ep.summary), run.run_id


def _exit_hung(exc: StepTimeout, quiet: bool = False) -> None:
    """End the process after a hung step (nothing can stop the stuck call)."""
    if not quiet:
        print(f"error: {exc}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_HUNG)


def _trace_end(out_dir: Path) -> float | None:
    """Time of the last row of the trace (or its checkpoint) in ``out_dir``."""
    from cosim.core.observer import read_checkpoint

    for name in ("trace.csv", PARTIAL_TRACE):
        path = out_dir / name
        if path.is_file():
            try:
                _, rows = read_checkpoint(path)
                return float(rows[-1][0]) if rows else None
            except (OSError, ValueError, IndexError):
                return None
    return None


def _failure_run(cfg: DictConfig, choices: Mapping[str, Any] | None, sweep_dir: str | None, job: str | None,
                 out_dir: Path) -> Any:
    """The MLflow run of an episode that failed before its run was started (a config that does
    not resolve, a detector that cannot be fitted), so that it is seen FAILED beside the others;
    ``None`` with MLflow off, or when the config cannot even name the run."""
    from cosim.tracking.mlflow_log import tracking_exceptions, write_run_file

    try:
        if not cfg.mlflow.get("enabled", True):
            return None
        chosen = _choices(cfg, choices or {})
        run = start_mlflow(cfg, chosen, sweep_dir, job)
        write_run_file(out_dir, run, None, _run_tags(cfg, chosen, sweep_dir, job), run.run.info.run_name)
    except (*_errors(), *tracking_exceptions()):
        return None
    return run


def _run_tags(cfg: DictConfig, choices: Mapping[str, str], sweep_dir: str | None, job: str | None) -> dict[str, Any]:
    tags = {"attack": choices.get("attack"), "defense": choices.get("defense"), "seed": cfg.seed}
    if sweep_dir is not None:
        tags["sweep_dir"] = str(Path(sweep_dir).resolve())
    if job is not None:
        tags["job"] = job
    return tags


# Process isolation ---------------------------------------------------------------------
def _die_with(supervisor: int) -> None:
    """End this episode process when its supervising process dies (Linux): a killed sweep worker
    (a launcher that gives up on its batch, Ctrl-C) leaves no episode running on its own,
    writing into a job directory that a resumed sweep runs again."""
    if sys.platform == "linux":
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != supervisor:  # it died before that took effect
        os._exit(EXIT_BUG)


def _execute_isolated(cfg: DictConfig, out_dir: Path, choices: Mapping[str, Any] | None,
                      sweep_dir: str | None, job: str | None, search_dirs: Sequence[str | Path],
                      chash: str) -> tuple[int, dict[str, Any], str | None]:
    """:func:`execute` in a forked process, supervised by this one.

    The child does everything :func:`_execute_inline` does. When it dies without a result (a
    signal: SIGKILL, SIGSEGV, SIGABRT; or an exit without ``summary.json``) this process
    records the failure: the checkpointed trace becomes ``trace.csv``, ``summary.json`` says
    FAILED with the signal and the simulated time reached, and the MLflow run the child
    recorded in ``mlflow_run.json`` is marked FAILED with the error and the trace.
    """
    import multiprocessing

    from cosim.tracking.mlflow_log import RUN_FILE

    for name in ("summary.json", RUN_FILE, PARTIAL_TRACE):
        (out_dir / name).unlink(missing_ok=True)
    _warm_models(cfg, search_dirs)
    uri = _prepare_fork(cfg, sweep_dir)
    clock = multiprocessing.get_context("fork").RawValue("d", math.nan)
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()  # the child's collector leaves the parent's objects alone: no copy-on-write of them
    supervisor = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        gc.unfreeze()
        raise
    if pid != 0:
        gc.unfreeze()
    if pid == 0:  # the episode's process
        code = EXIT_BUG
        try:
            global _HEARTBEAT, _IN_CHILD
            _HEARTBEAT, _IN_CHILD = clock, True
            _die_with(supervisor)
            faulthandler.disable()  # a crash is reported once, by the supervising process
            _own_connections(uri)
            code = _execute_inline(cfg, out_dir, choices, sweep_dir, job, search_dirs, chash)[0]
        except BaseException:  # a bug: its traceback; the parent records the failure
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    try:
        _, wait_status = os.waitpid(pid, 0)
    except BaseException:  # Ctrl-C or the like: take the episode's process down too
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    code = os.waitstatus_to_exitcode(wait_status)
    summary = _read_summary(out_dir)
    if summary is not None and code in (0, 1, EXIT_HUNG):
        for key in ("error", "tracking_error", "mlflow_error"):  # the child's error lines, said here
            if summary.get(key) and (key != "error" or summary.get("status") == "FAILED"):
                _say_error(str(summary[key]))
        status = 0 if code == 0 else 1
        return status, ordered(summary), summary.get("mlflow_run_id")
    return _record_death(cfg, out_dir, code, clock.value, chash, summary)


# Imported before forking, so that each episode's process has them (an import in the child
# would be paid again by every episode).
_PRELOAD = ("fmpy", "pybullet", "pyarrow.parquet", "cosim.attacks", "cosim.core.watchdog", "cosim.tracking.plots",
            "experiments.relog", "cosim.units.fmu", "cosim.units.bullet", "cosim.twin.replica", "cosim.twin.sync",
            "cosim.twin.integrity", "cosim.network", "cosim.detection.online", "cosim.detection.fast",
            "cosim.detection.metrics", "cosim.tracking.mlflow_log", "lxml.etree", "fmpy.validation", "fmpy.fmi2",
            "fmpy.fmi3", "fmpy.logging")


def _prepare_fork(cfg: DictConfig, sweep_dir: str | None) -> str | None:
    """Import what episodes use and open the MLflow store once, in the supervising process.

    Returns:
        The tracking URI the episode will use (``None`` without MLflow).
    """
    import importlib

    for name in (*_PRELOAD, *_target_modules(cfg)):
        try:
            importlib.import_module(name)
        except Exception:  # a bad target is the episode's to report
            pass
    if cfg.get("plot", True):
        import matplotlib

        matplotlib.use("Agg")  # as cosim.tracking.plots does
        importlib.import_module("matplotlib.pyplot")
    if not cfg.mlflow.get("enabled", True):
        return None
    from cosim.tracking.mlflow_log import read_parent, tracking_exceptions, tracking_uri

    uri = str((read_parent(sweep_dir) or {}).get("tracking_uri") or tracking_uri())
    try:
        from mlflow.tracking._tracking_service.utils import _get_store

        _get_store(uri)  # cached: made once per process, not once per episode
    except (ImportError, *tracking_exceptions()):
        pass  # the episode reports it
    return uri


#: Packages of this project whose modules :func:`_prepare_fork` imports for the episodes. Other
#: modules (third-party units, plug-ins) are imported in the episode's process, where a crash
#: while importing them fails only that episode.
_OWN_PACKAGES = ("cosim.", "models.", "experiments.")


def _target_modules(cfg: DictConfig) -> list[str]:
    """Modules of this project named by a ``_target_`` in ``cfg`` (units, observers, detectors,
    defence), so that episodes do not import them again."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            target = node.get("_target_")
            if isinstance(target, str) and target.startswith(_OWN_PACKAGES):
                found.append(target.rsplit(".", 1)[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        walk(OmegaConf.to_container(cfg, resolve=False))
    except OmegaConfBaseException:
        return []
    return list(dict.fromkeys(found))


_WARMED: set[tuple[str, int, int]] = set()
_WARMED_CHOICES: set[str] = set()


def _warm_models(cfg: DictConfig, search_dirs: Sequence[str | Path]) -> None:
    """Load each detector model file once per process before forking, so that the libraries its
    unpickling imports (scikit-learn: seconds) are in memory for every episode's process.
    Anything wrong is left for the episode to report."""
    from cosim.detection.models import load_model

    try:  # the same detector choice as an earlier job of this process: warm already
        choice = json.dumps([OmegaConf.to_container(cfg.get("detector"), resolve=False),
                             OmegaConf.select(cfg, "defense.detector"), OmegaConf.select(cfg, "plant.name"),
                             str(paths.cache_dir("detectors")), [str(d) for d in search_dirs]],
                            sort_keys=True, default=str)
    except Exception:
        choice = None
    if choice is not None and choice in _WARMED_CHOICES:
        return
    try:
        resolved = copy.deepcopy(cfg)
        resolve_detector(resolved, search_dirs)
        detectors = resolved.detector.get("detectors") or {}
        models = [str(node.get("model")) for node in detectors.values()
                  if OmegaConf.is_dict(node) and isinstance(node.get("model"), str)]
    except Exception:
        return
    every = True  # every model file of the choice is in memory
    for model in models:
        path = Path(model)
        try:
            st = path.stat()
        except OSError:
            every = False
            continue  # not a local file (an MLflow URI), or not fitted yet
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key in _WARMED:
            continue
        try:
            load_model(path)
        except Exception:
            every = False
            continue
        _WARMED.add(key)
    if choice is not None and every:
        _WARMED_CHOICES.add(choice)


def _own_connections(uri: str | None) -> None:
    """In a forked episode process: database connections of its own, not the parent's pooled ones."""
    if uri is None:
        return
    try:
        from mlflow.tracking._tracking_service.utils import _get_store

        engine = getattr(_get_store(uri), "engine", None)
        if engine is not None:
            engine.dispose(close=False)  # forget the inherited pool without closing the parent's sockets
    except Exception:  # best effort: the episode reports a store that does not work
        pass


def _read_summary(out_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _record_death(cfg: DictConfig, out_dir: Path, code: int, sim_t: float, chash: str,
                  summary: dict[str, Any] | None) -> tuple[int, dict[str, Any], str | None]:
    """Record an episode whose process died: FAILED summary, trace up to the last checkpoint, MLflow."""
    from cosim.tracking.mlflow_log import read_run_file, reopen, server_error, tracking_exceptions

    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = f"episode process killed by {name} (signal {-code})"
    else:
        what = f"episode process ended with exit status {code} without a result"
    partial = out_dir / PARTIAL_TRACE
    if partial.is_file():
        os.replace(partial, out_dir / "trace.csv")
    kept = _trace_end(out_dir)
    error = what + (f" at t≈{sim_t:.4g} s" if math.isfinite(sim_t) else "") + (
        f"; trace kept up to t={kept:g} s" if kept is not None else "; no trace recorded")
    print(f"error: {error}", file=sys.stderr, flush=True)
    out = dict(summary or empty_summary())
    if summary is not None:  # died after its summary (while logging): keep its figures
        out["error_after_summary"] = True
    out.update({"status": "FAILED", "error": error, "error_type": JobKilled.__name__, "config_hash": chash or None,
                "exit_code": code})
    if summary is None:
        out["sim_time_s"] = kept
    info = read_run_file(out_dir)
    if info is not None:
        out["mlflow_run_id"] = info["run_id"]
    write_summary(out_dir, out)
    if info is not None:
        try:
            run = reopen(info["run_id"], info.get("tracking_uri"))
            log_episode(run, cfg, None, out_dir)
            run.finish("FAILED", error=error)
        except (*_errors(), *tracking_exceptions()) as exc:
            print(f"error: could not record the failure in MLflow: {server_error(exc, info.get('tracking_uri'))}",
                  file=sys.stderr, flush=True)
    return 1, ordered(out), info["run_id"] if info is not None else None


# Resume --------------------------------------------------------------------------------
def finished_before(out_dir: Path, chash: str) -> dict[str, Any] | None:
    """The summary of an episode that finished in ``out_dir`` with the config of hash ``chash``.

    One that finished but could not be logged (the tracking server was away) is logged now
    (:func:`experiments.relog.relog`); if that fails too, it is run again.
    """
    summary = _read_summary(out_dir)
    if summary is None or summary.get("status") != "FINISHED" or summary.get("config_hash") != chash:
        return None
    if summary.get("tracking_error"):
        from cosim.tracking.mlflow_log import tracking_exceptions
        from experiments.relog import relog

        try:
            relog(out_dir)
        except (*_errors(), *tracking_exceptions()) as exc:
            print(f"resume: {out_dir} finished but cannot be logged ({exc}); running it again", file=sys.stderr)
            return None
        summary = _read_summary(out_dir)
    return summary


def supersede(out_dir: Path) -> None:
    """Before a job runs again: its earlier MLflow run, if a killed sweep left it RUNNING, is KILLED."""
    from cosim.tracking.mlflow_log import read_run_file, reopen, tracking_exceptions

    info = read_run_file(out_dir)
    if info is None:
        return
    try:
        run = reopen(info["run_id"], info.get("tracking_uri"))
        if run.status == "RUNNING":
            run.finish("KILLED", error="the sweep was stopped; the job was run again on resume")
        run.set_tags({"superseded": "true"})
    except (*_errors(), *tracking_exceptions()):
        pass  # gone with its store: nothing to close


def print_summary(summary: Mapping[str, Any], out_dir: Path, run_id: str | None) -> None:
    """The summary as a two-column table, and where to look at it."""
    from cosim.tracking.mlflow_log import tracking_uri

    keys = [*SUMMARY_KEYS, "status", "event_recall", "alerts", "containment_actions"]
    width = max(len(k) for k in keys)
    print(f"{'':-<{width + 14}}")
    for key in keys:
        value = summary.get(key)
        text = "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {text}")
    print(f"{'':-<{width + 14}}")
    print(f"run directory: {out_dir}")
    if run_id:
        uri = tracking_uri()
        print(f"MLflow run {run_id} ({uri})")
        if uri.startswith("sqlite:///"):
            print(f"see it with: mlflow ui --backend-store-uri {uri}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="run")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    search = [str(p).removeprefix("file://") for p in hc.searchpath if str(p).startswith("file://")]
    status, summary, run_id = execute(cfg, out_dir, dict(hc.runtime.choices),
                                      sweep_dir=str(hc.sweep.dir) if multirun else None,
                                      job=str(hc.job.num) if multirun else None, search_dirs=search)
    if multirun:
        from cosim.tracking.mlflow_log import read_parent
        from cosim.tracking.progress import sweep_progress

        parent = read_parent(hc.sweep.dir) or {}
        sweep_progress(hc.sweep.dir, parent.get("jobs"), parent.get("started"))
        return  # a failed job is recorded; the sweep goes on with its other jobs
    if status:
        sys.exit(status)
    print_summary(summary, out_dir, run_id)


def cli() -> None:
    """``python -m experiments.run``: :func:`main`, where bad input that Hydra meets before the
    episode (unknown config option or key, malformed override or config file, unusable run
    directory) is one ``error:`` line and exit status 1 too, not Hydra's stack trace."""
    import os

    import yaml

    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for stack traces
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing
    try:
        main()
    except (*_errors(), yaml.YAMLError) as exc:
        message = str(exc)
        if getattr(exc, "override", None):  # hydra.errors.OverrideParseException
            message = f"cannot parse override '{exc.override}': {message}"  # type: ignore[attr-defined]
        if isinstance(exc.__cause__, OmegaConfBaseException | yaml.YAMLError):
            message += "\n" + str(exc.__cause__).strip().splitlines()[0]
        if isinstance(exc, yaml.YAMLError):
            message = f"a config file is not valid YAML: {message}"
        elif isinstance(exc, OSError) and not isinstance(exc, HydraException):  # Hydra's run directory
            message = f"cannot write to the run directory: {message}"
        print(f"error: {one_line(message) or type(exc).__name__}", file=sys.stderr)
        sys.exit(1)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    cli()
