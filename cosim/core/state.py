"""Portable unit state: bytes that a fresh instance of the same model can load.

:meth:`Unit.save_state <cosim.core.unit.Unit.save_state>` returns in-process handles (an FMU
state pointer, a PyBullet state id). :meth:`Unit.export_state <cosim.core.unit.Unit.export_state>`
returns the same full state as bytes, so that a twin can be cloned into a sandbox (another
instance, possibly another process) and a snapshot can be hashed and signed.

Every unit wraps its payload in one envelope (:func:`pack_state` / :func:`unpack_state`)::

    magic "COSIMST\\x01" | u32 header length | header (canonical JSON) | payload

The header names the kind of unit, the identity of its model (class, FMU GUID, robot and
world signature, ...) and the SHA-256 of the payload. Importing checks the identity against
the importing unit and the checksum before the payload reaches the unit (an FMU or PyBullet
never parses corrupt bytes), and raises :class:`~cosim.errors.SnapshotError` naming the unit.

Python-side parts of a state are pickled (protocol :data:`PICKLE_PROTOCOL`) and loaded with
:func:`restricted_loads`, which only resolves an allow-list of globals: plain containers,
numpy arrays and generators, and classes (not functions) of the unit's own module,
``cosim`` and ``models``. Portable states should still only come from trusted sources: a
:class:`~cosim.twin.integrity.SignedSnapshot` verifies its signature before importing.

For a whole system, :func:`export_units` / :func:`import_units` move the state of some or all
units of a :class:`~cosim.core.master.Master` (plus its tick) as ``dict[str, bytes]``, and
:func:`snapshot_bytes` serialises such a dict canonically (for hashing and signing);
:func:`parse_snapshot_bytes` reads it back.

What a portable snapshot does not hold: the master's connection buffer, manipulators and
observers (in-process :meth:`Master.save_snapshot` has them). With a single rate, or at a tick
where every unit is due (a multiple of the least common multiple of the ``step_ticks``), the
buffer is refilled from the units before it is used, and a master that imported the units
continues bit for bit like the original (measured on the whole smart-factory plant). Between
those ticks the buffer holds outputs of multi-rate units that the units themselves have
stepped past, so :func:`export_units` refuses unaligned ticks unless told otherwise.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import math
import pickle
import struct
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cosim.errors import SnapshotError

if TYPE_CHECKING:
    from cosim.core.master import Master

__all__ = [
    "PICKLE_PROTOCOL",
    "TICK_KEY",
    "aligned",
    "export_units",
    "import_units",
    "join_parts",
    "pack_state",
    "parse_snapshot_bytes",
    "pickle_dumps",
    "restricted_loads",
    "snapshot_bytes",
    "split_parts",
    "unpack_state",
]

PICKLE_PROTOCOL = 5
TICK_KEY = "@tick"  # key of the master's tick in export_units(); not a valid unit name

_STATE_MAGIC = b"COSIMST\x01"
_SNAP_MAGIC = b"COSIMSNAP\x01"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


# ---------------------------------------------------------------------------- envelope
def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _normalise(obj: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(_canonical_json(obj))


def pack_state(kind: str, identity: Mapping[str, Any], payload: bytes) -> bytes:
    """Wrap ``payload`` in the portable-state envelope.

    Args:
        kind: kind of unit (``"python"``, ``"fmu"``, ``"bullet"``...).
        identity: JSON-able description of the model; :func:`unpack_state` compares it field
            by field with what the importing unit expects.
        payload: the unit's state.
    """
    header = {"kind": kind, "identity": dict(identity), "sha256": hashlib.sha256(payload).hexdigest(),
              "size": len(payload)}
    text = _canonical_json(header)
    return b"".join((_STATE_MAGIC, _U32.pack(len(text)), text, payload))


def unpack_state(unit: str, data: bytes, kind: str, identity: Mapping[str, Any]) -> bytes:
    """Check an envelope from :func:`pack_state` and return its payload.

    Raises:
        SnapshotError: naming ``unit``: not a portable state, corrupt (truncated, checksum),
            a state of another kind of unit, or of another model (lists the fields that differ).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SnapshotError(f"unit '{unit}': a portable state must be bytes, got {type(data).__name__}")
    data = bytes(data)
    n_magic = len(_STATE_MAGIC)
    if data[:n_magic] != _STATE_MAGIC:
        raise SnapshotError(f"unit '{unit}': not a portable unit state (bad magic bytes)")
    try:
        (n,) = _U32.unpack_from(data, n_magic)
        start = n_magic + _U32.size
        if start + n > len(data):
            raise ValueError("truncated header")
        header = json.loads(data[start:start + n])
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        payload = data[start + n:]
        got_kind, got_identity = header["kind"], header["identity"]
        digest, size = header["sha256"], header["size"]
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise SnapshotError(f"unit '{unit}': corrupt portable state ({exc})") from None
    if got_kind != kind:
        raise SnapshotError(f"unit '{unit}': the state is of a {got_kind!r} unit, this is a {kind!r} unit")
    want = _normalise(identity)
    if got_identity != want:
        diffs = _differences(want, got_identity if isinstance(got_identity, dict) else {})
        raise SnapshotError(f"unit '{unit}': the state belongs to another model: {'; '.join(diffs)}")
    if size != len(payload) or hashlib.sha256(payload).hexdigest() != digest:
        raise SnapshotError(f"unit '{unit}': corrupt portable state (payload checksum mismatch)")
    return payload


