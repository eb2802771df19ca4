"""PLC logic of the cell: a scan-cycle program with interlocks and a safe state.

The PLC reads sensors and writes actuators only through its own variables (connections in
the plant); it never touches another unit. Each scan (one step of the unit) runs, in order:
mode handling, the infeed sequence, the handling sequence (pick → press → inspect → eject),
then the interlocks, which have the last word on every actuator output.

Interlocks:
  * the press valve may not close while the light curtain sees the arm in the press zone,
    or while the robot is commanded to a press-zone waypoint;
  * the robot may not be commanded into the press zone unless the press is open and its
    valve is off (the robot then holds its previous command).
Safe state (``safe_mode_cmd`` from the HMI or the containment layer): robot home, conveyor
and feeder stopped, press valve off (press opens), no eject; the sequence is frozen and
resumes where it stopped when safe mode is released.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from cosim.core.unit import PythonUnit, real
from cosim.core.variables import Causality, Variable, VarType
from cosim.errors import ConfigurationError


def _b(name: str, causality: str, start: bool = False, description: str = "") -> Variable:
    return Variable(name, Causality(causality), VarType.BOOLEAN, start, "", description)


def _i(name: str, causality: str, start: int = 0, description: str = "") -> Variable:
    return Variable(name, Causality(causality), VarType.INTEGER, start, "", description)


class Mode(IntEnum):
    STOP = 0
    AUTO = 1
    MANUAL = 2


class Step(IntEnum):
    IDLE = 0
    PICK_APPROACH = 1
    PICK_DESCEND = 2
    PICK_GRIP = 3
    PICK_LIFT = 4
    TO_PRESS = 5
    PLACE_DESCEND = 6
    PLACE_RELEASE = 7
    PLACE_RETREAT = 8
    CLEAR_PRESS = 9
    PRESS_CLOSE = 10
    PRESS_DWELL = 11
    PRESS_OPEN = 12
    UNLOAD_APPROACH = 13
    UNLOAD_DESCEND = 14
    UNLOAD_GRIP = 15
    UNLOAD_LIFT = 16
    TO_INSPECT = 17
    INSPECT_DESCEND = 18
    INSPECT_RELEASE = 19
    INSPECT_RETREAT = 20
    WAIT_RESULT = 21
    EJECT = 22


# robot moves: step -> (waypoint role, next step)
_MOVES = {
    Step.PICK_APPROACH: ("above_pick", Step.PICK_DESCEND),
    Step.PICK_DESCEND: ("pick", Step.PICK_GRIP),
    Step.PICK_LIFT: ("above_pick", Step.TO_PRESS),
    Step.TO_PRESS: ("above_fixture", Step.PLACE_DESCEND),
    Step.PLACE_DESCEND: ("fixture", Step.PLACE_RELEASE),
    Step.PLACE_RETREAT: ("above_fixture", Step.CLEAR_PRESS),
    Step.UNLOAD_APPROACH: ("above_fixture", Step.UNLOAD_DESCEND),
    Step.UNLOAD_DESCEND: ("fixture", Step.UNLOAD_GRIP),
    Step.UNLOAD_LIFT: ("above_fixture", Step.TO_INSPECT),
    Step.TO_INSPECT: ("above_inspect", Step.INSPECT_DESCEND),
    Step.INSPECT_DESCEND: ("inspect", Step.INSPECT_RELEASE),
    Step.INSPECT_RETREAT: ("above_inspect", Step.WAIT_RESULT),
}
ROLES = ("home", "above_pick", "pick", "above_fixture", "fixture", "above_inspect", "inspect")


class CellPLC(PythonUnit):
    """Scan-cycle control of feeder, conveyor, robot, press, inspection and outfeed.

    Args:
        name: unit name.
        waypoints: the robot controller's waypoint names in number order; must include
            ``home, above_pick, pick, above_fixture, fixture, above_inspect, inspect``.
        press_zone: waypoint names inside the press zone.
        grip_timeout, place_timeout, result_timeout: seconds before a wait raises an alarm.
        settle_time: seconds to let a released part come to rest.
        eject_time: seconds the eject command is held.
    """

    def __init__(self, name: str, waypoints: Sequence[str],
                 press_zone: Sequence[str] = ("above_fixture", "fixture"),
                 grip_timeout: float = 3.0, place_timeout: float = 3.0, result_timeout: float = 5.0,
                 press_timeout: float = 5.0, settle_time: float = 0.3, eject_time: float = 0.3,
                 conveyor_speed_sp: float = 0.8, press_time_sp: float = 1.0) -> None:
        names = list(waypoints)
        missing = [r for r in ROLES if r not in names]
        if missing:
            raise ConfigurationError(f"unit '{name}': waypoints lack {missing}; got {names}")
        unknown = [z for z in press_zone if z not in names]
        if unknown:
            raise ConfigurationError(f"unit '{name}': press_zone names unknown waypoints {unknown}")
        self.wp = {n: i for i, n in enumerate(names)}
        self.press_zone_ids = {self.wp[z] for z in press_zone}
        variables = [
            # sensors
            _b("pusher_extended", "input"), _b("pusher_retracted", "input", True), _b("magazine_empty", "input"),
            _b("part_at_entry", "input"), _b("part_at_pick", "input"), _b("fixture_occupied", "input"),
            _b("inspect_present", "input"), _b("part_held", "input"), _b("press_zone_occupied", "input"),
            _b("open_switch", "input", True), _b("closed_switch", "input"),
            real("pressure_meas", "input", 0.0, "bar"), real("speed_meas", "input", 0.0, "m/s"),
            _b("pass_signal", "input"), _b("reject_signal", "input"), _i("inspections_done", "input"),
            _b("at_target", "input", True), _i("pos_id", "input"),
            # operator commands (HMI)
            _i("mode_cmd", "input", int(Mode.AUTO)), _b("safe_mode_cmd", "input"), _b("reset_cmd", "input"),
            real("conveyor_speed_sp", "input", conveyor_speed_sp, "1"),
            real("press_time_sp", "input", press_time_sp, "s"),
            _b("manual_press_cmd", "input"), _i("manual_robot_cmd", "input", -1), _b("manual_suction_cmd", "input"),
            # actuators
            _b("release_cmd", "output"), real("motor_cmd", "output", 0.0, "1"), _b("valve_cmd", "output"),
            _i("robot_cmd", "output", self.wp["home"]), _b("suction_cmd", "output"), _b("eject_cmd", "output"),
            # status
            _i("mode", "output", int(Mode.AUTO)), _i("state", "output"), _i("alarm", "output"),
            _i("parts_good", "output"), _i("parts_rejected", "output"), _i("interlock_trips", "output"),
            _b("safe_state", "output"), _b("producing", "output"),
        ]
        super().__init__(name, variables)
        self.grip_timeout, self.place_timeout = float(grip_timeout), float(place_timeout)
        self.result_timeout, self.press_timeout = float(result_timeout), float(press_timeout)
        self.settle_time, self.eject_time = float(settle_time), float(eject_time)
        self.step_no = Step.IDLE
        self.step_since = 0.0
        self.feed_state = 0  # 0 ready, 1 extending, 2 retracting
        self.in_transit = 0  # parts released and not yet picked
        self.results_seen = 0
        self.valve_blocked = False
        self.robot_blocked = False
        self.robot_req = self.wp["home"]
        self.valve_req = False
        self.suction_req = False
        self.eject_req = False
        self.release_req = False
        self.motor_req = 0.0

    # helpers -------------------------------------------------------------------------
    def _goto(self, step: Step, t: float) -> None:
        self.step_no = step
        self.step_since = t

    def _elapsed(self, t: float) -> float:
        return t - self.step_since

    def _alarm(self, code: int) -> None:
        if self.values["alarm"] == 0:
            self.values["alarm"] = code

    # the scan ------------------------------------------------------------------------
    def do_step(self, t: float, h: float) -> None:
        v = self.values
        if v["reset_cmd"]:
            v["alarm"] = 0
            self.step_since = t  # give the current step its full timeout again
        mode = Mode(v["mode_cmd"]) if v["mode_cmd"] in (0, 1, 2) else Mode.STOP
        v["mode"] = int(mode)
        safe = bool(v["safe_mode_cmd"])
        running = mode is Mode.AUTO and not safe and v["alarm"] == 0
        if running:
            self._handling(t)  # first: a pick in this scan frees the belt for the infeed
            self._infeed()
        else:
            self.step_since += h  # sequence timers are frozen while not running
            self.release_req = False
            self.motor_req = 0.0
            self.eject_req = False
            if mode is Mode.MANUAL and not safe:
                self.valve_req = bool(v["manual_press_cmd"])
                self.suction_req = bool(v["manual_suction_cmd"])
                if v["manual_robot_cmd"] >= 0:
                    self.robot_req = int(v["manual_robot_cmd"])
            else:
                self.valve_req = False
        if safe:
            self.robot_req = self.wp["home"]
        self._interlocks()
        v["state"] = int(self.step_no)
        v["producing"] = running
        v["safe_state"] = bool(
            v["pos_id"] == self.wp["home"] and v["at_target"] and v["open_switch"]
            and not v["valve_cmd"] and abs(v["speed_meas"]) < 0.02 and not v["release_cmd"]
        )

    def _infeed(self) -> None:
        v = self.values
        if self.feed_state == 0:
            self.release_req = False
            if self.in_transit == 0 and not v["magazine_empty"] and not v["part_at_entry"] \
                    and not v["part_at_pick"] and v["pusher_retracted"]:
                self.feed_state = 1
                self.release_req = True
        elif self.feed_state == 1:
            self.release_req = True
            if v["pusher_extended"]:
                self.in_transit += 1
                self.feed_state = 2
                self.release_req = False
        elif self.feed_state == 2:
            self.release_req = False
            if v["pusher_retracted"]:
                self.feed_state = 0
        self.motor_req = v["conveyor_speed_sp"] if self.in_transit > 0 and not v["part_at_pick"] else 0.0

    def _handling(self, t: float) -> None:
        v = self.values
        step = self.step_no
        wp = self.wp
        if step is Step.IDLE:
            self.robot_req = wp["home"]
            at_home = v["at_target"] and v["pos_id"] == wp["home"]  # every transfer passes home
            if at_home and v["part_at_pick"] and not v["fixture_occupied"] and not v["inspect_present"] \
                    and v["open_switch"]:
                self._goto(Step.PICK_APPROACH, t)
        elif step in _MOVES:
            role, nxt = _MOVES[step]
            self.robot_req = wp[role]
            if v["at_target"] and v["pos_id"] == wp[role] and not self.robot_blocked:
                if nxt is Step.INSPECT_DESCEND:
                    self.results_seen = v["inspections_done"]  # before the part reaches the camera
                self._goto(nxt, t)
        elif step is Step.PICK_GRIP or step is Step.UNLOAD_GRIP:
            self.suction_req = True
            if v["part_held"]:
                if step is Step.PICK_GRIP:
                    self.in_transit = max(0, self.in_transit - 1)
                self._goto(Step.PICK_LIFT if step is Step.PICK_GRIP else Step.UNLOAD_LIFT, t)
            elif self._elapsed(t) > self.grip_timeout:
                self._alarm(int(step))
        elif step is Step.PLACE_RELEASE or step is Step.INSPECT_RELEASE:
            self.suction_req = False
            sensed = v["fixture_occupied"] if step is Step.PLACE_RELEASE else v["inspect_present"]
            if not v["part_held"] and sensed and self._elapsed(t) >= self.settle_time:
                self._goto(Step.PLACE_RETREAT if step is Step.PLACE_RELEASE else Step.INSPECT_RETREAT, t)
            elif self._elapsed(t) > self.place_timeout:
                self._alarm(int(step))
        elif step is Step.CLEAR_PRESS:
            self.robot_req = wp["home"]
            if v["at_target"] and v["pos_id"] == wp["home"] and not v["press_zone_occupied"]:
                self._goto(Step.PRESS_CLOSE, t)
        elif step is Step.PRESS_CLOSE:
            self.valve_req = True
            if v["closed_switch"]:
                self._goto(Step.PRESS_DWELL, t)
            elif self._elapsed(t) > self.press_timeout:
                self._alarm(int(step))
        elif step is Step.PRESS_DWELL:
            self.valve_req = True
            if self._elapsed(t) >= v["press_time_sp"]:
                self._goto(Step.PRESS_OPEN, t)
        elif step is Step.PRESS_OPEN:
            self.valve_req = False
            if v["open_switch"]:
                self._goto(Step.UNLOAD_APPROACH, t)
            elif self._elapsed(t) > self.press_timeout:
                self._alarm(int(step))
        elif step is Step.WAIT_RESULT:
            self.robot_req = wp["home"]
            if v["inspections_done"] > self.results_seen and (v["pass_signal"] or v["reject_signal"]):
                if v["pass_signal"]:
                    v["parts_good"] += 1
                else:
                    v["parts_rejected"] += 1
                self.results_seen = v["inspections_done"]
                self._goto(Step.EJECT, t)
            elif self._elapsed(t) > self.result_timeout:
                self._alarm(int(step))
        elif step is Step.EJECT:
            self.eject_req = self._elapsed(t) < self.eject_time
            if not self.eject_req and not v["inspect_present"]:
                self._goto(Step.IDLE, t)

    def _interlocks(self) -> None:
        v = self.values
        robot_to_zone = self.robot_req in self.press_zone_ids
        press_safe_for_robot = v["open_switch"] and not v["valve_cmd"] and not self.valve_req
        blocked = robot_to_zone and not press_safe_for_robot and v["robot_cmd"] != self.robot_req
        if blocked:
            if not self.robot_blocked:
                v["interlock_trips"] += 1
            # hold the previous command: never move into a closing or closed press
        else:
            v["robot_cmd"] = self.robot_req
        self.robot_blocked = blocked
        arm_in_zone = v["press_zone_occupied"] or v["robot_cmd"] in self.press_zone_ids
        valve_blocked = self.valve_req and arm_in_zone
        if valve_blocked and not self.valve_blocked:
            v["interlock_trips"] += 1
        self.valve_blocked = valve_blocked
        v["valve_cmd"] = self.valve_req and not arm_in_zone
        v["suction_cmd"] = self.suction_req
        v["eject_cmd"] = self.eject_req
        v["release_cmd"] = self.release_req
        v["motor_cmd"] = self.motor_req
