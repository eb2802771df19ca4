"""cosim: co-simulation of digital-twin-enabled industrial cyber-physical systems.

The core is importable without Hydra or MLflow::

    from cosim import Master, FMUUnit, Recorder
    master = Master(base_step=0.01)
    master.add_unit(FMUUnit("conveyor", "conveyor.fmu"))
    ...
"""

from cosim.core.connection import Connection, Port
from cosim.core.manipulator import Bias, Manipulator, Override, Transform
from cosim.core.master import Algorithm, Master, RunResult, Snapshot
from cosim.core.observer import Observer, Recorder
from cosim.core.unit import PythonUnit, TimeGrid, Unit
from cosim.core.variables import Causality, Value, Variable, VarType
from cosim.errors import (
    ConfigurationError,
    ContractError,
    CosimError,
    FMUError,
    InvalidConnectionError,
    ModelLoadError,
    NonFiniteValueError,
    SnapshotError,
    StepDiscarded,
    UnitError,
)
from cosim.units.fmu import FMUUnit

__all__ = [
    "Algorithm",
    "Bias",
    "Causality",
    "ConfigurationError",
    "Connection",
    "ContractError",
    "CosimError",
    "FMUError",
    "FMUUnit",
    "InvalidConnectionError",
    "Manipulator",
    "Master",
    "ModelLoadError",
    "NonFiniteValueError",
    "Observer",
    "Override",
    "Port",
    "PythonUnit",
    "Recorder",
    "RunResult",
    "Snapshot",
    "SnapshotError",
    "StepDiscarded",
    "TimeGrid",
    "Transform",
    "Unit",
    "UnitError",
    "Value",
    "VarType",
    "Variable",
]
