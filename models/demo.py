"""A small sequencer that drives the demo plant through a repeating work cycle.

It stands in for PLC logic until the smart-factory cell has its own: the conveyor runs, the
arm swings from a pick pose to a place pose and back, the press closes once the arm has left,
and the inspection station sees a part while the press is open. All through connections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cosim.core.unit import PythonUnit, real
from cosim.core.variables import Causality, Variable, VarType


class DemoSequencer(PythonUnit):
    """Open-loop work cycle of ``cycle_s`` seconds.

    Phases (fractions of the cycle): conveyor runs in [0, 0.4); arm moves pick→place in
    [0.1, 0.4) and back in [0.7, 1.0); press commanded closed in [0.45, 0.65).

    Args:
        pick_pose, place_pose: arm joint targets (one value per arm joint).
        cycle_s: cycle period in seconds.
        part_quality: true quality of every part handed to the inspection station.
    """

    def __init__(self, name: str, pick_pose: Sequence[float], place_pose: Sequence[float],
                 cycle_s: float = 6.0, conveyor_cmd: float = 0.8, part_quality: float = 0.9) -> None:
        if len(pick_pose) != len(place_pose) or not pick_pose:
            raise ValueError("pick_pose and place_pose need the same, non-zero number of joints")
        variables = [
            real("motor_cmd", "output", 0.0, "1", "conveyor motor command"),
            Variable("valve_cmd", Causality.OUTPUT, VarType.BOOLEAN, False, "", "press valve: close"),
            Variable("part_present", Causality.OUTPUT, VarType.BOOLEAN, False),
            real("part_quality", "output", part_quality),
            *[real(f"q_target_{i}", "output", float(q)) for i, q in enumerate(pick_pose)],
        ]
        super().__init__(name, variables)
        self.pick = [float(q) for q in pick_pose]
        self.place = [float(q) for q in place_pose]
        self.cycle_s = float(cycle_s)
        self.conveyor_cmd = float(conveyor_cmd)

    def do_step(self, t: float, h: float) -> None:
        phase = ((t + h) % self.cycle_s) / self.cycle_s
        v = self.values
        v["motor_cmd"] = self.conveyor_cmd if phase < 0.4 else 0.0
        v["valve_cmd"] = 0.45 <= phase < 0.65
        v["part_present"] = 0.4 <= phase < 0.7
        if phase < 0.1:
            s = 0.0
        elif phase < 0.4:
            s = 0.5 - 0.5 * math.cos(math.pi * (phase - 0.1) / 0.3)
        elif phase < 0.7:
            s = 1.0
        else:
            s = 0.5 + 0.5 * math.cos(math.pi * (phase - 0.7) / 0.3)
        for i, (a, b) in enumerate(zip(self.pick, self.place, strict=True)):
            v[f"q_target_{i}"] = a + (b - a) * s
