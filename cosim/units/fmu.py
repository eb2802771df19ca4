"""FMU units: FMI 2.0 and FMI 3.0 co-simulation FMUs from any exporting tool, through fmpy."""

from __future__ import annotations

import ctypes
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

import fmpy
from fmpy.fmi1 import FMICallException
from fmpy.fmi2 import FMU2Slave, fmi2Terminated
from fmpy.fmi3 import FMU3Slave
from fmpy.model_description import ModelDescription, read_model_description

from cosim.core.state import pack_state, unpack_state
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
                f"parameters are {sorted(v.name for v in self.variables_by(Causality.PARAMETER))}"
            )
        self._fmu: Any = None
        self._unzipdir: Path | None = None
        self._states: list[Any] = []
        self._loaded = False
        # Reads are served from one cache of every variable any reader asked for, refilled
        # after whatever can change a value (a step, a set, a restored state): ``_epoch``
        # counts those, ``_pool_epoch`` is the epoch the cache was filled at.
        self._epoch = 0
        # counts the sets of inputs (and restored states): a writer whose values are the same,
        # bit for bit, as those it set last, with no set since, leaves the FMU alone
        self._set_gen = 0
        self._pool_names: list[str] = []
        self._pool_index: dict[str, int] = {}
        self._pool_calls: list[tuple[Any, tuple[Any, ...], Any, bool, str]] | None = None
        self._pool_order: Callable[[list[Any]], Any] = tuple
        self._pool_values: Sequence[Value] = ()
        self._pool_epoch = -1

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
        except Exception as exc:
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

    def feedthrough(self) -> Mapping[str, Sequence[str]]:
        """From ``ModelStructure``: an output's input dependencies; an output listed without a
        ``dependencies`` attribute depends on every input (as the FMI standard says)."""
        inputs = [v.name for v in self.md.modelVariables if v.causality == "input"]
        out: dict[str, list[str]] = {}
        for unknown in self.md.outputs:
            deps = unknown.dependencies
            names = inputs if deps is None else [d.name for d in deps if d.causality == "input"]
            if names:
                out[unknown.variable.name] = list(names)
        return out

    def setup(self, grid: TimeGrid) -> None:
        self.grid = grid
        self._inputs_changed()
        self._pool_calls = None
        cs = self.md.coSimulation
        self._unzipdir = _EXTRACTED.acquire(self.path, private=bool(cs.canBeInstantiatedOnlyOncePerProcess),
                                            fail=lambda detail: self._fail("extract", detail))
        cls = FMU2Slave if self.fmi_major == 2 else FMU3Slave
        if self.fmi_major not in (2, 3):
            raise self._fail("load", f"FMI {self.md.fmiVersion} is not supported (2.0 and 3.0 are)")
        token = self.md.guid if self.fmi_major == 2 else self.md.instantiationToken
        try:
            self._fmu = cls(guid=token, unzipDirectory=str(self._unzipdir),
                            modelIdentifier=cs.modelIdentifier, instanceName=self.name)
        except Exception as exc:
            raise self._fail("load shared library", str(exc)) from exc
        self._loaded = True
        if self.fmi_major == 2:
            self._do_step = self._raw("fmi2DoStep")
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
        except Exception as exc:
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

    def _inputs_changed(self) -> None:
        """The FMU's inputs (and so maybe its outputs) change: cached reads and the writers'
        memory of what they set are no longer valid."""
        self._epoch += 1
        self._set_gen += 1

    def _set_by_name(self, names: list[str], values: list[Value]) -> None:
        self._inputs_changed()
        for acc, vrs, positions in self._groups(names):
            vals = [values[p] for p in positions]
            if acc == "Boolean":
                vals = [bool(x) for x in vals]
            elif acc in ("Real", "Float64", "Float32"):
                vals = [float(x) for x in vals]
            elif acc != "String":
                vals = [int(x) for x in vals]
            getattr(self._fmu, f"set{acc}")(vrs, vals)

    def _raw(self, function: str) -> Any:
        """The bare ctypes function (fmpy's wrapper adds a Python call per FMI call)."""
        return self._fmu._functions[function]

    def _channels(self, names: list[str], direction: str) -> list[_Channel]:
        if self._fmu is None:
            raise ConfigurationError(f"unit '{self.name}': {direction}ter for {names} before setup()")
        channels = []
        for acc, vrs, positions in self._groups(names):
            fname = f"fmi{self.fmi_major}{direction.capitalize()}{acc}"
            ctype = _CTYPES[self.fmi_major].get(acc)
            if ctype is None:  # strings: through fmpy, rarely exchanged
                channels.append(_Channel(fname, None, vrs, positions, None, False, self.fmi_major))
                continue
            vr_t = ctypes.c_uint if self.fmi_major == 2 else ctypes.c_uint32
            channels.append(_Channel(
                fname, self._raw(fname), (vr_t * len(vrs))(*vrs), positions,
                (ctype * len(vrs))(), self.fmi_major == 2 and acc == "Boolean", self.fmi_major,
            ))
        return channels

    def _status_error(self, function: str, status: int) -> FMUError:
        label = _STATUS[status] if 0 <= status < len(_STATUS) else f"illegal status {status}"
        return FMUError(self.name, f"{function} (FMU {self.path.name})", f"returned {label}")

    def reader(self, names: Sequence[str]) -> Reader:
        names = list(names)
        channels = self._channels(names, "get")
        if all(ch.fn is not None for ch in channels):
            return self._pooled_reader(names)
        # strings: the general path, through fmpy and not cached
        component = self._fmu.component
        size = len(names)

        def read_mixed() -> list[Value]:
            values: list[Any] = [None] * size
            for ch in channels:
                got = ch.get(self._fmu, component)
                if isinstance(got, int):
                    raise self._status_error(ch.function, got)
                for p, v in zip(ch.positions, got, strict=True):
                    values[p] = v
            return values

        return read_mixed

    def _pooled_reader(self, names: list[str]) -> Reader:
        """A reader of ``names`` (no strings) through the unit's value cache: between two
        changes of the FMU (step, set, restored state) every reader, whatever it reads, costs
        one FMI get call per type for all of them together, and nothing after the first."""
        index = self._pool_index
        added = [n for n in dict.fromkeys(names) if n not in index]
        if added:
            for n in added:
                index[n] = len(self._pool_names)
                self._pool_names.append(n)
            self._pool_calls = None
            self._pool_epoch = -1
        positions = [index[n] for n in names]
        pick = itemgetter(*positions) if len(positions) > 1 else (lambda values, i=positions[0]: (values[i],))

        def read_pooled() -> list[Value]:
            if self._pool_epoch != self._epoch:
                self._fill_pool()
            return list(pick(self._pool_values))

        return read_pooled

    def _fill_pool(self) -> None:
        calls = self._pool_calls
        if calls is None:
            # one C call per type; the concatenated results are put back in pool order
            names = self._pool_names
            channels = self._channels(names, "get")
            component = self._fmu.component
            order = [p for ch in channels for p in ch.positions]
            self._pool_order = itemgetter(*[order.index(i) for i in range(len(names))]) if len(names) > 1 else tuple
            calls = self._pool_calls = [(*_bare_call(ch, component), ch.buf, ch.int_bool, ch.function)
                                        for ch in channels]
        got: list[Any] = []
        for fn, args, buf, as_bool, function in calls:
            status = fn(*args)
            if status > 1:
                raise self._status_error(function, status)
            got += [v != 0 for v in buf] if as_bool else buf[:]
        self._pool_values = self._pool_order(got)
        self._pool_epoch = self._epoch

    def writer(self, names: Sequence[str]) -> Writer:
        names = list(names)
        channels = self._channels(names, "set")
        component = self._fmu.component
        if len(channels) == 1 and channels[0].fn is not None:
            ch = channels[0]
            fn, args = _bare_call(ch, component)
            buf = ch.buf
            sent: list[Any] = [-1, b""]  # set generation and bytes of what this writer set last

            def write_one_type(values: Sequence[Value]) -> None:
                try:
                    buf[:] = values
                except TypeError as exc:
                    raise FMUError(self.name, f"set {names} (FMU {self.path.name})", str(exc)) from exc
                raw = bytes(buf)
                if sent[0] == self._set_gen and raw == sent[1]:
                    return  # the FMU holds these very inputs already
                self._inputs_changed()
                status = fn(*args)
                if status > 1:
                    raise self._status_error(ch.function, status)
                sent[0], sent[1] = self._set_gen, raw

            return write_one_type

        def write_mixed(values: Sequence[Value]) -> None:
            self._inputs_changed()
            for ch in channels:
                status = ch.set(self._fmu, component, [values[p] for p in ch.positions])
                if status > 1:
                    raise self._status_error(ch.function, status)

        return write_mixed

    # Stepping --------------------------------------------------------------------------
    def step(self, tick: int, n_ticks: int) -> None:
        grid = self.grid
        assert grid is not None
        self._epoch += 1
        t, h = grid.interval(tick, n_ticks)
        fmu = self._fmu
        if self.fmi_major == 2:
            status = self._do_step(fmu.component, t, h, 1)
            if status > 1:
                if status == 2:
                    raise StepDiscarded(self.name, tick, self._discard_reason())
                raise FMUError(self.name, f"fmi2DoStep at t={t!r} (FMU {self.path.name})",
                               f"returned {_STATUS[status] if status < len(_STATUS) else status}")
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
        except Exception:
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
        self._inputs_changed()
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

    # Portable state --------------------------------------------------------------------
    def _portable_identity(self) -> dict[str, Any]:
        token = self.md.guid if self.fmi_major == 2 else self.md.instantiationToken
        return {"fmiVersion": self.md.fmiVersion, "modelIdentifier": self.md.coSimulation.modelIdentifier,
                "token": token}

    def _serial_fns(self, call: str) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
        if self._fmu is None:
            raise SnapshotError(f"unit '{self.name}' (FMU {self.path.name}): {call} before setup()")
        cs = self.md.coSimulation
        if not (cs.canGetAndSetFMUstate and cs.canSerializeFMUstate):
            flag = "canGetAndSetFMUstate" if not cs.canGetAndSetFMUstate else "canSerializeFMUstate"
            raise SnapshotError(
                f"unit '{self.name}' (FMU {self.path.name}) cannot {call} a portable state: "
                f"{flag} is false in its modelDescription.xml"
            )
        if self.fmi_major == 2:
            return self._fmu.serializeFMUstate, self._fmu.deSerializeFMUstate
        return self._fmu.serializeFMUState, self._fmu.deserializeFMUState

    def export_state(self) -> bytes:
        """The FMU state, serialized by the FMU, behind a header naming the model (identifier,
        GUID / instantiation token, FMI version)."""
        serialize, _ = self._serial_fns("export")
        state = self.save_state()
        try:
            blob = serialize(state)
        except FMICallException as exc:
            raise SnapshotError(f"unit '{self.name}' (FMU {self.path.name}): serializing its state failed: "
                                f"{self._wrap('serializeFMUstate', exc).detail}") from exc
        finally:
            self.release_state(state)
        return pack_state("fmu", self._portable_identity(), blob)

    def import_state(self, data: bytes) -> None:
        """Load a state from :meth:`export_state` of the same FMU (same identifier and GUID)."""
        _, deserialize = self._serial_fns("import")
        blob = unpack_state(self.name, data, "fmu", self._portable_identity())
        try:
            state = deserialize(blob)
        except FMICallException as exc:
            raise SnapshotError(f"unit '{self.name}' (FMU {self.path.name}): the FMU refused the state: "
                                f"{self._wrap('deSerializeFMUstate', exc).detail}") from exc
        self._states.append(state)
        try:
            self.restore_state(state)
        except FMUError as exc:
            raise SnapshotError(f"unit '{self.name}' (FMU {self.path.name}): setting the imported state "
                                f"failed: {exc.detail}") from exc
        finally:
            self.release_state(state)

    def terminate(self) -> None:
        if self._fmu is None:
            return
        fmu, self._fmu = self._fmu, None
        self._inputs_changed()
        self._pool_calls = None
        try:
            free = fmu.freeFMUstate if self.fmi_major == 2 else fmu.freeFMUState
            for state in self._states:
                try:
                    free(state)
                except Exception:
                    pass
            self._states.clear()
            try:
                fmu.terminate()
            except FMICallException:
                pass  # an FMU in an error state may refuse terminate; freeInstance still runs
            fmu.freeInstance()
        finally:
            if self._unzipdir is not None:
                _EXTRACTED.release(self._unzipdir)
                self._unzipdir = None


