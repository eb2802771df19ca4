"""The comparison table of a sweep, rebuilt from its MLflow child runs, beside the paper's claims.

Rows are attack x defence (the runs' ``attack`` and ``defense`` params); each metric is given
as mean ± sample standard deviation over the finished runs of the row (its seeds). Failed
runs are counted, never averaged. The claims of the paper (Hossain & Jahan, 2025) are
checked on the runs under attack of the framework defence (``dt_framework``) and, for the
production-loss cut, against the CPS-only defence (``cps_only``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosim.errors import ConfigurationError
from cosim.tracking.mlflow_log import ROLE_TAG, client

METRICS: tuple[tuple[str, str], ...] = (
    ("f1", "detection F1"),
    ("accuracy", "detection accuracy"),
    ("detection_latency_s", "detection latency [s]"),
    ("containment_latency_s", "detection-to-containment [s]"),
    ("decision_wall_ms", "decision time [ms wall]"),
    ("downtime_frac", "downtime (extra, frac.)"),
    ("production_loss_frac", "production loss (frac.)"),
    ("unsafe_events", "unsafe events"),
    ("twin_deviation_rms", "twin deviation (RMS)"),
)
REFERENCE = {"f1": 0.95, "accuracy": 0.95, "containment_latency_s": 0.2, "downtime_frac": 0.02}


@dataclass
class Report:
    """A built report: the parent run, the table rows, the claims and the files written."""

    parent_id: str
    rows: list[dict[str, Any]]
    claims: list[dict[str, Any]]
    runs: int
    failed: int
    files: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""


def find_sweep(mlf: Any, sweep: str | None = None, experiment: str | None = None) -> Any:
    """The parent run ``sweep``, or the latest sweep parent (in ``experiment`` if given)."""
    if sweep:
        return mlf.get_run(sweep)
    if experiment:
        exp = mlf.get_experiment_by_name(experiment)
        if exp is None:
            raise ConfigurationError(f"report: no MLflow experiment '{experiment}' at {mlf.tracking_uri}")
        ids = [exp.experiment_id]
    else:
        ids = [e.experiment_id for e in mlf.search_experiments()]
    runs = mlf.search_runs(ids, filter_string=f"tags.`{ROLE_TAG}` = 'sweep'", order_by=["attributes.start_time DESC"],
                           max_results=1) if ids else []
    if not runs:
        raise ConfigurationError(f"report: no sweep found at {mlf.tracking_uri}"
                                 + (f" in experiment '{experiment}'" if experiment else "")
                                 + " (run one with python -m experiments.run -m ...)")
    return runs[0]


def child_runs(mlf: Any, parent: Any) -> list[Any]:
    """Every child run of ``parent`` but those a resumed sweep ran again (tag ``superseded``)."""
    runs = mlf.search_runs([parent.info.experiment_id],
                           filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=50000)
    return [r for r in runs if r.data.tags.get("superseded") != "true"]


def _stats(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def aggregate(runs: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per (attack, defence): ``n``, ``failed`` and ``<metric>_mean``/``<metric>_std``."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for run in runs:
        key = (run.data.params.get("attack", "?"), run.data.params.get("defense", "?"))
        groups.setdefault(key, []).append(run)
    rows = []
    for (attack, defense), members in sorted(groups.items()):
        done = [r for r in members if r.info.status == "FINISHED"]
        row: dict[str, Any] = {"attack": attack, "defense": defense, "n": len(done),
                               "failed": sum(1 for r in members if r.info.status == "FAILED"),
                               "seeds": ",".join(sorted({r.data.params.get("seed", "?") for r in done}, key=str))}
        for key, _ in METRICS:
            mean, std = _stats([r.data.metrics.get(key) for r in done])
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
        rows.append(row)
    return rows


def claims(runs: Sequence[Any], framework: str = "dt_framework", cps_only: str = "cps_only") -> list[dict[str, Any]]:
    """The paper's claims, measured on the finished runs under attack, with pass/fail."""
    done = [r for r in runs if r.info.status == "FINISHED" and r.data.params.get("attack", "none") != "none"]

    def values(defense: str, key: str) -> list[float]:
        return [r.data.metrics[key] for r in done if r.data.params.get("defense") == defense and key in r.data.metrics]

    def mean(defense: str, key: str) -> float | None:
        return _stats(values(defense, key))[0]

    out = []

    def add(claim: str, paper: str, measured: float | None, ok: bool | None, how: str) -> None:
        out.append({"claim": claim, "paper": paper, "measured": measured,
                    "pass": "n/a" if ok is None else ("PASS" if ok else "FAIL"), "how": how})

    f1 = mean(framework, "f1")
    add("detection F1", "0.95", f1, None if f1 is None else f1 >= 0.95, f"mean F1 of {framework} runs >= 0.95")
    acc = mean(framework, "accuracy")
    add("detection accuracy", "> 95%", acc, None if acc is None else acc > 0.95,
        f"mean accuracy of {framework} runs > 0.95")
    lat = mean(framework, "containment_latency_s")
    lat_ms = None if lat is None else lat * 1000.0
    add("containment time", "< 200 ms", lat_ms, None if lat_ms is None else lat_ms < 200.0,
        f"mean detection-to-containment latency (simulated ms) of {framework} runs that contained")
    down = mean(framework, "downtime_frac")
    add("downtime", "< 2%", down, None if down is None else down < 0.02,
        f"mean extra downtime fraction of {framework} runs < 0.02")
    loss_fw, loss_cps = mean(framework, "production_loss_frac"), mean(cps_only, "production_loss_frac")
    cut = None
    if loss_fw is not None and loss_cps is not None and loss_cps > 0:
        cut = 1.0 - loss_fw / loss_cps
    add("production loss cut vs CPS-only", "> 50%", cut, None if cut is None else cut > 0.5,
        f"1 - mean loss({framework}) / mean loss({cps_only}) > 0.5")
    return out


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.3g} ± {std or 0.0:.2g}"


