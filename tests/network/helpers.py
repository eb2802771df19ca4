"""Small units and systems for the network tests."""

from __future__ import annotations

from itertools import permutations

from cosim import Causality, Master, PythonUnit, Variable, VarType
from cosim.core.unit import real
from cosim.network import ConduitConfig, Network


class Sensor(PythonUnit):
    """Publishes the time it stepped to (``t``), its step count (``n``) and a ramp (``x``)."""

    VARIABLES = (real("t", "output"), Variable("n", Causality.OUTPUT, VarType.INTEGER, 0), real("x", "output"))

    def do_step(self, t: float, h: float) -> None:
        v = self.values
        v["t"] = t + h
        v["n"] += 1
        v["x"] = 2.0 * (t + h) + 1.0


class Receiver(PythonUnit):
    """Holds what it is sent; counts its steps."""

    VARIABLES = (real("t", "input", -1.0), Variable("n", Causality.INPUT, VarType.INTEGER, -1),
                 real("x", "input", -1.0), Variable("steps", Causality.OUTPUT, VarType.INTEGER, 0))

    def do_step(self, t: float, h: float) -> None:
        self.values["steps"] += 1


def pair(base_step: float = 0.001, sensor_ticks: int = 1, algorithm: str = "jacobi",
         variables: tuple[str, ...] = ("t",), **conduit: object) -> tuple[Master, Network]:
    """A sensor in zone ``field`` sending ``variables`` to a receiver in zone ``control``
    over conduit ``f2c`` (configured by ``conduit``); returns the built master."""
    keys = conduit.pop("hmac_keys", None)
    seed = conduit.pop("seed", 3)
    m = Master(base_step, algorithm=algorithm)
    m.add_unit(Sensor("s"), step_ticks=sensor_ticks)
    m.add_unit(Receiver("r"))
    for var in variables:
        m.connect(f"s.{var}", f"r.{var}")
    net = Network({"field": ["s"], "control": ["r"]},
                  [ConduitConfig("f2c", "field", "control", "telemetry", **conduit)],  # type: ignore[arg-type]
                  seed=seed, hmac_keys=keys)  # type: ignore[arg-type]
    m.attach_network(net)
    return m, net


def zone_per_unit(units: list[str], **conduit: object) -> Network:
    """Every unit in a zone of its own and a conduit for every ordered pair of zones."""
    configs = [ConduitConfig(f"{a}_to_{b}", f"z_{a}", f"z_{b}", "telemetry", **conduit)  # type: ignore[arg-type]
               for a, b in permutations(units, 2)]
    return Network({f"z_{u}": [u] for u in units}, configs, seed=11)