class _Extractions:
    """One extracted copy (and so one loaded shared library) per FMU file and process.

    Loading a second copy of the same binary for every instance costs memory and start-up
    time, and some exporters' binaries (those that embed a runtime) do not survive several
    copies in one process. FMI requires an FMU to support several instances from one binary
    unless it declares ``canBeInstantiatedOnlyOncePerProcess``; those get a private copy.
    """

    def __init__(self) -> None:
        self._dirs: dict[tuple[str, int, int], list[Any]] = {}  # key -> [dir, users]

    def acquire(self, path: Path, private: bool, fail: Callable[[str], Exception]) -> Path:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        entry = None if private else self._dirs.get(key)
        if entry is not None and entry[0].exists():
            entry[1] += 1
            return entry[0]
        target = Path(tempfile.mkdtemp(prefix=f"cosim-{path.stem}-"))
        try:
            fmpy.extract(str(path), str(target))
        except Exception as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise fail(str(exc)) from exc
        if not private:
            self._dirs[key] = [target, 1]
        return target

    def release(self, directory: Path) -> None:
        for key, entry in list(self._dirs.items()):
            if entry[0] == directory:
                entry[1] -= 1
                if entry[1] > 0:
                    return
                del self._dirs[key]
                break
        shutil.rmtree(directory, ignore_errors=True)


