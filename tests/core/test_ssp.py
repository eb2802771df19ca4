"""SSP import: structure, parameters, nesting, default experiment, and refused content."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from cosim import ConfigurationError, FMUUnit, Master, ModelLoadError, Recorder
from cosim.ssp import read_ssp
from models.build import build_fmu
from models.ssp import build_ssp


@pytest.fixture(scope="module")
def demo_ssp() -> Path:
    return build_ssp("demo")


def test_demo_ssp_structure(demo_ssp):
    plant = read_ssp(demo_ssp)
    try:
        assert plant.name == "demo_line"
        assert list(plant.components) == ["drive", "line_conveyor", "odometer"]
        assert sorted(plant.connections) == [("drive.y", "line_conveyor.motor_cmd"),
                                             ("line_conveyor.belt_speed", "odometer.u")]
        assert plant.parameters == {"drive": {"k": 0.1, "y0": 0.2},
                                    "line_conveyor": {"gain": 0.6, "tau": 0.5}}  # prefix filtered
        assert (plant.start_time, plant.stop_time) == (0.0, 4.0)
    finally:
        plant.cleanup()


def test_ssp_plant_runs_exactly_like_the_same_plant_built_by_hand(demo_ssp):
    plant = read_ssp(demo_ssp)
    spec = plant.to_spec(base_step=0.01)
    spec.inputs["drive.u"] = 1.0
    from_ssp = spec.build(record=["line_conveyor.belt_speed", "odometer.y", "drive.y"])
    from_ssp.run(duration=spec.stop_time)
    rec_ssp = from_ssp.observers[0]
    assert isinstance(rec_ssp, Recorder)

    m = Master(0.01)
    m.add_unit(FMUUnit("drive", build_fmu("integrator"), {"k": 0.1, "y0": 0.2}))
    m.add_unit(FMUUnit("line_conveyor", build_fmu("conveyor"), {"gain": 0.6, "tau": 0.5}))
    m.add_unit(FMUUnit("odometer", build_fmu("integrator")))
    m.connect("drive.y", "line_conveyor.motor_cmd")
    m.connect("line_conveyor.belt_speed", "odometer.u")
    m.set_input("drive.u", 1.0)
    rec = m.add_observer(Recorder(["line_conveyor.belt_speed", "odometer.y", "drive.y"]))
    m.run(duration=4.0)
    for key, values in rec.as_dict().items():
        np.testing.assert_array_equal(rec_ssp.as_dict()[key], values)
    assert rec.column("drive.y")[-1] == pytest.approx(0.2 + 0.1 * 4.0)
    from_ssp.terminate()
    m.terminate()
    plant.cleanup()


def _repack(src: Path, dst: Path, ssd_edit=None, drop: str | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name == drop:
                continue
            data = zin.read(name)
            if name == "SystemStructure.ssd" and ssd_edit:
                data = ssd_edit(data.decode()).encode()
            zout.writestr(name, data)
    return dst


def test_missing_and_corrupt_ssp(tmp_path, demo_ssp):
    with pytest.raises(ModelLoadError, match="file not found"):
        read_ssp(tmp_path / "none.ssp")
    bad = tmp_path / "bad.ssp"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="not a valid SSP"):
        read_ssp(bad)
    with pytest.raises(ModelLoadError, match=r"no SystemStructure\.ssd"):
        read_ssp(_repack(demo_ssp, tmp_path / "nossd.ssp", drop="SystemStructure.ssd"))


def test_component_source_missing(tmp_path, demo_ssp):
    with pytest.raises(ModelLoadError, match=r"component source 'resources/conveyor.fmu' not found"):
        read_ssp(_repack(demo_ssp, tmp_path / "nofmu.ssp", drop="resources/conveyor.fmu"))


def test_unsupported_transformation_is_refused(tmp_path, demo_ssp):
    def add_transform(text: str) -> str:
        return text.replace(
            '<ssd:Connection startElement="drive" startConnector="y" endElement="line" endConnector="cmd"/>',
            '<ssd:Connection startElement="drive" startConnector="y" endElement="line" endConnector="cmd">'
            '<ssc:LinearTransformation factor="2.0" offset="0"/></ssd:Connection>')

    with pytest.raises(ConfigurationError, match="transformations are not supported"):
        read_ssp(_repack(demo_ssp, tmp_path / "tf.ssp", add_transform))


def test_input_fed_twice_in_ssd(tmp_path, demo_ssp):
    def twice(text: str) -> str:
        return text.replace(
            "</ssd:Connections>\n  </ssd:System>",
            '<ssd:Connection startElement="drive" startConnector="y" endElement="odometer" endConnector="u"/>'
            "</ssd:Connections>\n  </ssd:System>")

    with pytest.raises(ConfigurationError, match="fed twice"):
        read_ssp(_repack(demo_ssp, tmp_path / "twice.ssp", twice))


def test_bare_ssd_next_to_its_fmus(tmp_path, demo_ssp):
    with zipfile.ZipFile(demo_ssp) as zf:
        zf.extractall(tmp_path)
    plant = read_ssp(tmp_path / "SystemStructure.ssd")
    assert plant.components["odometer"] == (tmp_path / "resources" / "integrator.fmu").resolve()
