"""Fitted models behind the online detectors, and their files.

Every model is fitted on runs (never on random rows): ``runs`` is a list of feature matrices,
one per run in time order, with the feature names; supervised models also take the label of
each sample. A model answers, for one (windowed) feature vector, a score (higher means more
anomalous; the alarm is ``score > threshold``), the index of the feature most to blame, and
a suspected attack kind where it can tell.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cosim.detection.features import window_features
from cosim.errors import ConfigurationError

FORMAT_VERSION = 1


class AlarmFilter:
    """Turns scores into alarms: raised after ``confirm`` consecutive samples above the
    threshold, held for ``hold`` more samples after the score falls back (debouncing: a
    single noisy sample neither raises nor drops an alarm). The first ``warmup`` samples
    after a reset (the start of a run, while the twin synchronises) raise nothing."""

    def __init__(self, threshold: float, confirm: int = 1, hold: int = 0, warmup: int = 0) -> None:
        self.threshold, self.confirm, self.hold = float(threshold), max(1, int(confirm)), max(0, int(hold))
        self.warmup = max(0, int(warmup))
        self.reset()

    def reset(self) -> None:
        self._above = 0
        self._left = 0
        self._seen = 0

    def __call__(self, score: float) -> bool:
        if self._seen < self.warmup:
            self._seen += 1
            return False
        if score > self.threshold:
            self._above += 1
            if self._above >= self.confirm:
                self._left = self.hold + 1
        else:
            self._above = 0
        if self._left > 0:
            self._left -= 1
            return True
        return False

    def run(self, scores: np.ndarray) -> np.ndarray:
        self.reset()
        return np.asarray([self(float(s)) for s in scores], dtype=int)


class DetectionModel(ABC):
    """A model fitted on runs; :meth:`decide` scores one sample.

    Attributes:
        window: rows of memory of the windowed features (1: the sample alone).
        threshold: alarm when the score is above it.
        confirm, hold: the alarm debouncing of :class:`AlarmFilter`.
        warmup_s: no alarm in the first ``warmup_s`` seconds of a run (the twin is not yet
            synchronised); turned into samples with ``sample_s``, the sampling period of the
            data it was fitted on (set by ``experiments.fit``; the online detector must sample
            at the same period).
        tuning: what validation chose, when thresholds were tuned (``experiments.fit``).
    """

    kind_name: ClassVar[str] = ""
    supervised: ClassVar[bool] = False

    def __init__(self, window: int = 1, confirm: int = 1, hold: int = 0, warmup_s: float = 0.0) -> None:
        self.window = int(window)
        self.confirm, self.hold = int(confirm), int(hold)
        self.warmup_s = float(warmup_s)
        self.sample_s: float | None = None
        self.tuning: dict[str, Any] | None = None
        self.names: list[str] = []
        self.threshold = 0.0

    @property
    def warmup_samples(self) -> int:
        warmup_s, sample_s = float(getattr(self, "warmup_s", 0.0)), getattr(self, "sample_s", None)
        return int(np.ceil(warmup_s / sample_s - 1e-9)) if warmup_s > 0 and sample_s else 0

    def alarm_filter(self) -> AlarmFilter:
        return AlarmFilter(self.threshold, self.confirm, self.hold, self.warmup_samples)

    def alarms_run(self, run: np.ndarray) -> np.ndarray:
        """Alarms (0/1) of every sample of one run, as the online detector raises them."""
        return self.alarm_filter().run(self.score_run(run))

    def prepare(self, runs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [window_features(np.asarray(r, dtype=float), self.window) for r in runs]

    @abstractmethod
    def fit(self, runs: Sequence[np.ndarray], names: Sequence[str],
            labels: Sequence[Sequence[str]] | None = None) -> DetectionModel:
        """Fit on ``runs`` (raw features, one matrix per run); labels for supervised models."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the past (sequential models) before a new run."""

    def ready(self) -> None:  # noqa: B027
        """Get ready to :meth:`decide` online (e.g. build a compiled form), before the run starts."""

    @abstractmethod
    def decide(self, z: np.ndarray) -> tuple[float, int, str | None]:
        """Score one windowed sample: ``(score, index of the feature most to blame, kind)``."""

    def score_run(self, run: np.ndarray) -> np.ndarray:
        """Scores of every sample of one run, in order (resets first)."""
        self.reset()
        z = self.prepare([run])[0]
        return np.asarray([self.decide(row)[0] for row in z])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("wb") as f:
            pickle.dump({"format": FORMAT_VERSION, "kind": self.kind_name, "model": self}, f)
        tmp.replace(path)
        return path


MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def load_model(path: str | Path) -> DetectionModel:
    """Load a fitted model, checking that the file is one and of this version.

    ``path`` is a file, or an MLflow artifact URI (``runs:/<run id>/<path>``, ``models:/...``)
    fetched from the tracking server of ``MLFLOW_TRACKING_URI`` (or ``mlflow.db``).
    """
    if str(path).startswith(MLFLOW_SCHEMES):
        path = _fetch(str(path))
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"detector model '{path}': file not found (fit one with python -m experiments.fit)")
    try:
        with path.open("rb") as f:
            data = pickle.load(f)
    except Exception as exc:
        raise ConfigurationError(f"detector model '{path}': not a model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "format" not in data:
        raise ConfigurationError(f"detector model '{path}': not a model file of this project")
    if data["format"] != FORMAT_VERSION:  # first: another version's model may not be one of today's classes
        raise ConfigurationError(f"detector model '{path}': format version {data['format']}, this version reads "
                                 f"{FORMAT_VERSION}; refit it")
    if not isinstance(data.get("model"), DetectionModel):
        raise ConfigurationError(f"detector model '{path}': not a model file of this project")
    return data["model"]


def _fetch(uri: str) -> Path:
    import mlflow

    from cosim.tracking.mlflow_log import tracking_uri

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri()))
    except Exception as exc:
        raise ConfigurationError(f"detector model '{uri}': cannot fetch it from MLflow "
                                 f"({type(exc).__name__}: {exc})") from None


class CusumModel(DetectionModel):
    """Per-feature one-sided CUSUM of ``|x|`` (for twin residuals, already in scales).

    ``S_i = min(cap * h_i, max(0, S_i + |x_i| - k_i))``; score ``max_i S_i / h_i``; alarm above 1.
    ``k_i`` is the ``q`` quantile of ``|x_i|`` over the normal runs (drift allowance), ``h_i``
    the largest ``S_i`` seen on them times ``margin`` (plus ``h_min``). During the warm-up
    (``warmup_s``) the sums do not accumulate.
    """

    kind_name = "cusum"

    def __init__(self, q: float = 0.995, margin: float = 1.5, h_min: float = 1.0, cap: float = 2.0,
                 confirm: int = 1, hold: int = 0, warmup_s: float = 0.0) -> None:
        super().__init__(window=1, confirm=confirm, hold=hold, warmup_s=warmup_s)
        self.q, self.margin, self.h_min, self.cap = float(q), float(margin), float(h_min), float(cap)
        self.threshold = 1.0
        self.k = np.zeros(0)
        self.h = np.zeros(0)
        self._s: list[float] = []

    def fit(self, runs: Sequence[np.ndarray], names: Sequence[str],
            labels: Sequence[Sequence[str]] | None = None) -> CusumModel:
        self.names = list(names)
        data = [np.abs(np.asarray(r, dtype=float)) for r in runs]
        self.k = np.quantile(np.vstack(data), self.q, axis=0)
        peak = np.zeros(len(self.names))
        for run in data:
            s = np.zeros(len(self.names))
            for row in run:
                s = np.maximum(0.0, s + row - self.k)
                peak = np.maximum(peak, s)
        self.h = peak * self.margin + self.h_min
        self.reset()
        return self

    def reset(self) -> None:
        self._s: list[float] = [0.0] * len(self.names)
        self._n, self._warm = 0, self.warmup_samples

    def decide(self, z: np.ndarray) -> tuple[float, int, str | None]:
        n = self.__dict__.get("_n", 0)
        if n < self.__dict__.get("_warm", 0):  # warming up: the sums start when the alarm may
            self._n = n + 1
            return 0.0, 0, None
        # a handful of features: Python floats with numpy's maximum/minimum/argmax semantics
        # (NaN propagates; max(0.0, -0.0) is -0.0), so the sums are those of the array form
        cap, s, ratio = self.cap, [], []
        for sj, zj, kj, hj in zip(self._s, z.tolist(), self.k.tolist(), self.h.tolist(), strict=True):
            v = sj + abs(zj) - kj
            if v < 0.0:
                v = 0.0
            c = cap * hj
            if c < v:
                v = c
            s.append(v)
            ratio.append(v / hj)
        self._s = s
        i = next((j for j, r in enumerate(ratio) if r != r), None)  # the first NaN, as argmax
        if i is None:
            i = max(range(len(ratio)), key=ratio.__getitem__)
        return float(ratio[i]), i, None


