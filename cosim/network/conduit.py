"""Conduits: one-way links from one zone to another, and the channels they carry.

A :class:`Conduit` carries every signal from units of its source zone to units of its
target zone (a bidirectional link is two conduits). The values one source unit sends one
target unit in one tick travel as a single :class:`~cosim.network.message.Message` on a
:class:`Channel`. On its way a message passes, in this order:

1. the sender: sequence number, HMAC tag (``auth="hmac"``);
2. hooks of the attack layer (:meth:`Conduit.add_hook`: drop or alter, man-in-the-middle);
   :meth:`Conduit.inject` puts forged messages on the conduit after this point;
3. the gateway, i.e. run-time control of the containment layer: :meth:`~Conduit.cut`,
   :meth:`~Conduit.allow`, :meth:`~Conduit.rate_limit`, :meth:`~Conduit.inspect`, :meth:`~Conduit.divert`;
4. the link: FIFO serialisation at ``bandwidth_bps`` with at most ``queue_limit`` messages
   waiting, random loss, then the delay ``latency_s + |N(0, jitter_s)|``;
5. the receiver: the HMAC is checked (a message arriving while the conduit is cut is
   dropped), a message with a lower sequence number than the last delivered one is
   discarded (``out_of_order``; an equal number is accepted), and the values are held in the
   target inputs until the next delivery (hold-last-value, as a fieldbus or a subscription).

Timing: a frame is sent when the master reads its source's outputs (Jacobi: at the start of
each tick the source is due; Gauss-Seidel: right after the source stepped) and carries the
time stamp ``grid.time(tick)`` of that tick. In Gauss-Seidel the values of a unit read after
its step are those at the end of its step, so they are ``step_ticks`` base steps newer than
the time stamp. Randomness (loss, jitter) comes from one generator per conduit, seeded from
the network seed and the conduit name; the draws happen only when ``loss > 0`` or
``jitter_s > 0``, one each per message reaching the link.

Delay model: a message sent at time ``t`` leaves at ``d = max(t, link free)``, occupies the
link for ``size / bandwidth_bps`` and arrives at ``d + size / bandwidth_bps + latency_s + J``
with ``J = |X|, X ~ N(0, jitter_s^2)`` (half-normal: mean ``jitter_s * sqrt(2/pi)``,
standard deviation ``jitter_s * sqrt(1 - 2/pi)``); jitter therefore only adds delay and can
reorder messages. It is delivered at the first tick of the master's grid at or after that
time, so a conduit without delay delivers in the tick it was sent, exactly like a direct
connection.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from cosim.core.variables import Value, VarType
from cosim.errors import ConfigurationError
from cosim.network.message import (
    HEADER_BYTES,
    VALUE_BYTES,
    Message,
    canonical_bytes,
    frame_head,
    framed_bytes,
    message_size,
)
from cosim.network.zone import ChannelKind, check_name

if TYPE_CHECKING:
    from cosim.core.unit import TimeGrid
    from cosim.network.network import Network

Hook = Callable[[Message], "Message | None"]
Sink = Callable[[Message], Any]

_new_message = tuple.__new__
_NEVER = -1  # "no delivery yet" for tick counters


def conduit_seed(seed: int, name: str) -> int:
    """A stable 128-bit seed for conduit ``name`` under the network seed (sha256 based)."""
    digest = hashlib.sha256(f"cosim.network:{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:16], "little")


def _number(where: str, key: str, value: Any, *, minimum: float = 0.0, maximum: float | None = None,
            allow_none: bool = False, open_min: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigurationError(f"{where}: {key} must be a number, got {value!r}")
    out = float(value)
    too_small = out <= minimum if open_min else out < minimum
    if not math.isfinite(out) or too_small or (maximum is not None and out > maximum):
        bound = f"> {minimum}" if open_min else f">= {minimum}"
        if maximum is not None:
            bound += f" and <= {maximum}"
        raise ConfigurationError(f"{where}: {key} must be finite and {bound}, got {value!r}")
    return out


@dataclass(frozen=True)
class ConduitConfig:
    """Static description of a conduit (validated on construction).

    Attributes:
        name: unique conduit name (letters, digits, ``_``, ``-``).
        source_zone: zone the messages come from.
        target_zone: zone they go to.
        channel: kind of traffic (:class:`~cosim.network.zone.ChannelKind`).
        latency_s: fixed one-way delay in seconds (>= 0).
        jitter_s: scale of the extra half-normal delay ``|N(0, jitter_s)|`` (>= 0).
        loss: probability that a message is lost on the link (0..1).
        bandwidth_bps: link capacity in **bytes** per second; ``None`` for unlimited.
        queue_limit: messages that may wait for a busy link; a message arriving when that
            many wait is dropped. ``None`` for unlimited. Only matters with a bandwidth.
        auth: ``None`` or ``"hmac"`` (HMAC-SHA256 on every message; the key is given to the
            network, never in the config).
        description: free text.
    """

    name: str
    source_zone: str
    target_zone: str
    channel: ChannelKind | str
    latency_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    bandwidth_bps: float | None = None
    queue_limit: int | None = None
    auth: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        check_name("conduit", self.name)
        where = f"conduit '{self.name}'"
        for key in ("source_zone", "target_zone"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{where}: {key} must be a zone name, got {value!r}")
        if self.source_zone == self.target_zone:
            raise ConfigurationError(
                f"{where}: leads from zone '{self.source_zone}' to itself; a conduit joins two "
                "different zones (units of one zone are connected directly)"
            )
        set_ = object.__setattr__
        set_(self, "channel", ChannelKind.parse(self.channel, where))
        set_(self, "latency_s", _number(where, "latency_s", self.latency_s))
        set_(self, "jitter_s", _number(where, "jitter_s", self.jitter_s))
        set_(self, "loss", _number(where, "loss", self.loss, maximum=1.0))
        set_(self, "bandwidth_bps", _number(where, "bandwidth_bps", self.bandwidth_bps, allow_none=True,
                                            open_min=True))
        limit = self.queue_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | np.integer)
                                  or limit < 0):
            raise ConfigurationError(f"{where}: queue_limit must be a whole number >= 0 or None, got {limit!r}")
        set_(self, "queue_limit", None if limit is None else int(limit))
        auth = self.auth
        if isinstance(auth, str) and auth.lower() in ("none", ""):
            auth = None
        if auth is not None and auth != "hmac":
            raise ConfigurationError(f"{where}: auth must be None or 'hmac', got {self.auth!r}")
        set_(self, "auth", auth)


class Channel:
    """The path of the frames from one source unit to one target unit over one conduit.

    Sender side: :attr:`seq` is the sequence number of the last frame sent. Receiver side
    (what a receiver can know, e.g. a twin checking for late or lost telemetry):
    :attr:`last_seq`, :attr:`last_sent_time`, :attr:`last_arrival_tick`, :attr:`gaps`.

    Attributes:
        conduit: the conduit it runs over.
        source: sending unit.
        target: receiving unit.
        tags: ``"unit.variable"`` of the source outputs it carries, in frame order.
        inputs: for each tag, the target inputs it feeds.
        size: bytes of one full frame on the link.
        seq: sequence number of the last frame the source sent (0: none yet).
        last_seq: sequence number of the last frame delivered (0: none yet).
        last_arrival_tick: tick of the last delivery (-1: none yet).
        gaps: sequence numbers skipped between consecutive deliveries (lost, dropped or
            late frames as the receiver sees them).
    """

    __slots__ = (
        "_last_ts",
        "conduit",
        "count",
        "gaps",
        "gather",
        "head",
        "hold",
        "inputs",
        "last_arrival_tick",
        "last_seq",
        "n_fast",
        "n_slow",
        "seq",
        "size",
        "source",
        "tag_index",
        "tags",
        "target",
        "types",
    )

    def __init__(self, conduit: Conduit, source: str, target: str, tags: Iterable[str],
                 inputs: Mapping[str, list[str]], types: Iterable[VarType]) -> None:
        self.conduit = conduit
        self.source = source
        self.target = target
        self.tags: tuple[str, ...] = tuple(tags)
        self.inputs = {t: list(inputs[t]) for t in self.tags}
        self.types: tuple[VarType, ...] = tuple(types)
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.count = len(self.tags)
        self.size = message_size(self.count)
        self.head = frame_head(source, target, self.tags)  # what every frame's HMAC covers first
        # bound by the master when it lays out its value buffer
        self.gather: Callable[[list[Value]], Any] = itemgetter(slice(0, 0))
        self.hold = slice(0, 0)
        self.seq = 0
        self.last_seq = 0
        self.last_arrival_tick = _NEVER
        self._last_ts: float | None = None  # None: sent in the tick of arrival (fast path)
        self.gaps = 0
        self.n_fast = 0  # delivered through the zero-delay path
        self.n_slow = 0  # delivered through the general path

    # Wiring (master) -------------------------------------------------------------------
    def bind_slots(self, sources: list[int], hold_first: int) -> None:
        """Read the tag values from buffer slots ``sources`` and hold them in slots
        ``hold_first .. hold_first + count - 1`` (called by the master on each compile)."""
        if sources == list(range(sources[0], sources[0] + len(sources))):
            self.gather = itemgetter(slice(sources[0], sources[0] + len(sources)))
        else:
            self.gather = itemgetter(*sources)
        self.hold = slice(hold_first, hold_first + self.count)

    # Step loop -------------------------------------------------------------------------
    def send(self, buf: list[Value], tick: int) -> None:
        """Send the current source values (master step loop, after the source was read)."""
        seq = self.seq + 1
        self.seq = seq
        if self.conduit.fast and self.last_seq == seq - 1:
            # no delay, no loss, no control, no hooks: delivered now, as a direct connection
            buf[self.hold] = self.gather(buf)
            self.n_fast += 1
            self.last_seq = seq
            self.last_arrival_tick = tick
            self._last_ts = None
            return
        self.conduit._send(self, tuple(self.gather(buf)), tick, seq, buf)

    # Receiver-side view ----------------------------------------------------------------
    @property
    def last_sent_time(self) -> float | None:
        """Time stamp carried by the last delivered frame (``None``: nothing delivered)."""
        if self._last_ts is not None:
            return self._last_ts
        if self.last_arrival_tick == _NEVER:
            return None
        return self.conduit._time(self.last_arrival_tick)

    @property
    def delivered(self) -> int:
        """Frames delivered to the target so far (forged ones that passed included)."""
        return self.n_fast + self.n_slow

    def save_state(self) -> tuple[Any, ...]:
        return (self.seq, self.last_seq, self.last_arrival_tick, self._last_ts, self.gaps, self.n_fast,
                self.n_slow)

    def restore_state(self, state: tuple[Any, ...]) -> None:
        (self.seq, self.last_seq, self.last_arrival_tick, self._last_ts, self.gaps, self.n_fast,
         self.n_slow) = state

    def __repr__(self) -> str:
        return f"<Channel {self.source} -> {self.target} over '{self.conduit.name}' tags={list(self.tags)}>"


# Counters kept per conduit, in the order of :meth:`Conduit.stats`.
_COUNTERS = ("lost", "dropped_cut", "dropped_filter", "dropped_rate", "dropped_queue", "dropped_hook",
             "diverted", "auth_failures", "out_of_order", "malformed", "injected", "bytes_sent",
             "delivered", "in_flight")


#: What :meth:`Conduit.traffic` gives, in order (names of :meth:`Conduit.stats`).
TRAFFIC_FIELDS = ("delivered", "gaps", "auth_failures", "out_of_order", "malformed", "dropped_cut",
                  "dropped_filter", "dropped_rate", "dropped_queue", "bytes_sent", "queue_length",
                  "last_delivery_tick")


def _hmac_template(key: bytes) -> Any:
    """An HMAC-SHA256 state with the key's pads done, copied per message. OpenSSL's own HMAC
    object where the ``hmac`` module keeps one (``copy``/``update``/``digest`` without a
    Python wrapper: ~1 us less per message), else the ``hmac`` object."""
    mac = hmac.new(key, digestmod="sha256")
    return getattr(mac, "_hmac", None) or mac


class Conduit:
    """A one-way link from ``config.source_zone`` to ``config.target_zone``.

    Built by :class:`~cosim.network.network.Network`; get one with ``network.conduits[name]``.
    Its run-time controls (:meth:`cut`, :meth:`restore`, :meth:`rate_limit`, :meth:`allow`,
    :meth:`divert`) and attack hooks (:meth:`add_hook`, :meth:`inject`) may be used while
    the system runs, e.g. from an observer.

    Args:
        config: the static description.
        seed: network seed; the conduit's generator is seeded from it and the conduit name.
        hmac_key: key of an ``auth="hmac"`` conduit (bytes, required there).
    """

    def __init__(self, config: ConduitConfig, seed: int = 0, hmac_key: bytes | None = None) -> None:
        self.config = config
        self.name = config.name
        if config.auth == "hmac":
            if not isinstance(hmac_key, bytes | bytearray) or not hmac_key:
                raise ConfigurationError(
                    f"conduit '{self.name}' uses auth 'hmac' but no key was given (pass hmac_keys"
                    f"={{'{self.name}': b'...'}}; keys are bytes and never part of a config file)"
                )
            self._key: bytes | None = bytes(hmac_key)
            self._mac: Any = _hmac_template(self._key)
        else:
            if hmac_key is not None:
                raise ConfigurationError(f"conduit '{self.name}': an hmac key was given but its auth is None")
            self._key = None
            self._mac = None
        self._latency = float(config.latency_s)
        self._jitter = float(config.jitter_s)
        self._loss = float(config.loss)
        self._bandwidth = config.bandwidth_bps
        self._queue_limit = config.queue_limit
        self._rng = np.random.default_rng(conduit_seed(seed, self.name))
        self.channels: list[Channel] = []
        self._network: Network | None = None
        self._grid: TimeGrid | None = None
        self._t0 = 0.0
        self._h = 1.0
        # link
        self._departures: deque[float] = deque()  # start times of messages waiting for the link
        self._link_free = -math.inf
        # run-time control
        self._cut = False
        self._allow: frozenset[str] | None = None
        self._allow_cache: dict[tuple[str, ...], bool] = {}
        self._rate: float | None = None
        self._burst = 1.0
        self._tokens = 0.0
        self._tb_last: float | None = None
        self._sink: Sink | None = None
        self._inspect = False
        self._hooks: list[Hook] = []
        # statistics (fast-path deliveries are counted on the channels)
        self.lost = 0
        self.dropped_cut = 0
        self.dropped_filter = 0
        self.dropped_rate = 0
        self.dropped_queue = 0
        self.dropped_hook = 0
        self.diverted = 0
        self.auth_failures = 0
        self.out_of_order = 0
        self.malformed = 0
        self.injected = 0
        self.bytes_sent = 0
        self.delivered = 0
        self.in_flight = 0
        self.latency_sum = 0.0
        self.latency_sq_sum = 0.0
        self.fast = True
        self._update_fast()

    # Properties ------------------------------------------------------------------------
    @property
    def source_zone(self) -> str:
        return self.config.source_zone

    @property
    def target_zone(self) -> str:
        return self.config.target_zone

    @property
    def channel_kind(self) -> ChannelKind:
        return self.config.channel  # type: ignore[return-value]

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def authenticated(self) -> bool:
        return self._key is not None

    def _update_fast(self) -> None:
        self._gated = (self._cut or self._rate is not None or self._allow is not None or self._sink is not None
                       or self._inspect)
        # A keyed conduit may take the fast path too: a frame signed by its sender, untouched
        # by hooks and delivered in the tick it was sent, is the very frame the receiver would
        # check, so its tag verifies by construction and nothing else ever reads it.
        self.fast = (self._latency == 0.0 and self._jitter == 0.0 and self._loss == 0.0
                     and self._bandwidth is None and not self._hooks and not self._gated)

    def _bind_grid(self, grid: TimeGrid) -> None:
        self._grid = grid
        self._t0 = grid.start_time
        self._h = grid.base_step

    def _time(self, tick: int) -> float:
        assert self._grid is not None, f"conduit '{self.name}' used before its network was attached and built"
        return self._grid.time(tick)

    # Run-time control (containment) ----------------------------------------------------
    def cut(self) -> None:
        """Deliver nothing: messages sent or arriving while cut are dropped (``dropped_cut``)."""
        self._cut = True
        self._update_fast()

    def restore(self) -> None:
        """Undo :meth:`cut`; messages still in flight are delivered when they arrive."""
        self._cut = False
        self._update_fast()

    def secure(self, key: bytes) -> None:
        """Authenticate every frame from now on (HMAC-SHA256 with ``key``): frames changed or
        forged on the path fail the receiver's check (``auth_failures``) and are discarded,
        and so do in-path manipulators of the connections it carries (see
        :attr:`cosim.core.manipulator.Manipulator.path`). Frames already in flight were
        signed with the old key, or none, and are checked against the new one."""
        if not isinstance(key, bytes | bytearray) or not key:
            raise ConfigurationError(f"conduit '{self.name}': secure needs a non-empty bytes key")
        self._key = bytes(key)
        self._mac = _hmac_template(self._key)
        self._update_fast()

    def reject_tampered(self) -> None:
        """Count a frame changed on the path that failed authentication at the receiver."""
        self.auth_failures += 1

    def rate_limit(self, msgs_per_s: float | None, burst: float | None = None) -> None:
        """Token bucket: pass at most ``msgs_per_s`` messages per second on average.

        Args:
            msgs_per_s: refill rate; ``None`` removes the limit.
            burst: bucket size in messages (default ``max(1, msgs_per_s / 10)``, 100 ms worth).
                The bucket starts full; an excess message is dropped (``dropped_rate``).
        """
        if msgs_per_s is None:
            self._rate = None
        else:
            rate = _number(f"conduit '{self.name}'", "rate_limit", msgs_per_s, open_min=True)
            assert rate is not None
            size = max(1.0, rate / 10.0) if burst is None else _number(
                f"conduit '{self.name}'", "burst", burst, minimum=1.0)
            assert size is not None
            self._rate, self._burst = rate, size
            self._tokens, self._tb_last = size, None
        self._update_fast()

    def allow(self, tags: Iterable[str] | None) -> None:
        """Pass only frames whose every tag is listed (``"unit.var"``) or comes from a listed
        unit (``"unit"``); others are dropped (``dropped_filter``). ``None`` allows all."""
        if tags is None:
            self._allow = None
        else:
            if isinstance(tags, str):
                tags = [tags]
            items = frozenset(tags)
            bad = [t for t in items if not isinstance(t, str) or not t]
            if bad:
                raise ConfigurationError(f"conduit '{self.name}': allow-list entries must be non-empty strings: {bad}")
            self._allow = items
        self._allow_cache = {}
        self._update_fast()

    def inspect(self, enabled: bool = True) -> None:
        """Stateful inspection at the gateway (an industrial firewall in front of the receiver):
        a frame the receiver would reject anyway — a stale sequence number, or a failed HMAC on
        an authenticated conduit — is dropped before it takes link bandwidth or the receiving
        device's capacity (``dropped_filter``). Frames as their sender signed them pass."""
        self._inspect = bool(enabled)
        self._update_fast()

    def divert(self, sink: Sink | None) -> None:
        """Send messages to ``sink(message)`` instead of their destination, which holds its
        last value (``diverted``); ``None`` restores normal delivery."""
        if sink is not None and not callable(sink):
            raise ConfigurationError(f"conduit '{self.name}': divert needs a callable sink, got {sink!r}")
        self._sink = sink
        self._update_fast()

    # Attack layer ----------------------------------------------------------------------
    def add_hook(self, fn: Hook) -> Hook:
        """Run ``fn(message) -> message | None`` on every message entering the link, in the
        order added. ``None`` drops it (``dropped_hook``); a changed message travels on in
        its place (man-in-the-middle: an authenticated conduit's receiver will reject it)."""
        if not callable(fn):
            raise ConfigurationError(f"conduit '{self.name}': a hook must be callable, got {fn!r}")
        self._hooks.append(fn)
        self._update_fast()
        return fn

    def remove_hook(self, fn: Hook) -> None:
        self._hooks.remove(fn)
        self._update_fast()

    @property
    def hooks(self) -> tuple[Hook, ...]:
        return tuple(self._hooks)

    def inject(self, destination_unit: str, values_by_tag: Mapping[str, Value], source: str | None = None,
               auth: bytes | None = None, seq: int | None = None, timestamp: float | None = None) -> Message:
        """Put a forged message on the conduit now (the master's current tick).

        It passes the gateway, the link (queue, loss, delay) and the receiver's checks like
        any other message: an authenticated conduit rejects it unless ``auth`` is the right
        tag (counted in ``auth_failures``).

        Args:
            destination_unit: receiving unit; a channel from ``source`` to it must exist here.
            values_by_tag: ``{"unit.var": value}``, a subset of the channel's tags.
            source: claimed sending unit (default: the unit of the tags).
            auth: tag to carry (``None``: none; an attacker without the key cannot forge one).
            seq: sequence number (default: the sender's next one, so it is not discarded).
            timestamp: claimed send time (default: now).

        Returns:
            The message as it was put on the link.
        """
        net = self._network
        if net is None or net.master is None or self._grid is None:
            raise ConfigurationError(f"conduit '{self.name}': inject needs the network attached to a built master")
        tags = tuple(values_by_tag)
        if not tags:
            raise ConfigurationError(f"conduit '{self.name}': inject needs at least one tag")
        if source is None:
            owners = {t.partition(".")[0] for t in tags}
            if len(owners) != 1:
                raise ConfigurationError(
                    f"conduit '{self.name}': inject tags {list(tags)} come from several units; give source="
                )
            source = owners.pop()
        ch = next((c for c in self.channels if c.source == source and c.target == destination_unit), None)
        if ch is None:
            known = [f"{c.source} -> {c.target}" for c in self.channels]
            raise ConfigurationError(
                f"conduit '{self.name}': no channel from '{source}' to '{destination_unit}'; its channels are {known}"
            )
        unknown = [t for t in tags if t not in ch.tag_index]
        if unknown:
            raise ConfigurationError(
                f"conduit '{self.name}': channel {source} -> {destination_unit} carries {list(ch.tags)}, "
                f"not {unknown}"
            )
        values = tuple(ch.types[ch.tag_index[t]].coerce(v) for t, v in values_by_tag.items())
        master = net.master
        tick = master.tick
        now = self._grid.time(tick)
        msg = Message(source, destination_unit, tags, values, now if timestamp is None else float(timestamp),
                      ch.seq + 1 if seq is None else int(seq), auth)
        self.injected += 1
        self._transmit(ch, msg, tick, now, master._buf, False)
        return msg

    # The path of a message -------------------------------------------------------------
    def _send(self, ch: Channel, values: tuple[Value, ...], tick: int, seq: int, buf: list[Value]) -> None:
        now = self._t0 + tick * self._h  # == grid.time(tick)
        mac = self._mac
        if mac is None:
            auth = None
        else:
            mac = mac.copy()
            mac.update(framed_bytes(ch.head, ch.source, ch.target, ch.tags, values, now, seq))
            auth = mac.digest()
        msg: Message | None = _new_message(Message, (ch.source, ch.target, ch.tags, values, now, seq, auth))
        trusted = True
        if self._hooks:
            original = msg
            for hook in self._hooks:
                msg = hook(msg)  # type: ignore[arg-type]
                if msg is None:
                    self.dropped_hook += 1
                    return
            trusted = msg is original
        self._transmit(ch, msg, tick, now, buf, trusted)  # type: ignore[arg-type]

    def _transmit(self, ch: Channel, msg: Message, tick: int, now: float, buf: list[Value], trusted: bool) -> None:
        """Gateway, then link. ``trusted``: ``msg`` is the very object its sender signed, so
        its HMAC is known to verify (the check is skipped; its outcome would be the same)."""
        if self._gated:
            if self._cut:
                self.dropped_cut += 1
                return
            if self._allow is not None and not self._allowed(msg.tags):
                self.dropped_filter += 1
                return
            if self._inspect and not trusted and (msg.seq < ch.last_seq or not self._verified(msg)):
                self.dropped_filter += 1
                return
            if self._rate is not None and not self._take_token(now):
                self.dropped_rate += 1
                return
            if self._sink is not None:
                self.diverted += 1
                self._sink(msg)
                return
        size = HEADER_BYTES + VALUE_BYTES * len(msg.values)
        arrive = now
        if self._bandwidth is not None:
            waiting = self._departures
            while waiting and waiting[0] <= now:
                waiting.popleft()
            depart = max(now, self._link_free)
            if depart > now and self._queue_limit is not None and len(waiting) >= self._queue_limit:
                self.dropped_queue += 1  # it would have to wait, and the queue is full
                return
            busy = size / self._bandwidth
            self._link_free = depart + busy
            if depart > now:
                waiting.append(depart)
            arrive = depart + busy
        self.bytes_sent += size
        if self._loss > 0.0 and self._rng.random() < self._loss:
            self.lost += 1
            return
        arrive += self._latency
        if self._jitter > 0.0:
            arrive += abs(float(self._rng.standard_normal())) * self._jitter
        # first tick whose time is at or after the arrival (within a millionth of a step, so
        # a latency of exactly n base steps takes n ticks whatever the rounding of the sum)
        at = math.ceil((arrive - self._t0) / self._h - 1e-6)
        if at <= tick:
            self._receive(ch, msg, tick, now, buf, trusted)
        else:
            self.in_flight += 1
            self._network._push(at, ch, msg, now, trusted)  # type: ignore[union-attr]

    def _receive(self, ch: Channel, msg: Message, tick: int, sent_at: float, buf: list[Value],
                 trusted: bool) -> None:
        if self._cut:
            self.dropped_cut += 1
            return
        if not trusted and not self._verified(msg):
            self.auth_failures += 1
            return
        seq = msg.seq
        last = ch.last_seq
        if seq < last:
            self.out_of_order += 1
            return
        values = msg.values
        tags = msg.tags
        if len(values) != len(tags):
            self.malformed += 1
            return
        if tags is ch.tags or tags == ch.tags:
            buf[ch.hold] = values
        else:
            first, index = ch.hold.start, ch.tag_index
            known = [(index[t], v) for t, v in zip(tags, values, strict=True) if t in index]
            if not known:
                self.malformed += 1
                return
            for i, v in known:
                buf[first + i] = v
        if seq > last + 1:
            ch.gaps += seq - last - 1
        ch.last_seq = seq
        ch._last_ts = msg.timestamp
        ch.last_arrival_tick = tick
        ch.n_slow += 1
        self.delivered += 1
        latency = self._t0 + tick * self._h - sent_at
        self.latency_sum += latency
        self.latency_sq_sum += latency * latency

    def _verified(self, msg: Message) -> bool:
        """Whether ``msg`` passes authentication (always, on a conduit without a key)."""
        if self._mac is None:
            return True
        tag = msg.auth
        if not isinstance(tag, bytes | bytearray):
            return False
        mac = self._mac.copy()
        mac.update(canonical_bytes(*msg[:6]))
        return hmac.compare_digest(tag, mac.digest())

    def _allowed(self, tags: tuple[str, ...]) -> bool:
        ok = self._allow_cache.get(tags)
        if ok is None:
            allow = self._allow
            assert allow is not None
            ok = all(t in allow or t.partition(".")[0] in allow for t in tags)
            self._allow_cache[tags] = ok
        return ok

    def _take_token(self, now: float) -> bool:
        assert self._rate is not None
        if self._tb_last is None:
            tokens = self._burst
        else:
            tokens = min(self._burst, self._tokens + (now - self._tb_last) * self._rate)
        self._tb_last = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False

    # Statistics ------------------------------------------------------------------------
    def queue_length(self, now: float | None = None) -> int:
        """Messages waiting for the link at time ``now`` (default: the master's time)."""
        waiting = self._departures
        if not waiting:
            return 0
        if now is None:
            net = self._network
            if net is None or net.master is None or self._grid is None:
                return len(waiting)
            now = self._grid.time(net.master.tick)
        return sum(1 for d in waiting if d > now)

    def traffic(self) -> tuple[int, ...]:
        """The counters of :data:`TRAFFIC_FIELDS`, as :meth:`stats` gives them, without the
        rest (what a detector reads at every sample)."""
        n_fast, _sent, fast_bytes, gaps, last = self._channel_totals()
        return (self.delivered + n_fast, gaps, self.auth_failures, self.out_of_order, self.malformed,
                self.dropped_cut, self.dropped_filter, self.dropped_rate, self.dropped_queue,
                self.bytes_sent + fast_bytes, self.queue_length(), last)

    def _channel_totals(self) -> tuple[int, int, int, int, int]:
        """``(fast-path deliveries, frames sent, fast-path bytes, gaps, last delivery tick)``
        over the channels, in one pass (fast-path deliveries are counted on the channels)."""
        n_fast = sent = fast_bytes = gaps = 0
        last = _NEVER
        for c in self.channels:
            n_fast += c.n_fast
            sent += c.seq
            fast_bytes += c.n_fast * c.size
            gaps += c.gaps
            if c.last_arrival_tick > last:
                last = c.last_arrival_tick
        return n_fast, sent, fast_bytes, gaps, last

    def stats(self) -> dict[str, Any]:
        """Cumulative counters (see :data:`cosim.network.stats.STAT_FIELDS`)."""
        n_fast, sent, fast_bytes, gaps, last = self._channel_totals()
        delivered = self.delivered + n_fast
        mean = self.latency_sum / delivered if delivered else 0.0
        var = self.latency_sq_sum / delivered - mean * mean if delivered else 0.0
        return {
            "sent": sent,
            "delivered": delivered,
            "lost": self.lost,
            "dropped_cut": self.dropped_cut,
            "dropped_filter": self.dropped_filter,
            "dropped_rate": self.dropped_rate,
            "dropped_queue": self.dropped_queue,
            "dropped_hook": self.dropped_hook,
            "diverted": self.diverted,
            "auth_failures": self.auth_failures,
            "out_of_order": self.out_of_order,
            "malformed": self.malformed,
            "injected": self.injected,
            "bytes_sent": self.bytes_sent + fast_bytes,
            "latency_sum_s": self.latency_sum,
            "latency_mean_s": mean,
            "latency_std_s": math.sqrt(var) if var > 0.0 else 0.0,
            "queue_length": self.queue_length(),
            "in_flight": self.in_flight,
            "last_delivery_tick": last,
            "gaps": gaps,
            "cut": self._cut,
        }

    # State -----------------------------------------------------------------------------
    def save_state(self) -> dict[str, Any]:
        return {
            "counters": tuple(getattr(self, k) for k in _COUNTERS),
            "latency": (self.latency_sum, self.latency_sq_sum),
            "rng": self._rng.bit_generator.state,
            "link": (tuple(self._departures), self._link_free),
            "control": (self._cut, self._allow, self._rate, self._burst, self._tokens, self._tb_last,
                        self._sink, self._inspect, tuple(self._hooks)),
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        for key, value in zip(_COUNTERS, state["counters"], strict=True):
            setattr(self, key, value)
        self.latency_sum, self.latency_sq_sum = state["latency"]
        self._rng.bit_generator.state = state["rng"]
        departures, self._link_free = state["link"]
        self._departures = deque(departures)
        (self._cut, self._allow, self._rate, self._burst, self._tokens, self._tb_last, self._sink,
         self._inspect, hooks) = state["control"]
        self._hooks = list(hooks)
        self._allow_cache = {}
        self._update_fast()

    def __repr__(self) -> str:
        c = self.config
        return (f"<Conduit '{self.name}' {c.source_zone} -> {c.target_zone} ({self.channel_kind.value}), "
                f"{len(self.channels)} channel(s){', cut' if self._cut else ''}>")

