"""The attack layer: attacks as manipulators on connections and hooks on conduits, scheduled
by scenarios, each recording its ground truth.

Modules: :mod:`~cosim.attacks.base` (the Attack contract, traits, ground truth, registry),
:mod:`~cosim.attacks.library` (communication, interface, conduits, twin synchronisation),
:mod:`~cosim.attacks.data` (data poisoning), :mod:`~cosim.attacks.model` (logic payload,
model exfiltration), :mod:`~cosim.attacks.deployment` (OTA update, supply chain, the update
endpoint), :mod:`~cosim.attacks.campaign` (lateral movement), :mod:`~cosim.attacks.scenario`
(scenario files and the Campaign observer).
"""

from cosim.attacks.base import (
    ATTACKS,
    Attack,
    GroundTruth,
    Interval,
    Stealth,
    StealthBound,
    Timer,
    Traits,
    check_attack,
    register,
)
from cosim.attacks.campaign import LateralMovement
from cosim.attacks.data import DataPoisoning
from cosim.attacks.deployment import ModelUpdate, OTAUpdate, SupplyChain, UpdateEndpoint, update_endpoint
from cosim.attacks.library import (
    APIExploit,
    CommandInjection,
    ConduitAttack,
    ConnectionHook,
    DenialOfService,
    ManInTheMiddle,
    MeasurementSpoofing,
    ParameterTampering,
    Replay,
    SyncAttack,
    links_from,
)
from cosim.attacks.model import LogicPayload, ModelExfiltration
from cosim.attacks.scenario import Campaign, load_scenario

__all__ = [
    "ATTACKS", "APIExploit", "Attack", "Campaign", "CommandInjection", "ConduitAttack", "ConnectionHook",
    "DataPoisoning", "DenialOfService", "GroundTruth", "Interval", "LateralMovement", "LogicPayload",
    "ManInTheMiddle", "MeasurementSpoofing", "ModelExfiltration", "ModelUpdate", "OTAUpdate", "ParameterTampering",
    "Replay", "Stealth", "StealthBound", "SupplyChain", "SyncAttack", "Timer", "Traits", "UpdateEndpoint",
    "check_attack", "links_from", "load_scenario", "register", "update_endpoint",
]