class LimitsModel(DetectionModel):
    """Static limits: each feature within the range seen on normal runs, widened by ``margin``
    times that range (plus ``floor`` absolute). Score: the largest excess over a limit in
    units of the range; alarm above 0."""

    kind_name = "limits"

    def __init__(self, margin: float = 0.1, floor: float = 1e-6, window: int = 1, confirm: int = 1,
                 hold: int = 0, warmup_s: float = 0.0) -> None:
        super().__init__(window=window, confirm=confirm, hold=hold, warmup_s=warmup_s)
        self.margin, self.floor = float(margin), float(floor)
        self.lo = np.zeros(0)
        self.hi = np.zeros(0)
        self.span = np.ones(0)

    def fit(self, runs: Sequence[np.ndarray], names: Sequence[str],
            labels: Sequence[Sequence[str]] | None = None) -> LimitsModel:
        self.names = list(names)
        data = np.vstack(self.prepare(runs))
        lo, hi = data.min(axis=0), data.max(axis=0)
        span = np.maximum(hi - lo, self.floor)
        self.lo, self.hi, self.span = lo - self.margin * span - self.floor, hi + self.margin * span + self.floor, span
        self._rows: list[np.ndarray] = []
        return self

    def reset(self) -> None:
        pass

    def decide(self, z: np.ndarray) -> tuple[float, int, str | None]:
        excess = np.maximum(z - self.hi, self.lo - z) / self.span
        i = int(np.argmax(excess))
        return float(max(excess[i], -1.0)), i % max(1, len(self.names)), None


NORMAL = "normal"


