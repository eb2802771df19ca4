"""Online detectors inside the loop: features, alerts, series, guarded retraining, model files."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from cosim.attacks import Campaign, load_scenario
from cosim.core.master import Master
from cosim.core.unit import PythonUnit
from cosim.core.variables import Causality, Variable, VarType
from cosim.detection import AlertBus
from cosim.detection.features import FeatureExtractor, FeatureSpec, RollingWindow, window_features
from cosim.detection.models import CusumModel, LimitsModel, StackedModel, load_model
from cosim.detection.online import OnlineDetector
from cosim.episode import EpisodeContext
from cosim.errors import ConfigurationError


class Wave(PythonUnit):
    """A sensor: a sine wave with seeded noise."""

    def __init__(self, name: str, seed: int = 0) -> None:
        super().__init__(name, [Variable("y", Causality.OUTPUT, VarType.REAL, 0.0)])
        self.rng = np.random.default_rng(seed)

    def do_step(self, t: float, h: float) -> None:
        self.values["y"] = math.sin(t + h) + 0.01 * float(self.rng.standard_normal())


class Controller(PythonUnit):
    def __init__(self, name: str) -> None:
        super().__init__(name, [Variable("y_meas", Causality.INPUT, VarType.REAL, 0.0)])

    def do_step(self, t: float, h: float) -> None:
        pass


def _system(seed: int) -> Master:
    master = Master(base_step=0.01)
    master.add_unit(Wave("sensor", seed))
    master.add_unit(Controller("plc"))
    master.connect("sensor.y", "plc.y_meas")
    return master.build()


def _normal_features(seeds: list[int], ticks: int = 1500) -> list[np.ndarray]:
    runs = []
    for seed in seeds:
        master = _system(seed)
        ext = FeatureExtractor(FeatureSpec(physics=["plc.y_meas"]))
        ext.bind(master, None)
        rows = []
        for _ in range(ticks // 5):
            master.step(5)
            rows.append(ext.sample())
        runs.append(np.vstack(rows))
    return runs


def _detector(model: object, bus: AlertBus) -> OnlineDetector:
    det = OnlineDetector("limits", model, {"physics": ["plc.y_meas"]}, every_ticks=5)  # type: ignore[arg-type]
    det.attach(EpisodeContext(bus=bus))
    return det


def test_spoofing_raises_one_alert_naming_the_signal_inside_the_attack() -> None:
    model = LimitsModel(margin=0.05, confirm=2).fit(_normal_features([1, 2]), ["plc.y_meas"])
    master = _system(3)
    bus = AlertBus()
    det = _detector(model, bus)
    scenario = {"events": [{"attack": "spoofing", "target": "sensor.y", "at": 5.0, "duration": 3.0,
                            "params": {"mode": "constant", "value": 3.0}}]}
    master.add_observer(Campaign(load_scenario(scenario)))
    master.add_observer(det)
    master.run(duration=12.0)
    assert len(bus.alerts) == 1
    alert = bus.alerts[0]
    assert alert.target == "plc.y_meas" and alert.detector == "limits"
    assert 5.0 <= alert.time <= 5.2  # two samples to confirm, 50 ms apart
    times, scores, alarms = det.series()
    assert len(times) == len(scores) == len(alarms) == 240
    inside = (times >= 5.1) & (times < 8.0)
    assert alarms[inside].all()
    assert not alarms[(times < 5.0) | (times > 8.2)].any()
    assert det.summary()["alerts"] == 1


def test_features_must_match_the_model() -> None:
    model = LimitsModel().fit(_normal_features([1], 200), ["plc.other"])
    master = _system(1)
    det = _detector(model, AlertBus())
    with pytest.raises(ConfigurationError, match="refit"):
        master.add_observer(det)


def test_network_and_residual_features_need_their_layers() -> None:
    master = _system(1)
    with pytest.raises(ConfigurationError, match="network"):
        FeatureExtractor(FeatureSpec(network=["*"])).bind(master, None)
    with pytest.raises(ConfigurationError, match="twin"):
        FeatureExtractor(FeatureSpec(residuals=True)).bind(master, None)


def test_rolling_window_matches_offline_windows() -> None:
    rows = np.random.default_rng(0).normal(size=(30, 4))
    offline = window_features(rows, 5)
    online = RollingWindow(5)
    assert np.allclose(np.vstack([online.push(r) for r in rows]), offline, rtol=0, atol=1e-12)


def test_cusum_alarms_on_a_shift_not_on_normal_noise() -> None:
    rng = np.random.default_rng(4)
    normal = [np.abs(rng.normal(size=(2000, 3))) for _ in range(3)]
    model = CusumModel().fit(normal, ["a", "b", "c"])
    assert not model.alarms_run(np.abs(rng.normal(size=(2000, 3)))).any()
    shifted = np.abs(rng.normal(size=(400, 3)))
    shifted[200:, 1] += 3.0
    alarms = model.alarms_run(shifted)
    assert not alarms[:200].any()
    assert alarms[210:].all()


def test_retraining_is_refused_when_the_data_would_widen_the_normal_range() -> None:
    model = LimitsModel(margin=0.05).fit(_normal_features([1, 2]), ["plc.y_meas"])
    det = _detector(model, AlertBus())
    master = _system(5)
    master.add_observer(det)
    master.run(duration=6.0)
    hi = float(det.model.hi[0])  # type: ignore[attr-defined]
    assert det.retrain([(0.0, 6.0)])  # clean data: accepted, range unchanged or slightly wider
    assert float(det.model.hi[0]) <= hi * 1.05  # type: ignore[attr-defined]
    det.rows = [r * 3.0 for r in det.rows]  # the same window, poisoned to three times the amplitude
    assert not det.retrain([(0.0, 6.0)])
    assert "widen" in det.retrains[-1]["reason"]


def test_model_files_round_trip_and_bad_files_are_named(tmp_path: Path) -> None:
    model = LimitsModel().fit(_normal_features([1], 300), ["plc.y_meas"])
    path = model.save(tmp_path / "m.pkl")
    assert isinstance(load_model(path), LimitsModel)
    with pytest.raises(ConfigurationError, match="not found"):
        load_model(tmp_path / "missing.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ConfigurationError, match=r"junk\.pkl"):
        load_model(tmp_path / "junk.pkl")
    (tmp_path / "old.pkl").write_bytes(pickle.dumps({"format": 0, "model": model}))
    with pytest.raises(ConfigurationError, match="version"):
        load_model(tmp_path / "old.pkl")


def _labelled_runs(n_runs: int, seed: int) -> tuple[list[np.ndarray], list[list[str]]]:
    rng = np.random.default_rng(seed)
    runs, labels = [], []
    for i in range(n_runs):
        x = rng.normal(size=(300, 4))
        lab = ["normal"] * 300
        kind = ["injection", "spoofing", "dos"][i % 3]
        col = {"injection": 0, "spoofing": 1, "dos": 2}[kind]
        x[150:220, col] += 4.0
        lab[150:220] = [kind] * 70
        runs.append(x)
        labels.append(lab)
    return runs, labels


def test_stacked_ensemble_separates_kinds_on_held_out_runs() -> None:
    train, train_labels = _labelled_runs(9, 0)
    model = StackedModel(window=3, boost_iter=20).fit(train, ["a", "b", "c", "d"], train_labels)
    test, test_labels = _labelled_runs(3, 1)
    for run, lab in zip(test, test_labels, strict=True):
        y = np.asarray(lab) != "normal"
        alarms = model.alarms_run(run)
        assert (alarms == y).mean() > 0.95
        kinds = {model.decide(z)[2] for z, yy in zip(model.prepare([run])[0], y, strict=True) if yy}
        assert {k for k in kinds} & {lab[160]}


def test_compiled_inference_equals_the_pipeline() -> None:
    train, labels = _labelled_runs(6, 2)
    model = StackedModel(window=2, boost_iter=15).fit(train, ["a", "b", "c", "d"], labels)
    z = model.prepare([train[0]])[0]
    reference = model.pipeline.predict_proba(z[:, model.keep])
    assert "_fast" not in model.__dict__
    model.ready()  # what the online detector calls before the run: the compiled form, built once
    fast = model.__dict__["_fast"]
    compiled = np.vstack([model.proba_one(row) for row in z])
    assert model.__dict__["_fast"] is fast
    assert np.allclose(compiled, reference, rtol=0, atol=1e-12)
    binary = StackedModel(window=1, boost_iter=10).fit(
        train, ["a", "b", "c", "d"], [["normal" if v == "normal" else "attack" for v in lab] for lab in labels])
    z = binary.prepare([train[1]])[0]
    assert np.allclose(np.vstack([binary.proba_one(r) for r in z]), binary.pipeline.predict_proba(z[:, binary.keep]),
                       rtol=0, atol=1e-12)
