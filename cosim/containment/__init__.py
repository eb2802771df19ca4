"""The containment layer: orchestrator, actions, declarative policies, audit trail, recovery."""

from cosim.containment.actions import ACTIONS, Action, ActionRecord, Param, register_action
from cosim.containment.audit import AuditLog, AuditVerification, verify_audit
from cosim.containment.orchestrator import ContainmentOrchestrator
from cosim.containment.policy import Policy, load_policy
from cosim.containment.quarantine import ModelUpdate, UpdateGate
from cosim.containment.recovery import TwinRecovery, clean_intervals

__all__ = [
    "ACTIONS", "Action", "ActionRecord", "AuditLog", "AuditVerification", "ContainmentOrchestrator", "ModelUpdate",
    "Param", "Policy", "TwinRecovery", "UpdateGate", "clean_intervals", "load_policy", "register_action",
    "verify_audit",
]
