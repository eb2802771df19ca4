"""The bad-input catalogue: every case through the user's entry point, ``python -m experiments.run``.

Each case gives exit status 1, exactly one ``error:`` line on stderr that names the culprit
(file, unit, variable, override key), no traceback, a FAILED ``summary.json`` with that error
where the episode had begun, a FAILED MLflow run carrying it where a run had started, and
for faults in the middle of a run the traces recorded up to the fault.

:data:`CASES` is the catalogue (``id``, ``what``): ``python -c "from tests.reliability.test_bad_input
import CASES; ..."`` lists it. Cases marked ``cli`` run ``python -m experiments.run`` in a
subprocess (the real command line, Hydra's own checks included); the others call
:func:`experiments.run.execute` with a config composed from the same overrides.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import DictConfig, open_dict

from cosim.core.unit import PythonUnit, real
from experiments.run import execute
from tests.tracking.configs import write_test_conf

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:.*is validated against ConfigStore schema:UserWarning")

DEMO = ("plant=demo", "twin=none", "network=none", "attack=none", "defense=none", "duration=3", "plot=false")
FACTORY = ("plant=smart_factory", "twin=replica", "network=none", "attack=none", "defense=none", "duration=0.1",
           "plot=false", "baseline.enabled=false")


# Units and files the cases need ---------------------------------------------------------
class PassThrough(PythonUnit):
    """y = u within the instant: an output with direct feed-through."""

    VARIABLES = (real("u", "input"), real("y", "output"))
    FEEDTHROUGH = {"y": ["u"]}

    def do_step(self, t: float, h: float) -> None:
        self.values["y"] = self.values["u"]


CONF_FILES = {
    # a scenario that is not YAML at all (Hydra reads it)
    "attack/broken_yaml.yaml": "name: broken_yaml\nevents:\n  - {attack: injection, target: [\n",
    # valid YAML, but its event has no start time
    "attack/no_start.yaml": """name: no_start
events:
  - {attack: injection, name: forced_press, target: sequencer.valve_cmd, duration: 1.0, params: {value: true}}
""",
    "detector/missing_model.yaml": """name: missing_model
detectors:
  residual: {_target_: cosim.detection.online.OnlineDetector, name: residual, model: MODEL,
             features: {physics: [press.pressure]}}