def _differences(want: Mapping[str, Any], got: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(want) | set(got)):
        a, b = want.get(key, "<absent>"), got.get(key, "<absent>")
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: this unit has {_short(a)}, the state has {_short(b)}")
    return out or ["identity differs"]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def join_parts(parts: Iterable[bytes]) -> bytes:
    """Length-prefixed concatenation of byte strings (inverse: :func:`split_parts`)."""
    return b"".join(_U64.pack(len(p)) + bytes(p) for p in parts)


def split_parts(unit: str, data: bytes, count: int) -> list[bytes]:
    """Split what :func:`join_parts` joined; ``count`` parts expected."""
    out: list[bytes] = []
    pos = 0
    try:
        for _ in range(count):
            (n,) = _U64.unpack_from(data, pos)
            pos += _U64.size
            if pos + n > len(data):
                raise ValueError("truncated")
            out.append(bytes(data[pos:pos + n]))
            pos += n
    except (struct.error, ValueError) as exc:
        raise SnapshotError(f"unit '{unit}': corrupt portable state ({exc})") from None
    if pos != len(data):
        raise SnapshotError(f"unit '{unit}': corrupt portable state ({len(data) - pos} trailing bytes)")
    return out


# ---------------------------------------------------------------------------- pickle
_SAFE_BUILTINS = frozenset({
    "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "object",
    "range", "set", "slice", "str", "tuple",
})
_SAFE_GLOBALS = frozenset({
    ("collections", "deque"), ("collections", "OrderedDict"), ("collections", "Counter"),
    ("collections", "defaultdict"), ("copyreg", "_reconstructor"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__generator_ctor"), ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
})
_CLASS_MODULES = ("cosim", "models", "numpy.random", "datetime", "decimal", "fractions")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, unit: str, allow: Collection[str]) -> None:
        super().__init__(io.BytesIO(data))
        self._unit = unit
        self._allow = allow

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        if (module, name) in _SAFE_GLOBALS or f"{module}.{name}" in self._allow:
            return super().find_class(module, name)
        # classes (never functions) from the framework, the unit's own module and allowed modules
        roots = (*_CLASS_MODULES, *self._allow)
        if any(module == r or module.startswith(r + ".") for r in roots):
            obj = super().find_class(module, name)
            if isinstance(obj, type) or (module.startswith("numpy.random") and name.startswith("__pyx_unpickle_")):
                return obj
        raise SnapshotError(
            f"unit '{self._unit}': the state refers to '{module}.{name}', which a portable state may not "
            f"load (allowed: containers, numpy arrays and generators, classes of cosim, models and the unit's "
            f"module; add '{module}' or '{module}.{name}' to the unit's PICKLE_ALLOW)"
        )


def pickle_dumps(obj: Any) -> bytes:
    """Pickle with the fixed protocol of portable states."""
    return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)


def restricted_loads(unit: str, data: bytes, allow: Collection[str] = ()) -> Any:
    """Unpickle a Python-side state, resolving only allow-listed globals.

    Args:
        unit: unit name, for error messages.
        data: pickled bytes.
        allow: extra modules (any class in them) or ``"module.name"`` globals to allow.

    Raises:
        SnapshotError: naming the unit, for a refused global or corrupt bytes.
    """
    try:
        return _RestrictedUnpickler(data, unit, frozenset(allow)).load()
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"unit '{unit}': corrupt portable state ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------------- systems
def _tick_bytes(tick: int) -> bytes:
    return str(int(tick)).encode("ascii")


def aligned(master: Master) -> bool:
    """Whether every unit is due at ``master.tick`` (a multiple of the ``step_ticks``' lcm):
    then the master's connection buffer is refilled from the units before it is used."""
    period = math.lcm(*master.step_ticks.values()) if master.step_ticks else 1
    return master.tick % period == 0


