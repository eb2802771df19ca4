"""FMU units: FMI 2.0 and FMI 3.0 co-simulation FMUs from any exporting tool, through fmpy."""

from __future__ import annotations

import ctypes
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

import fmpy
from fmpy.fmi1 import FMICallException
from fmpy.fmi2 import FMU2Slave, fmi2Terminated
from fmpy.fmi3 import FMU3Slave
from fmpy.model_description import ModelDescription, read_model_description

from cosim.core.unit import Reader, TimeGrid, Unit, Writer
from cosim.core.variables import Causality, Value, Variable, VarType
from cosim.errors import ConfigurationError, FMUError, ModelLoadError, SnapshotError, StepDiscarded

_STATUS = ["ok", "warning", "discard", "error", "fatal", "pending"]

# fmpy accessor suffix per FMI type name (FMI 2.0 names, then FMI 3.0 names)
_ACCESSOR = {
    "Real": "Real", "Integer": "Integer", "Enumeration": "Integer", "Boolean": "Boolean", "String": "String",
    "Float64": "Float64", "Float32": "Float32", "Int8": "Int8", "UInt8": "UInt8", "Int16": "Int16",
    "UInt16": "UInt16", "Int32": "Int32", "UInt32": "UInt32", "Int64": "Int64", "UInt64": "UInt64",
}