""",
}


def _fmu(model: str) -> Path:
    from experiments.plant import register_resolvers
    from models.build import build_fmu

    register_resolvers()
    return build_fmu(model, fmi_version="2.0")


def rewrite_zip(src: Path, dst: Path, change: Callable[[str, bytes], tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            name, data = change(info.filename, zin.read(info.filename))
            zout.writestr(name, data)
    return dst


def corrupt_fmu(tmp: Path) -> list[str]:
    bad = tmp / "press_corrupt.fmu"
    bad.write_bytes(_fmu("press").read_bytes()[:300])
    return [f"plant.units.press.path={bad}"]


def windows_only_fmu(tmp: Path) -> list[str]:
    def to_win(name: str, data: bytes) -> tuple[str, bytes]:
        if name.startswith("binaries/"):
            return name.replace("linux64", "win64").replace(".so", ".dll"), data
        return name, data

    return [f"plant.units.press.path={rewrite_zip(_fmu('press'), tmp / 'press_win64.fmu', to_win)}"]


def broken_urdf(tmp: Path) -> list[str]:
    path = tmp / "broken_arm.urdf"
    path.write_text('<robot name="arm"><link name="base"><visual><geometry><box size="1 1"/>\n')
    return [f"plant.units.arm.robot={path}"]


def model_dir(tmp: Path, content: bytes | None) -> list[str]:
    directory = tmp / "models"
    directory.mkdir()
    if content is not None:
        (directory / "model.pkl").write_bytes(content)
    return ["detector=missing_model", f"detector.detectors.residual.model={directory / 'model.pkl'}"]


def unsigned_twin_fmu(tmp: Path) -> list[str]:
    copy = tmp / "press_unsigned.fmu"
    shutil.copy(_fmu("press"), copy)  # no <file>.manifest.json beside it
    return [f"plant.units.press.path={copy}"]


def tampered_twin_fmu(tmp: Path) -> list[str]:
    from cosim.twin.integrity import manifest_path

    src = _fmu("press")
    copy = tmp / "press_tampered.fmu"
    shutil.copy(src, copy)
    shutil.copy(manifest_path(src), manifest_path(copy))
    with zipfile.ZipFile(copy, "a") as z:  # still a loadable FMU, one file more than was signed
        z.writestr("resources/payload.txt", "not what was signed")
    return [f"plant.units.press.path={copy}"]


def closed_port(_tmp: Path) -> dict[str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}


def file_in_the_way(tmp: Path) -> list[str]:
    (tmp / "file.txt").write_text("a file, not a directory")
    return [f"hydra.run.dir={tmp / 'file.txt' / 'run'}"]


def add_fmu_unit(cfg: DictConfig, name: str, **parameters: float) -> None:
    with open_dict(cfg):
        cfg.plant.units[name] = {"_target_": "cosim.units.fmu.FMUUnit", "path": str(_fmu("integrator")),
                                 "parameters": parameters}


def fmu_fails_mid_run(cfg: DictConfig) -> None:
    add_fmu_unit(cfg, "integ", fail_at=1.5)


def nan_mid_run(cfg: DictConfig) -> None:
    add_fmu_unit(cfg, "integ", nan_at=1.5)
    add_fmu_unit(cfg, "sink")
    with open_dict(cfg):
        cfg.plant.connections.append("integ.y -> sink.u")


def algebraic_loop(cfg: DictConfig) -> None:
    with open_dict(cfg):
        cfg.plant.algorithm = "gauss_seidel"
        for name in ("loop_a", "loop_b"):
            cfg.plant.units[name] = {"_target_": f"{__name__}.PassThrough"}
        cfg.plant.connections.append("loop_a.y -> loop_b.u")
        cfg.plant.connections.append("loop_b.y -> loop_a.u")


# The catalogue ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        id: short name.
        what: what is bad, in words.
        overrides: command-line overrides (after :data:`DEMO` or ``base``).
        expect: fragments the ``error:`` line must contain (``{tmp}`` is the test's tmp dir).
        setup: makes the bad artifact in the tmp dir; returns more overrides.
        env: makes environment variables (from the tmp dir).
        mutate: changes the composed config (in-process cases only).
        base: the overrides it starts from.
        cli: through ``python -m experiments.run`` in a subprocess.
        episode: the episode began: its run directory holds a FAILED ``summary.json``.
        run: an MLflow run was started and must be FAILED with the error.
        fault_time: a fault in the middle of the run: ``trace.csv`` is kept up to about here.
    """

    id: str
    what: str
    overrides: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()
    setup: Callable[[Path], list[str]] | None = None
    env: Callable[[Path], dict[str, str]] | None = None
    mutate: Callable[[DictConfig], None] | None = None
    base: tuple[str, ...] = DEMO
    cli: bool = False
    episode: bool = True
    run: bool = True
    fault_time: float | None = None
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())


