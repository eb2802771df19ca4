"""Traffic statistics as a unit: recorders, detectors and connections read them like any output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cosim.core.unit import PythonUnit, Reader
from cosim.core.variables import Causality, Value, Variable, VarType
from cosim.errors import ConfigurationError

if TYPE_CHECKING:
    from cosim.network.network import Network

#: Per-conduit statistics: name and type. Counters are cumulative since the start.
STAT_FIELDS: tuple[tuple[str, VarType], ...] = (
    ("sent", VarType.INTEGER),  # frames the sources sent
    ("delivered", VarType.INTEGER),  # frames delivered to receivers (forged ones that passed included)
    ("lost", VarType.INTEGER),  # random loss on the link
    ("dropped_cut", VarType.INTEGER),  # sent or arriving while the conduit was cut
    ("dropped_filter", VarType.INTEGER),  # not on the allow-list
    ("dropped_rate", VarType.INTEGER),  # over the rate limit
    ("dropped_queue", VarType.INTEGER),  # link queue full
    ("dropped_hook", VarType.INTEGER),  # dropped by an attack hook
    ("diverted", VarType.INTEGER),  # sent to a divert sink instead of the destination
    ("auth_failures", VarType.INTEGER),  # HMAC missing or wrong at the receiver
    ("out_of_order", VarType.INTEGER),  # older than a frame already delivered, discarded
    ("malformed", VarType.INTEGER),  # tags and values that do not fit the channel
    ("injected", VarType.INTEGER),  # forged frames put on the conduit
    ("bytes_sent", VarType.INTEGER),  # bytes that went onto the link
    ("latency_sum_s", VarType.REAL),  # sum of delivery delays (arrival tick time - send time)
    ("latency_mean_s", VarType.REAL),
    ("latency_std_s", VarType.REAL),
    ("queue_length", VarType.INTEGER),  # frames waiting for the link now
    ("in_flight", VarType.INTEGER),  # frames on their way now
    ("last_delivery_tick", VarType.INTEGER),  # -1 before the first delivery
    ("gaps", VarType.INTEGER),  # sequence numbers the receivers never saw in order
    ("cut", VarType.BOOLEAN),  # the conduit is cut now
)


class NetworkStats(PythonUnit):
    """A unit without inputs whose outputs are the network's statistics.

    Output ``<conduit>__<field>`` for every conduit and every field of :data:`STAT_FIELDS`
    (or of ``fields``). Values are computed from the network whenever they are read, so a
    :class:`~cosim.core.observer.Recorder` sampling after a step sees the traffic of that
    step. The unit is outside every zone (its connections are never routed).

    Args:
        network: the network to report on.
        name: unit name (default ``"net"``).
        fields: subset of the field names to expose (default: all).
    """

    TRANSIENT = frozenset({"grid", "network"})

    def __init__(self, network: Network, name: str = "net", fields: Sequence[str] | None = None) -> None:
        known = dict(STAT_FIELDS)
        chosen = list(known) if fields is None else list(fields)
        unknown = [f for f in chosen if f not in known]
        if unknown:
            raise ConfigurationError(f"NetworkStats '{name}': unknown field(s) {unknown}; fields are {list(known)}")
        variables = [Variable(f"{c}__{f}", Causality.OUTPUT, known[f], known[f].coerce(-1 if f == "last_delivery_tick"
                                                                                          else 0))
                     for c in network.conduits for f in chosen]
        super().__init__(name, variables)
        self.network = network
        self._layout = [(c, [(f, f"{c}__{f}") for f in chosen]) for c in network.conduits]

    def refresh(self) -> None:
        """Copy the network's current statistics into the outputs."""
        values = self.values
        conduits = self.network.conduits
        for cname, pairs in self._layout:
            stats = conduits[cname].stats()
            for field, var in pairs:
                values[var] = stats[field]

    def do_step(self, t: float, h: float) -> None:
        """Nothing to do: the outputs are refreshed when they are read."""

    def get(self, names: Sequence[str]) -> list[Value]:
        self.refresh()
        return super().get(names)

    def reader(self, names: Sequence[str]) -> Reader:
        base = super().reader(names)

        def read() -> Sequence[Value]:
            self.refresh()
            return base()

        return read