_EXTRACTED = _Extractions()

_CTYPES: dict[int, dict[str, Any]] = {
    2: {"Real": ctypes.c_double, "Integer": ctypes.c_int, "Boolean": ctypes.c_int},
    3: {"Float64": ctypes.c_double, "Float32": ctypes.c_float, "Int8": ctypes.c_int8,
        "UInt8": ctypes.c_uint8, "Int16": ctypes.c_int16, "UInt16": ctypes.c_uint16,
        "Int32": ctypes.c_int32, "UInt32": ctypes.c_uint32, "Int64": ctypes.c_int64,
        "UInt64": ctypes.c_uint64, "Boolean": ctypes.c_bool},
}


def _bare_call(ch: _Channel, component: int) -> tuple[Any, tuple[Any, ...]]:
    """``(function, arguments)`` calling ``ch``'s FMI get/set function on its buffer.

    The function is a copy of the ctypes pointer without ``argtypes``, given arguments that
    are ctypes objects already: ctypes then converts nothing per call (~1 us less each).
    """
    fn = ch.fn
    bare = type(fn).from_address(ctypes.addressof(fn))  # same C function, no argtypes; fn stays alive in fmpy
    bare.restype = fn.restype
    n = ctypes.c_size_t(len(ch.positions))
    instance = ctypes.c_void_p(component)
    args = (instance, ch.vrs, n, ch.buf, n) if ch.fmi_major == 3 else (instance, ch.vrs, n, ch.buf)
    return bare, args