CASES: list[Case] = [
    Case("unknown_config_option", "a config group option that does not exist (plant=nope)",
         ("plant=nope",), ("error: In 'run': Could not find 'plant/nope'", "demo, smart_factory, ssp"), cli=True,
         episode=False, run=False),
    Case("unknown_config_key", "an override of a key that does not exist (durration=5, a typo)",
         ("durration=5",), ("durration",), cli=True, episode=False, run=False),
    Case("malformed_override", "an override that does not parse (duration=[1,)",
         ("duration=[1,",), ("duration=[1,",), cli=True, episode=False, run=False),
    Case("bad_override_type", "a value of the wrong type (plant.base_step=abc)",
         ("plant.base_step=abc",), ("plant.base_step", "'abc'"), cli=True),
    Case("bad_override_value", "a value out of range (duration=-5)",
         ("duration=-5",), ("duration must be positive", "-5")),
    Case("missing_fmu", "an FMU file that does not exist",
         ("plant.units.press.path={tmp}/missing.fmu",), ("unit 'press'", "{tmp}/missing.fmu", "file not found")),
    Case("corrupt_fmu", "an FMU that is not a valid ZIP archive",
         (), ("unit 'press'", "press_corrupt.fmu", "corrupt"), setup=corrupt_fmu),
    Case("fmu_without_binary", "an FMU with a binary for another platform only (win64)",
         (), ("unit 'press'", "no binary for this platform", "win64"), setup=windows_only_fmu),
    Case("fmu_step_fails", "an FMU whose doStep fails at t=1.5 s",
         (), ("unit 'integ'", "fmi2DoStep", "t=1.5"), mutate=fmu_fails_mid_run, fault_time=1.5),
    Case("nan_from_model", "an FMU whose output becomes NaN at t=1.5 s",
         (), ("unit 'integ'", "y=nan"), mutate=nan_mid_run, fault_time=1.5),
    Case("connection_missing_variable", "a connection from a variable the unit does not have",
         ("plant.connections.0='sequencer.motor_command -> conveyor.motor_cmd'",),
         ("unit 'sequencer'", "'motor_command'", "conveyor.motor_cmd")),
    Case("causality_mismatch", "a connection from an input (conveyor.motor_cmd) to an input",
         ("plant.connections.1='conveyor.motor_cmd -> press.valve_cmd'",),
         ("unit 'conveyor'", "'motor_cmd' is an input", "press.valve_cmd")),
    Case("type_mismatch", "a connection from a Real output to a Boolean input",
         ("plant.connections.1='sequencer.motor_cmd -> press.valve_cmd'",),
         ("unit 'sequencer'", "'motor_cmd' is real", "needs boolean", "press.valve_cmd")),
    Case("algebraic_loop", "a cycle of direct feed-through under Gauss-Seidel",
         (), ("algebraic loop", "loop_a.y -> loop_b.u", "loop_b.y -> loop_a.u"), mutate=algebraic_loop),
    Case("urdf_fails_to_load", "a robot URDF that is not valid XML",
         (), ("unit 'arm'", "broken_arm.urdf", "XML_ERROR_PARSING"), setup=broken_urdf),
    Case("robot_urdf_fails_to_load", "the smart factory's robot (plant.robot) a URDF file that is not valid XML",
         (), ("cannot load URDF", "broken_arm.urdf", "XML_ERROR_PARSING"),
         setup=lambda tmp: [f"plant.robot={broken_urdf(tmp)[0].split('=', 1)[1]}"], base=FACTORY),
    Case("scenario_not_yaml", "a scenario (attack) file that is not valid YAML",
         ("attack=broken_yaml",), ("not valid YAML", "broken_yaml.yaml", "line"), cli=True, episode=False, run=False),
    Case("scenario_malformed_event", "a scenario event without its start time (at)",
         ("attack=no_start",), ("no_start", "event 1", "missing keys ['at']")),
    Case("attack_unknown_kind", "a scenario event with an attack that does not exist",
         ("attack=demo_press", "attack.events.0.attack=teleport"), ("unknown attack 'teleport'", "event 1")),
    Case("attack_missing_target", "an attack aimed at a variable that does not exist",
         ("attack=demo_press", "attack.events.0.target=sequencer.valve_command"),
         ("forced_press", "sequencer.valve_command")),
    Case("detector_model_missing", "a detector model file that does not exist",
         (), ("detector model", "{tmp}/models/model.pkl", "file not found"),
         setup=lambda tmp: model_dir(tmp, None)),
    Case("detector_model_incompatible", "a detector model file of another format version",
         (), ("detector model", "{tmp}/models/model.pkl", "format version 99"),
         setup=lambda tmp: model_dir(tmp, pickle.dumps({"format": 99, "kind": "cusum", "model": None}))),
    Case("detector_model_not_a_model", "a detector model file that is not a model at all",
         (), ("detector model", "{tmp}/models/model.pkl", "not a model file"),
         setup=lambda tmp: model_dir(tmp, b"\x00garbage")),
    Case("twin_model_unsigned", "a twin model (FMU) without its signed manifest",
         (), ("press_unsigned.fmu", "missing manifest"), setup=unsigned_twin_fmu, base=FACTORY),
    Case("twin_model_tampered", "a twin model (FMU) changed after it was signed",
         (), ("press_tampered.fmu", "hash mismatch"), setup=tampered_twin_fmu, base=FACTORY),
    Case("tracking_server_unreachable", "MLFLOW_TRACKING_URI pointing at a closed port",
         (), ("MLflow tracking server http://127.0.0.1:", "does not answer"), env=closed_port, cli=True, run=False),
    Case("unwritable_output_dir", "hydra.run.dir under a regular file",
         (), ("cannot write to the run directory", "{tmp}/file.txt/run"), setup=file_in_the_way, cli=True,
         episode=False, run=False),
]