def export_units(master: Master, names: Iterable[str] | None = None, *,
                 allow_unaligned: bool = False) -> dict[str, bytes]:
    """Portable state of the named units (default: all) of ``master``, plus its tick.

    Builds (sets up) the master if it is not built yet. The tick is under :data:`TICK_KEY`
    (decimal ASCII).

    Args:
        allow_unaligned: export at a tick where a multi-rate unit is between two of its steps.
            The values the master holds for it are not in the export, so a master importing it
            would not continue bit for bit; refused unless allowed.

    Raises:
        SnapshotError: an unknown unit, a unit that cannot export its state (names it), or an
            unaligned tick.
    """
    master.build()
    if not allow_unaligned and not aligned(master):
        period = math.lcm(*master.step_ticks.values())
        raise SnapshotError(
            f"tick {master.tick} is between the steps of a multi-rate unit: export at a multiple of "
            f"{period} ticks (next: {(master.tick // period + 1) * period}), or pass allow_unaligned=True"
        )
    selected = list(master.units) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in selected if n not in master.units]
    if unknown:
        raise SnapshotError(f"cannot export unknown unit(s) {unknown}; units are {sorted(master.units)}")
    out: dict[str, bytes] = {}
    for name in selected:
        if name == TICK_KEY:
            raise SnapshotError(f"a unit may not be named '{TICK_KEY}' in a portable snapshot")
        out[name] = _call(name, "export", master.units[name].export_state)
    out[TICK_KEY] = _tick_bytes(master.tick)
    return out


def import_units(master: Master, data: Mapping[str, bytes], *, set_tick: bool = True) -> None:
    """Load states from :func:`export_units` into the same-named units of ``master``.

    Builds the master first if needed. All or nothing: the units are saved in memory first,
    and if one import fails the units already imported are put back (units that cannot save
    their state in memory cannot be put back). ``set_tick`` also sets ``master.tick``.

    Raises:
        SnapshotError: unknown units, a missing or malformed tick, or a unit refusing its state.
    """
    master.build()
    names = [n for n in data if n != TICK_KEY]
    unknown = [n for n in names if n not in master.units]
    if unknown:
        raise SnapshotError(f"the snapshot has unit(s) {unknown} that this system does not have; "
                            f"units are {sorted(master.units)}")
    tick = master.tick
    if set_tick:
        raw = data.get(TICK_KEY)
        try:
            tick = int(bytes(raw).decode("ascii")) if raw is not None else -1
        except (ValueError, UnicodeDecodeError):
            tick = -1
        if tick < 0 or raw != _tick_bytes(tick):
            raise SnapshotError(f"the snapshot has no valid tick under '{TICK_KEY}'")
    saved: list[tuple[str, Any]] = []
    try:
        for name in names:
            unit = master.units[name]
            try:
                saved.append((name, unit.save_state()))
            except Exception:
                pass  # cannot be put back; still imported
            _call(name, "import", unit.import_state, bytes(data[name]))
    except BaseException:
        for name, state in saved:
            try:
                master.units[name].restore_state(state)
            except Exception:
                pass
        raise
    finally:
        for name, state in saved:
            try:
                master.units[name].release_state(state)
            except Exception:
                pass
    master.tick = tick


def _call(name: str, what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"unit '{name}' cannot {what} its state: {type(exc).__name__}: {exc}") from exc


def snapshot_bytes(data: Mapping[str, bytes]) -> bytes:
    """Canonical serialisation of ``{name: bytes}`` (from :func:`export_units`) for hashing.

    Keys sorted by their UTF-8 bytes, each key and value length-prefixed; equal dicts give
    equal bytes. Inverse: :func:`parse_snapshot_bytes`.
    """
    items = sorted((str(k).encode("utf-8"), bytes(v)) for k, v in data.items())
    parts = [_SNAP_MAGIC, _U32.pack(len(items))]
    for key, value in items:
        parts += [_U32.pack(len(key)), key, _U64.pack(len(value)), value]
    return b"".join(parts)


def parse_snapshot_bytes(blob: bytes) -> dict[str, bytes]:
    """Read bytes from :func:`snapshot_bytes` back into a dict.

    Raises:
        SnapshotError: not a canonical snapshot (bad magic, truncated, unsorted or duplicate keys).
    """
    blob = bytes(blob)
    if blob[:len(_SNAP_MAGIC)] != _SNAP_MAGIC:
        raise SnapshotError("not a portable snapshot (bad magic bytes)")
    pos = len(_SNAP_MAGIC)
    out: dict[str, bytes] = {}
    previous: bytes | None = None
    try:
        (count,) = _U32.unpack_from(blob, pos)
        pos += _U32.size
        for _ in range(count):
            (nk,) = _U32.unpack_from(blob, pos)
            pos += _U32.size
            key = blob[pos:pos + nk]
            pos += nk
            (nv,) = _U64.unpack_from(blob, pos)
            pos += _U64.size
            if len(key) != nk or pos + nv > len(blob):
                raise ValueError("truncated")
            if previous is not None and key <= previous:
                raise ValueError("keys not in canonical order")
            previous = key
            out[key.decode("utf-8")] = blob[pos:pos + nv]
            pos += nv
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"corrupt portable snapshot ({exc})") from None
    if pos != len(blob):
        raise SnapshotError(f"corrupt portable snapshot ({len(blob) - pos} trailing bytes)")
    return out
