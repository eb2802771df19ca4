"""The sandbox: cloned from a verified snapshot of the twin, isolated from the plant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from cosim import ConfigurationError, InvalidConnectionError, Override
from cosim.errors import IntegrityError
from cosim.twin.integrity import KeyStore, SignedSnapshot
from cosim.twin.sandbox import Sandbox
from experiments.plant import register_resolvers, system_spec

REPO = Path(__file__).resolve().parents[2]
register_resolvers()
PLANT = ["hmi", "plc", "robot", "cell", "feeder", "conveyor", "press", "inspection"]
TRACE = ["press.pressure", "conveyor.belt_speed", "cell.ee_x", "plc.state", "cell.parts_released"]


@pytest.fixture
def keystore() -> KeyStore:
    """This installation's key store: it signed the FMUs that the twin verifies."""
    return KeyStore()


def plant_with_twin():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=["plant=smart_factory", "twin=replica", "seed=9"])
    spec, layout = system_spec(cfg)
    return spec, layout, spec.build(record=TRACE)


def test_sandbox_is_a_separate_copy_that_cannot_reach_the_plant(keystore):
    spec, layout, master = plant_with_twin()
    master.run(duration=12.0)  # the press is closing on the first part
    snap = Sandbox.snapshot_twin(master, layout, keystore)
    box = Sandbox(spec, layout, snap, keystore, record=["twin_press.pressure", "twin_cell.ee_x"])
    # its own instances, cloned state
    assert set(box.master.units) == set(layout.replicas.values())
    assert not set(box.master.units) & set(PLANT)
    assert box.master.units["twin_cell"].client._client != master.units["twin_cell"].client._client
    assert box.master.tick == master.tick
    assert box.master.get("twin_press.pressure") == master.get("twin_press.pressure")
    assert box.master.get("twin_cell.ee_x") == master.get("twin_cell.ee_x")
    # no path to the plant: plant units are unknown to it, plant inputs are not its commands
    with pytest.raises(ConfigurationError, match="not a command the twin receives"):
        box.feed({"press.valve_cmd": True})
    with pytest.raises(ConfigurationError, match="unknown unit 'press'"):
        box.master.set_input("press.valve_cmd", True)
    with pytest.raises(ConfigurationError, match="unknown unit 'press'"):
        box.master.add_manipulator(Override("press.valve_cmd", True))
    assert getattr(box.master, "network", None) is None
    box.close()
    master.terminate()
    # and a sandbox description wired to a plant unit does not even build
    box.spec.connections.append(("twin_press.pressure", "press.valve_cmd"))
    with pytest.raises(InvalidConnectionError, match="target unit 'press' does not exist"):
        box.spec.build()


def test_what_happens_in_the_sandbox_does_not_touch_production(keystore):
    # reference: the plant alone, undisturbed
    _, _, ref = plant_with_twin()
    ref.run(duration=30.0)
    reference = ref.observers[0].as_dict()
    ref.terminate()
    # the same plant, while a destructive command stream is played into a sandbox copy
    spec, layout, master = plant_with_twin()
    master.run(duration=10.0)
    box = Sandbox(spec, layout, Sandbox.snapshot_twin(master, layout, keystore), keystore,
                  record=["twin_press.pressure", "twin_conveyor.belt_speed"])
    box.play([(10.0, {"plc.valve_cmd": True, "plc.motor_cmd": 1.0}), (11.0, {"plc.release_cmd": True})], until=16.0)
    master.run(duration=20.0)
    trace = master.observers[0].as_dict()
    for key in reference:
        np.testing.assert_array_equal(trace[key], reference[key], err_msg=key)
    sandbox = box.recorder.as_dict()
    assert sandbox["twin_press.pressure"].max() > 4.0  # the sandbox did close its press ...
    assert sandbox["twin_conveyor.belt_speed"].max() > 0.45  # ... and ran its belt flat out
    box.close()
    master.terminate()


def test_tampered_snapshot_is_refused_and_nothing_is_built(keystore, tmp_path):
    spec, layout, master = plant_with_twin()
    master.run(duration=1.0)
    snap = Sandbox.snapshot_twin(master, layout, keystore)
    data = bytearray(snap.data)
    data[len(data) // 2] ^= 0x01
    tampered = SignedSnapshot(bytes(data), snap.manifest, keystore)
    with pytest.raises(IntegrityError, match="hash mismatch"):
        Sandbox(spec, layout, tampered, keystore)
    other = KeyStore(tmp_path / "other")  # another installation: does not know our signer
    with pytest.raises(IntegrityError, match="unknown signer"):
        Sandbox(spec, layout, snap, other)
    master.terminate()


def test_diverted_stream_drives_the_sandbox(keystore):
    spec, layout, master = plant_with_twin()
    master.run(duration=2.0)
    box = Sandbox(spec, layout, Sandbox.snapshot_twin(master, layout, keystore), keystore)

    class Frame:  # what a conduit's divert sink receives
        tags = ("plc.motor_cmd", "plc.unknown_tag")
        values = (0.5, 1)

    box.receive(Frame())
    box.run(1.0)
    assert box.master.get("twin_conveyor.motor_cmd") == 0.5
    assert len(box.received) == 1
    box.close()
    master.terminate()
