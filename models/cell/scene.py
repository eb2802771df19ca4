"""The physical world of the smart-factory cell, as one co-simulation unit.

:class:`CellScene` is a :class:`~cosim.units.bullet.BulletArm` whose PyBullet world also holds
the stations' bodies and a fixed pool of workpieces. The actuator dynamics live elsewhere
(conveyor motor, press pneumatics, feeder pusher are FMUs); their positions and speeds come in
through inputs and move the scene; the scene answers with the sensors a real cell has.

Layout (defaults; the arm base at the origin, every surface at ``work_height`` = 0.12 m)::

                  y
          table   ^   inspection spot (0.0, 0.55)
                  |
          arm  (0, 0) ------------------- press fixture (0.55, 0.0), ram above it --> x
                  |
    feeder (-0.605,-0.5) ===== belt (+x) =====> pick eye (-0.06,-0.5) | belt end (0.0,-0.5)

- **conveyor**: a static belt along +x from ``belt_start`` to ``belt_end``. Parts resting on
  it are carried at ``belt_speed``: the belt surface is frictionless and a carried part's
  velocity is set to ``(belt_speed, 0, vz)`` at the start of every step (it then holds through
  the physics sub-steps). A part carried past the belt end tips over it and falls.
- **feeder**: when ``pusher_position`` rises above ``release_threshold``, the next parked part
  is placed at the belt start (seeded lateral offset and quality).
- **press**: a C-frame with a pocket fixture and a kinematic ram (plunger) above it. The ram
  face sits at ``ram_open_height`` when ``ram_position`` = 0 and 1 mm above the top of a part
  in the fixture when ``ram_position`` = ``press_stroke``; it moves linearly in between (the
  geometric travel is larger than the FMU's stroke so that the open ram clears the arm's
  wrist). A part in the fixture is pressed once ``ram_position >= 0.9 * press_stroke``.
- **inspection**: a table with the inspection spot; a rising ``eject_cmd`` removes the part
  there from the cell.
- **suction tool** on ``tool_link`` at ``tool_offset`` (tool z axis = approach direction).
  With ``suction_cmd`` on, a part whose top face is within ``grasp_distance`` of the tip is
  attached; with it off the part is let go and falls under real physics.

Suction is *kinematic*: before every physics sub-step the held part is put at its grasp pose
relative to the tool link and given the tool's velocity. The set of bodies and constraints
never changes after setup, so PyBullet's ``saveState``/``restoreState`` plus the Python-side
state (parts, generator, events, edge memories) restore the scene bit for bit.

Parts are a fixed pool of ``n_parts`` bodies parked far away; releasing one gives it a new
serial id and quality; ejecting or dropping it parks it again.

Sensors are computed once per unit step, after the physics sub-steps (one contact query for
the whole arm, an AABB query before the exact light-curtain test, one pose read per part in
the cell). :attr:`CellScene.events` lists ``(time_s, kind, detail)`` with kinds ``release``,
``eject``, ``press``, ``drop``, ``collision`` (unsafe: ``drop``, ``collision``), and
``feeder_jam`` / ``feeder_empty`` when a release could not happen; it is part of the state.
Edge detectors (pusher, eject) start from "off", so an input that is on at the first step
acts at once.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pybullet

from cosim.core.unit import TimeGrid, Writer
from cosim.core.variables import Causality, Value, Variable, VarType
from cosim.errors import ConfigurationError, NonFiniteValueError, SnapshotError, UnitError
from cosim.units.bullet import ROBOTS, BulletArm, BulletArmState

__all__ = ["SCENE_INPUTS", "SCENE_OUTPUTS", "TOOLS", "CellScene", "CellSceneState", "Part"]

# Default suction tool per robot preset: (tool link, tip offset in the link frame).
TOOLS: dict[str, tuple[str | None, tuple[float, float, float]]] = {
    "kuka": ("lbr_iiwa_link_7", (0.0, 0.0, 0.05)),       # 2 mm beyond the flange
    "panda": ("panda_grasptarget", (0.0, 0.0, 0.012)),    # 2 mm beyond the finger tips
}

_R, _B, _I = VarType.REAL, VarType.BOOLEAN, VarType.INTEGER
SCENE_INPUTS: tuple[tuple[str, VarType, str, str], ...] = (
    ("belt_speed", _R, "m/s", "belt surface speed along +x (conveyor FMU)"),
    ("pusher_position", _R, "m", "feeder pusher position; rising above release_threshold releases a part"),
    ("ram_position", _R, "m", "press ram position, 0 = open, press_stroke = closed (press FMU)"),
    ("suction_cmd", _B, "", "vacuum of the suction tool on"),
    ("eject_cmd", _B, "", "rising edge: the part at the inspection spot leaves the cell"),
)
SCENE_OUTPUTS: tuple[tuple[str, VarType, str, str], ...] = (
    ("part_at_entry", _B, "", "photo-eye at the belt start"),
    ("part_at_pick", _B, "", "photo-eye at the pick point near the belt end"),
    ("fixture_occupied", _B, "", "part in the press fixture"),
    ("inspect_present", _B, "", "part at the inspection spot"),
    ("part_held", _B, "", "vacuum switch: suction on and a part attached"),
    ("press_zone_occupied", _B, "", "light curtain: an arm link in the press zone above the fixture"),
    ("ram_contact", _B, "", "the ram touches the arm"),
    ("inspect_quality", _R, "", "true quality of the part at the inspection spot (0 if none)"),
    ("pick_part_x", _R, "m", "x of the part at the pick eye (0 if none)"),
    ("parts_released", _I, "", "parts put on the belt by the feeder"),
    ("parts_ejected", _I, "", "parts that left the cell from the inspection spot"),
    ("parts_dropped", _I, "", "parts lost: fell or came to rest outside belt, fixture, spot and tool"),
    ("parts_pressed", _I, "", "parts pressed in the fixture"),
    ("arm_collisions", _I, "", "rising edges of contact between the arm and a station body"),
)
_COERCE = {VarType.REAL: float, VarType.BOOLEAN: bool, VarType.INTEGER: int}

PARK_PERIOD = 5.0  # s of free fall (123 m) before a parked part is put back up
_PARK_AFTER = PARK_PERIOD - 1e-9
PARKED, BELT, FIXTURE, INSPECT, HELD, LOOSE = "parked", "belt", "fixture", "inspect", "held", "loose"

_RAW_COLOR = (1.0, 0.55, 0.1, 1.0)
_PRESSED_COLOR = (0.15, 0.75, 0.25, 1.0)


@dataclass
class Part:
    """Python-side data of one pool body (part of the unit state)."""

    slot: int
    body: int
    pid: int = 0              # serial id of the workpiece, 0 while parked
    quality: float = 0.0      # base quality in [0, 1]
    pressed: bool = False
    where: str = PARKED       # parked, belt, fixture, inspect, held, loose
    rest_time: float = 0.0    # seconds at rest while loose (seconds falling while parked)
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)  # position at the end of the last step


@dataclass
class _Sim:
    """Everything Python-side that a snapshot must carry."""

    parts: list[Part]
    rng: np.random.Generator
    events: list[tuple[float, str, str]] = field(default_factory=list)
    next_pid: int = 1
    held: int = -1                                   # slot of the held part, -1 = none
    attach: tuple[Any, Any] | None = None            # part pose in the tool-link frame
    carried: tuple[int, ...] = ()                    # bodies the belt carries in the next step
    pusher_high: bool = False
    eject_prev: bool = False
    contacts: frozenset[str] = frozenset()           # station bodies the arm touches
    ram_z: float = 0.0                               # ram face height applied to the world
    pusher_y: float = 0.0                            # pusher plate position applied (visual)


@dataclass(frozen=True)
class CellSceneState:
    """Opaque snapshot of a :class:`CellScene`."""

    arm: BulletArmState
    sim: _Sim


def _v3(name: str, what: str, value: Sequence[float], n: int = 3) -> tuple[float, ...]:
    out = tuple(float(v) for v in value)
    if len(out) != n:
        raise ConfigurationError(f"unit '{name}': {what} needs {n} values, got {len(out)}")
    return out


class CellScene(BulletArm):
    """The cell's arm, stations and workpieces in one PyBullet world, as one unit.

    Variables: every :class:`BulletArm` variable, then the inputs of :data:`SCENE_INPUTS` and
    the outputs of :data:`SCENE_OUTPUTS` (Booleans, Integers and Reals typed as declared).

    Args:
        name: unit name.
        robot: ``"kuka"``, ``"panda"`` or a URDF path (see :class:`BulletArm`).
        seed: seeds the generator for part qualities and release offsets.
        physics_step: PyBullet time step (s).
        tool_link: link carrying the suction cup (default from :data:`TOOLS`, else the arm's
            end-effector link). The arm's ``ee_*`` outputs report this link unless ``ee_link``
            is given.
        tool_offset: suction tip in the tool link frame (m); its z axis must point along the
            approach direction.
        home_yaw: added to the base joint of the preset's home pose for the start pose (rad),
            so that the arm starts clear of the press; ignored if ``initial_positions`` is given.
        work_height: height of the belt surface, fixture floor and table top (m).
        belt_start, belt_end: (x, y) of the belt ends; the belt runs along +x.
        belt_width: m.
        pick_eye_offset: distance of the pick photo-eye before the belt end (m).
        press_position: (x, y) of the fixture centre.
        press_stroke: ``ram_position`` at which the ram is closed (m, the press FMU's stroke).
        ram_open_height: height of the ram face when open (m).
        press_zone_half: half width of the light-curtain zone around the fixture (m).
        inspect_position: (x, y) of the inspection spot on the table.
        part_size: (x, y, z) size of a workpiece (m).
        part_mass: kg.
        n_parts: size of the part pool.
        release_threshold: pusher position above which a part is released (m).
        release_offset: maximum random lateral offset of a released part (m).
        quality_mean, quality_std: normal distribution of part quality (clipped to [0, 1]).
        unpressed_quality_factor: ``inspect_quality`` of an unpressed part, as a fraction.
        grasp_distance: the tip must be within this of a part's top face to grasp it (m).
        rest_time: a loose part at rest this long (s) counts as dropped.
        **arm_kwargs: further :class:`BulletArm` arguments (``initial_positions``,
            ``solver_iterations``, ``max_forces``, ...).
    """

    # Static station bodies as maximal-coordinate rigid bodies: cheaper to step. Parts stay
    # multibodies: restoreState is bit-exact for them, not for dynamic maximal-coordinate bodies.
    _MAXIMAL_STATIC = True
    _MAXIMAL_PARTS = False

    def __init__(
        self,
        name: str = "cell",
        robot: str = "kuka",
        *,
        seed: int = 0,
        physics_step: float = 0.005,
        tool_link: str | None = None,
        tool_offset: Sequence[float] | None = None,
        home_yaw: float = -math.pi / 4,
        work_height: float = 0.12,
        belt_start: Sequence[float] = (-0.65, -0.5),
        belt_end: Sequence[float] = (0.0, -0.5),
        belt_width: float = 0.10,
        pick_eye_offset: float = 0.06,
        press_position: Sequence[float] = (0.55, 0.0),
        press_stroke: float = 0.1,
        ram_open_height: float = 0.66,
        press_zone_half: float = 0.08,
        inspect_position: Sequence[float] = (0.0, 0.55),
        part_size: Sequence[float] = (0.04, 0.04, 0.03),
        part_mass: float = 0.1,
        n_parts: int = 6,
        release_threshold: float = 0.054,
        release_offset: float = 0.01,
        quality_mean: float = 0.9,
        quality_std: float = 0.05,
        unpressed_quality_factor: float = 0.3,
        grasp_distance: float = 0.015,
        rest_time: float = 0.3,
        **arm_kwargs: Any,
    ) -> None:
        robot = str(robot)
        preset = ROBOTS.get(robot)
        default_link, default_offset = TOOLS.get(robot, (None, (0.0, 0.0, 0.0)))
        self.tool_link_name = tool_link if tool_link is not None else default_link
        self.tool_offset = _v3(name, "tool_offset", tool_offset if tool_offset is not None else default_offset)
        if arm_kwargs.get("initial_positions") is None and preset is not None and preset.home:
            q0 = list(preset.home)
            q0[0] += float(home_yaw)
            arm_kwargs["initial_positions"] = q0
        arm_kwargs.setdefault("ee_link", self.tool_link_name)
        super().__init__(name, robot, physics_step=physics_step, **arm_kwargs)

        self.seed = int(seed)
        self.work_height = float(work_height)
        self.belt_start = _v3(name, "belt_start", belt_start, 2)
        self.belt_end = _v3(name, "belt_end", belt_end, 2)
        if not self.belt_end[0] > self.belt_start[0] or self.belt_end[1] != self.belt_start[1]:
            raise ConfigurationError(f"unit '{name}': the belt must run along +x (belt_end.x > belt_start.x, same y)")
        self.belt_width = float(belt_width)
        self.pick_eye_offset = float(pick_eye_offset)
        self.press_position = _v3(name, "press_position", press_position, 2)
        if not press_stroke > 0:
            raise ConfigurationError(f"unit '{name}': press_stroke must be positive, got {press_stroke!r}")
        self.press_stroke = float(press_stroke)
        self.ram_open_height = float(ram_open_height)
        self.press_zone_half = float(press_zone_half)
        self.inspect_position = _v3(name, "inspect_position", inspect_position, 2)
        self.part_size = _v3(name, "part_size", part_size)
        self.part_mass = float(part_mass)
        if int(n_parts) < 1:
            raise ConfigurationError(f"unit '{name}': n_parts must be >= 1, got {n_parts!r}")
        self.n_parts = int(n_parts)
        self.release_threshold = float(release_threshold)
        self.release_offset = float(release_offset)
        self.quality_mean = float(quality_mean)
        self.quality_std = float(quality_std)
        self.unpressed_quality_factor = float(unpressed_quality_factor)
        self.grasp_distance = float(grasp_distance)
        self.rest_time = float(rest_time)

        hx, hy, hz = (s / 2 for s in self.part_size)
        self._half = (hx, hy, hz)
        w = self.work_height
        self.part_top_z = w + 2 * hz
        self.ram_closed_height = self.part_top_z + 0.001
        if not self.ram_open_height > self.ram_closed_height + 0.05:
            raise ConfigurationError(f"unit '{name}': ram_open_height must be well above the part top "
                                     f"({self.part_top_z:.3f} m), got {self.ram_open_height!r}")
        self.entry_eye_x = self.belt_start[0] + hx + 0.025
        self.pick_eye_x = self.belt_end[0] - self.pick_eye_offset
        self.drop_height = w - 0.01
        self._sim: _Sim | None = None
        self._coerce: list[Any] = []
        self._stations: dict[int, str] = {}

    # ------------------------------------------------------------------ building the world
    def _ensure_loaded(self) -> None:
        if self._client is not None:
            return
        super()._ensure_loaded()
        try:
            self._declare_scene_variables()
            self._create_world()
        except BaseException:
            client, self._client = self._client, None
            if client is not None:
                client.disconnect()
            raise

    def _declare_scene_variables(self) -> None:
        variables = list(self._variables.values())
        self._s_in0 = len(variables)
        for name, vtype, unit, text in SCENE_INPUTS:
            variables.append(Variable(name, Causality.INPUT, vtype, vtype.coerce(0), unit, text))
        self._s_out0 = len(variables)
        for name, vtype, unit, text in SCENE_OUTPUTS:
            variables.append(Variable(name, Causality.OUTPUT, vtype, vtype.coerce(0), unit, text))
        self._variables = {v.name: v for v in variables}
        self._index = {v.name: i for i, v in enumerate(variables)}
        self._values[self._s_in0:] = [v.start for v in variables[self._s_in0:]]
        self._coerce = [_COERCE.get(v.type, float) for v in variables]
        ix = self._index
        self._i_belt, self._i_push, self._i_ram = ix["belt_speed"], ix["pusher_position"], ix["ram_position"]
        self._i_suction, self._i_eject = ix["suction_cmd"], ix["eject_cmd"]
        self._o_scene = self._s_out0

    def _box(self, half: Sequence[float], pos: Sequence[float], color: Sequence[float], *,
             collide: bool = True, mass: float = 0.0, friction: float | None = None) -> int:
        c = self._client
        assert c is not None
        col = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=list(half)) if collide else -1
        vis = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=list(half), rgbaColor=list(color))
        body = c.createMultiBody(baseMass=mass, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                                 basePosition=list(pos), useMaximalCoordinates=self._MAXIMAL_STATIC)
        if friction is not None:
            c.changeDynamics(body, -1, lateralFriction=friction)
        return body

    def _station(self, station: str, *args: Any, **kwargs: Any) -> int:
        body = self._box(*args, **kwargs)
        self._stations[body] = station
        return body

    def _create_world(self) -> None:
        c = self._client
        assert c is not None
        arm = self._body
        self.tool_link = self.ee_link if self.tool_link_name is None else self.link_index(self.tool_link_name)
        w = self.work_height
        hx, hy, hz = self._half
        self._stations = {}

        # floor: a finite slab (an infinite plane would pair with every arm link in the broadphase)
        self.floor_id = self._box((2.5, 2.5, 0.01), (0.0, 0.0, -0.01), (0.82, 0.82, 0.8, 1))
        c.changeDynamics(self.floor_id, -1, lateralFriction=0.8)
        self._stations[self.floor_id] = "floor"

        # conveyor: belt surface, frame, feeder magazine (+ a visual pusher plate)
        (x0, by), (x1, _) = self.belt_start, self.belt_end
        bw = self.belt_width / 2
        xm, hl = (x0 + x1) / 2, (x1 - x0) / 2
        # frictionless surface: carried parts get the belt's velocity prescribed (see _simulate)
        self.belt_id = self._station("belt", (hl, bw, 0.01), (xm, by, w - 0.01), (0.12, 0.12, 0.14, 1),
                                     friction=0.0)
        self._station("belt", (hl - 0.02, bw - 0.015, (w - 0.02) / 2), (xm, by, (w - 0.02) / 2),
                      (0.35, 0.38, 0.45, 1))
        mag_y = by - bw - 0.045
        self._station("belt", (0.035, 0.04, 0.09), (self.entry_eye_x, mag_y, w + 0.09), (0.15, 0.35, 0.75, 1))
        self._pusher_y0 = by - bw - 0.005
        self.pusher_id = self._box((0.02, 0.005, hz), (self.entry_eye_x, self._pusher_y0, w + hz),
                                   (0.1, 0.2, 0.6, 1), collide=False)
        for ex in (self.entry_eye_x, self.pick_eye_x):  # photo-eye posts (visual only)
            self._box((0.008, 0.008, 0.03), (ex, by + bw + 0.02, w + 0.03), (0.9, 0.9, 0.1, 1), collide=False)

        # press: bed with pocket fixture, C-frame (column, beam, head), kinematic ram
        px, py = self.press_position
        yellow, dark = (0.95, 0.75, 0.1, 1), (0.3, 0.3, 0.3, 1)
        self._station("press", (0.1, 0.1, w / 2), (px, py, w / 2), yellow, friction=0.8)
        inner, t, wh = max(hx, hy) + 0.015, 0.008, 0.012
        for dx, dy, sx, sy in ((inner + t, 0, t, inner + 2 * t), (-inner - t, 0, t, inner + 2 * t),
                               (0, inner + t, inner, t), (0, -inner - t, inner, t)):
            self._station("press", (sx, sy, wh / 2), (px + dx, py + dy, w + wh / 2), dark)
        self.pocket_half = inner
        top = self.ram_open_height + 0.14
        col_x = px + 0.22
        self._station("press", (0.04, 0.07, top / 2), (col_x, py, top / 2), yellow)
        self._station("press", ((col_x - px) / 2, 0.045, 0.04), ((col_x + px) / 2, py, top - 0.04), yellow)
        self._station("press", (0.06, 0.06, 0.05), (px, py, self.ram_open_height + 0.08), yellow)
        self._ram_len = self.ram_open_height - self.ram_closed_height + 0.12
        cyl = (self.ram_open_height + self._ram_len + 0.02 - top) / 2  # cylinder around the ram rod
        self._station("press", (0.045, 0.045, cyl), (px, py, top + cyl), (0.55, 0.55, 0.6, 1))
        self.ram_id = self._station("ram", (0.03, 0.03, self._ram_len / 2),
                                    (px, py, self.ram_open_height + self._ram_len / 2), (0.75, 0.2, 0.15, 1))
        zone_h = (self.ram_open_height - w) / 2
        self._zone_half = (self.press_zone_half, self.press_zone_half, zone_h)
        self._zone_center = (px, py, w + zone_h)
        self._zone_shape = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=list(self._zone_half))
        self._zone_aabb = ([px - self.press_zone_half, py - self.press_zone_half, w],
                           [px + self.press_zone_half, py + self.press_zone_half, self.ram_open_height])

        # outfeed table with the inspection spot (and a visual camera mast)
        ix, iy = self.inspect_position
        self._station("table", (0.1, 0.1, 0.01), (ix, iy, w - 0.01), (0.6, 0.45, 0.3, 1), friction=0.8)
        self._station("table", (0.03, 0.03, (w - 0.02) / 2), (ix, iy, (w - 0.02) / 2), (0.4, 0.3, 0.2, 1))
        self._box((0.06, 0.06, 0.0005), (ix, iy, w + 0.0005), (0.95, 0.95, 0.95, 1), collide=False)
        away = 1.0 if iy >= 0 else -1.0
        self._box((0.01, 0.01, 0.2), (ix, iy + away * 0.13, w + 0.2), (0.2, 0.2, 0.2, 1), collide=False)
        self._box((0.02, 0.04, 0.015), (ix, iy + away * 0.1, w + 0.39), (0.1, 0.1, 0.1, 1), collide=False)

        # the part pool, parked far away in free fall, where they touch nothing (a resting
        # contact costs ~10 us per part and physics step); re-parked every PARK_PERIOD s
        col = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[hx, hy, hz])
        vis = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=[hx, hy, hz], rgbaColor=list(_RAW_COLOR))
        self.part_ids = []
        for i in range(self.n_parts):
            body = c.createMultiBody(self.part_mass, col, vis, list(self._park_pose(i)),
                                     useMaximalCoordinates=self._MAXIMAL_PARTS)
            c.changeDynamics(body, -1, lateralFriction=0.6,
                             activationState=pybullet.ACTIVATION_STATE_DISABLE_SLEEPING)
            self.part_ids.append(body)
        self._part_colors = [_RAW_COLOR] * self.n_parts
        self._part_of_body = {b: i for i, b in enumerate(self.part_ids)}
        self._arm = arm
        # what _update compares part positions with
        self._sensing = (w, w + 3 * hz, w + hz + 0.004, hx, x0, x1, by, bw, self.entry_eye_x, self.pick_eye_x,
                         px, py, self.pocket_half, ix, iy)

    def _bind(self, client: Any) -> None:
        super()._bind(client)
        self._get_pose = client.getBasePositionAndOrientation
        self._get_vel = client.getBaseVelocity
        self._reset_pose = client.resetBasePositionAndOrientation
        self._reset_vel = client.resetBaseVelocity
        self._contacts = client.getContactPoints
        self._overlap = client.getOverlappingObjects
        self._closest = client.getClosestPoints

    def _park_pose(self, slot: int) -> tuple[float, float, float]:
        return (50.0 + slot, 50.0, 500.0)

    # ------------------------------------------------------------------ geometry helpers
    @property
    def spots(self) -> dict[str, tuple[float, float, float]]:
        """Tool-tip targets (x, y, z) on the top face of a part resting at each spot."""
        self._ensure_loaded()
        top = self.part_top_z
        return {
            "entry": (self.entry_eye_x, self.belt_start[1], top),
            "pick": (self.pick_eye_x - self._half[0], self.belt_start[1], top),
            "fixture": (self.press_position[0], self.press_position[1], top),
            "inspect": (self.inspect_position[0], self.inspect_position[1], top),
        }

    @property
    def station_bodies(self) -> dict[str, tuple[int, ...]]:
        """PyBullet body ids of each station (floor, belt, press, ram, table) in :attr:`client`."""
        self._ensure_loaded()
        out: dict[str, tuple[int, ...]] = {}
        for body, station in self._stations.items():
            out[station] = (*out.get(station, ()), body)
        return out

    @property
    def events(self) -> tuple[tuple[float, str, str], ...]:
        """``(time_s, kind, detail)`` of every release, eject, press, drop and collision."""
        return tuple(self._sim.events) if self._sim is not None else ()

    @property
    def parts(self) -> tuple[Part, ...]:
        """Copies of the pool's Python-side part records."""
        return tuple(copy.copy(p) for p in self._sim.parts) if self._sim is not None else ()

    def ram_height(self, ram_position: float) -> float:
        """Height of the ram face for a given ``ram_position``."""
        s = min(max(ram_position / self.press_stroke, 0.0), 1.0)
        return self.ram_open_height + (self.ram_closed_height - self.ram_open_height) * s

    def tool_tip(self) -> tuple[float, float, float]:
        """World position of the suction tip now."""
        ls = self._link_state(self._body, self.tool_link, 0, 1)
        return pybullet.multiplyTransforms(ls[4], ls[5], self.tool_offset, (0, 0, 0, 1))[0]

    # ------------------------------------------------------------------ Unit interface
    def setup(self, grid: TimeGrid) -> None:
        super().setup(grid)
        c = self._client
        assert c is not None
        parts = [Part(i, b) for i, b in enumerate(self.part_ids)]
        self._sim = sim = _Sim(parts=parts, rng=np.random.default_rng(self.seed))
        for p in parts:
            self._park(p)
        sim.ram_z = self.ram_height(float(self._values[self._i_ram]))
        sim.pusher_y = self._pusher_target()
        self._apply_kinematic()
        vals = self._values
        o = self._s_out0
        vals[o:] = [v.start for v in list(self._variables.values())[o:]]
        self._update(0.0, 0.0, count=False)

    def _apply_kinematic(self) -> None:
        """Put the ram and the pusher plate where the Python-side state says."""
        sim = self._sim
        assert sim is not None
        px, py = self.press_position
        self._reset_pose(self.ram_id, (px, py, sim.ram_z + self._ram_len / 2), (0, 0, 0, 1))
        self._reset_pose(self.pusher_id, (self.entry_eye_x, sim.pusher_y, self.work_height + self._half[2]),
                         (0, 0, 0, 1))

    def _pusher_target(self) -> float:
        p = min(max(float(self._values[self._i_push]), 0.0), 0.08)
        return self._pusher_y0 + p

    def _park(self, part: Part) -> None:
        self._reset_pose(part.body, self._park_pose(part.slot), (0, 0, 0, 1))
        self._reset_vel(part.body, (0, 0, 0), (0, 0, 0))
        part.where, part.pid, part.pressed, part.rest_time = PARKED, 0, False, 0.0
        part.pos = self._park_pose(part.slot)

    def _event(self, t: float, kind: str, detail: str) -> None:
        assert self._sim is not None
        self._sim.events.append((t, kind, detail))

    def step(self, tick: int, n_ticks: int) -> None:
        sim = self._sim
        if sim is None or self.grid is None:
            raise UnitError(self.name, "step", "stepped before setup()")
        vals = self._values
        n_in = self._n_inputs
        if not math.isfinite(sum(vals[:n_in]) + vals[self._i_belt] + vals[self._i_push] + vals[self._i_ram]):
            self._check_inputs()
        t0, h = self.grid.interval(tick, n_ticks)
        try:
            self._before(t0)
        except pybullet.error as exc:
            raise UnitError(self.name, "step", str(exc)) from None
        # BulletArm.step without its input check (done above; _before sets outputs only):
        # sub-steps through _simulate, then the arm's outputs
        self._drive(vals[:n_in], self._substeps_for(tick, n_ticks))
        try:
            self._update(t0 + h, h, count=True)
        except pybullet.error as exc:
            raise UnitError(self.name, "step", str(exc)) from None

    def _check_inputs(self) -> None:
        """Raise :class:`NonFiniteValueError` for the first non-finite input (arm, then scene)."""
        vals = self._values
        if not math.isfinite(sum(vals[: self._n_inputs])):
            self._raise_non_finite("step", 0, self._n_inputs, "input")
        for i in (self._i_belt, self._i_push, self._i_ram):
            if not math.isfinite(vals[i]):
                names = list(self._variables)
                raise NonFiniteValueError(self.name, "step", f"non-finite input value: {names[i]}={vals[i]!r}")

    def _before(self, t: float) -> None:
        """Discrete actions at the start of a step: feeder, eject, suction, kinematic targets."""
        sim = self._sim
        assert sim is not None
        vals = self._values
        # feeder: a rising pusher releases the next parked part onto the belt start
        high = float(vals[self._i_push]) > self.release_threshold
        if high and not sim.pusher_high:
            self._release(t)
        sim.pusher_high = high
        # eject: a rising edge removes the part at the inspection spot
        eject = bool(vals[self._i_eject])
        if eject and not sim.eject_prev:
            for p in sim.parts:
                if p.where == INSPECT:
                    self._event(t, "eject", f"part {p.pid} quality={self._true_quality(p):.4f}")
                    self._park(p)
                    vals[self._index["parts_ejected"]] += 1
                    break
        sim.eject_prev = eject
        # suction
        suction = bool(vals[self._i_suction])
        if sim.held >= 0 and not suction:
            sim.parts[sim.held].where = LOOSE
            sim.held, sim.attach = -1, None
        elif sim.held < 0 and suction:
            self._try_grasp()
        if sim.held >= 0:
            held_body = sim.parts[sim.held].body
            if held_body in sim.carried:
                sim.carried = tuple(b for b in sim.carried if b != held_body)

    def _release(self, t: float) -> None:
        sim = self._sim
        assert sim is not None
        hx, _hy, hz = self._half
        by = self.belt_start[1]
        for p in sim.parts:
            if p.where not in (PARKED, HELD) and abs(p.pos[0] - self.entry_eye_x) < 2 * hx + 0.005 \
                    and abs(p.pos[1] - by) < self.belt_width and p.pos[2] < self.part_top_z + 0.05:
                self._event(t, "feeder_jam", f"part {p.pid} still at the belt start")
                return
        free = [p for p in sim.parts if p.where == PARKED]
        if not free:
            self._event(t, "feeder_empty", "every part of the pool is in the cell")
            return
        p = free[0]
        q = float(np.clip(sim.rng.normal(self.quality_mean, self.quality_std), 0.0, 1.0))
        dy = float(sim.rng.uniform(-self.release_offset, self.release_offset))
        pos = (self.entry_eye_x, by + dy, self.work_height + hz + 0.0005)
        self._reset_pose(p.body, pos, (0, 0, 0, 1))
        self._reset_vel(p.body, (0, 0, 0), (0, 0, 0))
        p.pid, sim.next_pid = sim.next_pid, sim.next_pid + 1
        p.quality, p.pressed, p.where, p.rest_time, p.pos = q, False, BELT, 0.0, pos
        sim.carried = (*sim.carried, p.body)
        self._values[self._index["parts_released"]] += 1
        self._event(t, "release", f"part {p.pid} quality={q:.4f} offset={dy:+.4f}")

    def _try_grasp(self) -> None:
        sim = self._sim
        assert sim is not None
        ls = self._link_state(self._body, self.tool_link, 0, 1)
        tool_pos, tool_orn = ls[4], ls[5]
        tip = pybullet.multiplyTransforms(tool_pos, tool_orn, self.tool_offset, (0, 0, 0, 1))[0]
        inv_tool = pybullet.invertTransform(tool_pos, tool_orn)
        best = None
        for p in sim.parts:
            if p.where in (PARKED, HELD) or math.dist(p.pos, tip) > 0.1:
                continue
            pos, orn = self._get_pose(p.body)
            inv_pos, inv_orn = pybullet.invertTransform(pos, orn)
            local = pybullet.multiplyTransforms(inv_pos, inv_orn, tip, (0, 0, 0, 1))[0]
            # which face points at the tip: the axis with the largest |local / half| ratio
            ratios = [abs(local[k]) / self._half[k] for k in range(3)]
            k = max(range(3), key=ratios.__getitem__)
            gap = abs(local[k]) - self._half[k]
            lateral_ok = all(abs(local[j]) <= self._half[j] - 0.003 for j in range(3) if j != k)
            if lateral_ok and -0.005 <= gap <= self.grasp_distance and (best is None or gap < best[0]):
                best = (gap, p, pos, orn)
        if best is None:
            return
        _, p, pos, orn = best
        rel_pos, rel_orn = pybullet.multiplyTransforms(inv_tool[0], inv_tool[1], pos, orn)
        # pull the part up against the cup: its extent along the tool axis below the tip + 1 mm
        m = pybullet.getMatrixFromQuaternion(rel_orn)
        depth = sum(abs(m[6 + j]) * self._half[j] for j in range(3))
        rel_pos = (rel_pos[0], rel_pos[1], self.tool_offset[2] + 0.001 + depth)
        sim.held, sim.attach = p.slot, (rel_pos, rel_orn)
        p.where, p.rest_time = HELD, 0.0

    def _simulate(self, k: int) -> None:
        sim = self._sim
        assert sim is not None
        vals = self._values
        ram_to = self.ram_height(float(vals[self._i_ram]))
        ram_from = sim.ram_z
        px, py = self.press_position
        pusher = self._pusher_target()
        if pusher != sim.pusher_y:  # visual only: once per step
            sim.pusher_y = pusher
            self._reset_pose(self.pusher_id, (self.entry_eye_x, pusher, self.work_height + self._half[2]),
                             (0, 0, 0, 1))
        # the belt surface is frictionless: the prescribed velocity holds through the sub-steps
        speed = float(vals[self._i_belt])
        for body in sim.carried:
            self._reset_vel(body, (speed, 0.0, self._get_vel(body)[0][2]))
        held_body = sim.parts[sim.held].body if sim.held >= 0 else -1
        if held_body >= 0:
            rel_pos, rel_orn = sim.attach  # type: ignore[misc]
        step_sim, reset_pose, reset_vel = self._step_sim, self._reset_pose, self._reset_vel
        link_state, arm, tool = self._link_state, self._body, self.tool_link
        multiply = pybullet.multiplyTransforms
        ram_id, ram_half = self.ram_id, self._ram_len / 2
        for s in range(k):
            if ram_to != ram_from:
                z = ram_from + (ram_to - ram_from) * (s + 1) / k
                reset_pose(ram_id, (px, py, z + ram_half), (0, 0, 0, 1))
            if held_body >= 0:
                ls = link_state(arm, tool, 1, 1)
                pos, orn = multiply(ls[4], ls[5], rel_pos, rel_orn)
                com, v, w = ls[0], ls[6], ls[7]
                r = (pos[0] - com[0], pos[1] - com[1], pos[2] - com[2])
                vel = (v[0] + w[1] * r[2] - w[2] * r[1], v[1] + w[2] * r[0] - w[0] * r[2],
                       v[2] + w[0] * r[1] - w[1] * r[0])
                reset_pose(held_body, pos, orn)
                reset_vel(held_body, vel, w)
            step_sim()
        sim.ram_z = ram_to

    # ------------------------------------------------------------------ sensing
    def _true_quality(self, p: Part) -> float:
        return p.quality if p.pressed else p.quality * self.unpressed_quality_factor

    def _update(self, t: float, h: float, *, count: bool) -> None:
        """Read the world once, classify the parts, apply drops/presses/collisions, set outputs."""
        sim = self._sim
        assert sim is not None
        vals = self._values
        ix = self._index
        w, zmax, carry_z, hx, x0, x1, by, bw, entry_x, eye_x, px, py, pocket, ipx, ipy = self._sensing
        get_pose = self._get_pose
        ram_s = float(vals[self._i_ram]) / self.press_stroke
        at_entry = at_pick = fixture = False
        pick_x = 0.0
        inspect_part: Part | None = None
        carried: list[int] = []
        for p in sim.parts:
            if p.where == PARKED:
                if count:  # free fall since parked: put it back up now and then (no query needed)
                    p.rest_time += h
                    if p.rest_time >= _PARK_AFTER:
                        self._park(p)
                continue
            pos = get_pose(p.body)[0]
            p.pos = pos
            if p.where == HELD:
                continue
            x, y, z = pos
            if x0 <= x <= x1 and abs(y - by) <= bw and w <= z <= zmax:
                where = BELT
                if z <= carry_z:
                    carried.append(p.body)
                if abs(x - entry_x) <= hx:
                    at_entry = True
                if abs(x - eye_x) <= hx:
                    at_pick = True
                    pick_x = max(pick_x, x) if pick_x else x
            elif abs(x - px) <= pocket and abs(y - py) <= pocket and w <= z <= zmax:
                where = FIXTURE
                fixture = True
            elif abs(x - ipx) <= 0.03 and abs(y - ipy) <= 0.03 and w <= z <= zmax:
                where = INSPECT
                if inspect_part is None:
                    inspect_part = p
            else:
                where = LOOSE
            p.where = where
            if not count:
                continue
            if where == LOOSE:
                dropped = z < self.drop_height
                if not dropped:
                    lin = self._get_vel(p.body)[0]
                    if lin[0] * lin[0] + lin[1] * lin[1] + lin[2] * lin[2] < 1e-4:
                        p.rest_time += h
                    else:
                        p.rest_time = 0.0
                    dropped = p.rest_time >= self.rest_time - 1e-9
                if dropped:
                    self._event(t, "drop", f"part {p.pid} at ({x:.3f}, {y:.3f}, {z:.3f})")
                    vals[ix["parts_dropped"]] += 1
                    self._park(p)
                    if p.body in carried:
                        carried.remove(p.body)
            else:
                p.rest_time = 0.0
                if where == FIXTURE and not p.pressed and ram_s >= 0.9 - 1e-12:
                    p.pressed = True
                    vals[ix["parts_pressed"]] += 1
                    self._event(t, "press", f"part {p.pid}")
        sim.carried = tuple(carried)

        # arm contacts with station bodies (one query for the whole arm)
        touching: dict[str, int] = {}
        stations = self._stations
        for cp in self._contacts(bodyA=self._body):
            station = stations.get(cp[2])
            if station is not None and station not in touching:
                touching[station] = cp[3]
        current = frozenset(touching)
        if count and not current <= sim.contacts:
            for station in sorted(current - sim.contacts):
                link = touching[station]
                link_name = self.link_names[link] if link >= 0 else "base"
                vals[ix["arm_collisions"]] += 1
                self._event(t, "collision", f"arm link '{link_name}' hit the {station}")
        sim.contacts = current

        # light curtain: any arm link whose bounding box enters the zone. Bounding boxes make
        # the curtain slightly conservative (it trips a little early), as a safety sensor should;
        # an exact distance query would cost ~100 us per step whenever the arm is near.
        hits = self._overlap(*self._zone_aabb)
        arm = self._body
        zone = bool(hits) and any(b == arm for b, _ in hits)

        o = self._s_out0
        vals[o:o + 9] = (at_entry, at_pick, fixture, inspect_part is not None,
                         bool(vals[self._i_suction]) and sim.held >= 0, zone, "ram" in current,
                         self._true_quality(inspect_part) if inspect_part is not None else 0.0, pick_x)

    def refresh(self) -> None:
        """Re-read the arm and the scene sensors (after changing the world through :attr:`client`)."""
        super().refresh()
        if self._sim is not None:
            self._update(0.0, 0.0, count=False)

    # ------------------------------------------------------------------ get / set
    def _resolve_input(self, name: str) -> int:
        i = self._resolve(name)
        if i < self._n_inputs or self._s_in0 <= i < self._s_out0:
            return i
        inputs = [v.name for v in self._variables.values() if v.causality is Causality.INPUT]
        raise ConfigurationError(
            f"unit '{self.name}': variable '{name}' is an output and cannot be set; inputs: {', '.join(inputs)}"
        )

    def set(self, names: Sequence[str], values: Sequence[Value]) -> None:
        idx = [self._resolve_input(n) for n in names]
        if len(idx) != len(values):
            raise ConfigurationError(f"unit '{self.name}': set() got {len(idx)} names but {len(values)} values")
        vals, coerce = self._values, self._coerce
        for i, v in zip(idx, values, strict=True):
            vals[i] = coerce[i](v)

    def writer(self, names: Sequence[str]) -> Writer:
        idx = [self._resolve_input(n) for n in names]
        vals = self._values
        pairs = [(k, i, self._coerce[i]) for k, i in enumerate(idx)]

        def write(values: Sequence[Value]) -> None:
            for k, i, conv in pairs:
                vals[i] = conv(values[k])

        return write

    # ------------------------------------------------------------------ state
    def save_state(self) -> CellSceneState:
        if self._sim is None:
            raise SnapshotError(f"unit '{self.name}': save_state before setup()")
        return CellSceneState(super().save_state(), copy.deepcopy(self._sim))

    def restore_state(self, state: Any) -> None:
        if not isinstance(state, CellSceneState):
            raise SnapshotError(f"unit '{self.name}': cannot restore a state that this scene did not save")
        super().restore_state(state.arm)
        self._sim = copy.deepcopy(state.sim)
        self._apply_kinematic()

    def release_state(self, state: Any) -> None:
        if isinstance(state, CellSceneState):
            super().release_state(state.arm)

    # portable state (export_state / import_state of BulletArm): the world, values and _Sim
    _PORTABLE_CONFIG = (
        "tool_link_name", "tool_offset", "work_height", "belt_start", "belt_end", "belt_width",
        "pick_eye_offset", "press_position", "press_stroke", "ram_open_height", "press_zone_half",
        "inspect_position", "part_size", "part_mass", "n_parts", "release_threshold", "release_offset",
        "quality_mean", "quality_std", "unpressed_quality_factor", "grasp_distance", "rest_time",
    )

    def _portable_identity(self) -> dict[str, Any]:
        # the seed is not part of the identity: the generator's state travels with the state
        identity = super()._portable_identity()
        identity["scene"] = {k: getattr(self, k) for k in self._PORTABLE_CONFIG}
        return identity

    def _python_state(self) -> dict[str, Any]:
        if self._sim is None:
            raise SnapshotError(f"unit '{self.name}': export_state before setup()")
        return {**super()._python_state(), "sim": self._sim}

    def _check_python_state(self, state: Any) -> None:
        super()._check_python_state(state)
        sim = state.get("sim")
        if not isinstance(sim, _Sim) or len(sim.parts) != self.n_parts \
                or [p.body for p in sim.parts] != list(self.part_ids):
            raise SnapshotError(f"unit '{self.name}': corrupt portable state (scene parts)")

    def _load_python_state(self, state: dict[str, Any]) -> None:
        super()._load_python_state(state)
        self._sim = state["sim"]
        self._apply_kinematic()

    # ------------------------------------------------------------------ rendering support
    def sync_colors(self) -> None:
        """Colour parts by state (orange raw, green pressed); only needed before rendering."""
        if self._sim is None:
            return
        c = self.client
        for p in self._sim.parts:
            color = _PRESSED_COLOR if p.pressed else _RAW_COLOR
            if self._part_colors[p.slot] != color:
                c.changeVisualShape(p.body, -1, rgbaColor=list(color))
                self._part_colors[p.slot] = color

    def __repr__(self) -> str:
        return f"<CellScene '{self.name}' robot={self.robot!r}>"