class StackedModel(DetectionModel):
    """Supervised stacked ensemble after Varghese et al. 2022: a decision tree, gradient
    boosting and Gaussian naive Bayes under a multilayer-perceptron meta-learner
    (``StackingClassifier``, out-of-fold predictions with folds by run), on windowed features
    scaled to unit variance. Features constant over the training data are dropped; boosting
    sees half the rows and the square root of the features per tree, which keeps fitting to
    a minute or two on these tables. Score: ``1 - P(normal)``; the suspected kind is the most
    probable attack class. Classes outside ``classes`` are merged into ``other``.

    Online, one sample is scored by :meth:`proba_one` through the C kernel of
    :mod:`cosim.detection.native`, or where it is unavailable the numpy form of
    :mod:`cosim.detection.fast` (the same numbers to 1e-12, checked in the tests, in a
    fraction of the time of ``pipeline.predict_proba``)."""

    kind_name = "stacked"
    supervised = True

    def __init__(self, window: int = 5, threshold: float = 0.5, seed: int = 0, classes: Sequence[str] | None = None,
                 other: str = "other", confirm: int = 1, hold: int = 0, boost_iter: int = 60,
                 warmup_s: float = 0.0) -> None:
        super().__init__(window=window, confirm=confirm, hold=hold, warmup_s=warmup_s)
        self.threshold = float(threshold)
        self.seed = int(seed)
        self.classes_wanted = list(classes) if classes else None
        self.other = other
        self.boost_iter = int(boost_iter)
        self.pipeline: Any = None
        self.keep = np.zeros(0, dtype=int)
        self.classes: list[str] = []
        self._normal = 0

    def _map(self, label: str) -> str:
        if self.classes_wanted is None or label == NORMAL or label in self.classes_wanted:
            return label
        return self.other

    def fit(self, runs: Sequence[np.ndarray], names: Sequence[str],
            labels: Sequence[Sequence[str]] | None = None) -> StackedModel:
        from sklearn.ensemble import GradientBoostingClassifier, StackingClassifier
        from sklearn.model_selection import GroupKFold
        from sklearn.naive_bayes import GaussianNB
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.tree import DecisionTreeClassifier

        if labels is None:
            raise ConfigurationError("stacked detector: fitting needs labelled runs")
        self.names = list(names)
        feats = np.vstack(self.prepare(runs))
        y = np.asarray([self._map(str(v)) for lab in labels for v in lab])
        if NORMAL not in set(y) or len(set(y)) < 2:
            raise ConfigurationError(f"stacked detector: needs normal and attack samples, got classes {sorted(set(y))}")
        self.keep = np.flatnonzero(feats.std(axis=0) > 0)
        groups = np.concatenate([np.full(len(r), i) for i, r in enumerate(runs)])
        n_splits = min(5, len(runs))
        cv: Any = list(GroupKFold(n_splits=n_splits).split(feats, y, groups)) if n_splits >= 2 else 2
        stack = StackingClassifier(
            estimators=[
                ("tree", DecisionTreeClassifier(max_depth=12, min_samples_leaf=5, random_state=self.seed)),
                ("boost", GradientBoostingClassifier(n_estimators=self.boost_iter, max_depth=3, subsample=0.5,
                                                     max_features="sqrt", random_state=self.seed)),
                ("bayes", GaussianNB()),
            ],
            final_estimator=MLPClassifier(hidden_layer_sizes=(32,), max_iter=1000, random_state=self.seed),
            cv=cv, stack_method="predict_proba",
        )
        self.pipeline = make_pipeline(StandardScaler(), stack).fit(feats[:, self.keep], y)
        self.classes = [str(c) for c in self.pipeline.classes_]
        self._normal = self.classes.index(NORMAL)
        return self

    def reset(self) -> None:
        pass

    def ready(self) -> None:
        if self.__dict__.get("_fast") is None:
            from cosim.detection.fast import compile_stack
            from cosim.detection.native import compile_native

            self._fast = compile_native(self.pipeline) or compile_stack(self.pipeline)

    def proba_one(self, z: np.ndarray) -> np.ndarray:
        """Class probabilities of one windowed sample (what ``pipeline.predict_proba`` gives)."""
        fast = self.__dict__.get("_fast")
        if fast is None:
            self.ready()
            fast = self._fast
        return fast(z[self.keep])

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_fast"}

    def decide(self, z: np.ndarray) -> tuple[float, int, str | None]:
        p = self.proba_one(z)
        score = 1.0 - float(p[self._normal])
        q = p.copy()
        q[self._normal] = -1.0
        return score, -1, self.classes[int(np.argmax(q))]

    def score_run(self, run: np.ndarray) -> np.ndarray:
        z = self.prepare([run])[0]
        return 1.0 - self.pipeline.predict_proba(z[:, self.keep])[:, self._normal]

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """``x`` (current-sample features) in units of the training spread (0 where dropped)."""
        scaler = self.pipeline.steps[0][1]
        out = np.zeros(len(x))
        mask = self.keep < len(x)
        cols, pos = self.keep[mask], np.flatnonzero(mask)
        out[cols] = (x[cols] - scaler.mean_[pos]) / scaler.scale_[pos]
        return out


MODELS: dict[str, type[DetectionModel]] = {"cusum": CusumModel, "limits": LimitsModel, "stacked": StackedModel}