# The checks -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tracking_db(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def error_message(stderr: str) -> str:
    """The ``error:`` line with its indented continuation (a contract error lists its problems)."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("error:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  - "):
        end += 1
    return "\n".join(lines[start:end])


def _overrides(case: Case, tmp: Path, conf: Path) -> list[str]:
    extra = case.setup(tmp) if case.setup is not None else []
    return [*case.base, *(o.replace("{tmp}", str(tmp)) for o in case.overrides), *extra,
            f"hydra.searchpath=[file://{conf}]", "progress=false", f"baseline.cache_dir={tmp / 'baselines'}"]


def _run_cli(overrides: Sequence[str], run_dir: Path, env: dict[str, str]) -> tuple[int, str]:
    if not any(o.startswith("hydra.run.dir=") for o in overrides):
        overrides = [*overrides, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *overrides], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


def _run_in_process(case: Case, overrides: Sequence[str], run_dir: Path, conf: Path, capfd) -> tuple[int, str]:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("run", overrides=list(overrides))
    if case.mutate is not None:
        case.mutate(cfg)
    capfd.readouterr()
    status, _summary, _run_id = execute(cfg, run_dir, {}, search_dirs=[conf])
    return status, capfd.readouterr().err


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_gives_one_clear_error(case: Case, tmp_path, tracking_db, monkeypatch, capfd):
    conf = write_test_conf(tmp_path / "conf")
    for rel, text in CONF_FILES.items():
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text(text)
    env = {"MLFLOW_TRACKING_URI": tracking_db}
    if case.env is not None:
        env.update(case.env(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("COSIM_MLFLOW_PARENT_RUN", raising=False)
    overrides = _overrides(case, tmp_path, conf)
    run_dir = tmp_path / "run"
    t0 = time.perf_counter()
    if case.cli:
        status, stderr = _run_cli(overrides, run_dir, {**os.environ, **env})
    else:
        status, stderr = _run_in_process(case, overrides, run_dir, conf, capfd)
    wall = time.perf_counter() - t0

    assert status == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert len(error_lines(stderr)) == 1, stderr
    line = error_message(stderr)
    for fragment in case.expect:
        assert fragment.replace("{tmp}", str(tmp_path)) in line, f"{fragment!r} not in {line!r}"
    assert wall < 120, f"{case.id} took {wall:.0f} s"

    summary_file = run_dir / "summary.json"
    report = os.environ.get("BAD_INPUT_REPORT")  # a JSON-lines file: what the user saw, per case
    if report:
        with open(report, "a") as f:
            f.write(json.dumps({"id": case.id, "error": line.replace(str(tmp_path), "<tmp>"),
                                "wall_s": round(wall, 2), "summary": summary_file.exists()}) + "\n")
    if not case.episode:
        assert not summary_file.exists()
        return
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "FAILED" and f"error: {summary['error']}" == line
    if case.run:
        run = MlflowClient(tracking_db).get_run(summary["mlflow_run_id"])
        assert run.info.status == "FAILED" and run.data.tags["error"] == summary["error"]
        assert run.data.params["seed"] == "0" and "duration" in run.data.params  # what was logged is kept
    else:
        assert summary.get("mlflow_run_id") is None
    if case.fault_time is not None:  # what was recorded before the fault is kept
        rows = (run_dir / "trace.csv").read_text().splitlines()
        if report:
            with open(report, "a") as f:
                f.write(json.dumps({"id": case.id, "trace_rows": len(rows) - 1,
                                    "trace_end": float(rows[-1].split(",")[0])}) + "\n")
        assert float(rows[-1].split(",")[0]) == pytest.approx(case.fault_time, abs=0.02)
        assert len(rows) > 100
        if case.run:
            arts = MlflowClient(tracking_db).list_artifacts(summary["mlflow_run_id"], "traces")
            assert "trace.csv" in {a.path.split("/")[-1] for a in arts}


def test_catalogue_covers_the_issue():
    assert len(CASES) >= 15 and len({c.id for c in CASES}) == len(CASES)


def test_gauss_seidel_accepts_a_loop_through_state_and_jacobi_any_loop():
    """The loop check refuses only feed-through cycles: a unit with state on the cycle breaks it."""
    from cosim.core.master import Master
    from cosim.errors import ConfigurationError

    class Lag(PythonUnit):
        VARIABLES = (real("u", "input"), real("y", "output"))

        def do_step(self, t: float, h: float) -> None:
            self.values["y"] = self.values["u"]

    for algorithm, second, refused in (("gauss_seidel", PassThrough, True), ("gauss_seidel", Lag, False),
                                       ("jacobi", PassThrough, False)):
        m = Master(0.1, algorithm=algorithm)
        m.add_unit(PassThrough("a"))
        m.add_unit(second("b"))
        m.add_unit(PassThrough("c"))
        m.connect("a.y", "b.u")
        m.connect("b.y", "c.u")
        m.connect("c.y", "a.u")
        if refused:
            with pytest.raises(ConfigurationError, match=re.escape("a.y -> b.u, b.y -> c.u, c.y -> a.u")):
                m.build()
        else:
            m.build().step(3)
            m.terminate()
