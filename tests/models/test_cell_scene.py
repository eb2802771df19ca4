"""Tests of the cell scene unit (arm + stations + parts in one PyBullet world).

The unit is driven directly on a TimeGrid with hand-written inputs; joint targets come from
inverse kinematics on a private kinematic copy of the robot (no PLC, no robot controller).
"""

from __future__ import annotations

import math

import numpy as np
import pybullet
import pytest
from PIL import Image

from cosim.core.master import Master
from cosim.core.unit import TimeGrid
from cosim.core.variables import Causality, VarType
from cosim.errors import ConfigurationError, NonFiniteValueError
from cosim.units.bullet import ROBOTS, BulletArm
from cosim.units.contract import check_unit
from models.cell.render import FrameRecorder, render_frame, write_gif, write_pngs
from models.cell.scene import SCENE_INPUTS, SCENE_OUTPUTS, CellScene

GRID = TimeGrid(0.01)


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def ik_probes():
    probes: dict[tuple[str, str | None], BulletArm] = {}
    yield probes
    for probe in probes.values():
        probe.terminate()


@pytest.fixture
def make_scene(ik_probes):
    scenes: list[CellScene] = []

    def make(robot: str = "kuka", setup: bool = True, **kwargs) -> Driver:
        scene = CellScene("cell", robot, **kwargs)
        scenes.append(scene)
        if setup:
            scene.setup(GRID)
        return Driver(scene, ik_probes)

    yield make
    for scene in scenes:
        scene.terminate()


class Driver:
    """Steps a scene one tick at a time and scripts the arm through tool-tip positions."""

    def __init__(self, scene: CellScene, probes: dict) -> None:
        self.s = scene
        self.probes = probes
        self.tick = 0
        self.qnames = [f"q_target_{i}" for i in range(scene.n_joints)]
        self.q = list(scene.get(self.qnames))

    def get(self, name: str):
        return self.s.get([name])[0]

    def set(self, **values) -> None:
        self.s.set(list(values), list(values.values()))

    def step(self, n: int = 1, until=None) -> bool:
        for _ in range(n):
            self.s.step(self.tick, 1)
            self.tick += 1
            if until is not None and until():
                return True
        return False

    def ik(self, tip) -> list[float]:
        """Joint positions putting the suction tip at ``tip`` (tool pointing down)."""
        s = self.s
        key = (s.robot, s.tool_link_name)
        if key not in self.probes:
            self.probes[key] = BulletArm("ik", s.robot, ee_link=s.tool_link_name)
        probe = self.probes[key]
        c, b = probe.client, probe.body_id
        movable = [j for j in range(c.getNumJoints(b)) if c.getJointInfo(b, j)[2] in (0, 1)]
        lower = [c.getJointInfo(b, j)[8] for j in movable]
        upper = [c.getJointInfo(b, j)[9] for j in movable]
        ranges = [u - lo for lo, u in zip(lower, upper, strict=True)]
        rest = list(ROBOTS[s.robot].home) + [0.0] * (len(movable) - 7)
        rest[0] = math.atan2(tip[1], tip[0])
        orn = pybullet.getQuaternionFromEuler((math.pi, 0.0, 0.0))
        rot = pybullet.getMatrixFromQuaternion(orn)
        target = [tip[r] - sum(rot[3 * r + k] * s.tool_offset[k] for k in range(3)) for r in range(3)]
        for j, q in zip(movable, rest, strict=True):
            c.resetJointState(b, j, q)
        for _ in range(20):
            q = c.calculateInverseKinematics(b, probe.ee_link, target, orn, lowerLimits=lower, upperLimits=upper,
                                             jointRanges=ranges, restPoses=rest, maxNumIterations=100,
                                             residualThreshold=1e-7)
            for j, qq in zip(movable, q, strict=False):
                c.resetJointState(b, j, qq)
        return list(q[: s.n_joints])

    def move(self, tip, duration: float = 1.0, settle: float = 0.8, until=None) -> float:
        """Smooth joint-space move to a tool-tip position; returns the final tip error (m)."""
        goal = self.ik(tip)
        start = list(self.q)
        steps = max(1, round(duration / 0.01))
        for k in range(1, steps + 1):
            sm = 0.5 - 0.5 * math.cos(math.pi * k / steps)
            self.q = [a + (g - a) * sm for a, g in zip(start, goal, strict=True)]
            self.s.set(self.qnames, self.q)
            if self.step(until=until):
                return math.dist(self.s.tool_tip(), tip)
        self.step(round(settle / 0.01), until=until)
        return math.dist(self.s.tool_tip(), tip)

    def active_parts(self):
        return [p for p in self.s.parts if p.where != "parked"]

    def release_part(self) -> None:
        self.set(pusher_position=0.06)
        self.step(10)
        self.set(pusher_position=0.0)


