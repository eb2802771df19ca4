"""Shared fixtures: small Python units with known discrete behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from cosim import Causality, PythonUnit, Variable, VarType
from cosim.core.unit import real


class Integrator(PythonUnit):
    """y(t+h) = y(t) + k * u * h (exact under a held input)."""

    VARIABLES = (real("u", "input"), real("y", "output"), real("k", "parameter", 1.0),
                 real("y0", "parameter", 0.0))

    def initialize(self) -> None:
        self.values["y"] = self.values["y0"]

    def do_step(self, t: float, h: float) -> None:
        v = self.values
        v["y"] = v["y"] + v["k"] * v["u"] * h


class Clock(PythonUnit):
    """Outputs the time at which it last stepped to, and counts its steps."""

    VARIABLES = (real("t", "output"), Variable("n", Causality.OUTPUT, VarType.INTEGER, 0))

    def do_step(self, t: float, h: float) -> None:
        self.values["t"] = t + h
        self.values["n"] += 1


class Noisy(PythonUnit):
    """Random walk driven by an input; its generator is part of its state."""

    VARIABLES = (real("u", "input"), real("y", "output"))

    def __init__(self, name: str, seed: int = 0) -> None:
        super().__init__(name)
        self.rng = np.random.default_rng(seed)

    def do_step(self, t: float, h: float) -> None:
        self.values["y"] += self.values["u"] * h + float(self.rng.normal(0.0, 0.1))


@pytest.fixture
def units():
    return {"Integrator": Integrator, "Clock": Clock, "Noisy": Noisy}
