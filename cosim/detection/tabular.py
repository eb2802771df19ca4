# ruff: noqa: N803, N806  (X for a data matrix, as in scikit-learn)
"""Detectors for recorded tables: one row per sample (in time order), one column per signal.

A :class:`TableDetector` learns normal operation from a table of normal rows and gives
each row of another table an anomaly score (higher = more anomalous). Its alarm threshold
comes from normal data only: :meth:`TableDetector.fit` holds out the last contiguous block
of the normal rows (``holdout``, 25 % by default), fits on the rows before it, scores the
held-out block, and keeps those scores; :meth:`TableDetector.threshold_for` turns a target
false-alarm rate into the matching quantile of them. With ``refit=True`` (default) the model
is then refitted on all normal rows (more data for the covariance; the threshold stays the
one from the held-out block, which is then slightly conservative).

Detectors (``make(name, **params)``; ``available()`` lists them):

- ``pca``: PCA monitoring with Hotelling's T² in the principal subspace and Q (SPE) in the
  residual space. ``statistic`` selects ``"t2"``, ``"q"``, ``"combined"`` (Yue & Qin's
  combined index: T² and Q each divided by its 99 % theoretical control limit, summed) or
  ``"t2_or_q"`` (the larger of the two ratios: an alarm when T² or Q exceeds the same
  multiple of its limit).
- ``mewma``: multivariate EWMA. Each standardised signal is smoothed with an exponentially
  weighted moving average; the score is the Mahalanobis distance of the smoothed vector,
  with its covariance estimated (Ledoit-Wolf shrinkage) from the smoothed normal data
  itself, so autocorrelation of the process is accounted for. Its memory catches small
  persistent shifts that a controller hides in single samples (TEP faults 4 and 5).
- ``dpca``: dynamic PCA: PCA (T², Q or combined) on rows augmented with ``lags`` past rows.

Sample size: the threshold is an order statistic of the held-out scores, so its false-alarm
rate scatters by about sqrt(far (1 - far) / m) for m held-out rows; MEWMA scores are
autocorrelated over about (2 - lam) / lam rows, which shrinks m by that factor. Measured on
3 white-noise signals, target 2 %, lam 0.1: 400 training rows gave 0.4-20 % (10th-90th
percentile over 20 seeds), 4000 rows gave 0.8-3.7 %. Give MEWMA a few thousand normal rows
or a larger ``lam``.

Sequential detectors (``mewma``, ``dpca``) treat the rows of each scored table as one time
series that starts at its first row (EWMA state starts at the normal mean; the first rows
of ``dpca`` repeat the first sample as its own past).

Fitted detectors are saved as ``.npz`` files (no pickle) with a format version; loading a
missing, corrupt or incompatible file raises :class:`ModelFileError` naming the file.
"""

from __future__ import annotations

import json
import math
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from scipy import signal, stats

from cosim.errors import ConfigurationError

FORMAT = "cosim.table-detector"
FORMAT_VERSION = 1


