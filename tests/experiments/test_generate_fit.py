"""`experiments.generate` and `experiments.fit`: labelled runs, the split by run, fitted detectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cosim.detection.models import load_model
from cosim.errors import ConfigurationError
from experiments.fit import fit_and_evaluate, load_dataset, tune, validation_split
from experiments.generate import check_split, draw_scenario, generate

REPO = Path(__file__).resolve().parents[2]


def _config(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def test_a_seed_in_two_splits_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="seed 7 is in both 'train_normal' and 'test_attack'"):
        check_split({"train_normal": [7, 8], "test_attack": [9, 7]})


def test_detectors_and_datasets_are_kept_per_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run, generate and fit with the same plant, twin and network share one directory; a seed
    or a presentation key does not change it; another robot, conduit or twin does."""
    monkeypatch.setenv("COSIM_DETECTOR_DIR", "/models")

    def where(*overrides: str) -> str:
        run = _config("run", "detector=dt", *overrides)
        assert run.detector.detectors.ids.model == f"{run.detector.model_dir}/dt_ids.pkl"
        gen, fit = _config("generate", *overrides), _config("fit", "detector=dt", *overrides)
        assert gen.out == fit.data == f"{run.detector.model_dir}/data"
        assert fit.detector.model_dir == run.detector.model_dir
        return str(run.detector.model_dir)

    default = where()
    assert default.startswith("/models/smart_factory-") and len(default) == len("/models/smart_factory-") + 8
    assert where("seed=7") == where("plant.duration=10", "plant.record=[plc.state]") == default
    others = [where("plant.robot=panda"), where("network.conduits.0.latency_s=0.01"),
              where("twin.sync.period_s=2.0"), where("plant.units.press.parameters.supply_pressure=5.0")]
    assert len({default, *others}) == 5