def feed_to_pick(d: Driver, speed: float = 0.2) -> float:
    """Release a part, run the belt until the pick eye sees it, stop the belt; returns its x."""
    d.set(belt_speed=speed)
    d.release_part()
    assert d.step(600, until=lambda: d.get("part_at_pick")), "part never reached the pick eye"
    d.set(belt_speed=0.0)
    d.step(5)
    return d.get("pick_part_x")


def pick(d: Driver, x: float, y: float) -> None:
    top = d.s.part_top_z
    d.move((x, y, top + 0.1), 1.0)
    d.move((x, y, top + 0.004), 0.8)
    d.set(suction_cmd=True)
    d.step(2)
    assert d.get("part_held")
    d.move((x, y, top + 0.15), 0.8)


def place(d: Driver, x: float, y: float) -> None:
    top = d.s.part_top_z
    d.move((x, y, top + 0.15), 1.5)
    d.move((x, y, top + 0.006), 0.8)
    d.set(suction_cmd=False)
    d.step(30)
    assert not d.get("part_held")
    d.move((x, y, top + 0.15), 0.8)


# ---------------------------------------------------------------------------- tests
def test_variables_types_and_contract(make_scene):
    d = make_scene("kuka", setup=False)
    scene = d.s
    variables = scene.variables
    for name, vtype, _, _ in SCENE_INPUTS:
        assert variables[name].causality is Causality.INPUT and variables[name].type is vtype
    for name, vtype, _, _ in SCENE_OUTPUTS:
        assert variables[name].causality is Causality.OUTPUT and variables[name].type is vtype
    # the arm's variables are all there, unchanged
    assert [f"q_target_{i}" for i in range(7)] + [f"q_{i}" for i in range(7)] == \
        [n for n in variables if n.startswith(("q_target_", "q_"))][:14]
    assert {"ee_x", "ee_qw", "tau_6", "qd_0"} <= set(variables)
    check_unit(CellScene("contract", "kuka"))
    scene.setup(GRID)
    outs = scene.get([n for n, *_ in SCENE_OUTPUTS])
    assert all(type(v) is {VarType.REAL: float, VarType.BOOLEAN: bool, VarType.INTEGER: int}[t]
               for v, (_, t, _, _) in zip(outs, SCENE_OUTPUTS, strict=True))
    # typed writes; outputs cannot be written; NaN inputs are refused
    scene.writer(["suction_cmd", "belt_speed"])([1, 0])
    assert scene.get(["suction_cmd", "belt_speed"]) == [True, 0.0]
    with pytest.raises(ConfigurationError, match="is an output"):
        scene.set(["part_held"], [True])
    with pytest.raises(ConfigurationError, match="did you mean"):
        scene.set(["belt_sped"], [0.1])
    scene.set(["belt_speed"], [float("nan")])
    with pytest.raises(NonFiniteValueError, match="belt_speed"):
        scene.step(0, 1)
    # nothing touches at the start pose
    assert scene.client.getContactPoints(bodyA=scene.body_id) == ()


def test_part_travels_to_pick_eye_then_falls_off_and_is_dropped(make_scene):
    d = make_scene("kuka", seed=1)
    s = d.s
    d.set(belt_speed=0.2, pusher_position=0.06)
    d.step()
    assert d.get("parts_released") == 1 and d.get("part_at_entry")
    (part,) = d.active_parts()
    assert part.where == "belt" and abs(part.pos[1] - s.belt_start[1]) <= s.release_offset + 1e-9
    d.set(pusher_position=0.0)
    d.step(50)
    assert not d.get("part_at_entry")
    # the part moves at belt speed, square on the belt
    x0 = d.active_parts()[0].pos[0]
    d.step(100)
    assert d.active_parts()[0].pos[0] - x0 == pytest.approx(0.2, abs=0.004)
    assert d.step(300, until=lambda: d.get("part_at_pick"))
    assert abs(d.get("pick_part_x") - s.pick_eye_x) <= s.part_size[0] / 2 + 1e-9
    # the belt keeps running: the part leaves the belt end, falls, and counts as dropped once
    assert d.step(150, until=lambda: d.get("parts_dropped") == 1)
    assert not d.get("part_at_pick") and d.active_parts() == []
    d.step(100)
    assert d.get("parts_dropped") == 1
    kinds = [e[1] for e in s.events]
    assert kinds == ["release", "drop"]
    # stopping the belt stops a part
    d.release_part()
    d.step(50)
    d.set(belt_speed=0.0)
    d.step(5)
    x1 = d.active_parts()[0].pos[0]
    d.step(100)
    assert d.active_parts()[0].pos[0] == pytest.approx(x1, abs=1e-4)


