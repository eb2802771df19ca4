"""Tests of the PyBullet robot-arm unit (driven directly through a TimeGrid)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosim.core.unit import TimeGrid
from cosim.core.variables import Causality, VarType
from cosim.errors import ConfigurationError, ModelLoadError, NonFiniteValueError, SnapshotError, UnitError
from cosim.units.bullet import EE_NAMES, BulletArm

GRID = TimeGrid(0.01)


@pytest.fixture
def make_arm():
    """Build arms, set them up on GRID and terminate them after the test."""
    arms: list[BulletArm] = []

    def make(robot: str = "kuka", name: str = "arm", setup: bool = True, **kwargs) -> BulletArm:
        arm = BulletArm(name, robot, **kwargs)
        arms.append(arm)
        if setup:
            arm.setup(GRID)
        return arm

    yield make
    for arm in arms:
        arm.terminate()


def run(arm: BulletArm, targets: np.ndarray, start_tick: int = 0, gripper: np.ndarray | None = None) -> np.ndarray:
    """Step one tick per row of ``targets``; return every output after every step."""
    n = arm.n_joints
    inputs = [f"q_target_{i}" for i in range(n)] + (["gripper_target"] if gripper is not None else [])
    outputs = [v.name for v in arm.variables_by(Causality.OUTPUT)]
    write, read = arm.writer(inputs), arm.reader(outputs)
    rows = []
    for k, row in enumerate(targets):
        values = list(row) + ([gripper[k]] if gripper is not None else [])
        write(values)
        arm.step(start_tick + k, 1)
        rows.append(read())
    return np.array(rows, dtype=float)


def changing_targets(arm: BulletArm, steps: int, seed: int = 0) -> np.ndarray:
    """Targets that jump to a new random pose near home every 0.25 s."""
    rng = np.random.default_rng(seed)
    home = np.array(arm.initial_positions)
    poses = home + rng.uniform(-0.4, 0.4, size=(steps // 25 + 1, arm.n_joints))
    return poses[np.arange(steps) // 25]


@pytest.mark.parametrize("robot, n, gripper", [("kuka", 7, False), ("panda", 7, True)])
def test_robot_loads_and_lists_variables(make_arm, robot, n, gripper):
    arm = make_arm(robot)
    names = list(arm.variables)
    inputs = [f"q_target_{i}" for i in range(n)] + (["gripper_target"] if gripper else [])
    outputs = ([f"q_{i}" for i in range(n)] + [f"qd_{i}" for i in range(n)] + [f"tau_{i}" for i in range(n)]
               + list(EE_NAMES) + (["gripper_width"] if gripper else []))
    assert names == inputs + outputs
    assert [v.name for v in arm.variables_by(Causality.INPUT)] == inputs
    assert [v.name for v in arm.variables_by(Causality.OUTPUT)] == outputs
    assert all(v.type is VarType.REAL for v in arm.variables.values())
    assert arm.has_gripper is gripper
    # Setup puts the joints at the initial positions and targets there too.
    q = arm.get([f"q_{i}" for i in range(n)])
    assert q == pytest.approx(list(arm.initial_positions), abs=1e-12)
    assert arm.get([f"q_target_{i}" for i in range(n)]) == pytest.approx(q)
    if gripper:
        assert arm.get(["gripper_width"])[0] == pytest.approx(arm.initial_gripper_width)


@pytest.mark.parametrize("robot", ["kuka", "panda"])
def test_joint_target_reached_within_two_seconds(make_arm, robot):
    arm = make_arm(robot)
    n = arm.n_joints
    target = np.array(arm.initial_positions) + np.array([0.3, -0.2, 0.25, 0.3, -0.3, 0.2, -0.4])[:n]
    gripper = np.full(200, 0.02) if arm.has_gripper else None
    out = run(arm, np.tile(target, (200, 1)), gripper=gripper)
    q = np.array(arm.get([f"q_{i}" for i in range(n)]))
    qd = np.array(arm.get([f"qd_{i}" for i in range(n)]))
    assert np.max(np.abs(q - target)) < 5e-3
    assert np.max(np.abs(qd)) < 1e-2
    # It really moved (and the motors worked for it).
    assert np.max(np.abs(out[0, :n] - target)) > 0.1
    assert np.max(np.abs(out[:, 2 * n:3 * n])) > 1.0
    if gripper is not None:
        assert arm.get(["gripper_width"])[0] == pytest.approx(0.02, abs=2e-3)


def test_ee_pose_matches_forward_kinematics(make_arm):
    arm = make_arm("kuka", base_position=(1.0, 2.0, 0.5), base_orientation=(0.0, 0.0, 0.3))
    run(arm, changing_targets(arm, 60))
    client, body = arm.client, arm.body_id
    state = client.getLinkState(body, arm.ee_link, computeForwardKinematics=True)
    expected = list(state[4]) + list(state[5])
    assert arm.get(list(EE_NAMES)) == expected
    assert math.isclose(float(np.linalg.norm(expected[3:])), 1.0, rel_tol=1e-6)
    # Independent check: an upright KUKA has its flange straight above the base.
    upright = make_arm("kuka", name="upright", base_position=(1.0, 2.0, 0.5), initial_positions=[0.0] * 7)
    x, y, z = upright.get(["ee_x", "ee_y", "ee_z"])
    assert (x, y) == pytest.approx((1.0, 2.0), abs=1e-6)
    assert z > 0.5 + 1.0


def test_ee_link_is_configurable(make_arm):
    arm = make_arm("panda", ee_link="panda_grasptarget")
    assert arm.link_names[arm.ee_link] == "panda_grasptarget"
    hand_z = arm.get(["ee_z"])[0]
    default = make_arm("panda", name="default")
    assert default.link_names[default.ee_link] == "panda_link7"
    assert hand_z != default.get(["ee_z"])[0]
    with pytest.raises(ConfigurationError, match="no_such_link"):
        make_arm("panda", name="bad", ee_link="no_such_link")


@pytest.mark.parametrize("robot", ["kuka", "panda"])
def test_restore_then_step_is_bit_identical(make_arm, robot):
    arm = make_arm(robot)
    steps, cut = 200, 50  # a 2 s trajectory, snapshot at 0.5 s
    targets = changing_targets(arm, steps)
    gripper = 0.04 + 0.03 * np.sin(np.arange(steps) / 20.0) if arm.has_gripper else None
    first = run(arm, targets[:cut], 0, None if gripper is None else gripper[:cut])
    state = arm.save_state()
    original = run(arm, targets[cut:], cut, None if gripper is None else gripper[cut:])
    assert np.all(np.isfinite(original))
    for _ in range(3):  # one state, restored many times
        arm.restore_state(state)
        assert arm.get([v for v in arm.variables]) == list(state.values)
        replay = run(arm, targets[cut:], cut, None if gripper is None else gripper[cut:])
        assert np.array_equal(replay, original)
    # A different continuation after a restore really differs (the test can fail).
    arm.restore_state(state)
    other = run(arm, targets[cut:] + 0.1, cut, None if gripper is None else gripper[cut:])
    assert not np.array_equal(other, original)
    assert first.shape == (cut, original.shape[1])


def test_multi_tick_step_equals_single_ticks(make_arm):
    a, b = make_arm(name="a"), make_arm(name="b")
    target = [q + 0.2 for q in a.initial_positions]
    names = [f"q_target_{i}" for i in range(7)]
    a.set(names, target)
    b.set(names, target)
    for tick in range(0, 50, 5):
        a.step(tick, 5)
        for k in range(5):
            b.step(tick + k, 1)
    outputs = [v.name for v in a.variables_by(Causality.OUTPUT)]
    assert a.get(outputs) == b.get(outputs)


def test_two_arms_are_independent(make_arm):
    a, b = make_arm(name="a"), make_arm(name="b")
    assert a.client is not b.client and a.client._client != b.client._client
    outputs = [v.name for v in b.variables_by(Causality.OUTPUT)]
    before = b.get(outputs)
    joints_before = b.client.getJointStates(b.body_id, b.arm_joints)
    moved = run(a, changing_targets(a, 100))
    assert np.max(np.abs(moved[-1, :7] - np.array(a.initial_positions))) > 0.05
    assert b.get(outputs) == before
    assert b.client.getJointStates(b.body_id, b.arm_joints) == joints_before
    # And b driven the same way reproduces a's trajectory exactly: nothing is shared.
    assert np.array_equal(run(b, changing_targets(b, 100)), moved)


def test_add_body_and_snapshot(make_arm):
    arm = make_arm("kuka")
    cube = arm.add_body("cube_small.urdf", (0.5, 0.0, 0.5))
    assert cube != arm.body_id
    state = arm.save_state()
    z0 = arm.client.getBasePositionAndOrientation(cube)[0][2]
    run(arm, changing_targets(arm, 30))
    assert arm.client.getBasePositionAndOrientation(cube)[0][2] < z0  # it fell
    arm.restore_state(state)
    assert arm.client.getBasePositionAndOrientation(cube)[0][2] == z0


def test_missing_urdf_raises_model_load_error():
    with pytest.raises(ModelLoadError) as info:
        BulletArm("cell_arm", "/nonexistent/robot.urdf")
    assert "cell_arm" in str(info.value) and "/nonexistent/robot.urdf" in str(info.value)


def test_unloadable_urdf_raises_model_load_error(tmp_path):
    broken = tmp_path / "broken.urdf"
    broken.write_text("<robot name='x'><link name='a'></robot")
    arm = BulletArm("cell_arm", broken)
    with pytest.raises(ModelLoadError) as info:
        arm.setup(GRID)
    assert "cell_arm" in str(info.value) and "broken.urdf" in str(info.value)
    arm.terminate()


def test_unknown_robot_lists_known_names():
    with pytest.raises(ConfigurationError) as info:
        BulletArm("arm", "ur5")
    assert "ur5" in str(info.value) and "kuka" in str(info.value) and "panda" in str(info.value)


def test_step_not_multiple_of_physics_step(make_arm):
    arm = BulletArm("slow_arm", "kuka", physics_step=0.004)
    try:
        arm.setup(TimeGrid(0.01))
        with pytest.raises(ConfigurationError) as info:
            arm.step(0, 1)
        message = str(info.value)
        assert "slow_arm" in message and "0.01" in message and "0.004" in message
        arm.step(0, 2)  # 20 ms is a whole multiple of 4 ms
    finally:
        arm.terminate()


def test_unknown_variable_names_the_unit_and_suggests(make_arm):
    arm = make_arm(name="robot1")
    for call in (lambda: arm.get(["q_targt_0"]), lambda: arm.set(["q_targt_0"], [0.0]),
                 lambda: arm.reader(["q_targt_0"]), lambda: arm.writer(["q_targt_0"])):
        with pytest.raises(ConfigurationError) as info:
            call()
        message = str(info.value)
        assert "robot1" in message and "q_targt_0" in message and "q_target_0" in message
    with pytest.raises(ConfigurationError, match="output"):
        arm.set(["q_0"], [0.0])
    with pytest.raises(ConfigurationError, match="output"):
        arm.writer(["ee_x"])


def test_get_set_and_fast_paths_agree(make_arm):
    arm = make_arm()
    arm.set(["q_target_3", "q_target_1"], [-1.0, 0.5])
    assert arm.get(["q_target_1", "q_target_3"]) == [0.5, -1.0]
    arm.writer(["q_target_0"])([0.25])
    assert list(arm.reader(["q_target_0", "q_target_3"])()) == [0.25, -1.0]
    arm.step(0, 1)
    read = arm.reader(["ee_z"])
    assert read() == arm.get(["ee_z"])


def test_non_finite_input_is_reported(make_arm):
    arm = make_arm(name="robot1")
    arm.set(["q_target_2"], [float("nan")])
    with pytest.raises(NonFiniteValueError, match="q_target_2"):
        arm.step(0, 1)


def test_snapshot_misuse_and_terminate(make_arm):
    a, b = make_arm(name="a"), make_arm(name="b")
    state = a.save_state()
    with pytest.raises(SnapshotError):
        b.restore_state(state)
    a.release_state(state)
    with pytest.raises(SnapshotError, match="released"):
        a.restore_state(state)
    kept = a.save_state()
    a.terminate()
    a.terminate()  # idempotent
    with pytest.raises(SnapshotError):
        a.restore_state(kept)


def test_step_before_setup_is_a_unit_error():
    arm = BulletArm("early", "kuka")
    try:
        with pytest.raises(UnitError, match="early"):
            arm.step(0, 1)
    finally:
        arm.terminate()


def test_engine_parameters_reach_the_world_and_bad_ones_are_refused(make_arm):
    arm = make_arm(engine_parameters={"solverResidualThreshold": 1e-4}, solver_iterations=10)
    params = arm.client.getPhysicsEngineParameters()
    assert params["numSolverIterations"] == 10
    assert arm._portable_identity()["engine_parameters"] == {"solverResidualThreshold": 1e-4}
    for bad in ({"fixedTimeStep": 0.1}, {"solverResidualThreshold": float("nan")}, {"numSubSteps": True}):
        with pytest.raises(ConfigurationError, match="engine_parameters"):
            BulletArm("arm", "kuka", engine_parameters=bad)
    unknown = BulletArm("arm_x", "kuka", engine_parameters={"noSuchParameter": 1})
    with pytest.raises(ConfigurationError, match=r"arm_x.*engine_parameters"):
        unknown.setup(GRID)
    unknown.terminate()


def test_world_signature_follows_structure_changes(make_arm):
    arm = make_arm()
    first = arm.world_signature()
    arm.client.changeDynamics(arm.body_id, -1, lateralFriction=0.123)
    assert arm.world_signature() == first  # cached until told
    arm.invalidate_signature()
    changed = arm.world_signature()
    assert changed != first
    arm.add_body("cube_small.urdf", (0.5, 0.0, 0.0))
    assert arm.world_signature() not in (first, changed)


def test_ee_pose_is_computed_when_read_and_is_that_of_the_last_step(make_arm):
    """The pose is read lazily: steps that nobody reads it after make no forward-kinematics
    query, and whenever it is read, saved or exported it is the pose after the last step."""
    arm = make_arm("kuka")
    queries = []
    link_state = arm._link_state

    def counting(*args):
        queries.append(args)
        return link_state(*args)

    arm._link_state = counting
    q_only = arm.reader([f"q_{i}" for i in range(arm.n_joints)])
    with_pose = arm.reader(["q_0", *EE_NAMES])
    targets = changing_targets(arm, 40)
    write = arm.writer([f"q_target_{i}" for i in range(arm.n_joints)])
    for k, row in enumerate(targets[:20]):
        write(list(row))
        arm.step(k, 1)
        q_only()
    assert queries == []  # 20 steps, the pose never asked for
    pose = list(with_pose())[1:]
    truth = arm.client.getLinkState(arm.body_id, arm.ee_link, computeForwardKinematics=True)
    assert pose == [*truth[4], *truth[5]]
    assert len(queries) == 1 and list(with_pose())[1:] == pose and len(queries) == 1  # once per step
    # a state saved while the pose is unread holds the pose of that instant
    write(list(targets[20]))
    arm.step(20, 1)
    state = arm.save_state()
    saved_pose = list(state.values[arm._o_ee:arm._o_ee + 7])
    truth = arm.client.getLinkState(arm.body_id, arm.ee_link, computeForwardKinematics=True)
    assert saved_pose == [*truth[4], *truth[5]]
    for k, row in enumerate(targets[21:], start=21):
        write(list(row))
        arm.step(k, 1)
    assert list(with_pose())[1:] != saved_pose
    arm.restore_state(state)
    assert list(with_pose())[1:] == saved_pose