def to_markdown(rows: Sequence[Mapping[str, Any]], claim_rows: Sequence[Mapping[str, Any]], parent: Any) -> str:
    head = ["attack", "defence", "n", *[label for _, label in METRICS]]
    lines = [f"# Sweep report: {parent.info.run_name} ({parent.info.run_id})", "",
             "Mean ± standard deviation over seeds (finished runs); `-` where a figure does not apply.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n = f"{r['n']}" + (f" (+{r['failed']} failed)" if r["failed"] else "")
        cells = [r["attack"], r["defense"], n, *[_fmt(r[f"{k}_mean"], r[f"{k}_std"]) for k, _ in METRICS]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "## Against the paper's claims", "", "| claim | paper | measured | result | how |",
              "|---|---|---|---|---|"]
    for c in claim_rows:
        m = "-" if c["measured"] is None else f"{c['measured']:.4g}"
        lines.append(f"| {c['claim']} | {c['paper']} | {m} | {c['pass']} | {c['how']} |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    cols = ["attack", "defense", "n", "failed", "seeds"] + [f"{k}_{s}" for k, _ in METRICS for s in ("mean", "std")]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return path


def build_report(sweep: str | None = None, experiment: str | None = None, out_dir: str | Path | None = None,
                 framework: str = "dt_framework", cps_only: str = "cps_only", log: bool = True,
                 uri: str | None = None) -> Report:
    """Build the report of a sweep, write it to ``out_dir`` and log it on the sweep's parent run.

    Args:
        sweep: the parent run id; ``None`` takes the latest sweep (of ``experiment`` if given).
        out_dir: where to write ``report.md``, ``report.csv``, ``claims.csv`` and the plots
            (default ``outputs/report/<parent id>`` under the working directory).
        framework, cps_only: the defence names the claims compare.
        log: log the files as artifacts (``report/``) of the parent run.
    """
    from cosim.tracking.plots import grouped_bars

    mlf = client(uri)
    parent = find_sweep(mlf, sweep, experiment)
    runs = child_runs(mlf, parent)
    if not runs:
        raise ConfigurationError(f"report: sweep {parent.info.run_id} has no child runs")
    rows = aggregate(runs)
    claim_rows = claims(runs, framework, cps_only)
    out = Path(out_dir) if out_dir is not None else Path("outputs") / "report" / parent.info.run_id
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(rows, claim_rows, parent)
    files = {"markdown": out / "report.md", "csv": write_csv(rows, out / "report.csv")}
    files["markdown"].write_text(md)
    with (out / "claims.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["claim", "paper", "measured", "pass", "how"])
        writer.writeheader()
        writer.writerows(claim_rows)
    files["claims"] = out / "claims.csv"
    for key, label in METRICS:
        values: dict[str, dict[str, tuple[float | None, float | None]]] = {}
        for r in rows:
            values.setdefault(r["attack"], {})[r["defense"]] = (r[f"{key}_mean"], r[f"{key}_std"])
        if any(m is not None for g in values.values() for m, _ in g.values()):
            files[f"plot_{key}"] = grouped_bars(values, out / f"{key}.png", title=label, ylabel=label,
                                                reference=REFERENCE.get(key), order=("none", cps_only, framework))
    report = Report(parent.info.run_id, rows, claim_rows, runs=len(runs),
                    failed=sum(1 for r in runs if r.info.status == "FAILED"), files=files, markdown=md)
    if log:
        for path in files.values():
            mlf.log_artifact(parent.info.run_id, str(path), "report")
        mlf.set_tag(parent.info.run_id, "report", "report/report.md")
    return report