class FMUUnit(Unit):
    """A co-simulation FMU as a unit.

    Args:
        name: unit name in the system.
        path: the ``.fmu`` archive.
        parameters: start values for parameters (or inputs), set before initialisation.
        logging: ask the FMU to log (messages go to fmpy's default logger).

    Raises:
        ModelLoadError: missing file, corrupt archive, no co-simulation interface, no binary
            for this platform.
    """

    def __init__(self, name: str, path: str | Path, parameters: Mapping[str, Value] | None = None,
                 logging: bool = False) -> None:
        super().__init__(name)
        self.path = Path(path)
        self.parameters = dict(parameters or {})
        self.logging = logging
        self.md = self._read_description()
        self.fmi_major = int(self.md.fmiVersion.split(".")[0])
        self._by_name = {v.name: v for v in self.md.modelVariables}
        self._variables = self._collect_variables()
        unknown = [k for k in self.parameters if k not in self._variables]
        if unknown:
            raise ConfigurationError(
                f"unit '{name}' (FMU {self.path.name}): unknown parameter(s) {unknown}; "
                f"parameters are {sorted(v.name for v in self._variables.values() if v.causality is Causality.PARAMETER)}"
            )
        self._fmu: Any = None
        self._unzipdir: Path | None = None
        self._states: list[Any] = []
        self._loaded = False

    # Loading ---------------------------------------------------------------------------
    def _fail(self, call: str, detail: str) -> ModelLoadError:
        return ModelLoadError(self.name, f"{call} of FMU '{self.path}'", detail)

    def _read_description(self) -> ModelDescription:
        if not self.path.is_file():
            raise self._fail("load", "file not found")
        try:
            md = read_model_description(str(self.path), validate=False)
        except zipfile.BadZipFile:
            raise self._fail("load", "not a valid FMU (corrupt or not a ZIP archive)") from None
        except KeyError as exc:
            raise self._fail("load", f"archive has no {exc}") from None
        except ParseError as exc:
            raise self._fail("load", f"modelDescription.xml is not valid XML: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - fmpy raises plain Exceptions
            raise self._fail("load", f"cannot read modelDescription.xml: {exc}") from None
        if md.coSimulation is None:
            raise self._fail("load", "the FMU has no co-simulation interface (model exchange only)")
        try:
            found = fmpy.supported_platforms(str(self.path))
        except zipfile.BadZipFile:
            raise self._fail("load", "not a valid FMU (corrupt archive)") from None
        if fmpy.platform not in found:
            raise self._fail(
                "load", f"no binary for this platform ({fmpy.platform_tuple}); the FMU has {found or 'none'}"
            )
        return md

    def _collect_variables(self) -> dict[str, Variable]:
        out: dict[str, Variable] = {}
        for v in self.md.modelVariables:
            if v.dimensions or v.type not in _ACCESSOR:
                continue  # arrays and clocks are not exchanged by this master
            vtype = VarType.from_fmi(v.type)
            start: Value | None = None
            if v.start is not None:
                try:
                    start = _parse_start(vtype, v.start)
                except ValueError:
                    start = None
            out[v.name] = Variable(v.name, Causality.from_fmi(v.causality or "local"), vtype, start,
                                   v.unit or "", v.description or "")
        return out

    @property
    def variables(self) -> Mapping[str, Variable]:
        return self._variables

    def setup(self, grid: TimeGrid) -> None:
        self.grid = grid
        self._unzipdir = Path(tempfile.mkdtemp(prefix=f"cosim-{self.name}-"))
        try:
            fmpy.extract(str(self.path), str(self._unzipdir))
        except Exception as exc:  # noqa: BLE001
            raise self._fail("extract", str(exc)) from exc
        cs = self.md.coSimulation
        cls = FMU2Slave if self.fmi_major == 2 else FMU3Slave
        if self.fmi_major not in (2, 3):
            raise self._fail("load", f"FMI {self.md.fmiVersion} is not supported (2.0 and 3.0 are)")
        token = self.md.guid if self.fmi_major == 2 else self.md.instantiationToken
        try:
            self._fmu = cls(guid=token, unzipDirectory=str(self._unzipdir),
                            modelIdentifier=cs.modelIdentifier, instanceName=self.name)
        except Exception as exc:  # noqa: BLE001 - fmpy: missing library or functions
            raise self._fail("load shared library", str(exc)) from exc
        self._loaded = True
        with self._calls("instantiate"):
            self._fmu.instantiate(loggingOn=self.logging)
        with self._calls("initialise"):
            if self.parameters:
                self._set_by_name(list(self.parameters), list(self.parameters.values()))
            if self.fmi_major == 2:
                self._fmu.setupExperiment(startTime=grid.start_time)
                self._fmu.enterInitializationMode()
            else:
                self._fmu.enterInitializationMode(startTime=grid.start_time)
            self._fmu.exitInitializationMode()

    @contextmanager
    def _calls(self, call: str) -> Iterator[None]:
        """Turn fmpy's exceptions into :class:`FMUError` naming the FMU and the call."""
        try:
            yield
        except (FMUError, ConfigurationError):
            raise
        except Exception as exc:  # noqa: BLE001 - fmpy raises FMICallException or plain Exception
            raise self._wrap(call, exc) from exc

    def _wrap(self, call: str, exc: Exception) -> FMUError:
        if isinstance(exc, FMICallException):
            status = _STATUS[exc.status] if 0 <= exc.status < len(_STATUS) else str(exc.status)
            detail = f"{exc.function} returned {status}"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        return FMUError(self.name, f"{call} (FMU {self.path.name})", detail)

    # Values ----------------------------------------------------------------------------
    def _resolve(self, names: Sequence[str]) -> list[Any]:
        out = []
        for n in names:
            v = self._by_name.get(n)
            if v is None or n not in self._variables:
                import difflib

                near = difflib.get_close_matches(n, list(self._variables), n=3)
                hint = f" (did you mean {', '.join(map(repr, near))}?)" if near else ""
                raise ConfigurationError(f"unit '{self.name}' (FMU {self.path.name}) has no variable '{n}'{hint}")
            out.append(v)
        return out

    def _groups(self, names: Sequence[str]) -> list[tuple[str, list[int], list[int]]]:
        """Group names by accessor: (accessor, value references, positions in ``names``)."""
        groups: dict[str, tuple[list[int], list[int]]] = {}
        for pos, v in enumerate(self._resolve(names)):
            vrs, positions = groups.setdefault(_ACCESSOR[v.type], ([], []))
            vrs.append(v.valueReference)
            positions.append(pos)
        return [(acc, vrs, pos) for acc, (vrs, pos) in groups.items()]

    def get(self, names: Sequence[str]) -> list[Value]:
        return list(self.reader(names)())

    def set(self, names: Sequence[str], values: Sequence[Value]) -> None:
        if self._fmu is None:  # before setup: becomes a start value, applied at initialisation
            self._resolve(names)
            self.parameters.update(zip(names, values, strict=True))
            return
        self.writer(names)(values)

    def _set_by_name(self, names: list[str], values: list[Value]) -> None:
        for acc, vrs, positions in self._groups(names):
            vals = [values[p] for p in positions]
            if acc == "Boolean":
                vals = [bool(x) for x in vals]
            elif acc in ("Real", "Float64", "Float32"):
                vals = [float(x) for x in vals]
            elif acc != "String":
                vals = [int(x) for x in vals]
            getattr(self._fmu, f"set{acc}")(vrs, vals)

    def reader(self, names: Sequence[str]) -> Reader:
        names = list(names)
        groups = self._groups(names)
        fmu = self._fmu
        if fmu is None:
            raise ConfigurationError(f"unit '{self.name}': reader() before setup()")
        if self.fmi_major == 2 and len(groups) == 1 and groups[0][0] == "Real":
            # fast path: preallocated ctypes arrays, one C call per read
            vrs = groups[0][1]
            n = len(vrs)
            vr_arr = (ctypes.c_uint * n)(*vrs)
            out = (ctypes.c_double * n)()
            fn = fmu.fmi2GetReal
            component = fmu.component

            def read_reals() -> list[float]:
                try:
                    fn(component, vr_arr, n, out)
                except FMICallException as exc:
                    raise self._wrap("get values", exc) from exc
                return out[:]

            return read_reals
        getters = [(getattr(fmu, f"get{acc}"), vrs, pos) for acc, vrs, pos in groups]
        size = len(names)

        def read_any() -> list[Value]:
            values: list[Any] = [None] * size
            try:
                for getter, vrs, positions in getters:
                    for p, v in zip(positions, getter(vrs)):
                        values[p] = v
            except FMICallException as exc:
                raise self._wrap("get values", exc) from exc
            return values

        return read_any

    def writer(self, names: Sequence[str]) -> Writer:
        names = list(names)
        groups = self._groups(names)
        fmu = self._fmu
        if fmu is None:
            raise ConfigurationError(f"unit '{self.name}': writer() before setup()")
        if self.fmi_major == 2 and len(groups) == 1 and groups[0][0] == "Real":
            vrs = groups[0][1]
            n = len(vrs)
            vr_arr = (ctypes.c_uint * n)(*vrs)
            buf_t = ctypes.c_double * n
            fn = fmu.fmi2SetReal
            component = fmu.component

            def write_reals(values: Sequence[Value]) -> None:
                try:
                    fn(component, vr_arr, n, buf_t(*values))
                except FMICallException as exc:
                    raise self._wrap("set values", exc) from exc
                except TypeError as exc:
                    raise FMUError(self.name, f"set {names} (FMU {self.path.name})", str(exc)) from exc

            return write_reals

        def write_any(values: Sequence[Value]) -> None:
            try:
                self._set_by_name(names, list(values))
            except FMICallException as exc:
                raise self._wrap("set values", exc) from exc

        return write_any

    # Stepping --------------------------------------------------------------------------
    def step(self, tick: int, n_ticks: int) -> None:
        grid = self.grid
        assert grid is not None
        t = grid.time(tick)
        h = grid.time(tick + n_ticks) - t
        fmu = self._fmu
        if self.fmi_major == 2:
            try:
                fmu.fmi2DoStep(fmu.component, t, h, 1)
            except FMICallException as exc:
                if exc.status == 2:  # Discard
                    raise StepDiscarded(self.name, tick, self._discard_reason()) from exc
                raise self._wrap(f"doStep at t={t!r}", exc) from exc
        else:
            try:
                _, terminate, early, last = fmu.doStep(t, h)
            except FMICallException as exc:
                if exc.status == 2:
                    raise StepDiscarded(self.name, tick, "fmi3DoStep returned discard") from exc
                raise self._wrap(f"doStep at t={t!r}", exc) from exc
            if terminate:
                raise StepDiscarded(self.name, tick, "the FMU requested termination")
            if early:
                raise StepDiscarded(self.name, tick, f"early return at t={last!r}")

    def _discard_reason(self) -> str:
        try:
            value = ctypes.c_int()
            self._fmu.fmi2GetBooleanStatus(self._fmu.component, fmi2Terminated, ctypes.byref(value))
            return "the FMU requested termination" if value.value else "fmi2DoStep returned discard"
        except Exception:  # noqa: BLE001 - status query is optional in FMI 2.0
            return "fmi2DoStep returned discard"

    # State -----------------------------------------------------------------------------
    def _state_fns(self) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        if not self.md.coSimulation.canGetAndSetFMUstate:
            raise SnapshotError(
                f"unit '{self.name}' (FMU {self.path.name}) cannot save its state: "
                "canGetAndSetFMUstate is false in its modelDescription.xml"
            )
        if self.fmi_major == 2:
            return self._fmu.getFMUstate, self._fmu.setFMUstate
        return self._fmu.getFMUState, self._fmu.setFMUState

    def save_state(self) -> Any:
        get_state, _ = self._state_fns()
        try:
            state = get_state()
        except FMICallException as exc:
            raise self._wrap("getFMUstate", exc) from exc
        self._states.append(state)
        return state

    def restore_state(self, state: Any) -> None:
        _, set_state = self._state_fns()
        try:
            set_state(state)
        except FMICallException as exc:
            raise self._wrap("setFMUstate", exc) from exc

    def release_state(self, state: Any) -> None:
        if self._fmu is None or not any(state is s for s in self._states):
            return
        self._states = [s for s in self._states if s is not state]
        free = self._fmu.freeFMUstate if self.fmi_major == 2 else self._fmu.freeFMUState
        try:
            free(state)
        except FMICallException as exc:
            raise self._wrap("freeFMUstate", exc) from exc

    def terminate(self) -> None:
        if self._fmu is None:
            return
        fmu, self._fmu = self._fmu, None
        try:
            free = fmu.freeFMUstate if self.fmi_major == 2 else fmu.freeFMUState
            for state in self._states:
                try:
                    free(state)
                except Exception:  # noqa: BLE001, S110 - best effort while shutting down
                    pass
            self._states.clear()
            try:
                fmu.terminate()
            except FMICallException:
                pass  # an FMU in an error state may refuse terminate; freeInstance still runs
            fmu.freeInstance()
        finally:
            if self._unzipdir is not None:
                shutil.rmtree(self._unzipdir, ignore_errors=True)
                self._unzipdir = None


def _parse_start(vtype: VarType, text: str) -> Value:
    if vtype is VarType.REAL:
        return float(text)
    if vtype is VarType.INTEGER:
        return int(text)
    if vtype is VarType.BOOLEAN:
        return text.strip().lower() in ("true", "1")
    return text
