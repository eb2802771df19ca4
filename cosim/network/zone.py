"""Zones (IEC 62443 security zones) and the kinds of traffic a conduit carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from cosim.errors import ConfigurationError

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def check_name(kind: str, name: object) -> str:
    """Return ``name`` if it is a usable zone or conduit name (letters, digits, ``_``, ``-``)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"{kind} name {name!r} must be a non-empty string of letters, digits, '_' or '-'"
        )
    return name


@dataclass(frozen=True)
class Zone:
    """A security zone: a group of units that share security requirements.

    Signals between units of one zone travel directly; signals between zones travel only
    over a :class:`~cosim.network.conduit.Conduit`.

    Attributes:
        name: unique name of the zone (letters, digits, ``_``, ``-``).
        description: free text (for example its IEC 62443 security level target).
    """

    name: str
    description: str = ""

    def __post_init__(self) -> None:
        check_name("zone", self.name)

    def __str__(self) -> str:
        return self.name


class ChannelKind(str, Enum):
    """What a conduit carries; informational, used by detectors and containment policies."""

    TELEMETRY = "telemetry"  # physical to digital: sensor values to PLC, twin, historian
    COMMAND = "command"  # digital to physical: set points and actuator commands
    TWIN = "twin"  # twin to twin (replica synchronisation, sandbox)
    HMI = "hmi"  # human-machine interface: operator panel, engineering station, API
    ENTERPRISE = "enterprise"  # business systems (MES, ERP, cloud)

    @classmethod
    def parse(cls, value: ChannelKind | str, where: str) -> ChannelKind:
        try:
            return cls(value)
        except ValueError:
            raise ConfigurationError(
                f"{where}: unknown channel {value!r}, choose one of {[k.value for k in cls]}"
            ) from None


def close_matches(name: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)`` for near misses of ``name`` among ``options``, else ``""``."""
    import difflib

    near = difflib.get_close_matches(name, options, n=3)
    return f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""
