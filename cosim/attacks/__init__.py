"""The attack layer: attacks as manipulators on connections and hooks on conduits, scheduled
by scenarios, each recording its ground truth."""

from cosim.attacks.base import ATTACKS, Attack, GroundTruth, Interval, check_attack, register
from cosim.attacks.library import CommandInjection, DenialOfService, MeasurementSpoofing, Replay
from cosim.attacks.scenario import Campaign, load_scenario

__all__ = ["ATTACKS", "Attack", "Campaign", "CommandInjection", "DenialOfService", "GroundTruth", "Interval",
           "MeasurementSpoofing", "Replay", "check_attack", "load_scenario", "register"]
