"""A cache of baseline episodes (the same plant, seed and duration without the attack).

A sweep over attacks and defences shares one baseline per seed: its result is stored as
JSON under a key hashed from the config that determines it. Parallel jobs are safe: the
first one computes under an exclusive file lock, the others wait and read its result;
the JSON is written through a temporary file and a rename.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cosim.errors import ConfigurationError
from cosim.paths import REPO_ROOT
from cosim.tracking.summary import write_json_atomic


def baseline_key(config: Mapping[str, Any], seed: int) -> str:
    """A stable hash of the baseline's config (plain containers) and the seed."""
    text = json.dumps({"config": config, "seed": int(seed)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_dir(path: str | Path) -> Path:
    """``path`` as an absolute directory (relative paths are taken from the repository root)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def cached_baseline(directory: str | Path, key: str, compute: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
    """The baseline stored under ``key``, computing and storing it with ``compute()`` if absent.

    Returns:
        The stored mapping plus ``"cached": True`` when it was read, ``False`` when computed here.
    """
    d = cache_dir(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"baseline.cache_dir '{d}' cannot be created: {exc}") from None
    path = d / f"{key}.json"
    if path.is_file():
        return {**json.loads(path.read_text()), "cached": True}
    with open(d / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another job computing the same baseline: wait for it
        try:
            if path.is_file():
                return {**json.loads(path.read_text()), "cached": True}
            result = dict(compute())
            write_json_atomic(path, result)
            return {**result, "cached": False}
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