class ModelFileError(ConfigurationError):
    """A detector file is missing, corrupt, or written by an incompatible version."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"detector file {self.path}: {reason}")


class DetectorError(ConfigurationError):
    """A detector was misused: bad parameters, unfitted, data of the wrong shape or non-finite."""


class TableDetector(ABC):
    """Learns normal rows; scores rows (higher = more anomalous); alarm threshold from normal data.

    Subclasses implement :meth:`_fit`, :meth:`_score`, :meth:`_state` and :meth:`_set_state`
    and declare ``name`` and ``PARAMS`` (constructor parameters and their defaults).
    """

    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Any]] = {}

    def __init__(self, holdout: float = 0.25, refit: bool = True, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            raise DetectorError(f"detector '{self.name}': unknown parameter(s) {unknown}; "
                                f"known: {sorted(self.PARAMS)} plus holdout, refit")
        if not 0.0 <= float(holdout) < 1.0:
            raise DetectorError(f"detector '{self.name}': holdout must be in [0, 1), got {holdout}")
        self.holdout = float(holdout)
        self.refit = bool(refit)
        self.params: dict[str, Any] = {**self.PARAMS, **params}
        self.n_features: int | None = None
        self.feature_names: list[str] | None = None
        self.calibration_scores: np.ndarray | None = None
        self.threshold: float | None = None
        self.target_far: float | None = None

    # ---------------------------------------------------------------- interface
    def fit(self, X_normal: Any, feature_names: Sequence[str] | None = None) -> TableDetector:
        """Learn normal operation from ``X_normal`` (rows in time order) and keep calibration scores.

        The last ``holdout`` share of rows (a contiguous block) is held out: the model is fitted
        on the rows before it and scores the whole table; the scores of the held-out block are
        the calibration scores. With ``holdout=0`` the calibration scores are in-sample.
        """
        X = self._check(X_normal, fitting=True)
        n = X.shape[0]
        n_cal = math.ceil(self.holdout * n) if self.holdout > 0 else 0
        if n - n_cal < 3 or (self.holdout > 0 and n_cal < 2):
            raise DetectorError(f"detector '{self.name}': {n} normal rows are too few "
                                f"(holdout={self.holdout}); give at least 10")
        self.n_features = X.shape[1]
        if feature_names is not None:
            if len(feature_names) != X.shape[1]:
                raise DetectorError(f"{len(feature_names)} feature names for {X.shape[1]} columns")
            self.feature_names = [str(c) for c in feature_names]
        if n_cal:
            self._fit(X[: n - n_cal])
            self.calibration_scores = np.asarray(self._score(X)[n - n_cal:], dtype=float)
            if self.refit:
                self._fit(X)
        else:
            self._fit(X)
            self.calibration_scores = np.asarray(self._score(X), dtype=float)
        self.threshold = None
        self.target_far = None
        return self

    def score(self, X: Any) -> np.ndarray:
        """Anomaly score per row (higher = more anomalous)."""
        self._require_fitted()
        return np.asarray(self._score(self._check(X)), dtype=float)

    def threshold_for(self, far: float) -> float:
        """Threshold whose alarm rate on the held-out normal block is at most ``far``.

        It is the smallest calibration score ``s`` such that at most ``floor(far * m)`` of the
        ``m`` calibration scores exceed ``s``. A ``far`` below ``1/m`` gives the largest score.
        """
        self._require_fitted()
        if not 0.0 < float(far) < 1.0:
            raise DetectorError(f"target false-alarm rate must be in (0, 1), got {far}")
        assert self.calibration_scores is not None
        s = np.sort(self.calibration_scores)
        allowed = math.floor(float(far) * s.size)
        return float(s[s.size - 1 - allowed])

    def set_threshold(self, far: float) -> float:
        """Set (and return) :attr:`threshold` for a target false-alarm rate."""
        self.threshold = self.threshold_for(far)
        self.target_far = float(far)
        return self.threshold

    def predict(self, X: Any, threshold: float | None = None) -> np.ndarray:
        """Alarms (0/1 ints) per row: score above the threshold (default: :attr:`threshold`)."""
        th = self.threshold if threshold is None else threshold
        if th is None:
            raise DetectorError(f"detector '{self.name}': no threshold; call set_threshold(far) first")
        return (self.score(X) > th).astype(np.int8)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to an ``.npz`` file (the suffix is added when missing)."""
        self._require_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "method": self.name,
                "params": self.params, "holdout": self.holdout, "refit": self.refit,
                "n_features": self.n_features, "feature_names": self.feature_names,
                "threshold": self.threshold, "target_far": self.target_far}
        arrays = {f"state.{k}": np.asarray(v) for k, v in self._state().items()}
        np.savez(path, meta=np.array(json.dumps(meta)), calibration_scores=self.calibration_scores, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TableDetector:
        """Read a detector written by :meth:`save`; any problem raises :class:`ModelFileError`."""
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(path, "no such file")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"][()]))
                calib = np.asarray(data["calibration_scores"], dtype=float)
                state = {k[len("state."):]: np.asarray(data[k]) for k in data.files if k.startswith("state.")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as exc:
            raise ModelFileError(path, f"not a readable detector file ({type(exc).__name__}: {exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ModelFileError(path, "not a detector file (format field missing or different)")
        if meta.get("version") != FORMAT_VERSION:
            raise ModelFileError(path, f"written by format version {meta.get('version')}, "
                                       f"this installation reads version {FORMAT_VERSION}")
        method = meta.get("method")
        if method not in REGISTRY:
            raise ModelFileError(path, f"unknown detector method {method!r}; available: {available()}")
        klass = REGISTRY[method]
        if cls is not TableDetector and not issubclass(klass, cls):
            raise ModelFileError(path, f"holds a '{method}' detector, not a {cls.__name__}")
        try:
            det = klass(holdout=meta["holdout"], refit=meta["refit"], **meta["params"])
            det.n_features = int(meta["n_features"])
            det.feature_names = meta.get("feature_names")
            det.calibration_scores = calib
            det._set_state(state)
        except (KeyError, TypeError, ValueError, DetectorError) as exc:
            raise ModelFileError(path, f"incomplete or inconsistent detector state ({exc})") from exc
        det.threshold = meta.get("threshold")
        det.target_far = meta.get("target_far")
        return det

    # ---------------------------------------------------------------- for subclasses
    @abstractmethod
    def _fit(self, X: np.ndarray) -> None:
        """Fit the model on normal rows."""

    @abstractmethod
    def _score(self, X: np.ndarray) -> np.ndarray:
        """Scores of checked rows."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Fitted arrays to save."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore fitted arrays (raise KeyError/ValueError when incomplete)."""

    def _require_fitted(self) -> None:
        if self.calibration_scores is None or self.n_features is None:
            raise DetectorError(f"detector '{self.name}' is not fitted; call fit(X_normal) first")

    def _check(self, X: Any, fitting: bool = False) -> np.ndarray:
        arr = np.asarray(X, dtype=float)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise DetectorError(f"detector '{self.name}': expected a non-empty 2-D table, got shape {arr.shape}")
        if not fitting and self.n_features is not None and arr.shape[1] != self.n_features:
            raise DetectorError(f"detector '{self.name}' was fitted on {self.n_features} columns, "
                                f"got {arr.shape[1]}")
        bad = ~np.isfinite(arr)
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise DetectorError(f"detector '{self.name}': {int(bad.sum())} non-finite value(s), "
                                f"first at row {int(rows[0])}, column {int(cols[0])}")
        return arr


# -------------------------------------------------------------------- helpers
def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each column; constant columns get scale 1 (they stay at 0 when normal)."""
    mu = X.mean(axis=0)
    sd = X.std(axis=0, ddof=1) if X.shape[0] > 1 else np.ones(X.shape[1])
    sd = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(mu)), sd, 1.0)
    return mu, sd


class _PCAModel:
    """PCA on standardised data, with T², Q and the combined index."""

    def __init__(self, variance: float, n_components: int | None) -> None:
        self.variance = variance
        self.n_components = n_components

    def fit(self, X: np.ndarray) -> None:
        self.mu, self.sd = _standardiser(X)
        Z = (X - self.mu) / self.sd
        _, s, vt = np.linalg.svd(Z, full_matrices=False)
        lam = s**2 / max(Z.shape[0] - 1, 1)
        total = lam.sum()
        if self.n_components is not None:
            k = int(self.n_components)
        else:
            k = int(np.searchsorted(np.cumsum(lam) / total, self.variance) + 1) if total > 0 else 1
        k = max(1, min(k, lam.size, Z.shape[1] - 1))  # keep a residual space for Q
        self.P = vt[:k].T
        floor = 1e-12 * max(float(lam[0]), 1e-300)
        self.lam = np.maximum(lam[:k], floor)
        resid = np.concatenate([lam[k:], np.zeros(Z.shape[1] - lam.size)])
        self.t2_limit, self.q_limit = self._limits(k, resid, Z.shape[0])

    @staticmethod
    def _limits(k: int, resid: np.ndarray, n: int, alpha: float = 0.01) -> tuple[float, float]:
        """99 % control limits: T² from the chi-square, Q from Box's approximation g·χ²_h."""
        t2 = float(stats.chi2.ppf(1 - alpha, k))
        th1, th2 = float(resid.sum()), float((resid**2).sum())
        if th1 <= 0 or th2 <= 0:
            return t2, 1.0
        g, h = th2 / th1, th1**2 / th2
        return t2, float(g * stats.chi2.ppf(1 - alpha, h))

    def t2(self, Z: np.ndarray) -> np.ndarray:
        s = Z @ self.P
        return np.sum(s**2 / self.lam, axis=1)

    def q(self, Z: np.ndarray) -> np.ndarray:
        r = Z - (Z @ self.P) @ self.P.T
        return np.sum(r**2, axis=1)

    def statistic(self, X: np.ndarray, which: str) -> np.ndarray:
        Z = (X - self.mu) / self.sd
        if which == "t2":
            return self.t2(Z)
        if which == "q":
            return self.q(Z)
        t2, q = self.t2(Z) / self.t2_limit, self.q(Z) / self.q_limit
        return np.maximum(t2, q) if which == "t2_or_q" else t2 + q

    def state(self) -> dict[str, np.ndarray]:
        return {"mu": self.mu, "sd": self.sd, "P": self.P, "lam": self.lam,
                "limits": np.array([self.t2_limit, self.q_limit])}

    def set_state(self, st: dict[str, np.ndarray]) -> None:
        self.mu, self.sd, self.P, self.lam = st["mu"], st["sd"], st["P"], st["lam"]
        if self.P.ndim != 2 or self.P.shape[1] != self.lam.size or self.mu.size != self.P.shape[0]:
            raise ValueError("PCA arrays do not fit together")
        self.t2_limit, self.q_limit = (float(v) for v in st["limits"])


_STATISTICS = ("t2", "q", "combined", "t2_or_q")


def _check_statistic(name: str, value: str) -> str:
    if value not in _STATISTICS:
        raise DetectorError(f"detector '{name}': statistic must be one of {list(_STATISTICS)}, got {value!r}")
    return value


# -------------------------------------------------------------------- registry
REGISTRY: dict[str, type[TableDetector]] = {}
D = TypeVar("D", bound=type[TableDetector])


def register(name: str) -> Callable[[D], D]:
    """Class decorator: make a :class:`TableDetector` available to :func:`make` under ``name``."""

    def deco(klass: D) -> D:
        if name in REGISTRY and REGISTRY[name] is not klass:
            raise ConfigurationError(f"table detector '{name}' is registered twice")
        klass.name = name
        REGISTRY[name] = klass
        return klass

    return deco


def available() -> list[str]:
    """Names of the registered table detectors."""
    return sorted(REGISTRY)


def make(name: str, **params: Any) -> TableDetector:
    """A new, unfitted detector by registry name."""
    if name not in REGISTRY:
        raise ConfigurationError(f"unknown table detector '{name}'; available: {available()}")
    try:
        return REGISTRY[name](**params)
    except (TypeError, ValueError) as exc:
        raise DetectorError(f"detector '{name}': bad parameters {params} ({exc})") from exc


# -------------------------------------------------------------------- detectors
@register("pca")
class PCADetector(TableDetector):
    """PCA monitoring: T², Q (SPE) or the combined index.

    Params:
        statistic: ``"t2"``, ``"q"``, ``"combined"`` or ``"t2_or_q"``.
        variance: share of variance the principal subspace keeps (ignored with n_components).
        n_components: fixed number of components.
    """

    PARAMS: ClassVar[dict[str, Any]] = {"statistic": "combined", "variance": 0.9, "n_components": None}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        _check_statistic(self.name, self.params["statistic"])
        if not 0.0 < float(self.params["variance"]) <= 1.0:
            raise DetectorError(f"detector 'pca': variance must be in (0, 1], got {self.params['variance']}")
        self.model = _PCAModel(float(self.params["variance"]), self.params["n_components"])

    def _fit(self, X: np.ndarray) -> None:
        self.model.fit(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.model.statistic(X, self.params["statistic"])

    def statistics(self, X: Any) -> dict[str, np.ndarray]:
        """All statistics of ``X`` at once: ``t2``, ``q``, ``combined`` and ``t2_or_q``."""
        self._require_fitted()
        arr = self._check(X)
        return {s: self.model.statistic(arr, s) for s in _STATISTICS}

    def _state(self) -> dict[str, np.ndarray]:
        return self.model.state()

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.model.set_state(state)


def _ewma(Z: np.ndarray, lam: float) -> np.ndarray:
    """Column-wise EWMA s_t = lam z_t + (1 - lam) s_{t-1}, s_{-1} = 0."""
    return signal.lfilter([lam], [1.0, -(1.0 - lam)], Z, axis=0)


@register("mewma")
class MEWMADetector(TableDetector):
    """Multivariate EWMA chart with an empirical (shrunk) covariance of the smoothed data.

    Params:
        lam: EWMA weight of the newest row, in (0, 1]; smaller remembers longer.
        burn_in: rows skipped (EWMA start-up) before the covariance is estimated; capped at
            a third of the rows.
        shrinkage: ``"ledoit-wolf"`` or ``"none"`` (sample covariance, pseudo-inverse).
    """

    PARAMS: ClassVar[dict[str, Any]] = {"lam": 0.1, "burn_in": 20, "shrinkage": "ledoit-wolf"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not 0.0 < float(self.params["lam"]) <= 1.0:
            raise DetectorError(f"detector 'mewma': lam must be in (0, 1], got {self.params['lam']}")
        if self.params["shrinkage"] not in ("ledoit-wolf", "none"):
            raise DetectorError("detector 'mewma': shrinkage must be 'ledoit-wolf' or 'none'")

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.covariance import LedoitWolf

        self.mu, self.sd = _standardiser(X)
        E = _ewma((X - self.mu) / self.sd, float(self.params["lam"]))
        burn = min(int(self.params["burn_in"]), X.shape[0] // 3)
        E = E[burn:]
        self.center = E.mean(axis=0)
        if self.params["shrinkage"] == "ledoit-wolf" and E.shape[0] > 1:
            cov = LedoitWolf().fit(E).covariance_
        else:
            cov = np.atleast_2d(np.cov(E, rowvar=False))
        self.precision = np.linalg.pinv(cov, hermitian=True)

    def _score(self, X: np.ndarray) -> np.ndarray:
        e = _ewma((X - self.mu) / self.sd, float(self.params["lam"])) - self.center
        return np.einsum("ij,jk,ik->i", e, self.precision, e)

    def _state(self) -> dict[str, np.ndarray]:
        return {"mu": self.mu, "sd": self.sd, "center": self.center, "precision": self.precision}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.mu, self.sd, self.center, self.precision = (state[k] for k in ("mu", "sd", "center", "precision"))
        if self.precision.shape != (self.mu.size, self.mu.size):
            raise ValueError("MEWMA arrays do not fit together")


def lagged(X: np.ndarray, lags: int) -> np.ndarray:
    """Rows ``[x_t, x_{t-1}, ..., x_{t-lags}]``; before the first row the first row stands in."""
    if lags <= 0:
        return X
    padded = np.vstack([np.repeat(X[:1], lags, axis=0), X])
    n = X.shape[0]
    return np.hstack([padded[lags - j: lags - j + n] for j in range(lags + 1)])


@register("dpca")
class DynamicPCADetector(TableDetector):
    """Dynamic PCA: PCA monitoring of rows augmented with ``lags`` past rows.

    Params: ``lags`` (>= 0) plus those of ``pca``.
    """

    PARAMS: ClassVar[dict[str, Any]] = {"lags": 2, "statistic": "combined", "variance": 0.9, "n_components": None}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        _check_statistic(self.name, self.params["statistic"])
        if int(self.params["lags"]) < 0:
            raise DetectorError(f"detector 'dpca': lags must be >= 0, got {self.params['lags']}")
        self.model = _PCAModel(float(self.params["variance"]), self.params["n_components"])

    def _fit(self, X: np.ndarray) -> None:
        self.model.fit(lagged(X, int(self.params["lags"])))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.model.statistic(lagged(X, int(self.params["lags"])), self.params["statistic"])

    def _state(self) -> dict[str, np.ndarray]:
        return self.model.state()

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.model.set_state(state)
