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
