"""`experiments.evaluate_tep` on a tiny synthetic data directory in the TEP file format."""

from __future__ import annotations

import numpy as np

from experiments.evaluate_tep import FAULT_START, load_tep, main

N_VARS = 8


def process(n: int, seed: int) -> np.ndarray:
    """Correlated AR(1) signals, like a slow process under control."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(0).normal(size=(N_VARS, N_VARS))
    e = rng.normal(size=(n, N_VARS))
    x = np.empty_like(e)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = 0.7 * x[i - 1] + e[i]
    return x @ mix + 10.0


def write_dir(root, faults=True):
    root.mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "d00.dat", process(500, 1).T)  # stored transposed, as in the Braatz data
    np.savetxt(root / "d00_te.dat", process(960, 2))
    if faults:
        step = process(960, 3)
        step[FAULT_START:, 0] += 3.0  # a step on one signal
        np.savetxt(root / "d01_te.dat", step)
        drift = process(960, 4)
        drift[FAULT_START:, 2:4] += np.linspace(0, 4, 960 - FAULT_START)[:, None]  # a slow drift
        np.savetxt(root / "d04_te.dat", drift)
    return root


def test_loader_transposes_training_data(tmp_path):
    data = load_tep(write_dir(tmp_path / "tep"))
    assert data.train.shape == (500, N_VARS) and data.normal_test.shape == (960, N_VARS)
    assert sorted(data.faults) == [1, 4]


def test_report_at_matched_far_and_with_training_thresholds(tmp_path, capsys):
    out = tmp_path / "report.md"
    assert main(["--data-dir", str(write_dir(tmp_path / "tep")), "--far", "0.05", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text().strip() == text.strip()
    assert "## Matched false-alarm rate (5% on d00_te)" in text and "training data only" in text
    rows = [line for line in text.splitlines() if line.startswith("| MEWMA")]
    assert len(rows) == 3  # matched, training-only, delays
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert float(cells[1]) <= 0.05  # FAR on d00_te at the matched threshold
    assert float(cells[-1]) > 0.8  # mean detection rate of the synthetic faults
    assert "(baseline)" in text and "target +0.10" in text


def test_missing_or_empty_data_dir_is_an_error(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "absent")]) == 1
    assert "no such data directory" in capsys.readouterr().err
    assert main(["--data-dir", str(write_dir(tmp_path / "nofaults", faults=False))]) == 1
    assert "no fault test files" in capsys.readouterr().err
    assert main(["--data-dir", str(tmp_path)]) == 1  # no d00.dat at all
    assert "d00.dat is missing" in capsys.readouterr().err
