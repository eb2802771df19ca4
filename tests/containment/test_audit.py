"""The audit log is hash-chained: an edited, removed or reordered record is found."""

from __future__ import annotations

import json

import pytest

from cosim.containment.audit import AuditLog, verify_audit
from cosim.errors import IntegrityError


@pytest.fixture
def log(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(6):
        log.append("alert" if i % 2 == 0 else "action", t=0.01 * i, tick=i, reason=f"r{i}",
                   evidence={"score": 1.5 * i, "values": (1, 2)})
    log.close()
    return log


def lines(log):
    return log.path.read_text().splitlines()


def write(log, rows):
    log.path.write_text("\n".join(rows) + "\n")


def test_an_intact_log_verifies(log):
    result = verify_audit(log.path, expected_head=log.head, expected_count=len(log))
    assert result.ok and result.records == 6
    recs = [json.loads(x) for x in lines(log)]
    assert recs[0]["prev"] == "0" * 64
    assert all(recs[i]["prev"] == recs[i - 1]["hash"] for i in range(1, 6))
    assert verify_audit(log.records).ok


def test_an_edited_record_is_found(log):
    rows = lines(log)
    rec = json.loads(rows[3])
    rec["reason"] = "nothing happened"
    rows[3] = json.dumps(rec)
    write(log, rows)
    result = verify_audit(log.path)
    assert not result.ok and result.line == 4 and result.problem == "altered"
    assert "line 4" in result.message and "seq 3" in result.message
    with pytest.raises(IntegrityError, match="audit chain broken"):
        result.raise_if_broken()


def test_an_edit_with_a_recomputed_hash_breaks_the_chain(log):
    from cosim.containment.audit import record_hash

    rows = lines(log)
    rec = json.loads(rows[2])
    rec["evidence"] = {}
    rec["hash"] = record_hash(rec)
    rows[2] = json.dumps(rec)
    write(log, rows)
    result = verify_audit(log.path)
    assert not result.ok and result.line == 4  # the next record no longer points at it


def test_a_removed_record_is_found(log):
    rows = lines(log)
    del rows[2]
    write(log, rows)
    result = verify_audit(log.path)
    assert not result.ok and result.problem == "removed" and result.line == 3
    assert "seq 2" in result.message


def test_reordered_records_are_found(log):
    rows = lines(log)
    rows[1], rows[2] = rows[2], rows[1]
    write(log, rows)
    result = verify_audit(log.path)
    assert not result.ok and result.problem == "reordered" and result.line == 2


def test_records_removed_from_the_end_need_the_head(log):
    write(log, lines(log)[:-2])
    assert verify_audit(log.path).ok  # a shorter chain is a valid chain ...
    result = verify_audit(log.path, expected_head=log.head)
    assert not result.ok and result.problem == "truncated"  # ... unless compared with the head written
    assert not verify_audit(log.path, expected_count=6).ok


def test_a_garbled_line_is_found(log):
    rows = lines(log)
    rows[4] = rows[4][:-5]
    write(log, rows)
    result = verify_audit(log.path)
    assert not result.ok and result.line == 5 and result.problem == "malformed"
