"""The interface layer: IEC 62443 zones and conduits.

Every signal between units of different zones travels over a :class:`Conduit` with latency,
jitter, loss, bandwidth and optional HMAC authentication, as one :class:`Message` per source
unit, target unit and tick. Conduits can be cut, rate-limited, filtered or diverted while the
system runs (containment) and carry hooks for man-in-the-middle and injection attacks.
"""

from cosim.network.conduit import Channel, Conduit, ConduitConfig, conduit_seed
from cosim.network.message import HEADER_BYTES, VALUE_BYTES, Message, canonical_bytes, message_size, sign, verify
from cosim.network.network import Network, network_from_config
from cosim.network.stats import STAT_FIELDS, NetworkStats
from cosim.network.zone import ChannelKind, Zone

__all__ = [
    "HEADER_BYTES",
    "STAT_FIELDS",
    "VALUE_BYTES",
    "Channel",
    "ChannelKind",
    "Conduit",
    "ConduitConfig",
    "Message",
    "Network",
    "NetworkStats",
    "Zone",
    "canonical_bytes",
    "conduit_seed",
    "message_size",
    "network_from_config",
    "sign",
    "verify",
]
