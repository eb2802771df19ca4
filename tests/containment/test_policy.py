"""Policies are validated at load; errors name the rule and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cosim.containment import ContainmentOrchestrator, load_policy
from cosim.detection.alert import Alert
from cosim.errors import ConfigurationError

CONF = Path(__file__).resolve().parents[2] / "conf" / "defense"


def policy(**rule):
    return {"rules": [{"name": "r1", "match": {"kind": ["spoofing"]}, "actions": [{"action": "notify"}], **rule}]}


@pytest.mark.parametrize(("rule", "pattern"), [
    ({"actions": [{"action": "segmnt"}]}, r"rule 'r1'.*unknown action 'segmnt'"),
    ({"actions": [{"action": "segment", "mode": "explode"}]}, r"rule 'r1'.*'mode' must be one of"),
    ({"actions": [{"action": "segment", "rate": -3.0}]}, r"rule 'r1'.*'rate' is invalid"),
    ({"actions": [{"action": "segment", "colour": 1}]}, r"rule 'r1'.*unknown parameter\(s\) \['colour'\]"),
    ({"actions": [{"action": "safe_mode"}]}, r"rule 'r1'.*'signals' is required"),
    ({"match": {"kind": ["spoofin"]}}, r"rule 'r1'.*match.kind.*spoofin"),
    ({"match": {"colour": "red"}}, r"rule 'r1'.*match"),
    ({"actions": []}, r"rule 'r1'.*'actions' must be a non-empty list"),
    ({"escalate": {"after_s": -1, "actions": ["notify"]}}, r"rule 'r1'.*escalate.after_s"),
])
def test_bad_rules_give_one_clear_error(rule, pattern):
    with pytest.raises(ConfigurationError, match=pattern):
        load_policy(policy(**rule), "p")


def test_bad_top_level_and_settings():
    with pytest.raises(ConfigurationError, match="unknown key"):
        load_policy({"rulez": []}, "p")
    with pytest.raises(ConfigurationError, match="recovery: unknown key 'quite_s'"):
        load_policy({"recovery": {"quite_s": 1}}, "p")
    with pytest.raises(ConfigurationError, match=r"twin_watch.*threshold"):
        load_policy({"twin_watch": {"threshold": 0}}, "p")
    with pytest.raises(ConfigurationError, match=r"safe_mode.*'bound_s'"):
        load_policy({"safe_mode": {"signals": {"plc.safe_mode_cmd": True}, "bound_s": "soon"}}, "p")


def test_rules_match_in_order():
    p = load_policy({"rules": [
        {"name": "press", "match": {"target": "press.*", "min_score": 2.0}, "actions": ["notify"]},
        {"name": "any", "match": {}, "actions": ["notify"]},
    ]}, "p")
    hi = Alert(1.0, 100, "d", 3.0, 1.0, "press.pressure_meas", "spoofing")
    lo = Alert(1.0, 100, "d", 1.5, 1.0, "press.pressure_meas", "spoofing")
    assert [r.name for r in p.rule_for(hi)] == ["press"]
    assert [r.name for r in p.rule_for(lo)] == ["any"]


@pytest.mark.parametrize(("name", "detector"), [("none", "none"), ("cps_only", "cps"), ("dt_framework", "dt")])
def test_shipped_defences_load(name, detector):
    from hydra.utils import instantiate

    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg.detector == detector
    if cfg.orchestrator is None:
        assert name == "none"
        return
    orch = instantiate(cfg.orchestrator, _convert_="all")
    assert isinstance(orch, ContainmentOrchestrator) and orch.name == name
    assert orch.policy.safe_mode["signals"] == {"plc.safe_mode_cmd": True}  # from config, not code
