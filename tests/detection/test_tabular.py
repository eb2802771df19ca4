"""Table detectors on synthetic Gaussian data: false-alarm rate near target, shifts detected,
save/load round trip, and clear errors for missing or incompatible model files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cosim.detection.tabular import (
    FORMAT_VERSION,
    DetectorError,
    ModelFileError,
    PCADetector,
    TableDetector,
    available,
    lagged,
    make,
)
from cosim.errors import ConfigurationError

N_TRAIN, N_TEST, HOLDOUT, FAR = 8000, 8000, 0.25, 0.05
MIX = np.random.default_rng(1).normal(size=(6, 6))  # correlated signals
SIGNS = np.array([1, -1, 1, -1, 1, -1])

METHODS = [("pca", {"statistic": "t2"}), ("pca", {"statistic": "q"}), ("pca", {"statistic": "combined"}),
           ("pca", {"statistic": "t2_or_q"}), ("dpca", {"lags": 2}), ("mewma", {"lam": 0.1})]
IDS = [f"{m}-{next(iter(p.values()))}" for m, p in METHODS]


def normal(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 6)) @ MIX


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    train = normal(N_TRAIN, 2)
    return {"train": train, "test": normal(N_TEST, 3),
            "shift": normal(1000, 4) + 2 * train.std(axis=0) * SIGNS,  # breaks the correlation structure
            "scale": normal(1000, 5) * 3.0}  # three times the spread in every direction


@pytest.fixture(scope="module")
def fitted(data) -> dict[str, TableDetector]:
    return {i: make(m, **p).fit(data["train"]) for i, (m, p) in zip(IDS, METHODS, strict=True)}


@pytest.mark.parametrize("ident", IDS)
def test_false_alarm_rate_near_target(data, fitted, ident):
    """FAR on fresh normal data is a binomial estimate around the calibration quantile.

    The threshold is an order statistic of m = 2000 held-out scores, whose exceedance
    probability has sd ~ sqrt(far (1 - far) / m); the test rate adds sd ~ sqrt(far (1 - far) / n).
    The tolerance is 4 of these sd (plus 0.005 for the refit on all rows). MEWMA scores are
    autocorrelated: the sample sizes shrink by the EWMA correlation length (2 - lam) / lam.
    """
    det = fitted[ident]
    m, n = math.ceil(HOLDOUT * N_TRAIN), N_TEST
    if det.name == "mewma":
        corr = (2 - det.params["lam"]) / det.params["lam"]
        m, n = m / corr, n / corr
    sd = math.sqrt(FAR * (1 - FAR) * (1 / m + 1 / n))
    rate = float(np.mean(det.score(data["test"]) > det.threshold_for(FAR)))
    assert abs(rate - FAR) <= 4 * sd + 0.005, (rate, sd)


@pytest.mark.parametrize("ident", IDS)
def test_anomalies_are_detected(data, fitted, ident):
    det = fitted[ident]
    th = det.set_threshold(FAR)
    assert float(np.mean(det.score(data["scale"]) > th)) > 0.5  # everything is bigger: every statistic sees it
    if ident != "pca-t2":  # a shift off the correlation structure is Q's job, not T²'s
        assert float(np.mean(det.predict(data["shift"]))) > 0.95


def test_mewma_catches_a_small_persistent_shift_that_pca_misses(data, fitted):
    small = normal(2000, 6) + 0.4 * data["train"].std(axis=0) * SIGNS
    mewma, pca = fitted["mewma-0.1"], fitted["pca-combined"]
    rate_mewma = float(np.mean(mewma.score(small)[100:] > mewma.threshold_for(FAR)))
    rate_pca = float(np.mean(pca.score(small)[100:] > pca.threshold_for(FAR)))
    assert rate_mewma > 0.9 and rate_mewma > rate_pca + 0.3, (rate_mewma, rate_pca)


def test_threshold_rule_on_known_scores():
    det = make("pca").fit(normal(200, 7))
    det.calibration_scores = np.arange(100.0)  # 0..99
    assert det.threshold_for(0.05) == 94.0  # 5 of 100 scores (95..99) lie above it
    assert det.threshold_for(0.001) == 99.0  # finer than the calibration data resolves: the maximum
    with pytest.raises(DetectorError, match=r"\(0, 1\)"):
        det.threshold_for(0.0)


def test_pca_statistics_agree_with_single_statistic_detectors(data, fitted):
    both = fitted["pca-combined"]
    assert isinstance(both, PCADetector)
    stats = both.statistics(data["test"][:50])
    np.testing.assert_allclose(stats["combined"], both.score(data["test"][:50]))
    t2_limit, q_limit = both.model.t2_limit, both.model.q_limit
    np.testing.assert_allclose(stats["t2_or_q"], np.maximum(stats["t2"] / t2_limit, stats["q"] / q_limit))


def test_lagged_rows():
    x = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(lagged(x, 1), [[0, 1, 0, 1], [2, 3, 0, 1], [4, 5, 2, 3]])


@pytest.mark.parametrize("ident", IDS)
def test_save_load_round_trip(tmp_path, data, fitted, ident):
    det = fitted[ident]
    det.set_threshold(0.02)
    path = det.save(tmp_path / "model")
    assert path.suffix == ".npz"
    back = TableDetector.load(path)
    assert type(back) is type(det) and back.params == det.params
    assert back.threshold == det.threshold and back.target_far == 0.02
    np.testing.assert_allclose(back.score(data["test"][:300]), det.score(data["test"][:300]))
    assert back.threshold_for(0.1) == det.threshold_for(0.1)


def test_missing_corrupt_and_incompatible_model_files(tmp_path, fitted):
    missing = tmp_path / "nope.npz"
    with pytest.raises(ModelFileError, match=r"nope\.npz: no such file"):
        TableDetector.load(missing)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"this is not a zip archive")
    with pytest.raises(ConfigurationError, match=r"corrupt\.npz: not a readable detector file"):
        TableDetector.load(corrupt)
    # a file from another format version: rewrite the meta of a real file
    path = fitted["pca-combined"].save(tmp_path / "old.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"][()]))
    meta["version"] = FORMAT_VERSION + 1
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match=rf"old\.npz: written by format version {FORMAT_VERSION + 1}"):
        TableDetector.load(path)
    # a state that does not fit its detector
    del arrays["state.P"]
    meta["version"] = FORMAT_VERSION
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"partial\.npz: incomplete"):
        TableDetector.load(tmp_path / "partial.npz")


def test_registry_and_misuse():
    assert {"pca", "dpca", "mewma"} <= set(available())
    with pytest.raises(ConfigurationError, match="unknown table detector 'nope'"):
        make("nope")
    with pytest.raises(DetectorError, match="unknown parameter"):
        make("pca", lam=0.1)
    with pytest.raises(DetectorError, match="statistic"):
        make("pca", statistic="t3")
    with pytest.raises(DetectorError, match="not fitted"):
        make("mewma").score(np.zeros((3, 2)))
    det = make("mewma").fit(normal(100, 8))
    with pytest.raises(DetectorError, match="fitted on 6 columns, got 5"):
        det.score(np.zeros((4, 5)))
    bad = np.zeros((4, 6))
    bad[2, 3] = np.nan
    with pytest.raises(DetectorError, match="row 2, column 3"):
        det.score(bad)
    with pytest.raises(DetectorError, match="too few"):
        make("pca").fit(normal(3, 9))
    with pytest.raises(DetectorError, match="no threshold"):
        det.predict(normal(5, 10))


def test_constant_column_does_not_break_fitting():
    x = normal(400, 11)
    x[:, 2] = 5.0
    for method in ("pca", "mewma", "dpca"):
        det = make(method).fit(x)
        assert np.all(np.isfinite(det.score(x)))
