"""A config directory for episode tests: a demo-plant attack, a threshold detector, a defence."""

from __future__ import annotations

from pathlib import Path

FILES = {
    "attack/demo_press.yaml": """name: demo_press
events:
  - {attack: injection, name: forced_press, target: sequencer.valve_cmd, at: 1.0, duration: 1.0,
     params: {value: true}}
""",
    "detector/thr.yaml": """name: thr
detectors:
  thr: {_target_: tests.tracking.components.ThresholdDetector, signal: press.pressure, threshold: 3.0}
""",
    "detector/thr_fail.yaml": """name: thr_fail
detectors:
  thr: {_target_: tests.tracking.components.ThresholdDetector, signal: press.pressure, threshold: 3.0,
        fail_at: 1.5}
""",
    "defense/flag.yaml": """name: flag
detector: thr
orchestrator: {_target_: tests.tracking.components.FlagDefence}
""",
}


def write_test_conf(root: Path) -> Path:
    """Write the test config groups under ``root`` (for ``hydra.searchpath=[file://root]``)."""
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
