"""The robot controller: named tool poses, inverse kinematics, smooth joint trajectories.

Like an industrial robot controller it sits between the PLC and the arm: the PLC sends a
waypoint number on ``cmd``; the controller plans a joint-space move to the pose it computed
for that waypoint and streams joint targets to the arm's position motors. It reads the arm's
measured joint positions (through connections) to report ``at_target``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence

import pybullet
from pybullet_utils.bullet_client import BulletClient

from cosim import paths
from cosim.core.unit import PythonUnit, real
from cosim.core.variables import Causality, Variable, VarType
from cosim.errors import ConfigurationError
from cosim.tracking.summary import write_json_atomic
from cosim.units.bullet import ROBOTS, BulletArm

DOWN = (math.pi, 0.0, 0.0)  # tool z axis pointing at the floor
#: Moves where solved waypoint poses are kept (default ``<cache root>/ik``: :mod:`cosim.paths`).
IK_CACHE_ENV = paths.CACHES["ik"]
_IK_VERSION = 1  # bump when the solver changes: cached poses are then solved again
_solved: dict[str, list[list[float]]] = {}


class RobotController(PythonUnit):
    """Moves the arm between named tool-tip positions.

    Args:
        name: unit name.
        robot: the arm's robot name or URDF path (the controller loads its own kinematic copy).
        waypoints: ``{name: [x, y, z]}`` tool-tip positions in the world frame (tool pointing
            down), ``{name: [q0, ..., qn]}`` joint positions, or ``{name: null}`` for the robot's
            home posture turned by ``home_yaw``; in the order that gives their numbers (the
            first is where the arm starts).
        tool_link, tool_offset: the tool; default the cell's suction tool for this robot.
        n_joints: arm joints to command (default: every non-finger movable joint).
        tool_link: link carrying the tool (default: the robot's end-effector link).
        tool_offset: tool tip in the tool link's frame (m).
        max_joint_speed: rad/s of the fastest joint during a move.
        tolerance: rad; ``at_target`` once every joint is within it at the end of a move.
        base_position: the arm's base position (m), as in the plant.
    """

    def __init__(self, name: str, robot: str, waypoints: Mapping[str, Sequence[float] | None],
                 tool_link: str | None = None, tool_offset: Sequence[float] | None = None,
                 max_joint_speed: float = 1.5, tolerance: float = 0.02,
                 base_position: Sequence[float] = (0.0, 0.0, 0.0),
                 tool_yaw: float = 0.0, home_yaw: float = 0.0) -> None:
        if not waypoints:
            raise ConfigurationError(f"unit '{name}': no waypoints")
        from models.cell.scene import TOOLS  # the cell's suction tool per robot

        default_link, default_offset = TOOLS.get(str(robot), (None, (0.0, 0.0, 0.0)))
        tool_link = tool_link if tool_link is not None else default_link
        tool_offset = tool_offset if tool_offset is not None else default_offset
        self.waypoint_names = list(waypoints)
        self.poses = self._solve_cached(name, robot, waypoints, tool_link, tool_offset, base_position, tool_yaw,
                                        home_yaw)
        n = len(self.poses[0])
        preset = ROBOTS.get(str(robot))
        if preset is not None and len(preset.home) == n:  # where the arm is at setup
            start = [preset.home[0] + float(home_yaw), *preset.home[1:]]
        else:
            start = list(self.poses[0])
        variables = [
            Variable("cmd", Causality.INPUT, VarType.INTEGER, 0, "", "waypoint number to move to"),
            *[real(f"q_{i}", "input", start[i], "rad") for i in range(n)],
            *[real(f"q_target_{i}", "output", start[i], "rad") for i in range(n)],
            Variable("busy", Causality.OUTPUT, VarType.BOOLEAN, True),
            Variable("at_target", Causality.OUTPUT, VarType.BOOLEAN, False),
            Variable("pos_id", Causality.OUTPUT, VarType.INTEGER, -1, "", "waypoint reached, -1 moving"),
            Variable("cmd_error", Causality.OUTPUT, VarType.BOOLEAN, False),
        ]
        super().__init__(name, variables)
        self.n = n
        self.max_joint_speed = float(max_joint_speed)
        self.tolerance = float(tolerance)
        self.goal_id = -1  # the first command starts a move from the setup posture
        self.start = start
        self.t_start = 0.0
        self.duration = 0.0

    @classmethod
    def _solve_cached(cls, name: str, robot: str, waypoints: Mapping[str, Sequence[float] | None],
                      tool_link: str | None, tool_offset: Sequence[float], base_position: Sequence[float],
                      tool_yaw: float, home_yaw: float) -> list[list[float]]:
        """:meth:`_solve`, remembered per process and on disk: the same robot (URDF bytes),
        waypoints and tool always give the same poses, and solving costs ~0.3 s per build."""
        urdf = BulletArm(f"{name}-ik", robot).urdf_path  # resolves the path; loads nothing
        ident = {
            "version": _IK_VERSION, "pybullet": pybullet.getAPIVersion(), "robot": str(robot),
            "urdf": hashlib.sha256(urdf.read_bytes()).hexdigest(),
            "waypoints": [[k, None if v is None else [float(x) for x in v]] for k, v in waypoints.items()],
            "tool_link": tool_link, "tool_offset": [float(x) for x in tool_offset],
            "base_position": [float(x) for x in base_position], "tool_yaw": float(tool_yaw),
            "home_yaw": float(home_yaw),
        }
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]
        poses = _solved.get(key)
        path = paths.cache_dir("ik") / f"{key}.json"
        if poses is None:
            try:
                stored = json.loads(path.read_text())["poses"]
                if len(stored) == len(waypoints) and all(
                        isinstance(q, float) for pose in stored for q in pose):
                    poses = stored
            except (OSError, ValueError, KeyError, TypeError):
                pass  # not solved yet here, or unreadable: solve again
        if poses is None:
            poses = cls._solve(name, robot, waypoints, tool_link, tool_offset, base_position, tool_yaw, home_yaw)
            try:
                write_json_atomic(path, {"ident": ident, "poses": poses})
            except OSError:
                pass  # a read-only cache only costs the solve next time
        _solved[key] = poses
        return [list(p) for p in poses]

    @staticmethod
    def _solve(name: str, robot: str, waypoints: Mapping[str, Sequence[float] | None], tool_link: str | None,
               tool_offset: Sequence[float], base_position: Sequence[float], tool_yaw: float,
               home_yaw: float) -> list[list[float]]:
        """Joint positions for every waypoint, by damped IK on a private kinematic copy."""
        probe = BulletArm(f"{name}-ik", robot, base_position=base_position, ee_link=tool_link)
        client: BulletClient = probe.client
        body = probe.body_id
        joints = list(probe.arm_joints)
        link = probe.ee_link
        movable = [j for j in range(client.getNumJoints(body))
                   if client.getJointInfo(body, j)[2] in (pybullet.JOINT_REVOLUTE, pybullet.JOINT_PRISMATIC)]
        lower = [client.getJointInfo(body, j)[8] for j in movable]
        upper = [client.getJointInfo(body, j)[9] for j in movable]
        ranges = [u - lo for lo, u in zip(lower, upper, strict=True)]
        preset = ROBOTS.get(robot)
        home = list(preset.home) if preset and preset.home else [0.0] * len(joints)
        home_rest = home + [0.0] * (len(movable) - len(joints))
        orn = pybullet.getQuaternionFromEuler((DOWN[0], DOWN[1], tool_yaw))
        rot = pybullet.getMatrixFromQuaternion(orn)
        off = [float(v) for v in tool_offset]
        poses: list[list[float]] = []
        try:
            for wp_name, given in waypoints.items():
                if given is None:  # the robot's home posture, turned by home_yaw
                    poses.append([home[0] + float(home_yaw), *home[1:]])
                    continue
                tip = [float(v) for v in given]
                if len(tip) == len(joints):  # a joint-space pose, taken as it is
                    poses.append(tip)
                    continue
                if len(tip) != 3:
                    raise ConfigurationError(
                        f"unit '{name}': waypoint '{wp_name}' needs x, y, z (or {len(joints)} joint positions)"
                    )
                target = [tip[r] - sum(rot[3 * r + c] * off[c] for c in range(3)) for r in range(3)]
                # start from the home posture turned towards the target (IK converges to the
                # nearby elbow-up solution instead of wandering through null space)
                rest = list(home_rest)
                rest[0] = math.atan2(target[1] - base_position[1], target[0] - base_position[0])
                for j, q in zip(movable, rest, strict=True):
                    client.resetJointState(body, j, q)
                q_sol: Sequence[float] = rest
                for _ in range(30):
                    q_sol = client.calculateInverseKinematics(
                        body, link, target, orn, lowerLimits=lower, upperLimits=upper,
                        jointRanges=ranges, restPoses=rest, maxNumIterations=100, residualThreshold=1e-6)
                    for j, q in zip(movable, q_sol, strict=False):
                        client.resetJointState(body, j, q)
                pos = client.getLinkState(body, link, computeForwardKinematics=True)[4]
                err = math.dist(pos, target)
                if err > 0.005:
                    raise ConfigurationError(
                        f"unit '{name}': waypoint '{wp_name}' {tip} is out of reach of robot '{robot}' "
                        f"(inverse kinematics misses by {err * 1000:.0f} mm)"
                    )
                poses.append([float(q) for q in q_sol[:len(joints)]])
        finally:
            probe.terminate()
        return poses

    def waypoint(self, name: str) -> int:
        """The number of a waypoint, for PLC programs and tests."""
        try:
            return self.waypoint_names.index(name)
        except ValueError:
            raise ConfigurationError(f"unit '{self.name}': no waypoint '{name}'; "
                                     f"waypoints are {self.waypoint_names}") from None

    def do_step(self, t: float, h: float) -> None:
        v = self.values
        cmd = int(v["cmd"])
        valid = 0 <= cmd < len(self.poses)
        v["cmd_error"] = not valid
        if valid and cmd != self.goal_id:
            # start a new move from wherever the targets are now
            self.start = [v[f"q_target_{i}"] for i in range(self.n)]
            goal = self.poses[cmd]
            span = max(abs(g - s) for g, s in zip(goal, self.start, strict=True))
            self.duration = max(span / self.max_joint_speed, 0.1)
            self.t_start = t
            self.goal_id = cmd
        if self.goal_id < 0:
            return  # no valid command yet: hold the setup posture
        goal = self.poses[self.goal_id]
        tau = (t + h - self.t_start) / self.duration if self.duration > 0 else 1.0
        s = 1.0 if tau >= 1.0 else 0.5 - 0.5 * math.cos(math.pi * tau)
        for i in range(self.n):
            v[f"q_target_{i}"] = self.start[i] + (goal[i] - self.start[i]) * s
        arrived = s >= 1.0 and all(abs(v[f"q_{i}"] - goal[i]) < self.tolerance for i in range(self.n))
        v["at_target"] = arrived
        v["busy"] = not arrived
        v["pos_id"] = self.goal_id if arrived else -1
