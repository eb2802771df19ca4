"""``benchmarks/behaviour.py``: two records of the same episodes compare equal whatever the
wall times, and any change of what an episode did is found."""

from __future__ import annotations

import json
import shutil

from benchmarks import behaviour


def test_records_differ_only_where_the_episode_changed(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    summary = {"f1": 0.9, "wall_time_s": 2.0, "realtime_factor": 30.0, "decision_wall_ms": 1.0,
               "prevented": 2, "detectors": {"ids": {"wall_us_per_sample": 9.0, "alarms": 3}}}
    (a / "x.summary.json").write_text(json.dumps(summary))
    audit = [{"t": 1.0, "action": "segment", "wall_time": 5.0, "hash": "ab", "prev": "00"}]
    (a / "x.audit.jsonl").write_text("\n".join(json.dumps(r) for r in audit) + "\n")
    (a / "x.trace.csv").write_text("time,v\n0,1.0\n0.1,1.5\n")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    # another machine, another speed: the wall times and the hashes chained over them change
    (b / "x.summary.json").write_text(json.dumps(summary | {"wall_time_s": 3.0, "realtime_factor": 20.0,
                                                            "detectors": {"ids": {"wall_us_per_sample": 12.0,
                                                                                  "alarms": 3}}}))
    (b / "x.audit.jsonl").write_text(json.dumps(audit[0] | {"wall_time": 7.0, "hash": "cd"}) + "\n")
    assert behaviour.compare(a, b) == []

    (b / "x.trace.csv").write_text("time,v\n0,1.0\n0.1,1.5000000000000002\n")
    (b / "x.summary.json").write_text(json.dumps(summary | {"prevented": 3}))
    (b / "y.alerts.jsonl").write_text("")
    assert behaviour.compare(a, b) == ["x.summary.json", "x.trace.csv", "y.alerts.jsonl (extra)"]
    # within a tolerance the rounding passes, the changed count does not
    assert behaviour.compare(a, b, tolerance=1e-12) == ["x.summary.json", "y.alerts.jsonl (extra)"]
    (b / "x.trace.csv").write_text("time,v\n0,1.0\n0.1,1.5001\n")
    assert "x.trace.csv" in behaviour.compare(a, b, tolerance=1e-12)
    (a / "z.trace.csv").write_text("time\n")
    assert "z.trace.csv (missing)" in behaviour.compare(a, b)
