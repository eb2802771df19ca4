"""Messages on a conduit: one frame per (source unit, target unit) and tick, and its HMAC tag.

A frame carries several tags at once, like a fieldbus frame or an OPC UA publish. Its size
on the link is modelled as :data:`HEADER_BYTES` plus :data:`VALUE_BYTES` per value (an
Ethernet/IP/UDP-style header and a tag id, type and 8-byte value per entry).
"""

from __future__ import annotations

import hmac
import struct
from typing import NamedTuple

import numpy as np

from cosim.core.variables import Value

HEADER_BYTES = 40
VALUE_BYTES = 12


class Message(NamedTuple):
    """One frame in transit.

    Attributes:
        source: name of the sending unit.
        destination: name of the receiving unit.
        tags: ``"unit.variable"`` of the source outputs carried, in order.
        values: one value per tag.
        timestamp: simulated send time in seconds (``grid.time(tick)`` of the sending tick).
        seq: sequence number of the channel (source, destination); 1 for its first frame.
        auth: HMAC-SHA256 tag over :func:`canonical_bytes` on an authenticated conduit,
            else ``None``.
    """

    source: str
    destination: str
    tags: tuple[str, ...]
    values: tuple[Value, ...]
    timestamp: float
    seq: int
    auth: bytes | None = None

    @property
    def size(self) -> int:
        """Bytes the frame occupies on the link."""
        return message_size(len(self.values))

    def value(self, tag: str) -> Value:
        """The value carried for ``tag`` (``KeyError`` if the frame does not carry it)."""
        try:
            return self.values[self.tags.index(tag)]
        except ValueError:
            raise KeyError(tag) from None


def message_size(n_values: int) -> int:
    """Size in bytes of a frame with ``n_values`` values."""
    return HEADER_BYTES + VALUE_BYTES * n_values


_HEADS: dict[tuple[str, str, tuple[str, ...]], bytes] = {}
_PACKERS: dict[tuple[type, ...], tuple[bytes, struct.Struct] | None] = {}
_STAMP = struct.Struct("<dq")
_CODES = {float: "d", int: "q", bool: "?"}


def _packer(types: tuple[type, ...]) -> tuple[bytes, struct.Struct] | None:
    codes = []
    for t in types:
        code = _CODES.get(t)
        if code is None:
            if issubclass(t, np.bool_):
                code = "?"
            elif issubclass(t, np.floating):
                code = "d"
            elif issubclass(t, np.integer):
                code = "q"
            else:
                return None  # strings and anything else: textual form
        codes.append(code)
    fmt = "".join(codes)
    return fmt.encode() + b":", struct.Struct("<" + fmt)


def canonical_bytes(source: str, destination: str, tags: tuple[str, ...], values: tuple[Value, ...],
                    timestamp: float, seq: int) -> bytes:
    """The bytes an HMAC covers: every field but ``auth``, in a fixed, unambiguous form.

    Addresses and tags in their ``repr``; numbers as little-endian binary (float64, int64,
    bool) after a type code per value, so a changed value, type, tag, address, time stamp or
    sequence number changes the bytes. Anything else (strings, huge integers) falls back to
    the ``repr`` of the whole frame, marked as such.
    """
    key = (source, destination, tags)
    head = _HEADS.get(key)
    if head is None:
        head = frame_head(source, destination, tags)
        if len(_HEADS) > 65536:
            _HEADS.clear()
        _HEADS[key] = head
    return framed_bytes(head, source, destination, tags, values, timestamp, seq)


def frame_head(source: str, destination: str, tags: tuple[str, ...]) -> bytes:
    """The addresses-and-tags part of :func:`canonical_bytes` (fixed per channel)."""
    return repr((source, destination, tags)).encode()


def framed_bytes(head: bytes, source: str, destination: str, tags: tuple[str, ...], values: tuple[Value, ...],
                 timestamp: float, seq: int) -> bytes:
    """:func:`canonical_bytes` given its :func:`frame_head` (a sender that knows it skips the lookup)."""
    types = tuple(map(type, values))
    packer = _PACKERS.get(types, False)
    if packer is False:
        packer = _PACKERS[types] = _packer(types)
    if packer is not None:
        try:
            return b"B" + head + _STAMP.pack(timestamp, seq) + packer[0] + packer[1].pack(*values)
        except (struct.error, TypeError, OverflowError):
            pass
    return b"R" + repr((source, destination, tags, values, timestamp, seq)).encode()


def sign(key: bytes, message: Message) -> bytes:
    """HMAC-SHA256 tag of ``message`` (its ``auth`` field is ignored)."""
    return hmac.digest(key, canonical_bytes(*message[:6]), "sha256")


def verify(key: bytes, message: Message) -> bool:
    """Whether ``message.auth`` is the right HMAC-SHA256 tag for ``message`` under ``key``."""
    tag = message.auth
    if not isinstance(tag, bytes | bytearray):
        return False
    return hmac.compare_digest(tag, hmac.digest(key, canonical_bytes(*message[:6]), "sha256"))
