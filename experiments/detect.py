"""Fit a table detector on normal data and score a recorded table.

    python -m experiments.detect train=normal.csv test=run.csv
    python -m experiments.detect train=normal.parquet test=run.parquet detector.method=pca \
        detector.params.statistic=q detector.target_far=0.05 out=/tmp/scored.parquet
    python -m experiments.detect train=a.csv test=b.csv 'columns=[plc.level,arm.ee_x]' label=attack

Writes the test table with two more columns, ``score`` (higher = more anomalous) and
``alarm`` (0/1), to ``out`` (default ``<run dir>/scored.<suffix of test>``), the fitted
detector beside it (``<out stem>.detector.npz``) and ``<out stem>.json`` with the summary.
The alarm threshold comes from the training table only (a held-out block, see
:mod:`cosim.detection.tabular`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pyarrow as pa
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cosim.detection.metrics import score_run
from cosim.detection.tab_io import TableError, feature_columns, matrix, read_table, write_table
from cosim.detection.tabular import make
from cosim.errors import ConfigurationError, CosimError


def select_columns(cfg: DictConfig, train: pa.Table, test: pa.Table) -> list[str]:
    """Feature columns: ``cfg.columns`` or every training column but time and label; test must match."""
    exclude = [c for c in (cfg.get("time_column"), cfg.get("label")) if c]
    if cfg.get("columns") is not None:
        columns = [str(c) for c in cfg.columns]
        if not columns:
            raise ConfigurationError("columns=[] selects no feature column")
        for name in exclude:
            if name in columns:
                raise ConfigurationError(f"column '{name}' is the time or label column; it cannot be a feature")
        return columns
    columns = feature_columns(train, cfg.train, exclude=exclude)
    extra = [c for c in test.column_names if c not in train.column_names and c not in exclude]
    if extra:
        raise TableError(f"{cfg.test}: column(s) {extra} are missing from the training table {cfg.train}; "
                         f"pick the features with columns=[...]")
    return columns


def detect(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit on ``cfg.train``, score ``cfg.test``, write the scored table and the detector; return a summary."""
    train_path, test_path = Path(str(cfg.train)), Path(str(cfg.test))
    train = read_table(train_path)
    test = read_table(test_path)
    columns = select_columns(cfg, train, test)
    x_train = matrix(train, columns, train_path)
    x_test = matrix(test, columns, test_path)

    det_cfg = cfg.detector
    raw = det_cfg.get("params")
    params = OmegaConf.to_container(raw, resolve=True) if raw is not None else {}
    if not isinstance(params, dict):
        raise ConfigurationError(f"detector.params must be a mapping, got {params!r}")
    detector = make(str(det_cfg.method), holdout=float(det_cfg.holdout), refit=bool(det_cfg.refit),
                    **{str(k): v for k, v in params.items()})
    detector.fit(x_train, feature_names=columns)
    far = float(det_cfg.target_far)
    threshold = detector.set_threshold(far)
    scores = detector.score(x_test)
    alarms = (scores > threshold).astype(np.int8)

    out = Path(str(cfg.out)) if cfg.get("out") else run_dir / f"scored{test_path.suffix.lower()}"
    for name in ("score", "alarm"):
        if name in test.column_names:
            test = test.drop_columns([name])
    scored = test.append_column("score", pa.array(scores)).append_column("alarm", pa.array(alarms))
    write_table(scored, out)
    model = detector.save(out.with_name(f"{out.stem}.detector.npz"))

    n_cal = int(detector.calibration_scores.size) if detector.calibration_scores is not None else 0
    summary: dict[str, Any] = {
        "status": "FINISHED",
        "method": detector.name,
        "params": detector.params,
        "features": len(columns),
        "train_rows": int(x_train.shape[0]),
        "calibration_rows": n_cal,
        "target_far": far,
        "threshold": threshold,
        "rows": int(x_test.shape[0]),
        "alarms": int(alarms.sum()),
        "alarm_rate": float(alarms.mean()),
        "files": {"scored": str(out), "detector": str(model)},
    }
    if n_cal and far * n_cal < 1:
        summary["note"] = (f"{n_cal} calibration rows cannot resolve target_far={far}: "
                           f"the threshold is the largest held-out score")
    label = cfg.get("label")
    if label:
        y_true = matrix(test, [str(label)], test_path)[:, 0]
        if not np.all(np.isin(y_true, (0, 1))):
            raise TableError(f"{test_path}: label column '{label}' must hold only 0 and 1")
        time_col = cfg.get("time_column")
        times = (matrix(test, [time_col], test_path)[:, 0] if time_col and time_col in test.column_names
                 else np.arange(x_test.shape[0], dtype=float))
        summary["metrics"] = score_run(times, y_true.astype(int), alarms)
    out.with_name(f"{out.stem}.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """Print the summary as an aligned table."""
    skip = {"files", "params", "metrics"}
    keys = [k for k in summary if k not in skip]
    width = max(len(k) for k in [*keys, "scored", "detector", *(f"  {m}" for m in summary.get("metrics", {}))])
    for key in keys:
        value = summary[key]
        print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    for key, value in summary["files"].items():
        print(f"{key:<{width}}  {value}")
    for key, value in summary.get("metrics", {}).items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"  {key:<{width - 2}}  {shown}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="detect")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = detect(cfg, run_dir)
    except (CosimError, OmegaConfBaseException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return
        sys.exit(1)
    print_summary(summary)


if __name__ == "__main__":
    main()
