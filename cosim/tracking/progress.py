"""Progress bars on stderr for long episodes and sweeps."""

from __future__ import annotations

import sys
import time
from pathlib import Path


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, every 10 % in a log file.

    Call it as ``progress(done, total)``; the master's ``run(progress=...)`` does.

    Args:
        label: text in front of the bar.
        enabled: ``False`` makes every call a no-op.
    """

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last = -1
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        pct = int(100 * done / total)
        step = 1 if self.tty else 10
        if pct // step == self.last // step and done < total:
            return
        self.last = pct
        bar = "#" * (pct // 4) + "." * (25 - pct // 4)
        elapsed = time.perf_counter() - self.t0
        line = f"{self.label} [{bar}] {pct:3d}% {elapsed:6.1f}s"
        if self.tty:
            print(f"\r{line}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


def sweep_progress(sweep_dir: str | Path, total: int | None, t0: float | None = None) -> str | None:
    """One line on stderr saying how many jobs of the sweep in ``sweep_dir`` are done.

    Counts the jobs' ``summary.json`` files (written by finished and failed jobs alike), so
    any job in any process can call it when it ends. Returns the line (``None`` without a total).
    """
    if not total:
        return None
    files = list(Path(sweep_dir).glob("*/summary.json"))
    done = len(files)
    failed = 0
    for f in files:
        try:
            failed += '"status": "FAILED"' in f.read_text()
        except OSError:
            pass
    pct = min(100, int(100 * done / total))
    bar = "#" * (pct // 4) + "." * (25 - pct // 4)
    elapsed = f" {time.time() - t0:7.0f}s" if t0 is not None else ""
    line = f"sweep [{bar}] {done}/{total} jobs{elapsed}" + (f" ({failed} failed)" if failed else "")
    print(line, file=sys.stderr, flush=True)
    return line