@pytest.mark.parametrize("robot", ["kuka", "panda"])
def test_pick_place_press_inspect_eject(make_scene, robot):
    d = make_scene(robot, seed=5)
    s = d.s
    top = s.part_top_z
    st = s.spots
    d.move((st["pick"][0], st["pick"][1], top + 0.1), 1.0)
    x = feed_to_pick(d)
    (part,) = d.active_parts()
    # suction too far above the part does not grasp
    d.move((x, st["pick"][1], top + 0.04), 0.8)
    d.set(suction_cmd=True)
    d.step(5)
    assert not d.get("part_held")
    d.set(suction_cmd=False)
    pick(d, x, st["pick"][1])
    (held,) = d.active_parts()
    assert held.where == "held" and held.pos[2] > top + 0.1  # carried up with the tool
    assert not d.get("part_at_pick")
    fx, fy, _ = st["fixture"]
    d.move((fx, fy, top + 0.15), 1.5)
    assert d.get("press_zone_occupied") and d.get("part_held")
    place(d, fx, fy)
    assert d.get("fixture_occupied") and d.get("press_zone_occupied")
    d.move((0.3, -0.3, 0.4), 1.0)
    assert not d.get("press_zone_occupied") and d.get("fixture_occupied")
    # close the ram (90 % of the stroke marks the part pressed), then open it
    for k in range(40):
        d.set(ram_position=min(s.press_stroke, s.press_stroke * k / 30))
        d.step()
    assert d.get("parts_pressed") == 1 and d.active_parts()[0].pressed
    assert not d.get("ram_contact")
    for k in range(40):
        d.set(ram_position=max(0.0, s.press_stroke * (1 - k / 30)))
        d.step()
    pick(d, fx, fy)
    assert not d.get("fixture_occupied")
    ix, iy, _ = st["inspect"]
    place(d, ix, iy)
    (part,) = d.active_parts()
    assert d.get("inspect_present") and part.where == "inspect"
    assert d.get("inspect_quality") == part.quality > 0.5
    d.set(eject_cmd=True)
    d.step(2)
    assert d.get("parts_ejected") == 1 and not d.get("inspect_present") and d.get("inspect_quality") == 0.0
    assert d.active_parts() == []
    d.set(eject_cmd=False)
    d.step(2)
    d.set(eject_cmd=True)
    d.step(2)
    assert d.get("parts_ejected") == 1  # nothing left to eject
    assert d.get("arm_collisions") == 0 and d.get("parts_dropped") == 0
    assert [e[1] for e in s.events] == ["release", "press", "eject"]


def test_unpressed_part_has_reduced_quality(make_scene):
    d = make_scene("kuka", seed=2)
    s = d.s
    x = feed_to_pick(d)
    pick(d, x, s.belt_start[1])
    ix, iy, _ = s.spots["inspect"]
    place(d, ix, iy)
    (part,) = d.active_parts()
    assert not part.pressed
    assert d.get("inspect_quality") == pytest.approx(part.quality * s.unpressed_quality_factor, rel=1e-12)


def test_arm_driven_into_the_press_counts_one_collision(make_scene):
    d = make_scene("kuka")
    s = d.s
    fx, fy, _ = s.spots["fixture"]
    d.move((fx, fy, s.part_top_z + 0.1), 1.0)
    assert d.get("arm_collisions") == 0
    d.move((fx + 0.02, fy + 0.04, s.work_height - 0.05), 1.0)  # into the fixture and the bed
    assert d.get("arm_collisions") == 1
    d.step(100)  # still pressing on it: no new rising edge
    assert d.get("arm_collisions") == 1
    (t, kind, detail) = s.events[-1]
    assert kind == "collision" and "press" in detail and 0 < t <= d.tick * 0.01


def test_ram_closing_on_the_arm(make_scene):
    d = make_scene("kuka")
    s = d.s
    fx, fy, _ = s.spots["fixture"]
    d.move((fx, fy, s.part_top_z + 0.05), 1.0)
    assert d.get("press_zone_occupied") and not d.get("ram_contact")
    for k in range(60):
        d.set(ram_position=min(s.press_stroke, s.press_stroke * k / 30))
        d.step()
        if d.get("ram_contact"):
            break
    assert d.get("ram_contact")
    assert d.get("arm_collisions") >= 1
    assert any(kind == "collision" and "ram" in detail for _, kind, detail in s.events)


