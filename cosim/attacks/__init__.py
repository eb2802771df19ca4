"""The attack layer: attacks as manipulators on connections and hooks on conduits, scheduled
by scenarios, each recording its ground truth."""

from cosim.attacks.base import ATTACKS, Attack, GroundTruth, Interval, check_attack, register
from cosim.attacks.library import (
    APIExploit,
    CommandInjection,
    ConnectionHook,
    DenialOfService,
    ManInTheMiddle,
    MeasurementSpoofing,
    ParameterTampering,
    Replay,
    SyncAttack,
    links_from,
)
from cosim.attacks.scenario import Campaign, load_scenario

__all__ = [
    "ATTACKS", "APIExploit", "Attack", "Campaign", "CommandInjection", "ConnectionHook", "DenialOfService",
    "GroundTruth", "Interval", "ManInTheMiddle", "MeasurementSpoofing", "ParameterTampering", "Replay",
    "SyncAttack", "check_attack", "links_from", "load_scenario", "register",
]
