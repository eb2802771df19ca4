"""The audit trail of the containment layer: hash-chained JSON lines.

Every alert, decision and action is one record (one JSON object per line) with the simulated
time, the wall time, the reason and the evidence. Each record carries the SHA-256 of the
record before it (``prev``; the first one carries 64 zeros) and its own SHA-256 (``hash``,
over the canonical JSON of every other field), so that editing, removing or reordering a
line breaks the chain. :func:`verify_audit` walks the chain and names the first record at
fault. Removing the *last* records leaves a valid shorter chain: compare the head hash and
the record count with those the episode's summary reported (``expected_head``,
``expected_count``) to detect that too.

Usage::

    log = AuditLog(out_dir / "audit.jsonl")        # or AuditLog(None): in memory only
    log.append("alert", t=1.23, tick=123, reason="score above threshold", evidence={...})
    result = verify_audit(out_dir / "audit.jsonl", expected_head=log.head)
    assert result.ok, result.message
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cosim.errors import IntegrityError

GENESIS = "0" * 64
FIELDS = ("seq", "kind", "t", "tick", "wall", "reason", "evidence", "data", "prev")


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars and arrays, tuples, sets, non-finite floats, paths."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return _plain(tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return _plain(item())
    return str(value)


def canonical(record: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a record without its ``hash`` (sorted keys, no spaces)."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


class AuditLog:
    """Append-only, hash-chained audit log.

    Args:
        path: JSON-lines file to write (created, or truncated); ``None`` keeps the records
            in memory only.
        clock: wall clock for the ``wall`` field (default ``time.time``).
    """

    def __init__(self, path: str | Path | None = None, clock: Any = time.time) -> None:
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        self.head = GENESIS
        self._clock = clock
        self._fh: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")

    def append(self, kind: str, *, t: float | None, tick: int | None, reason: str = "",
               evidence: Mapping[str, Any] | None = None, **data: Any) -> dict[str, Any]:
        """Add one record and return it (with its ``hash``).

        Args:
            kind: ``alert``, ``decision``, ``action``, ``effective``, ``release``, ``recovery``...
            t: simulated time (s).
            tick: master tick.
            reason: why (human readable).
            evidence: what the decision rests on.
            data: any other JSON-able fields (stored under ``data``).
        """
        record: dict[str, Any] = {
            "seq": len(self.records),
            "kind": str(kind),
            "t": _plain(t),
            "tick": None if tick is None else int(tick),
            "wall": float(self._clock()),
            "reason": str(reason),
            "evidence": _plain(dict(evidence or {})),
            "data": _plain(data),
            "prev": self.head,
        }
        record["hash"] = record_hash(record)
        self.head = record["hash"]
        self.records.append(record)
        if self._fh is not None:
            self._fh.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
            self._fh.flush()
        return record

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __len__(self) -> int:
        return len(self.records)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind]


@dataclass(frozen=True)
class AuditVerification:
    """Outcome of :func:`verify_audit`.

    Attributes:
        ok: the whole chain holds (and matches the expectations given).
        records: records read.
        line: 1-based line of the first record at fault (``None`` when ok).
        problem: ``altered``, ``removed``, ``reordered``, ``inserted``, ``malformed``,
            ``truncated`` (``None`` when ok).
        message: a sentence naming the record and what is wrong.
        head: hash of the last valid record.
    """

    ok: bool
    records: int
    line: int | None
    problem: str | None
    message: str
    head: str

    def raise_if_broken(self, artifact: str = "audit log") -> None:
        if not self.ok:
            raise IntegrityError(artifact, "audit chain broken", self.message)


def verify_audit(source: str | Path | Iterable[Mapping[str, Any]], *, expected_head: str | None = None,
                 expected_count: int | None = None) -> AuditVerification:
    """Walk the hash chain of an audit log and report the first record at fault.

    Args:
        source: the JSON-lines file, or the records themselves.
        expected_head: hash of the last record as reported when the log was written
            (detects records removed from the end).
        expected_count: number of records written.
    """
    label = str(source) if isinstance(source, str | Path) else "audit log"
    rows: list[tuple[int, Any]] = []
    if isinstance(source, str | Path):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            return AuditVerification(False, 0, None, "malformed", f"{label}: cannot read: {exc}", GENESIS)
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((i, json.loads(line)))
            except ValueError:
                return AuditVerification(False, len(rows), i, "malformed",
                                         f"{label}: line {i} is not a JSON record (altered)", _last(rows))
    else:
        rows = list(enumerate((dict(r) for r in source), start=1))
    prev = GENESIS
    for n, (line, rec) in enumerate(rows):
        expected_seq = n
        if not isinstance(rec, dict) or set(rec) != {*FIELDS, "hash"}:
            return _bad(rows, n, line, "malformed", f"{label}: line {line} is not an audit record (fields "
                        f"{sorted(rec) if isinstance(rec, dict) else type(rec).__name__})", prev)
        seq = rec.get("seq")
        if rec["hash"] != record_hash(rec):
            return _bad(rows, n, line, "altered",
                        f"{label}: record at line {line} (seq {seq}, {rec.get('kind')} at t={rec.get('t')}) was "
                        "altered: its content does not hash to its recorded SHA-256", prev)
        if rec["prev"] != prev or seq != expected_seq:
            later = {r.get("seq") for _, r in rows[n + 1:] if isinstance(r, dict)}
            if isinstance(seq, int) and seq > expected_seq and expected_seq in later:
                problem, what = "reordered", f"line {line} holds seq {seq} where seq {expected_seq} belongs: " \
                                             "records were reordered"
            elif isinstance(seq, int) and seq > expected_seq:
                gap = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}..{seq - 1}"
                problem, what = "removed", f"record(s) {gap} were removed before line {line}"
            elif isinstance(seq, int) and seq < expected_seq:
                problem, what = "reordered", f"line {line} holds seq {seq} after seq {expected_seq - 1}: " \
                                             "records were reordered or duplicated"
            else:
                problem, what = "inserted", f"line {line} (seq {seq}) does not follow the record before it: " \
                                            "a record was inserted or replaced"
            return _bad(rows, n, line, problem, f"{label}: {what} (chain broken at line {line})", prev)
        prev = rec["hash"]
    if expected_count is not None and len(rows) != expected_count:
        return AuditVerification(False, len(rows), len(rows) + 1 if rows else 1, "truncated",
                                 f"{label}: {len(rows)} record(s), {expected_count} were written: "
                                 f"records after seq {len(rows) - 1} were removed", prev)
    if expected_head is not None and prev != expected_head:
        return AuditVerification(False, len(rows), len(rows) + 1 if rows else 1, "truncated",
                                 f"{label}: the last record (seq {len(rows) - 1}) is not the head that was "
                                 f"written ({expected_head[:16]}...): records were removed from the end", prev)
    return AuditVerification(True, len(rows), None, None, f"{label}: {len(rows)} record(s), chain intact", prev)


def _last(rows: list[tuple[int, Any]]) -> str:
    return rows[-1][1].get("hash", GENESIS) if rows and isinstance(rows[-1][1], dict) else GENESIS


def _bad(rows: list[tuple[int, Any]], n: int, line: int, problem: str, message: str, head: str) -> AuditVerification:
    return AuditVerification(False, len(rows), line, problem, message, head)
