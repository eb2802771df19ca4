"""A PyBullet robot arm as a co-simulation unit.

:class:`BulletArm` owns its own ``BulletClient`` in DIRECT mode (never the global pybullet
state), so any number of arms — plant and twin, or several episodes — live in one process
without touching each other.

Variables (all Real; ``n`` = number of arm joints):

- inputs ``q_target_<i>`` (i = 0..n-1): joint position targets (rad, or m for prismatic
  joints), tracked by PyBullet's position motors; ``gripper_target`` (m): opening width, only
  when the robot has finger joints.
- outputs ``q_<i>``, ``qd_<i>``, ``tau_<i>`` (applied motor torque/force), the end-effector
  pose in the world frame ``ee_x, ee_y, ee_z, ee_qx, ee_qy, ee_qz, ee_qw`` (the URDF frame of
  the end-effector link) and ``gripper_width`` (m) when the robot has finger joints.

A step of ``h`` seconds sets the motor targets once and calls ``stepSimulation`` ``h /
physics_step`` times; the outputs are read once at the end of the step and cached, so
:meth:`BulletArm.get` and the :meth:`BulletArm.reader` fast path never call PyBullet, except
for the end-effector pose: a forward-kinematics query that a step only makes when the pose is
first read after it (every PyBullet query costs ~5 us: its in-process client copies a state
record of ~30 kB per call), the pose of the world as the step left it.

Snapshots combine PyBullet's in-memory ``saveState`` with the unit's Python-side values
(targets and cached outputs); restore-then-step reproduces the original run bit for bit.
Portable states (:meth:`BulletArm.export_state`) combine the world as PyBullet writes it to a
``.bullet`` file (``saveBullet``; loaded with ``restoreState(fileName=...)``) with the same
Python-side values, so a fresh arm built with the same arguments continues bit for bit.
PyBullet can only restore a state into a world with the same bodies, so add every extra body
(:meth:`BulletArm.add_body`, or through :attr:`BulletArm.client`) before taking snapshots.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import itertools
import json
import math
import numbers
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from cosim.core.state import join_parts, pack_state, pickle_dumps, restricted_loads, split_parts, unpack_state
from cosim.core.unit import Reader, TimeGrid, Unit, Writer
from cosim.core.variables import Causality, Value, Variable, VarType
from cosim.errors import (
    ConfigurationError,
    ModelLoadError,
    NonFiniteValueError,
    SnapshotError,
    UnitError,
)

__all__ = ["EE_NAMES", "ROBOTS", "BulletArm", "BulletArmState", "RobotPreset"]

EE_NAMES = ("ee_x", "ee_y", "ee_z", "ee_qx", "ee_qy", "ee_qz", "ee_qw")
_MOVABLE = (pybullet.JOINT_REVOLUTE, pybullet.JOINT_PRISMATIC)
_REL_TOL = 1e-9
#: Engine parameters the unit sets itself (time step, determinism, solver iterations).
_FIXED_ENGINE_PARAMETERS = frozenset({"fixedTimeStep", "deterministicOverlappingPairs", "numSolverIterations"})
_owner_ids = itertools.count(1)


@dataclass(frozen=True)
class RobotPreset:
    """A named robot: URDF (relative to ``pybullet_data`` or absolute) and its home pose."""

    urdf: str
    home: tuple[float, ...] = ()
    gripper_width: float = 0.0
    description: str = ""


ROBOTS: dict[str, RobotPreset] = {
    "kuka": RobotPreset(
        "kuka_iiwa/model.urdf",
        home=(0.0, 0.4, 0.0, -1.4, 0.0, 1.3, 0.0),
        description="KUKA LBR iiwa 7-DoF arm (pybullet_data)",
    ),
    "panda": RobotPreset(
        "franka_panda/panda.urdf",
        home=(0.0, -0.785398, 0.0, -2.356194, 0.0, 1.570796, 0.785398),
        gripper_width=0.08,
        description="Franka Emika Panda 7-DoF arm with parallel gripper (pybullet_data)",
    ),
}


@dataclass(frozen=True)
class BulletArmState:
    """Opaque snapshot of a :class:`BulletArm`: a PyBullet state id plus Python-side values."""

    unit: str
    state_id: int
    values: tuple[float, ...]
    owner: int  # serial number of the owning unit, so a state cannot be restored into another arm


#: where temporary world files go: a memory file system if there is a writable one
_MEMORY_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK) else None


@contextlib.contextmanager
def _temp_file() -> Iterator[Path]:
    """A private temporary ``.bullet`` file, removed afterwards (in memory where the system
    has a writable ``/dev/shm``: a twin snapshot every few seconds then costs half as much)."""
    fd, name = tempfile.mkstemp(prefix="cosim-", suffix=".bullet", dir=_MEMORY_TMP)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _plain(obj: Any) -> Any:
    """Tuples to lists and bytes to text, for a JSON signature."""
    if isinstance(obj, tuple | list):
        return [_plain(x) for x in obj]
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    return obj


def _per_joint(name: str, what: str, value: float | Sequence[float] | None, n: int,
               default: Sequence[float]) -> list[float]:
    """Expand a scalar or a sequence of ``n`` values; ``None`` gives ``default``."""
    if value is None:
        return [float(v) for v in default]
    if isinstance(value, numbers.Real):
        return [float(value)] * n
    values = [float(v) for v in value]
    if len(values) != n:
        raise ConfigurationError(
            f"unit '{name}': {what} needs {n} values (one per arm joint), got {len(values)}"
        )
    return values


@contextlib.contextmanager
def _c_stdout() -> Iterator[list[str]]:
    """Catch what C code prints on file descriptor 1 meanwhile (PyBullet's URDF parser prints
    its errors there, unterminated, and they would run into the next line on a terminal)."""
    printed: list[str] = []
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1
        yield printed
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield printed
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            printed.append(tmp.read().decode(errors="replace"))


class BulletArm(Unit):
    """A URDF robot arm under joint position control, simulated by PyBullet.

    Args:
        name: unit name.
        robot: ``"kuka"``, ``"panda"`` (see :data:`ROBOTS`) or a path to a URDF file (absolute,
            relative to the working directory, or relative to ``pybullet_data``).
        base_position: world position of the base (m).
        base_orientation: base orientation, quaternion ``(x, y, z, w)`` or roll-pitch-yaw (rad).
        physics_step: PyBullet time step (s); every unit step must be a whole multiple of it.
        gravity: gravity vector (m/s²).
        max_forces: maximum motor torque/force of the arm joints, scalar or one per joint;
            default the URDF ``effort`` limit (200 where the URDF gives none).
        position_gains: PyBullet position-motor gains ``kp`` (scalar or per joint).
        velocity_gains: PyBullet position-motor gains ``kd`` (scalar or per joint).
        initial_positions: arm joint positions at setup (and initial targets); default the
            preset's home pose, else zeros.
        initial_gripper_width: gripper opening at setup (m), when the robot has fingers.
        gripper_force: maximum force per finger (N); default the URDF effort limit.
        use_fixed_base: load the base fixed to the world.
        ee_link: name of the end-effector link; default the child link of the last arm joint.
        finger_joints: names of the finger joints; ``None`` detects joints whose name contains
            ``"finger"``; an empty sequence treats every movable joint as an arm joint.
        urdf_flags: extra ``loadURDF`` flags (e.g. ``pybullet.URDF_USE_SELF_COLLISION``).
        solver_iterations: PyBullet ``numSolverIterations`` (default: PyBullet's 50); fewer
            iterations run faster (KUKA ~1.5x at 10) at some loss of constraint accuracy.
        engine_parameters: further ``setPhysicsEngineParameter`` keywords, e.g.
            ``{solverResidualThreshold: 1e-4}`` (the solver stops iterating once converged).
    """

    def __init__(
        self,
        name: str = "arm",
        robot: str | os.PathLike[str] = "kuka",
        *,
        base_position: Sequence[float] = (0.0, 0.0, 0.0),
        base_orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0),
        physics_step: float = 1e-3,
        gravity: Sequence[float] = (0.0, 0.0, -9.81),
        max_forces: float | Sequence[float] | None = None,
        position_gains: float | Sequence[float] | None = 0.1,
        velocity_gains: float | Sequence[float] | None = 1.0,
        initial_positions: Sequence[float] | None = None,
        initial_gripper_width: float | None = None,
        gripper_force: float | None = None,
        use_fixed_base: bool = True,
        ee_link: str | None = None,
        finger_joints: Sequence[str] | None = None,
        urdf_flags: int = 0,
        solver_iterations: int | None = None,
        engine_parameters: Mapping[str, float | int] | None = None,
    ) -> None:
        super().__init__(name)
        self.robot = str(robot)
        self.urdf_path = self._resolve_urdf(robot)
        self.preset = ROBOTS.get(self.robot)
        if not physics_step > 0.0:
            raise ConfigurationError(f"unit '{name}': physics_step must be positive, got {physics_step!r}")
        self.physics_step = float(physics_step)
        self.base_position = tuple(float(v) for v in base_position)
        if len(self.base_position) != 3:
            raise ConfigurationError(f"unit '{name}': base_position needs 3 values, got {len(self.base_position)}")
        orientation = tuple(float(v) for v in base_orientation)
        if len(orientation) == 3:
            orientation = tuple(pybullet.getQuaternionFromEuler(orientation))
        elif len(orientation) != 4:
            raise ConfigurationError(
                f"unit '{name}': base_orientation must be a quaternion (x, y, z, w) or roll-pitch-yaw, "
                f"got {len(orientation)} values"
            )
        self.base_orientation = orientation
        self.gravity = tuple(float(v) for v in gravity)
        if len(self.gravity) != 3:
            raise ConfigurationError(f"unit '{name}': gravity needs 3 values, got {len(self.gravity)}")
        self.use_fixed_base = bool(use_fixed_base)
        self.urdf_flags = int(urdf_flags)
        if solver_iterations is not None and int(solver_iterations) < 1:
            raise ConfigurationError(f"unit '{name}': solver_iterations must be >= 1, got {solver_iterations!r}")
        self.solver_iterations = None if solver_iterations is None else int(solver_iterations)
        self.engine_parameters = dict(engine_parameters or {})
        bad = {k: v for k, v in self.engine_parameters.items()
               if k in _FIXED_ENGINE_PARAMETERS or isinstance(v, bool) or not isinstance(v, int | float)
               or not math.isfinite(v)}
        if bad:
            raise ConfigurationError(
                f"unit '{name}': engine_parameters must be numbers other than "
                f"{sorted(_FIXED_ENGINE_PARAMETERS)} (set by the unit itself); got {bad}"
            )
        self._ee_link_name = ee_link
        self._finger_names = None if finger_joints is None else [str(f) for f in finger_joints]
        # Per-joint settings are resolved once the URDF is loaded (joint count known then).
        self._cfg = dict(max_forces=max_forces, position_gains=position_gains,
                         velocity_gains=velocity_gains, initial_positions=initial_positions,
                         initial_gripper_width=initial_gripper_width, gripper_force=gripper_force)

        self._client: BulletClient | None = None
        self._body: int = -1
        self._terminated = False
        self._owner = next(_owner_ids)
        self._live_states: set[int] = set()
        self._substeps: dict[int, int] = {}
        self._variables: dict[str, Variable] = {}
        self._index: dict[str, int] = {}
        self._values: list[float] = []  # inputs then outputs; mutated in place, never rebound
        self._sent: list[float] | None = None  # joint targets currently set on the motors
        self._signature: tuple[int, str] | None = None  # (bodies, world_signature()) while unchanged

    # ------------------------------------------------------------------ loading
    def _resolve_urdf(self, robot: str | os.PathLike[str]) -> Path:
        text = str(robot)
        if text in ROBOTS:
            return Path(pybullet_data.getDataPath()) / ROBOTS[text].urdf
        path = Path(text).expanduser()
        looks_like_path = path.suffix != "" or os.sep in text or "/" in text
        if not looks_like_path:
            known = ", ".join(sorted(ROBOTS))
            raise ConfigurationError(
                f"unit '{self.name}': unknown robot '{text}'; known robots: {known} "
                f"(or give a path to a .urdf file)"
            )
        for candidate in (path, Path(pybullet_data.getDataPath()) / path):
            if candidate.is_file():
                return candidate.resolve()
        raise ModelLoadError(self.name, "load URDF", f"URDF file '{text}' not found")

    def _ensure_loaded(self) -> None:
        if self._client is not None:
            return
        if self._terminated:
            raise UnitError(self.name, "load", "the unit was terminated")
        with _c_stdout():  # PyBullet prints "argv[0]=" on connecting
            client = BulletClient(connection_mode=pybullet.DIRECT)
        try:
            client.setAdditionalSearchPath(pybullet_data.getDataPath())
            client.setTimeStep(self.physics_step)
            client.setGravity(*self.gravity)
            client.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
            if self.solver_iterations is not None:
                client.setPhysicsEngineParameter(numSolverIterations=self.solver_iterations)
            if self.engine_parameters:
                try:
                    client.setPhysicsEngineParameter(**self.engine_parameters)
                except TypeError as exc:
                    raise ConfigurationError(f"unit '{self.name}': engine_parameters: {exc}") from None
            try:
                with _c_stdout() as printed:  # PyBullet's parser prints its errors there
                    body = client.loadURDF(str(self.urdf_path), self.base_position, self.base_orientation,
                                           useFixedBase=self.use_fixed_base, flags=self.urdf_flags)
            except pybullet.error as exc:
                said = re.sub(r"b3\w+\[[^\]]*\]:", "", "".join(printed))
                said = " ".join(said.split())[:300]
                raise ModelLoadError(self.name, "load URDF", f"cannot load URDF '{self.urdf_path}': "
                                     f"{str(exc).rstrip('.')}" + (f" ({said})" if said else "")) from None
            self._client = client
            self._body = body
            # PyBullet's base pose is that of the base's inertial frame, not of the URDF frame:
            # remember it as loaded so setup() can put a floating base back exactly.
            self._base_pose = client.getBasePositionAndOrientation(body)
            self._build(client, body)
        except BaseException:
            self._client = None
            self._body = -1
            client.disconnect()
            raise
        self._bind(client)

    def _build(self, client: BulletClient, body: int) -> None:
        """Classify joints, resolve per-joint settings and declare the variables."""
        joints = [client.getJointInfo(body, j) for j in range(client.getNumJoints(body))]
        self.joint_names = [info[1].decode() for info in joints]
        self.link_names = [info[12].decode() for info in joints]
        movable = [info[0] for info in joints if info[2] in _MOVABLE]
        if self._finger_names is None:
            fingers = [j for j in movable if "finger" in self.joint_names[j].lower()]
        else:
            by_name = {self.joint_names[j]: j for j in movable}
            missing = [f for f in self._finger_names if f not in by_name]
            if missing:
                raise ConfigurationError(
                    f"unit '{self.name}': finger joint(s) {missing} are not movable joints of "
                    f"'{self.urdf_path.name}'; movable joints: {sorted(by_name)}"
                )
            fingers = [by_name[f] for f in self._finger_names]
        arm = [j for j in movable if j not in fingers]
        if not arm:
            raise ModelLoadError(self.name, "load URDF",
                                 f"'{self.urdf_path}' has no revolute or prismatic arm joints")
        self.arm_joints = arm
        self.finger_joints = fingers
        n = len(arm)

        if self._ee_link_name is None:
            self.ee_link = arm[-1]
        elif self._ee_link_name in self.link_names:
            self.ee_link = self.link_names.index(self._ee_link_name)
        else:
            raise ConfigurationError(
                f"unit '{self.name}': unknown end-effector link '{self._ee_link_name}'; "
                f"links: {', '.join(self.link_names)}"
            )

        cfg = self._cfg
        urdf_forces = [joints[j][10] if joints[j][10] > 0 else 200.0 for j in arm]
        home = self.preset.home if self.preset and len(self.preset.home) == n else [0.0] * n
        forces = _per_joint(self.name, "max_forces", cfg["max_forces"], n, urdf_forces)
        kps = _per_joint(self.name, "position_gains", cfg["position_gains"], n, [0.1] * n)
        kds = _per_joint(self.name, "velocity_gains", cfg["velocity_gains"], n, [1.0] * n)
        q0 = _per_joint(self.name, "initial_positions", cfg["initial_positions"], n, home)
        # Fingers are mirrored: finger k moves sign_k * width / n_fingers (sign from its limits).
        self._finger_signs = [-1.0 if joints[j][9] <= 0.0 < -joints[j][8] else 1.0 for j in fingers]
        if fingers:
            finger_force = cfg["gripper_force"]
            forces += [float(finger_force) if finger_force is not None else
                       (joints[j][10] if joints[j][10] > 0 else 20.0) for j in fingers]
            kps += [kps[-1]] * len(fingers)
            kds += [kds[-1]] * len(fingers)
            width0 = cfg["initial_gripper_width"]
            if width0 is None:
                width0 = self.preset.gripper_width if self.preset else 0.0
            self.initial_gripper_width = float(width0)
        else:
            self.initial_gripper_width = 0.0
        self.initial_positions = q0
        self._controlled = arm + fingers
        self._forces = forces
        self._kps = kps
        self._kds = kds
        self._zero_vel = [0.0] * len(self._controlled)

        # Variables: inputs first, then outputs; values[i] belongs to the i-th variable.
        lin = [joints[j][2] == pybullet.JOINT_PRISMATIC for j in arm]
        pos_unit = ["m" if p else "rad" for p in lin]
        variables: list[Variable] = []
        for i, j in enumerate(arm):
            variables.append(Variable(f"q_target_{i}", Causality.INPUT, VarType.REAL, q0[i], pos_unit[i],
                                      f"position target of joint '{self.joint_names[j]}'"))
        if fingers:
            variables.append(Variable("gripper_target", Causality.INPUT, VarType.REAL,
                                      self.initial_gripper_width, "m", "gripper opening width target"))
        for prefix, units, text in (("q", pos_unit, "position"),
                                    ("qd", [u + "/s" for u in pos_unit], "velocity"),
                                    ("tau", ["N" if p else "N.m" for p in lin], "applied motor torque/force")):
            for i, j in enumerate(arm):
                variables.append(Variable(f"{prefix}_{i}", Causality.OUTPUT, VarType.REAL, None, units[i],
                                          f"{text} of joint '{self.joint_names[j]}'"))
        ee_name = self.link_names[self.ee_link]
        for k, var in enumerate(EE_NAMES):
            variables.append(Variable(var, Causality.OUTPUT, VarType.REAL, None, "m" if k < 3 else "",
                                      f"end-effector ('{ee_name}') pose in the world frame"))
        if fingers:
            variables.append(Variable("gripper_width", Causality.OUTPUT, VarType.REAL, None, "m",
                                      "gripper opening width"))
        self._variables = {v.name: v for v in variables}
        self._index = {v.name: i for i, v in enumerate(variables)}
        self._n_inputs = n + (1 if fingers else 0)
        self._o_q = self._n_inputs
        self._o_qd = self._o_q + n
        self._o_tau = self._o_qd + n
        self._o_ee = self._o_tau + n
        self._o_grip = self._o_ee + 7
        self._ee_stale = False
        self._values[:] = [float(v.start) if v.start is not None else 0.0 for v in variables]

    def _bind(self, client: BulletClient) -> None:
        """Pre-bind the hot PyBullet calls (BulletClient builds a partial on every access)."""
        self._step_sim = client.stepSimulation
        self._motor = client.setJointMotorControlArray
        self._joint_states = client.getJointStates
        self._link_state = client.getLinkState

    # ------------------------------------------------------------------ world access
    @property
    def client(self) -> BulletClient:
        """The unit's own BulletClient: add bodies, constraints, debug queries here."""
        self._ensure_loaded()
        assert self._client is not None
        return self._client

    @property
    def body_id(self) -> int:
        """PyBullet body id of the robot in :attr:`client`."""
        self._ensure_loaded()
        return self._body

    @property
    def n_joints(self) -> int:
        """Number of arm joints (``q_target_<i>`` for i < n_joints)."""
        self._ensure_loaded()
        return len(self.arm_joints)

    @property
    def has_gripper(self) -> bool:
        self._ensure_loaded()
        return bool(self.finger_joints)

    def link_index(self, link_name: str) -> int:
        """PyBullet link index of a link of the robot (``-1`` for the base link)."""
        client = self.client
        if link_name == client.getBodyInfo(self._body)[0].decode():
            return -1
        try:
            return self.link_names.index(link_name)
        except ValueError:
            raise ConfigurationError(
                f"unit '{self.name}': unknown link '{link_name}'; links: {', '.join(self.link_names)}"
            ) from None

    def add_body(self, urdf: str | os.PathLike[str], position: Sequence[float] = (0.0, 0.0, 0.0),
                 orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0), *, fixed: bool = False,
                 **kwargs: Any) -> int:
        """Load another URDF (table, workpiece, conveyor...) into this arm's world.

        ``urdf`` may be absolute or relative to ``pybullet_data``; ``orientation`` a quaternion
        or roll-pitch-yaw. Extra keyword arguments go to ``loadURDF``. Returns the body id.
        Add bodies before taking snapshots: PyBullet restores states only into the same world.
        """
        client = self.client
        self._signature = None
        orn = tuple(orientation)
        if len(orn) == 3:
            orn = tuple(client.getQuaternionFromEuler(orn))
        try:
            return client.loadURDF(str(urdf), tuple(position), orn, useFixedBase=fixed, **kwargs)
        except pybullet.error as exc:
            raise ModelLoadError(self.name, "add_body", f"cannot load URDF '{urdf}': {exc}") from None

    def refresh(self) -> None:
        """Re-read the outputs from PyBullet (after changing the world through :attr:`client`)."""
        self._ensure_loaded()
        self._read_outputs()

    # ------------------------------------------------------------------ Unit interface
    @property
    def variables(self) -> Mapping[str, Variable]:
        self._ensure_loaded()
        return self._variables

    def setup(self, grid: TimeGrid) -> None:
        """Put the robot at its initial pose (joints, base) and compute the outputs.

        Inputs keep the values they have (their start values unless set before setup); other
        bodies added to the world are left as they are.
        """
        self._ensure_loaded()
        client = self._client
        assert client is not None
        self.grid = grid
        self._substeps.clear()
        body = self._body
        client.resetBasePositionAndOrientation(body, *self._base_pose)
        client.resetBaseVelocity(body, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
        for j, q in zip(self.arm_joints, self.initial_positions, strict=True):
            client.resetJointState(body, j, q, 0.0)
        for j, sign in zip(self.finger_joints, self._finger_signs, strict=True):
            client.resetJointState(body, j, sign * self.initial_gripper_width / len(self.finger_joints), 0.0)
        self._sent = None
        self._read_outputs()

    def _substeps_for(self, tick: int, n_ticks: int) -> int:
        """Physics sub-steps in a step over ``n_ticks`` (worked out once per step length)."""
        k = self._substeps.get(n_ticks)
        if k is not None:
            return k
        if self.grid is None:
            raise UnitError(self.name, "step", "stepped before setup()")
        h = self.grid.step_size(tick, n_ticks)
        k = round(h / self.physics_step)
        if k < 1 or abs(k * self.physics_step - h) > _REL_TOL * h:
            raise ConfigurationError(
                f"unit '{self.name}': step size {h!r} s is not a whole multiple of "
                f"physics_step {self.physics_step!r} s"
            )
        self._substeps[n_ticks] = k
        return k

    def step(self, tick: int, n_ticks: int) -> None:
        k = self._substeps_for(tick, n_ticks)
        targets = self._values[:self._n_inputs]
        if not math.isfinite(sum(targets)):
            self._raise_non_finite("step", 0, self._n_inputs, "input")
        self._drive(targets, k)

    def _drive(self, targets: list[float], k: int) -> None:
        """Send the checked input ``targets`` to the motors, run ``k`` sub-steps, read the outputs."""
        if self.finger_joints:
            width = targets.pop()
            m = len(self.finger_joints)
            targets += [s * width / m for s in self._finger_signs]
        try:
            if targets != self._sent:
                self._motor(self._body, self._controlled, pybullet.POSITION_CONTROL,
                            targetPositions=targets, targetVelocities=self._zero_vel,
                            forces=self._forces, positionGains=self._kps, velocityGains=self._kds)
                self._sent = targets
            self._simulate(k)
            self._read_outputs()
        except pybullet.error as exc:
            raise UnitError(self.name, "step", str(exc)) from None

    def _simulate(self, k: int) -> None:
        """Run ``k`` physics sub-steps. Subclasses override this to act between sub-steps
        (kinematic bodies, carried objects); they must call ``stepSimulation`` ``k`` times."""
        step_sim = self._step_sim
        for _ in range(k):
            step_sim()

    def _read_outputs(self) -> None:
        vals = self._values
        n = len(self.arm_joints)
        states = self._joint_states(self._body, self._controlled)
        q, qd, _, tau = zip(*states[:n], strict=False)  # position, velocity, reaction forces, torque
        # q, qd and tau are consecutive outputs; the end-effector pose after them is computed
        # when it is read (a forward-kinematics query per step that most steps do not need)
        o = self._o_q
        vals[o:o + 3 * n] = (*q, *qd, *tau)
        self._ee_stale = True
        if self.finger_joints:
            vals[self._o_grip] = sum(sg * s[0] for sg, s in zip(self._finger_signs, states[n:], strict=True))
        if not math.isfinite(sum(vals[self._n_inputs:])):
            self._raise_non_finite("step", self._n_inputs, len(vals), "output")

    def _fresh_ee(self) -> None:
        """Query the end-effector pose if no one has read it since the last step."""
        if self._ee_stale:
            self._update_ee()

    def _update_ee(self) -> None:
        """Compute the end-effector pose outputs of the world as it is (since the last step)."""
        link = self._link_state(self._body, self.ee_link, 0, 1)
        o = self._o_ee
        self._values[o:o + 7] = (*link[4], *link[5])
        self._ee_stale = False
        if not math.isfinite(sum(self._values[o:o + 7])):
            self._raise_non_finite("read", o, o + 7, "output")

    def _raise_non_finite(self, call: str, start: int, stop: int, kind: str) -> None:
        names = list(self._variables)
        bad = [f"{names[i]}={self._values[i]!r}" for i in range(start, stop) if not math.isfinite(self._values[i])]
        raise NonFiniteValueError(self.name, call, f"non-finite {kind} value(s): {', '.join(bad)}")

    # ------------------------------------------------------------------ get / set
    def _resolve(self, name: str) -> int:
        self._ensure_loaded()
        try:
            return self._index[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(str(name), list(self._index), n=6, cutoff=0.5)
        hint = ", ".join(close) if close else ", ".join(self._index)
        raise ConfigurationError(
            f"unit '{self.name}' has no variable '{name}'; "
            f"{'did you mean' if close else 'variables are'}: {hint}"
        ) from None

    def _resolve_input(self, name: str) -> int:
        i = self._resolve(name)
        if i >= self._n_inputs:
            inputs = ", ".join(list(self._index)[: self._n_inputs])
            raise ConfigurationError(
                f"unit '{self.name}': variable '{name}' is an output and cannot be set; inputs: {inputs}"
            )
        return i

    def get(self, names: Sequence[str]) -> list[Value]:
        self._fresh_ee()
        vals = self._values
        index = self._index
        try:
            return [vals[index[n]] for n in names]
        except KeyError:
            return [vals[self._resolve(n)] for n in names]

    def set(self, names: Sequence[str], values: Sequence[Value]) -> None:
        idx = [self._resolve_input(n) for n in names]
        if len(idx) != len(values):
            raise ConfigurationError(
                f"unit '{self.name}': set() got {len(idx)} names but {len(values)} values"
            )
        vals = self._values
        for i, v in zip(idx, values, strict=True):
            vals[i] = float(v)

    def reader(self, names: Sequence[str]) -> Reader:
        idx = [self._resolve(n) for n in names]
        vals = self._values
        if not idx:
            return lambda: []
        getter = itemgetter(*idx) if len(idx) > 1 else (lambda v, i=idx[0]: [v[i]])
        if not any(self._o_ee <= i < self._o_ee + 7 for i in idx):
            return lambda: getter(vals)

        def read_with_pose() -> Sequence[Value]:
            self._fresh_ee()
            return getter(vals)

        return read_with_pose

    def writer(self, names: Sequence[str]) -> Writer:
        idx = [self._resolve_input(n) for n in names]
        vals = self._values
        if len(idx) == 1:
            only = idx[0]

            def write_one(values: Sequence[Value]) -> None:
                vals[only] = float(values[0])

            return write_one
        pairs = list(enumerate(idx))

        def write(values: Sequence[Value]) -> None:
            for k, i in pairs:
                vals[i] = float(values[k])

        return write

    # ------------------------------------------------------------------ state
    def save_state(self) -> BulletArmState:
        client = self.client
        self._fresh_ee()
        try:
            state_id = client.saveState()
        except pybullet.error as exc:
            raise SnapshotError(f"unit '{self.name}': saveState failed: {exc}") from None
        self._live_states.add(state_id)
        return BulletArmState(self.name, state_id, tuple(self._values), self._owner)

    def restore_state(self, state: Any) -> None:
        if not isinstance(state, BulletArmState) or state.owner != self._owner:
            raise SnapshotError(f"unit '{self.name}': cannot restore a state that this arm did not save")
        if state.state_id not in self._live_states:
            raise SnapshotError(
                f"unit '{self.name}': state {state.state_id} was released (release_state or terminate)"
            )
        assert self._client is not None
        try:
            self._forget_contacts()  # contacts from after the snapshot must not survive it
            self._client.restoreState(stateId=state.state_id)
        except pybullet.error as exc:
            raise SnapshotError(f"unit '{self.name}': restoreState failed: {exc}") from None
        self._values[:] = state.values
        self._ee_stale = False
        self._sent = None  # motor targets are not part of PyBullet's state: send them again

    def release_state(self, state: BulletArmState) -> None:
        """Free the PyBullet memory of a snapshot that will not be restored again."""
        if state.owner == self._owner and state.state_id in self._live_states:
            self._live_states.discard(state.state_id)
            if self._client is not None:
                self._client.removeState(state.state_id)

    # ------------------------------------------------------------------ portable state
    def invalidate_signature(self) -> None:
        """Forget the cached :meth:`world_signature` (the world's structure was changed)."""
        self._signature = None

    def world_signature(self) -> str:
        """SHA-256 of the world's structure: every body, link, joint, shape and dynamics setting
        (not poses or velocities). Two worlds with the same signature can exchange states.

        Computed once and kept until a body is added through :meth:`add_body`; after changing
        bodies or dynamics through :attr:`client` directly, call :meth:`invalidate_signature`."""
        client = self.client
        n_bodies = client.getNumBodies()
        cached = self._signature
        if cached is not None and cached[0] == n_bodies:
            return cached[1]
        bodies: list[Any] = []
        visual_cache: dict[int, Any] = {}
        for i in range(n_bodies):
            uid = client.getBodyUniqueId(i)
            links: list[Any] = []
            for link in range(-1, client.getNumJoints(uid)):
                dyn = client.getDynamicsInfo(uid, link)
                joint = client.getJointInfo(uid, link)[1:] if link >= 0 else ()
                if dyn[10] == 1:  # maximal-coordinate rigid body: PyBullet has no collision data for it
                    if uid not in visual_cache:
                        visual_cache[uid] = [v[1:5] for v in client.getVisualShapeData(uid)]
                    shapes = [v for v in visual_cache[uid] if v[0] == link]
                else:
                    shapes = [(*sh[2:4], Path(sh[4].decode(errors="replace")).name, *sh[5:7])
                              for sh in client.getCollisionShapeData(uid, link)]
                links.append((dyn, joint, shapes))
            bodies.append((client.getBodyInfo(uid), links))
        text = json.dumps(_plain(bodies), separators=(",", ":"))
        signature = hashlib.sha256(text.encode()).hexdigest()
        self._signature = (n_bodies, signature)
        return signature

    def _portable_identity(self) -> dict[str, Any]:
        cls = type(self)
        return {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "robot": self.robot if self.preset is not None else self.urdf_path.name,
            "urdf": self.urdf_path.name,
            "physics_step": self.physics_step,
            "gravity": list(self.gravity),
            "solver_iterations": self.solver_iterations,
            "engine_parameters": dict(sorted(self.engine_parameters.items())),
            "controlled": list(self._controlled),
            "forces": list(self._forces), "kps": list(self._kps), "kds": list(self._kds),
            "variables": list(self._variables),
            "bodies": self.client.getNumBodies(),
            "world": self.world_signature(),
        }

    def _python_state(self) -> dict[str, Any]:
        """Python-side state carried by :meth:`export_state` beside the PyBullet world."""
        self._fresh_ee()
        return {"values": list(self._values)}

    def _check_python_state(self, state: Any) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("values"), list) \
                or len(state["values"]) != len(self._values):
            raise SnapshotError(f"unit '{self.name}': corrupt portable state (Python-side values)")

    def _load_python_state(self, state: dict[str, Any]) -> None:
        self._values[:] = state["values"]
        self._ee_stale = False
        self._sent = None  # motor targets are not part of PyBullet's state: send them again

    def export_state(self) -> bytes:
        """The PyBullet world (``saveBullet``) and the Python-side state, as bytes.

        A fresh instance with the same constructor arguments (and the same extra bodies), set
        up, loads them with :meth:`import_state` and steps on bit for bit like this one.
        """
        if self.grid is None:
            raise SnapshotError(f"unit '{self.name}': export_state before setup()")
        client = self.client
        with _temp_file() as path:
            try:
                client.saveBullet(str(path))
                world = path.read_bytes()
            except (pybullet.error, OSError) as exc:
                raise SnapshotError(f"unit '{self.name}': saveBullet failed: {exc}") from None
        python = pickle_dumps(self._python_state())
        return pack_state("bullet", self._portable_identity(), join_parts([world, python]))

    def import_state(self, data: bytes) -> None:
        """Load a state from :meth:`export_state` of an arm (or scene) built the same way."""
        if self.grid is None:
            raise SnapshotError(f"unit '{self.name}': import_state before setup()")
        payload = unpack_state(self.name, data, "bullet", self._portable_identity())
        world, python = split_parts(self.name, payload, 2)
        state = restricted_loads(self.name, python, {type(self).__module__})
        self._check_python_state(state)
        client = self.client
        backup = client.saveState()
        try:
            self._forget_contacts()
            with _temp_file() as path:
                path.write_bytes(world)
                client.restoreState(fileName=str(path))
        except (pybullet.error, OSError) as exc:
            client.restoreState(stateId=backup)
            raise SnapshotError(f"unit '{self.name}': restoreState from the imported world failed: {exc}") from None
        finally:
            client.removeState(backup)
        self._load_python_state(state)

    def _forget_contacts(self) -> None:
        """Drop every contact manifold of the world, as in a world that never stepped.

        ``restoreState`` sets poses and velocities, re-runs collision detection at the restored
        poses and overwrites the manifolds it then holds with the saved ones (matched by body
        ids), but only when the saved world had a contact at all; body pairs from this world's
        own past survive in the broadphase pair cache (cleaned incrementally), and their
        manifolds (contact points, warm-start impulses) steer the next step: measured, a cell
        that had run on diverged at the first step after importing an earlier state. Moving
        every body far apart and running collision detection releases them all;
        ``restoreState`` then puts every body back. (The solver's order over manifolds does not
        depend on their history: ``deterministicOverlappingPairs`` sorts them by island and
        body ids.)
        """
        client = self.client
        for i in range(client.getNumBodies()):
            uid = client.getBodyUniqueId(i)
            client.resetBasePositionAndOrientation(uid, (1.0e4 + 100.0 * i, 1.0e4, 1.0e4), (0.0, 0.0, 0.0, 1.0))
        client.performCollisionDetection()

    def terminate(self) -> None:
        client = self._client
        self._terminated = True
        if client is None:
            return
        with contextlib.suppress(pybullet.error, NonFiniteValueError):  # the last pose stays readable
            self._fresh_ee()
        self._client = None
        try:
            for state_id in sorted(self._live_states):
                client.removeState(state_id)
        except pybullet.error:
            pass
        finally:
            self._live_states.clear()
            with contextlib.suppress(pybullet.error):
                client.disconnect()

    def __repr__(self) -> str:
        return f"<BulletArm '{self.name}' robot={self.robot!r}>"
