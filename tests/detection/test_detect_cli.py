"""`python -m experiments.detect`: CSV and Parquet round trips, and clear errors (exit 1, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]


def table(n: int, seed: int, shift: float = 0.0, label: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.zeros(n, dtype=np.int64)
    if shift:
        x[n // 2:] += shift
        y[n // 2:] = 1
    cols = {"time": np.arange(n) * 0.1, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}
    if label:
        cols["attack"] = y
    return pa.table(cols)


def write(t: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        pacsv.write_csv(t, path)
    else:
        pq.write_table(t, path)
    return path


def run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments.detect", *overrides,
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(tmp_path, suffix):
    train = write(table(2000, 1), tmp_path / f"train{suffix}")  # MEWMA thresholds need a few thousand rows
    test = write(table(200, 2, shift=3.0, label=True), tmp_path / f"test{suffix}")
    proc = run(tmp_path, f"train={train}", f"test={test}", "label=attack", "detector.target_far=0.02")
    assert proc.returncode == 0, proc.stderr
    assert "alarm_rate" in proc.stdout and "threshold" in proc.stdout
    out = tmp_path / "run" / f"scored{suffix}"
    scored = pacsv.read_csv(out) if suffix == ".csv" else pq.read_table(out)
    assert scored.num_rows == 200
    assert scored.column_names == ["time", "a", "b", "c", "attack", "score", "alarm"]
    alarm = scored.column("alarm").to_numpy()
    assert set(np.unique(alarm)) <= {0, 1}
    assert alarm[100:].mean() > 0.9 and alarm[:100].mean() < 0.2  # the shifted half raises the alarms
    assert (tmp_path / "run" / "scored.detector.npz").is_file()


def test_pca_with_chosen_columns_and_explicit_out(tmp_path):
    train = write(table(300, 3), tmp_path / "train.csv")
    test = write(table(100, 4, shift=4.0), tmp_path / "test.csv")
    out = tmp_path / "res" / "x.parquet"
    proc = run(tmp_path, f"train={train}", f"test={test}", "columns=[a,b]", "detector.method=pca",
               "+detector.params.statistic=combined", f"out={out}")
    assert proc.returncode == 0, proc.stderr
    scored = pq.read_table(out)
    assert scored.num_rows == 100 and {"score", "alarm"} <= set(scored.column_names)
    assert (out.parent / "x.detector.npz").is_file() and (out.parent / "x.json").is_file()


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_corrupt_table_is_a_clear_error(tmp_path):
    train = write(table(100, 5), tmp_path / "train.csv")
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"\x00\x01not parquet at all" * 20)
    assert_clean_error(run(tmp_path, f"train={train}", f"test={bad}"), "broken.parquet")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("time,a,b\n0,1,2\n1,2\n")
    assert_clean_error(run(tmp_path, f"train={ragged}", f"test={train}"), "ragged.csv")


def test_non_numeric_and_mismatched_columns_are_clear_errors(tmp_path):
    train = write(table(100, 6), tmp_path / "train.csv")
    text = tmp_path / "text.csv"
    text.write_text("time,a,state\n0,1.0,open\n1,2.0,closed\n")
    assert_clean_error(run(tmp_path, f"train={text}", f"test={train}"), "text.csv", "state")
    extra = write(table(50, 7).append_column("d", pa.array(np.zeros(50))), tmp_path / "extra.csv")
    assert_clean_error(run(tmp_path, f"train={train}", f"test={extra}"), "['d']", "missing from the training table")
    assert_clean_error(run(tmp_path, f"train={tmp_path / 'absent.csv'}", f"test={train}"), "absent.csv")
