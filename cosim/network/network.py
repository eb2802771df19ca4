"""The network: zones, the units in them, conduits between them, and messages in flight.

Usage::

    net = Network({"field": ["conveyor", "press"], "control": ["plc"]},
                  [ConduitConfig("f2c", "field", "control", "telemetry", latency_s=0.002),
                   ConduitConfig("c2f", "control", "field", "command", latency_s=0.002)],
                  seed=7)
    master.attach_network(net)        # before build(); or net.attach(master)
    master.build()
    net.conduits["c2f"].cut()         # containment, at run time
    net.stats()["f2c"]["delivered"]

When the master is built, every connection between units of two different zones is routed
over the conduit from the source zone to the target zone (an error names the connection if
there is none). Same-zone connections stay direct and cost nothing extra.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cosim.core.connection import Port
from cosim.errors import ConfigurationError
from cosim.network.conduit import Channel, Conduit, ConduitConfig
from cosim.network.message import Message
from cosim.network.zone import Zone, check_name, close_matches

if TYPE_CHECKING:
    from cosim.core.master import Master
    from cosim.core.variables import Value

NO_ARRIVAL = sys.maxsize  # next_arrival when nothing is in flight

# (arrival tick, order, channel, message, sent at, trusted: the untouched signed original)
_Entry = tuple[int, int, Channel, Message, float, bool]


class Network:
    """Zones with their units, and the conduits between zones.

    Args:
        zones: ``{zone: [unit names]}``; a key may be a :class:`Zone` (with a description)
            or a zone name.
        conduits: the conduits; at most one per (source zone, target zone).
        seed: drives every random draw of the network (each conduit has its own generator,
            seeded from this and its name).
        hmac_keys: ``{conduit name: key bytes}`` for the conduits with ``auth="hmac"``.
        default_zone: zone of every unit not listed in ``zones`` (``None``: such a unit is
            an error when the network is attached to a master).
        exempt: units outside every zone, whose connections are never routed (e.g. a
            :class:`~cosim.network.stats.NetworkStats` unit, which is exempt anyway).
    """

    def __init__(self, zones: Mapping[Zone | str, Iterable[str]], conduits: Iterable[ConduitConfig], *,
                 seed: int = 0, hmac_keys: Mapping[str, bytes] | None = None,
                 default_zone: Zone | str | None = None, exempt: Iterable[str] = ()) -> None:
        self.seed = int(seed)
        self.zones: dict[str, Zone] = {}
        self.assignment: dict[str, str] = {}
        for key, members in zones.items():
            zone = key if isinstance(key, Zone) else Zone(check_name("zone", key))
            if zone.name in self.zones:
                raise ConfigurationError(f"network: zone '{zone.name}' is declared twice")
            self.zones[zone.name] = zone
            if isinstance(members, str) or not isinstance(members, Iterable):
                raise ConfigurationError(f"network: zone '{zone.name}' needs a list of unit names, got {members!r}")
            for unit in members:
                if not isinstance(unit, str) or not unit:
                    raise ConfigurationError(f"network: zone '{zone.name}' lists {unit!r}, not a unit name")
                if unit in self.assignment:
                    raise ConfigurationError(
                        f"network: unit '{unit}' is assigned to two zones, '{self.assignment[unit]}' and '{zone.name}'"
                    )
                self.assignment[unit] = zone.name
        if isinstance(default_zone, Zone):
            self.zones.setdefault(default_zone.name, default_zone)
            default_zone = default_zone.name
        if default_zone is not None and default_zone not in self.zones:
            raise ConfigurationError(
                f"network: default_zone '{default_zone}' is not a zone{close_matches(default_zone, list(self.zones))}; "
                f"zones are {sorted(self.zones)}"
            )
        self.default_zone: str | None = default_zone
        self.exempt: frozenset[str] = frozenset([exempt] if isinstance(exempt, str) else exempt)
        both = sorted(self.exempt & set(self.assignment))
        if both:
            raise ConfigurationError(f"network: unit(s) {both} are both exempt and assigned to a zone")

        keys = dict(hmac_keys or {})
        self.conduits: dict[str, Conduit] = {}
        self._by_pair: dict[tuple[str, str], Conduit] = {}
        for cfg in conduits:
            if not isinstance(cfg, ConduitConfig):
                raise ConfigurationError(f"network: expected a ConduitConfig, got {cfg!r}")
            for role, zone_name in (("source_zone", cfg.source_zone), ("target_zone", cfg.target_zone)):
                if zone_name not in self.zones:
                    raise ConfigurationError(
                        f"conduit '{cfg.name}': unknown {role} '{zone_name}'"
                        f"{close_matches(zone_name, list(self.zones))}; zones are {sorted(self.zones)}"
                    )
            if cfg.name in self.conduits:
                raise ConfigurationError(f"network: two conduits are named '{cfg.name}'")
            pair = (cfg.source_zone, cfg.target_zone)
            if pair in self._by_pair:
                raise ConfigurationError(
                    f"network: conduits '{self._by_pair[pair].name}' and '{cfg.name}' both lead from zone "
                    f"'{pair[0]}' to zone '{pair[1]}'; one conduit per direction (merge them)"
                )
            conduit = Conduit(cfg, self.seed, keys.pop(cfg.name, None))
            conduit._network = self
            self.conduits[cfg.name] = conduit
            self._by_pair[pair] = conduit
        if keys:
            raise ConfigurationError(f"network: hmac keys given for unknown conduit(s) {sorted(keys)}")

        self.master: Master | None = None
        self._channels: dict[tuple[str, str], Channel] = {}
        self.routes: dict[Port, tuple[Channel, str]] = {}
        self._heap: list[_Entry] = []
        self._order = 0
        self.next_arrival = NO_ARRIVAL

    # Structure -------------------------------------------------------------------------
    def attach(self, master: Master) -> Network:
        """Attach to ``master`` (before it is built); same as ``master.attach_network(self)``."""
        master.attach_network(self)
        return self

    def is_exempt(self, unit: str) -> bool:
        """Whether ``unit`` stands outside the zones (its connections are never routed)."""
        if unit in self.exempt:
            return True
        if self.master is not None:
            from cosim.network.stats import NetworkStats

            obj = self.master.units.get(unit)
            return isinstance(obj, NetworkStats) and obj.network is self
        return False

    def zone_of(self, unit: str) -> str:
        """Zone name of ``unit`` (its assigned zone, else the default zone)."""
        zone = self.assignment.get(unit, self.default_zone)
        if zone is None:
            raise ConfigurationError(
                f"network: unit '{unit}' is not assigned to any zone (list it under a zone or give a default_zone)"
            )
        return zone

    def between(self, source_zone: str, target_zone: str) -> Conduit | None:
        """The conduit from ``source_zone`` to ``target_zone``, if there is one."""
        return self._by_pair.get((source_zone, target_zone))

    def conduit(self, name: str) -> Conduit:
        try:
            return self.conduits[name]
        except KeyError:
            raise ConfigurationError(
                f"network: no conduit '{name}'{close_matches(name, list(self.conduits))}; "
                f"conduits are {sorted(self.conduits)}"
            ) from None

    @property
    def channels(self) -> list[Channel]:
        """Every routed channel, in the order of the connections that made them."""
        return list(self._channels.values())

    def channel(self, source_unit: str, target_unit: str) -> Channel:
        """The channel from ``source_unit`` to ``target_unit`` (receive metadata: ``last_seq``,
        ``last_sent_time``, ``last_arrival_tick``, ``gaps``)."""
        ch = self._channels.get((source_unit, target_unit))
        if ch is None:
            known = [f"{s} -> {t}" for s, t in self._channels]
            raise ConfigurationError(
                f"network: no routed channel from '{source_unit}' to '{target_unit}' (same-zone or unconnected "
                f"units have none); channels are {known}"
            )
        return ch

    def route_of(self, source_unit: str, target_unit: str) -> Conduit | None:
        """The conduit that frames from ``source_unit`` to ``target_unit`` travel over, if any."""
        ch = self._channels.get((source_unit, target_unit))
        return None if ch is None else ch.conduit

    def bind(self, master: Master) -> None:
        """Check the zones against ``master``'s units and route its connections.

        Called by :meth:`Master.build`. Raises :class:`ConfigurationError` for a unit in no
        zone, a zone listing an unknown unit, or a cross-zone connection without a conduit.
        """
        if self.master is not None and self.master is not master:
            raise ConfigurationError("network: already attached to another master")
        self.master = master
        units = master.units
        for unit, zone in self.assignment.items():
            if unit not in units:
                raise ConfigurationError(
                    f"network: zone '{zone}' lists unit '{unit}', which the system does not have"
                    f"{close_matches(unit, list(units))}; units are {sorted(units)}"
                )
        for unit in sorted(self.exempt):
            if unit not in units:
                raise ConfigurationError(f"network: exempt unit '{unit}' does not exist; units are {sorted(units)}")
        if self.default_zone is None:
            missing = [u for u in units if u not in self.assignment and not self.is_exempt(u)]
            if missing:
                raise ConfigurationError(
                    f"network: unit(s) {missing} are not assigned to any zone (list them under a zone or give "
                    "a default_zone)"
                )
        for conduit in self.conduits.values():
            conduit._bind_grid(master.grid)
            conduit.channels = []
        found: dict[tuple[str, str], tuple[Conduit, dict[str, list[str]]]] = {}
        routes: dict[Port, tuple[tuple[str, str], str]] = {}
        for conn in master.connections:
            s, t = conn.source.unit, conn.target.unit
            if self.is_exempt(s) or self.is_exempt(t):
                continue
            zs, zt = self.zone_of(s), self.zone_of(t)
            if zs == zt:
                continue
            conduit = self._by_pair.get((zs, zt))
            if conduit is None:
                existing = [f"{c.name}: {c.source_zone} -> {c.target_zone}" for c in self.conduits.values()]
                raise ConfigurationError(
                    f"connection {conn} crosses from zone '{zs}' (unit '{s}') to zone '{zt}' (unit '{t}') but no "
                    f"conduit leads from '{zs}' to '{zt}'; add one (conduits: {existing or 'none'})"
                )
            _, tags = found.setdefault((s, t), (conduit, {}))
            tag = str(conn.source)
            tags.setdefault(tag, []).append(conn.target.variable)
            routes[conn.target] = ((s, t), tag)
        self._channels = {}
        for (s, t), (conduit, tags) in found.items():
            types = [units[s].variables[Port.parse(tag).variable].type for tag in tags]
            ch = Channel(conduit, s, t, tags, tags, types)
            conduit.channels.append(ch)
            self._channels[(s, t)] = ch
        self.routes = {port: (self._channels[key], tag) for port, (key, tag) in routes.items()}

    # Step loop -------------------------------------------------------------------------
    def _push(self, at: int, ch: Channel, msg: Message, sent_at: float, trusted: bool) -> None:
        self._order += 1
        heapq.heappush(self._heap, (at, self._order, ch, msg, sent_at, trusted))
        if at < self.next_arrival:
            self.next_arrival = at

    def deliver(self, tick: int, buf: list[Value]) -> None:
        """Deliver every message due at or before ``tick`` (master, start of each tick)."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= tick:
            _, _, ch, msg, sent_at, trusted = pop(heap)
            conduit = ch.conduit
            conduit.in_flight -= 1
            conduit._receive(ch, msg, tick, sent_at, buf, trusted)
        self.next_arrival = heap[0][0] if heap else NO_ARRIVAL

    def in_flight(self) -> list[tuple[int, Message]]:
        """Messages on their way, as ``(arrival tick, message)`` in delivery order."""
        return [(e[0], e[3]) for e in sorted(self._heap)]

    # Statistics ------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, Any]]:
        """Cumulative statistics per conduit (see :data:`cosim.network.stats.STAT_FIELDS`)."""
        return {name: c.stats() for name, c in self.conduits.items()}

    # State -----------------------------------------------------------------------------
    def save_state(self) -> dict[str, Any]:
        """Everything that changes while running: messages in flight, generators, counters,
        run-time control, token buckets, link queues, channel sequence state."""
        return {
            "heap": tuple(self._heap),
            "order": self._order,
            "conduits": {name: c.save_state() for name, c in self.conduits.items()},
            "channels": {key: ch.save_state() for key, ch in self._channels.items()},
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        self._heap = list(state["heap"])
        self._order = state["order"]
        self.next_arrival = self._heap[0][0] if self._heap else NO_ARRIVAL
        for name, cstate in state["conduits"].items():
            self.conduits[name].restore_state(cstate)
        for key, chstate in state["channels"].items():
            self._channels[key].restore_state(chstate)

    def describe(self) -> str:
        lines = ["network:"]
        for zone in self.zones.values():
            members = [u for u, z in self.assignment.items() if z == zone.name]
            default = " (default)" if zone.name == self.default_zone else ""
            lines.append(f"  zone {zone.name}{default}: {', '.join(members) or '-'}")
        for c in self.conduits.values():
            cfg = c.config
            lines.append(
                f"  conduit {c.name}: {cfg.source_zone} -> {cfg.target_zone} ({c.channel_kind.value}), "
                f"latency {cfg.latency_s} s, jitter {cfg.jitter_s} s, loss {cfg.loss}, "
                f"bandwidth {cfg.bandwidth_bps or 'unlimited'} B/s, auth {cfg.auth}"
            )
            lines += [f"    {ch.source} -> {ch.target}: {', '.join(ch.tags)}" for ch in c.channels]
        return "\n".join(lines)


_CONFIG_KEYS = {"zones", "default_zone", "exempt", "conduits"}
_CONDUIT_KEYS = {"name", "from", "to", "channel", "latency_s", "jitter_s", "loss", "bandwidth_bps", "queue_limit",
                 "auth", "description"}


def network_from_config(cfg: Mapping[str, Any], units: Sequence[str], seed: int,
                        hmac_keys: Mapping[str, bytes] | None = None) -> Network:
    """Build a :class:`Network` from a config mapping (e.g. a Hydra ``network`` group).

    Schema::

        zones:                      # zone -> unit names, or -> {units: [...], description: ...}
          field: [conveyor, press, cell]
          control: [plc]
          supervisory: {units: [hmi, twin], description: "SL-2"}
        default_zone: null         # zone of units not listed (null: listing every unit is required)
        exempt: [net]              # units outside every zone (never routed)
        conduits:
          - {name: field_to_control, from: field, to: control, channel: telemetry,
             latency_s: 0.001, jitter_s: 0.0002, loss: 0.0, bandwidth_bps: 1.25e6,
             queue_limit: 64, auth: hmac}

    Args:
        cfg: the mapping above.
        units: names of every unit of the system (checked against the zones).
        seed: the experiment seed.
        hmac_keys: ``{conduit name: key bytes}`` for ``auth: hmac`` conduits.

    Raises:
        ConfigurationError: naming the zone, unit, conduit or number at fault.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigurationError(f"network config must be a mapping, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - _CONFIG_KEYS)
    if unknown:
        raise ConfigurationError(f"network config: unknown key(s) {unknown}; allowed are {sorted(_CONFIG_KEYS)}")
    unit_names = list(units)
    zones_cfg = cfg.get("zones") or {}
    if not isinstance(zones_cfg, Mapping):
        raise ConfigurationError("network config: 'zones' must map zone names to lists of units")
    zones: dict[Zone | str, list[str]] = {}
    for name, spec in zones_cfg.items():
        description = ""
        members: Any = spec
        if isinstance(spec, Mapping):
            extra = sorted(set(spec) - {"units", "description"})
            if extra:
                raise ConfigurationError(f"network zone '{name}': unknown key(s) {extra}; use units, description")
            members = spec.get("units") or []
            description = str(spec.get("description") or "")
        if members is None:
            members = []
        if isinstance(members, str) or not isinstance(members, Iterable):
            raise ConfigurationError(f"network zone '{name}': expected a list of unit names, got {members!r}")
        members = list(members)
        for unit in members:
            if unit not in unit_names:
                raise ConfigurationError(
                    f"network zone '{name}': unknown unit {unit!r}{close_matches(str(unit), unit_names)}; "
                    f"units are {sorted(unit_names)}"
                )
        zones[Zone(check_name("zone", name), description)] = members
    exempt_cfg = cfg.get("exempt") or []
    exempt = [exempt_cfg] if isinstance(exempt_cfg, str) else list(exempt_cfg)
    default_zone = cfg.get("default_zone")
    if default_zone is None:
        assigned = {u for members in zones.values() for u in members}
        missing = [u for u in unit_names if u not in assigned and u not in exempt]
        if missing:
            raise ConfigurationError(
                f"network config: unit(s) {missing} are not assigned to any zone (list them under a zone or "
                "give a default_zone)"
            )
    conduits_cfg = cfg.get("conduits") or []
    if isinstance(conduits_cfg, Mapping | str) or not isinstance(conduits_cfg, Iterable):
        raise ConfigurationError("network config: 'conduits' must be a list of mappings")
    conduits: list[ConduitConfig] = []
    for i, item in enumerate(conduits_cfg):
        if not isinstance(item, Mapping):
            raise ConfigurationError(f"network conduit #{i}: expected a mapping, got {item!r}")
        label = f"network conduit '{item.get('name', f'#{i}')}'"
        extra = sorted(set(item) - _CONDUIT_KEYS)
        if extra:
            raise ConfigurationError(f"{label}: unknown key(s) {extra}; allowed are {sorted(_CONDUIT_KEYS)}")
        missing_keys = [k for k in ("name", "from", "to", "channel") if item.get(k) is None]
        if missing_keys:
            raise ConfigurationError(f"{label}: missing {missing_keys}")
        conduits.append(ConduitConfig(
            name=item["name"], source_zone=item["from"], target_zone=item["to"], channel=item["channel"],
            latency_s=item.get("latency_s", 0.0), jitter_s=item.get("jitter_s", 0.0), loss=item.get("loss", 0.0),
            bandwidth_bps=item.get("bandwidth_bps"), queue_limit=item.get("queue_limit"), auth=item.get("auth"),
            description=str(item.get("description") or ""),
        ))
    for unit in exempt:
        if unit not in unit_names:
            raise ConfigurationError(
                f"network config: exempt unit {unit!r} does not exist; units are {sorted(unit_names)}"
            )
    return Network(zones, conduits, seed=seed, hmac_keys=hmac_keys, default_zone=default_zone, exempt=exempt)