def test_press_zone_only_when_an_arm_link_is_inside(make_scene):
    d = make_scene("panda")
    s = d.s
    assert not d.get("press_zone_occupied")
    fx, fy, _ = s.spots["fixture"]
    d.move((fx - 0.2, fy, s.part_top_z + 0.1), 1.0)
    assert not d.get("press_zone_occupied")
    d.move((fx - 0.05, fy, s.part_top_z + 0.1), 1.0)
    assert d.get("press_zone_occupied")


def run_recorded(d: Driver, n: int, goal: list[float]) -> tuple:
    """Step with moving arm, belt, feeder and ram; record outputs and every part body's state."""
    s = d.s
    outs = [n for n, v in s.variables.items() if v.causality is Causality.OUTPUT]
    start = list(d.q)
    rows = []
    for k in range(n):
        sm = min(1.0, k / 80)
        s.set(d.qnames, [a + (g - a) * sm for a, g in zip(start, goal, strict=True)])
        s.set(["pusher_position", "ram_position", "belt_speed"],
              [0.06 if k % 60 < 10 else 0.0, s.press_stroke * min(1.0, k / 50), 0.2])
        s.step(d.tick + k, 1)
        bodies = tuple(s.client.getBasePositionAndOrientation(b) + s.client.getBaseVelocity(b) for b in s.part_ids)
        rows.append((tuple(s.get(outs)), bodies))
    return rows, s.events, [(p.pid, p.where, p.quality, p.pressed, p.pos) for p in s.parts]


def test_save_restore_is_bit_exact_with_parts_moving_and_held(make_scene):
    d = make_scene("kuka", seed=11)
    s = d.s
    x = feed_to_pick(d)
    pick(d, x, s.belt_start[1])
    d.set(belt_speed=0.2)
    d.release_part()
    d.step(20)
    assert d.get("part_held") and len(d.active_parts()) == 2
    state = s.save_state()
    n_events = len(s.events)
    goal = d.ik((0.3, -0.25, 0.35))
    first = run_recorded(d, 150, goal)
    assert first[1][n_events:], "the run after the snapshot must do something (release parts)"
    for _ in range(2):  # a state can be restored many times
        s.restore_state(state)
        assert len(s.events) == n_events
        again = run_recorded(d, 150, goal)
        assert again == first
    s.release_state(state)


def test_same_seed_same_run_different_seed_different_parts(make_scene):
    def run(seed: int):
        d = make_scene("kuka", seed=seed)
        d.set(belt_speed=0.3)
        rows = []
        for _ in range(3):
            d.release_part()
            for _ in range(40):
                d.step()
                rows.append(tuple(d.s.get([n for n, *_ in SCENE_OUTPUTS])))
        qualities = [e[2] for e in d.s.events if e[1] == "release"]
        positions = [p.pos for p in d.s.parts]
        return rows, qualities, positions

    a, b, c = run(7), run(7), run(8)
    assert a == b
    assert a[1] != c[1]
    assert len(a[1]) == 3


def test_render_frame_and_gif(make_scene, tmp_path):
    d = make_scene("kuka", seed=1)
    d.set(belt_speed=0.2)
    d.release_part()
    frame = render_frame(d.s, width=160, height=120)
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
    colours = np.unique(frame.reshape(-1, 3), axis=0)
    assert len(colours) > 20 and frame.std() > 10
    assert not np.array_equal(frame, render_frame(d.s, 160, 120, camera="top"))
    with pytest.raises(ConfigurationError, match="unknown camera"):
        render_frame(d.s, camera="nowhere")

    master = Master(0.01)
    scene = CellScene("cell", "kuka", seed=1)
    master.add_unit(scene)
    master.set_input("cell.belt_speed", 0.2)
    master.set_input("cell.pusher_position", 0.06)
    recorder = master.add_observer(FrameRecorder("cell", every=20, width=160, height=120))
    try:
        master.run(0.8)
    finally:
        master.terminate()
    assert len(recorder.frames) == 5 and recorder.ticks == [0, 20, 40, 60, 80]
    assert not np.array_equal(recorder.frames[1], recorder.frames[-1])  # the part moved
    path = write_gif(recorder.frames, tmp_path / "cell.gif", fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames >= 2 and gif.size == (160, 120)  # Pillow merges identical frames
    pngs = write_pngs(recorder.frames[:2], tmp_path / "png")
    assert [p.name for p in pngs] == ["frame_00000.png", "frame_00001.png"]