class _Channel:
    """One FMI get/set function over a fixed list of value references, with its own buffer."""

    __slots__ = ("buf", "fmi_major", "fn", "function", "int_bool", "positions", "vrs")

    def __init__(self, function: str, fn: Any, vrs: Any, positions: list[int], buf: Any,
                 int_bool: bool, fmi_major: int) -> None:
        self.function, self.fn, self.vrs, self.positions = function, fn, vrs, positions
        self.buf, self.int_bool, self.fmi_major = buf, int_bool, fmi_major

    def _method(self) -> str:
        """fmpy's method for this function: fmi2GetString -> getString."""
        bare = self.function[4:]
        return bare[0].lower() + bare[1:]

    def get(self, fmu: Any, component: Any) -> list[Value] | int:
        """Values, or the failing status code."""
        if self.fn is None:  # strings
            try:
                return list(getattr(fmu, self._method())(list(self.vrs)))
            except FMICallException as exc:
                return exc.status
        n = len(self.positions)
        status = self.fn(component, self.vrs, n, self.buf, n) if self.fmi_major == 3 \
            else self.fn(component, self.vrs, n, self.buf)
        if status > 1:
            return status
        return [v != 0 for v in self.buf] if self.int_bool else self.buf[:]

    def set(self, fmu: Any, component: Any, values: list[Value]) -> int:
        if self.fn is None:
            try:
                getattr(fmu, self._method())(list(self.vrs), [str(v) for v in values])
            except FMICallException as exc:
                return exc.status
            return 0
        self.buf[:] = values
        n = len(self.positions)
        return self.fn(component, self.vrs, n, self.buf, n) if self.fmi_major == 3 \
            else self.fn(component, self.vrs, n, self.buf)


def _parse_start(vtype: VarType, text: str) -> Value:
    if vtype is VarType.REAL:
        return float(text)
    if vtype is VarType.INTEGER:
        return int(text)
    if vtype is VarType.BOOLEAN:
        return text.strip().lower() in ("true", "1")
    return text
