"""Inspection (vision) station, written in Python and exported as an FMI 2.0 CS FMU with pythonfmu.

It shows that an FMU from another toolchain drops into the plant next to the C station
FMUs. Build it with ``python -m models.build inspection`` (or ``build_fmu("inspection")``).

Behaviour:

* A part arrives when ``part_present`` goes true. At the end of the first step after
  which it has been present for ``inspection_time`` seconds (inputs are held over a
  step, so with 0.0 that is the arrival step) the camera measures it once:
  ``measured_quality = clip(part_quality + N(0, noise_std), 0, 1)``,
  ``pass_signal = measured_quality >= threshold``, ``reject_signal = not pass_signal``,
  and ``inspections_done`` is incremented.
* While the part stays, the verdict is held; when it leaves (``part_present`` false)
  both signals drop to false and ``measured_quality`` keeps the last measurement.
* The noise of inspection number n is drawn from a generator seeded with
  ``(seed, n)`` only, so results are reproducible, independent of the step size, and
  the FMU state is just the variables plus three hidden fields (saved with the state).

This file must stay importable on its own (it is copied into the FMU's resources):
stdlib and pythonfmu only.
"""

from __future__ import annotations

import math
import random
from typing import Any

from pythonfmu import Boolean, Fmi2Causality, Fmi2Slave, Fmi2Variability, Integer, Real

_TIME_EPS = 1e-9  # tolerance when comparing accumulated presence time with inspection_time


class InspectionStation(Fmi2Slave):
    author = "cosim"
    description = "Vision inspection station: measures part quality with noise and signals pass/reject"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.modelName = "inspection"  # model identifier and binary name

        # inputs
        self.part_present = False
        self.part_quality = 1.0
        # parameters
        self.threshold = 0.8
        self.noise_std = 0.02
        self.inspection_time = 0.1
        self.seed = 0
        # outputs
        self.measured_quality = 0.0
        self.pass_signal = False
        self.reject_signal = False
        self.inspections_done = 0
        # hidden state (not FMI variables, but part of the FMU state)
        self._present_for = 0.0
        self._inspected = False
        self._was_present = False

        inp, par, out = Fmi2Causality.input, Fmi2Causality.parameter, Fmi2Causality.output
        self.register_variable(
            Boolean(
                "part_present",
                causality=inp,
                variability=Fmi2Variability.discrete,
                description="A part is in the inspection position",
            )
        )
        self.register_variable(
            Real(
                "part_quality",
                causality=inp,
                variability=Fmi2Variability.continuous,
                description="True quality of the part in position, 0..1",
            )
        )
        self.register_variable(
            Real(
                "threshold",
                causality=par,
                variability=Fmi2Variability.tunable,
                description="Pass if measured_quality >= threshold",
            )
        )
        self.register_variable(
            Real(
                "noise_std",
                causality=par,
                variability=Fmi2Variability.fixed,
                description="Standard deviation of the measurement noise",
            )
        )
        self.register_variable(
            Real(
                "inspection_time",
                causality=par,
                variability=Fmi2Variability.fixed,
                description="Seconds a part must be present before it is measured [s]",
            )
        )
        self.register_variable(
            Integer(
                "seed",
                causality=par,
                variability=Fmi2Variability.fixed,
                description="Seed of the measurement noise",
            )
        )
        self.register_variable(
            Real(
                "measured_quality",
                causality=out,
                variability=Fmi2Variability.discrete,
                description="Last measured quality, 0..1",
            )
        )
        self.register_variable(
            Boolean(
                "pass_signal",
                causality=out,
                variability=Fmi2Variability.discrete,
                description="The part in position passed",
            )
        )
        self.register_variable(
            Boolean(
                "reject_signal",
                causality=out,
                variability=Fmi2Variability.discrete,
                description="The part in position is to be rejected",
            )
        )
        self.register_variable(
            Integer(
                "inspections_done",
                causality=out,
                variability=Fmi2Variability.discrete,
                description="Number of parts measured",
            )
        )

    # ------------------------------------------------------------------ behaviour

    def _noise(self, n: int) -> float:
        if self.noise_std <= 0.0:
            return 0.0
        return random.Random(f"inspection:{int(self.seed)}:{n}").gauss(0.0, self.noise_std)

    def _inspect(self) -> None:
        q = float(self.part_quality) + self._noise(int(self.inspections_done))
        if math.isnan(q):
            q = 0.0  # an unreadable measurement is treated as worst quality
        self.measured_quality = min(1.0, max(0.0, q))
        self.pass_signal = self.measured_quality >= self.threshold
        self.reject_signal = not self.pass_signal
        self.inspections_done = int(self.inspections_done) + 1
        self._inspected = True

    def do_step(self, current_time: float, step_size: float) -> bool:
        present = bool(self.part_present)
        if present:
            if not self._was_present:  # a new part arrived
                self._present_for = 0.0
                self._inspected = False
            self._present_for += step_size  # inputs are held over the step
            if not self._inspected and self._present_for + _TIME_EPS >= self.inspection_time:
                self._inspect()
        else:
            self.pass_signal = False
            self.reject_signal = False
            self._present_for = 0.0
            self._inspected = False
        self._was_present = present
        return True

    # ------------------------------------------------------------------ FMU state

    def _get_fmu_state(self) -> dict[str, Any]:
        state = super()._get_fmu_state()  # all FMI variables
        state.update(
            _present_for=self._present_for, _inspected=self._inspected, _was_present=self._was_present
        )
        return state

    def _set_fmu_state(self, state: dict[str, Any]) -> None:
        super()._set_fmu_state(state)  # variables via their setters, other keys via setattr