def test_auto_fit_generates_and_fits_in_the_runs_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An episode of another robot auto-fits from a dataset of that robot, into the directory
    the episode loads its models from (generate and fit themselves replaced by recorders)."""
    import experiments.fit as fit
    import experiments.generate as gen

    monkeypatch.setenv("COSIM_DETECTOR_DIR", str(tmp_path))
    seen: dict[str, object] = {}

    def fake_generate(cfg):
        seen["generate"] = (str(cfg.out), cfg.plant.robot, cfg.network.conduits[0].latency_s)
        Path(str(cfg.out)).mkdir(parents=True)
        (Path(str(cfg.out)) / "runs.json").write_text("{}")

    def fake_fit(cfg):
        seen["fit"] = (str(cfg.data), str(cfg.detector.model_dir), cfg.plant.robot)
        return {"models": {}}

    monkeypatch.setattr(gen, "generate", fake_generate)
    monkeypatch.setattr(fit, "fit_and_evaluate", fake_fit)
    run = _config("run", "detector=dt", "plant.robot=panda", "network.conduits.0.latency_s=0.01", "seed=9")
    fit.ensure_models(run, log=lambda message: None)
    model_dir = str(run.detector.model_dir)
    default = str(_config("run", "detector=dt").detector.model_dir)
    assert model_dir.startswith(f"{tmp_path}/smart_factory-") and model_dir != default
    assert seen["generate"] == (f"{model_dir}/data", "panda", 0.01)
    assert seen["fit"] == (f"{model_dir}/data", model_dir, "panda")


def test_drawn_scenarios_follow_the_seed() -> None:
    templates = [{"attack": "spoofing", "target": "a.b", "params": {"value": {"uniform": [0, 1]}}},
                 {"attack": "dos", "target": "c2f"}]
    window = {"start": {"uniform": [10, 20]}, "duration": 5.0}
    assert draw_scenario(templates, window, 3) == draw_scenario(templates, window, 3)
    assert draw_scenario(templates, window, 3)["events"][0]["attack"] == "dos"
    assert draw_scenario(templates, window, 4) != draw_scenario(templates, window, 6)
    event = draw_scenario(templates, window, 4)["events"][0]
    assert 10 <= event["at"] <= 20 and 0 <= event["params"]["value"] <= 1


def test_scoring_seeds_never_reach_training(tmp_path: Path) -> None:
    (tmp_path / "runs.json").write_text(json.dumps({"runs": [
        {"name": "train_normal_1", "split": "train", "seed": 1, "truth": []},
        {"name": "test_normal_1", "split": "test", "seed": 1, "truth": []}]}))
    for name in ("train_normal_1", "test_normal_1"):
        pd.DataFrame({"time": [0.0], "label": ["normal"], "x": [0.0]}).to_parquet(tmp_path / f"{name}.parquet")
    with pytest.raises(ConfigurationError, match=r"seeds \[1\] are in both"):
        load_dataset(tmp_path)


def _synthetic(root: Path) -> None:
    """A dataset of 40 s runs: one residual that leaves its normal range only while an attack
    changes something (t in [20, 24) of the attack's window [16, 26)); seeds 1-5 normal, 11-22
    attack (training), 31-32 normal and 41-44 attack (test)."""
    rng = np.random.default_rng(0)
    runs = []
    t = np.round(np.arange(0.0, 40.0, 0.05), 2)
    for split, seeds, attack in (("train", range(1, 6), False), ("train", range(11, 23), True),
                                 ("test", (31, 32), False), ("test", range(41, 45), True)):
        for seed in seeds:
            name = f"{split}_{'attack' if attack else 'normal'}_{seed}"
            x = np.abs(rng.normal(0.0, 0.3, t.size))
            interval = (t >= 16.0) & (t < 26.0) if attack else np.zeros(t.size, dtype=bool)
            effect = interval & (t >= 20.0) & (t < 24.0)
            x[effect] += 5.0
            pd.DataFrame({"time": t, "label": np.where(interval, "spoofing", "normal"),
                          "effect": np.where(effect, "spoofing", "normal"), "res:sig": x}).to_parquet(
                root / f"{name}.parquet")
            truth = [{"kind": "spoofing", "start": 16.0, "end": 26.0, "target": "sig"}] if attack else []
            runs.append({"name": name, "split": split, "seed": seed, "truth": truth})
    (root / "runs.json").write_text(json.dumps({"runs": runs}))


def test_the_validation_split_is_carved_from_training_runs_only(tmp_path: Path) -> None:
    _synthetic(tmp_path)
    runs = load_dataset(tmp_path)
    fit, val = validation_split(runs, 4)
    test = {r["seed"] for r in runs if r["split"] == "test"}
    assert {r["seed"] for r in val} == {4, 14, 18, 22}  # every 4th normal and attack (same target) run, by seed
    assert not {r["seed"] for r in val} & test and not {r["seed"] for r in fit} & test
    assert not {r["seed"] for r in val} & {r["seed"] for r in fit}
    assert {r["seed"] for r in fit} | {r["seed"] for r in val} == {r["seed"] for r in runs if r["split"] == "train"}
    assert validation_split(runs, 0)[1] == []
    assert {r["seed"] for r in validation_split(runs, 4, normal_every=2)[1]} == {2, 4, 14, 18, 22}
    for r in runs:  # attacks on another target form a group of their own: stratified by what is attacked
        if r["split"] == "train" and r["seed"] >= 19:
            r["truth"] = [{**r["truth"][0], "target": "other"}]
    assert {r["seed"] for r in validation_split(runs, 4)[1]} == {4, 14, 18, 22}
    assert {r["seed"] for r in validation_split(runs, 2)[1]} == {2, 4, 12, 14, 16, 18, 20, 22}
    assert {r["seed"] for r in validation_split(runs, 3)[1]} == {3, 13, 16, 21}
    with pytest.raises(ConfigurationError, match="never test runs"):
        tune({}, {}, [r for r in runs if r["split"] == "test"], {}, 1.0, 0.0)


def test_the_report_carries_both_label_definitions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _synthetic(data)
    model = tmp_path / "models" / "syn_residual.pkl"
    cfg = OmegaConf.create({"seed": 0, "data": str(data), "detector": {
        "name": "syn", "detectors": {"residual": {"model": str(model), "features": {"residuals": True}}},
        "models": {"residual": {"type": "cusum", "params": {"q": 0.99, "margin": 1.5, "h_min": 1.0}}},
        "fit": {"validation_every": 4, "warmup_s": 1.0, "grace_s": 2.0, "fa_budget_per_hour": 1.0}}})
    report = fit_and_evaluate(cfg)
    assert report["validation_seeds"] == [4, 14, 18, 22] and report["test_seeds"] == [31, 32, 41, 42, 43, 44]
    interval, effect = report["combined"]["interval"]["all"], report["combined"]["effect"]["all"]
    # the detector sees what changed: effect labels find it; interval labels count the no-op 60 % as missed
    assert effect["recall"] > 0.9 and interval["recall"] < 0.5 and effect["f1"] > interval["f1"]
    assert effect["median_delay_s"] < interval["median_delay_s"]
    assert report["normal_operation"]["runs"] == 2 and report["normal_operation"]["false_alarms"] == 0
    # normal time is what the runs hold (2 x 40 s normal, 4 x 30 s around the attacks), not the gaps between runs
    assert interval["normal_hours"] == pytest.approx(200.0 / 3600.0, rel=1e-3)
    assert report["tuning"]["validation_runs"] == ["train_attack_14", "train_attack_18", "train_attack_22",
                                                   "train_normal_4"]
    text = (model.parent / "syn_report.md").read_text()
    assert "Interval labels" in text and "Effect labels" in text and "Warm-up: no alarm in the first 1.000 s" in text
    saved = json.loads((model.parent / "syn_report.json").read_text())
    assert set(saved["combined"]) == {"interval", "effect"} and set(saved["per_detector"]["residual"]) == {
        "interval", "effect"}
    assert load_model(model).warmup_samples == 20

    # a validation split without attack runs of the kinds tuned for cannot choose anything: all runs are fitted on
    cfg.detector.fit.objective_kinds = ["injection"]
    report = fit_and_evaluate(cfg)
    assert report["validation_seeds"] == [] and "no validation run of the kinds" in report["tuning"]["skipped"]
    assert report["fit_seeds"] == [*range(1, 6), *range(11, 23)]


@pytest.mark.slow
def test_generate_then_fit_on_the_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    cfg = _config("generate", f"out={data}", "duration=16", "normal_duration=16", "workers=2",
                  "seeds.train_normal=[11,12]",
                  "seeds.train_attack=[21,22,23]", "seeds.test_normal=[31]", "seeds.test_attack=[41]",
                  "attack_window.start={uniform:[6.0,8.0]}", "attack_window.duration=5.0",
                  "templates=[{attack: injection, target: plc.motor_cmd, params: {value: 1.0}},"
                  "{attack: spoofing, target: conveyor.speed_meas, params: {mode: constant, value: 0.5}}]")
    manifest = generate(cfg)
    assert [r["split"] for r in manifest["runs"]] == ["train"] * 5 + ["test"] * 2
    table = pd.read_parquet(data / "test_attack_41.parquet")
    assert list(table.columns[:3]) == ["time", "label", "effect"]
    assert any(c.startswith("res:") for c in table.columns) and any(c.startswith("net:") for c in table.columns)
    truth = manifest["runs"][-1]["truth"][0]
    inside = (table.time >= truth["start"]) & (table.time < truth["end"])
    assert set(table.label[inside]) == {truth["kind"]} and set(table.label[~inside]) == {"normal"}
    assert set(table.effect[~inside]) == {"normal"} and set(table.effect[inside]) <= {truth["kind"], "normal"}
    assert (table.effect[inside] != "normal").mean() > 0.9  # the belt never runs at 0.5 m/s: a change nearly always

    monkeypatch.setenv("COSIM_DETECTOR_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    report = fit_and_evaluate(_config("fit", "detector=dt", f"data={data}", "mlflow.enabled=true",
                                      "+detector.models.ids.params.boost_iter=10"))
    assert report["train_seeds"] == [11, 12, 21, 22, 23] and report["test_seeds"] == [31, 41]
    assert load_model(report["models"]["ids"]).classes[0] in {"injection", "normal", "spoofing"}
    scored = report["combined"]["interval"]["all"]
    assert scored["event_recall"] == 1.0  # a 5 s attack on the belt is not missed
    assert report["combined"]["effect"]["all"]["event_recall"] == 1.0
    assert scored["samples"] == 2 * len(table)
    # the fitted models are an MLflow run's artifacts: an episode can load them from there
    from_mlflow = load_model(f"runs:/{report['mlflow_run_id']}/models/dt_residual.pkl")
    assert from_mlflow.names == load_model(report["models"]["residual"]).names


@pytest.mark.slow
def test_an_episode_with_fitted_detectors_and_the_framework_contains_an_injection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: models fitted on a few runs, then one episode with the dt detectors and the
    dt_framework defence: the injection is detected, contained within a tick, nothing unsafe."""
    from cosim.containment import verify_audit
    from experiments.run import execute

    monkeypatch.setenv("COSIM_DETECTOR_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    window = ("attack_window.start={uniform:[8.0,12.0]}", "attack_window.duration={uniform:[4.0,8.0]}")
    generate(_config("generate", "duration=24",  # into the run's setting, under $COSIM_DETECTOR_DIR
                     "normal_duration=24",
                     "seeds.train_normal=[11,12]", "seeds.train_attack=[21,22,23,24,25,26]",
                     "seeds.test_normal=[31]", "seeds.test_attack=[41]", *window,
                     "templates=[{attack: injection, target: plc.valve_cmd, params: {value: true}},"
                     "{attack: injection, target: plc.motor_cmd, params: {value: 1.0}}]"))
    cfg = _config("run", "detector=dt", "defense=dt_framework", "attack=injection", "duration=60", "seed=5",
                  "progress=false", "plot=false", f"baseline.cache_dir={tmp_path / 'baselines'}",
                  "+detector.models.ids.params.boost_iter=10")
    status, summary, _ = execute(cfg, tmp_path / "episode", {"attack": "injection", "defense": "dt_framework"})
    assert status == 0, summary.get("error")
    assert summary["detected"] is True and summary["detection_latency_s"] <= 0.5
    assert summary["containment_latency_s"] is not None and summary["containment_latency_s"] <= 0.05
    assert summary["unsafe_events"] == 0
    assert summary["parts_baseline"] > 0 and summary["production_loss_frac"] <= 0.5
    assert verify_audit(tmp_path / "episode" / "audit.jsonl").ok
