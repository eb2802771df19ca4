"""Compiled one-sample inference (cosim.detection.fast) against scikit-learn itself."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from cosim.detection.fast import _boosting_proba, _ShallowForest, as_float32


@pytest.mark.parametrize(("depth", "classes"), [(1, 2), (2, 3), (3, 4), (5, 3)])
def test_boosting_gives_scikit_learns_probabilities(depth: int, classes: int) -> None:
    rng = np.random.default_rng(depth)
    x = rng.normal(size=(400, 6)) * [1.0, 10.0, 0.1, 1.0, 5.0, 1.0]
    y = (x[:, 0] + np.sin(x[:, 1]) > 0).astype(int) + (x[:, 4] > 2.0) * (classes - 2)
    est = GradientBoostingClassifier(n_estimators=12, max_depth=depth, min_samples_leaf=30, random_state=0).fit(x, y)
    trees = [t.tree_ for t in est.estimators_.ravel()]
    # min_samples_leaf leaves some branches short of the depth: the padded layout must hold them
    assert depth == 1 or any(t.max_depth < depth or t.node_count < 2 ** (depth + 1) - 1 for t in trees)
    assert _ShallowForest.fits(trees) == (depth <= 3)
    proba = _boosting_proba(est)
    rows = rng.normal(size=(200, 6)) * 3.0
    got = np.vstack([proba(r, as_float32(r)) for r in rows])
    assert np.allclose(got, est.predict_proba(rows), rtol=0, atol=1e-12)


def _stack(final: object, classes: int, seed: int) -> tuple[object, np.ndarray]:
    """A scaler + stacking pipeline over the three base learners of the IDS, and rows to score."""
    from sklearn.ensemble import StackingClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(500, 7)) * [1.0, 10.0, 0.1, 1.0, 5.0, 1.0, 100.0] + [0, 3, 0, -1, 0, 0, 50]
    y = (x[:, 0] + np.sin(x[:, 1]) > 0).astype(int) + (x[:, 4] > 2.0) * (classes - 2)
    base = [("tree", DecisionTreeClassifier(max_depth=6, random_state=0)),
            ("boost", GradientBoostingClassifier(n_estimators=10, max_depth=2 + seed % 3, random_state=0)),
            ("bayes", GaussianNB())]
    pipe = make_pipeline(StandardScaler(), StackingClassifier(base, final_estimator=final, cv=3,
                                                              stack_method="predict_proba"))
    pipe.fit(x, y)
    return pipe, rng.normal(size=(150, 7)) * [2.0, 20.0, 0.2, 2.0, 10.0, 2.0, 200.0]


@pytest.mark.parametrize(("final", "classes"), [
    ("relu", 4), ("tanh", 3), ("logistic", 2), ("identity", 3), ("relu", 2), ("tree", 3), ("boost", 2)])
def test_the_c_kernel_gives_the_same_probabilities(final: str, classes: int) -> None:
    """The C kernel against scikit-learn and the numpy form, for every meta-learner it knows."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.tree import DecisionTreeClassifier

    from cosim.detection.fast import compile_stack
    from cosim.detection.native import compile_native

    if final == "tree":
        meta: object = DecisionTreeClassifier(max_depth=4, random_state=0)
    elif final == "boost":
        meta = GradientBoostingClassifier(n_estimators=8, max_depth=2, random_state=0)
    else:
        meta = MLPClassifier(hidden_layer_sizes=(9, 5), activation=final, max_iter=300, random_state=0)
    pipe, rows = _stack(meta, classes, seed=classes)
    native = compile_native(pipe)
    assert native is not None, "the C kernel did not build or does not know this pipeline"
    got = np.vstack([native(r) for r in rows])
    assert got.shape == (len(rows), classes)
    assert np.allclose(got, pipe.predict_proba(rows), rtol=0, atol=1e-12)
    assert np.allclose(got, np.vstack([compile_stack(pipe)(r) for r in rows]), rtol=0, atol=1e-12)


def test_without_a_compiler_the_numpy_form_scores(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.neural_network import MLPClassifier

    from cosim.detection import native

    pipe, rows = _stack(MLPClassifier(hidden_layer_sizes=(6,), max_iter=300, random_state=0), 3, seed=1)
    monkeypatch.setenv("COSIM_CACHE_DIR", str(tmp_path))  # nothing built there yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    native.kernel.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="C kernel is not available.*using the numpy form"):
            assert native.compile_native(pipe) is None
    finally:
        native.kernel.cache_clear()
    assert not list(tmp_path.rglob("*.so"))
    monkeypatch.delenv("CC")
    built = native.compile_native(pipe)  # built into the (new) cache
    assert built is not None
    assert np.allclose(np.vstack([built(r) for r in rows]), pipe.predict_proba(rows), rtol=0, atol=1e-12)
    assert len(list((tmp_path / "native").glob("stack_kernel-*.so"))) == 1
    native.kernel.cache_clear()


def test_a_read_only_cache_builds_the_kernel_under_the_temporary_directory(tmp_path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cosim.detection import native

    blocked = tmp_path / "cache-root"
    blocked.write_text("a file where the cache directory should be")  # mkdir under it fails
    monkeypatch.setenv("COSIM_CACHE_DIR", str(blocked))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    native.kernel.cache_clear()
    try:
        assert native.kernel() is not None
        assert len(list((tmp_path / "tmp").glob("cosim-*/stack_kernel-*.so"))) == 1
    finally:
        native.kernel.cache_clear()
