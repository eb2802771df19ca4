"""A per-step watchdog: notices a master step that does not return (a hung model).

A model stuck inside native code (an FMU's ``doStep`` in a solver loop, or waiting on a
licence server) cannot be interrupted from inside the process: Python has no way to stop a
C call. What the framework can do is notice it and salvage what has been recorded: the
watchdog is a daemon thread that polls the master's tick counter; when the tick has not
moved for ``timeout_s`` while the watched thread is inside :meth:`Master.step`, it finds the
unit and the call from that thread's stack and calls ``on_timeout`` once with a
:class:`~cosim.errors.StepTimeout` naming them. ``on_timeout`` writes what there is and
ends the process (``experiments.run`` does so in the episode's own process, see
``isolation`` in ``conf/run.yaml``).

The master's step loop pays nothing for it: it already stores its tick after every step,
and the unit being stepped is read from the stack only when the tick stands still.

    with StepWatchdog(master, timeout_s=30.0, on_timeout=salvage):
        master.run(duration=120.0)
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from cosim.errors import ConfigurationError, StepTimeout

if TYPE_CHECKING:
    from cosim.core.master import Master


def _step_code() -> object:
    from cosim.core.master import Master

    return Master.step.__code__


class StepWatchdog:
    """Watches one master, stepped by one thread (the one that enters the context).

    Args:
        master: the master to watch.
        timeout_s: longest wall time one tick may take (all its unit steps and observers).
        on_timeout: called once, from the watchdog thread, with the :class:`StepTimeout`;
            the watched thread is still stuck when it runs. Default: print the error.
        poll_s: how often the tick is looked at (default: a tenth of the timeout, within
            10 ms .. 1 s).
    """

    def __init__(self, master: Master, timeout_s: float, on_timeout: Callable[[StepTimeout], None] | None = None,
                 poll_s: float | None = None) -> None:
        try:
            timeout_s = float(timeout_s)
        except (TypeError, ValueError):
            raise ConfigurationError(f"watchdog: step timeout must be a number of seconds, got {timeout_s!r}") from None
        if not timeout_s > 0:
            raise ConfigurationError(f"watchdog: step timeout must be positive, got {timeout_s!r}")
        self.master = master
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout or (lambda exc: print(f"error: {exc}", file=sys.stderr, flush=True))
        self.poll_s = float(poll_s) if poll_s is not None else min(1.0, max(0.01, timeout_s / 10))
        self.fired: StepTimeout | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._target = 0
        self._code = _step_code()

    # Life cycle --------------------------------------------------------------------
    def start(self) -> StepWatchdog:
        """Watch the calling thread's steps of the master."""
        self._target = threading.get_ident()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="cosim-step-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def __enter__(self) -> StepWatchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Watching ----------------------------------------------------------------------
    def _watch(self) -> None:
        last_tick = self.master.tick
        since = time.monotonic()
        while not self._stop.wait(self.poll_s):
            tick = self.master.tick
            now = time.monotonic()
            if tick != last_tick:
                last_tick, since = tick, now
                continue
            where = self.locate()
            if where is None:  # not stepping (between runs): nothing can hang
                since = now
                continue
            if now - since >= self.timeout_s and not self._stop.is_set():
                unit, call = where
                self.fired = StepTimeout(unit, call, self.timeout_s, tick)
                self.on_timeout(self.fired)
                return

    def locate(self) -> tuple[str, str] | None:
        """``(unit or part, call)`` the watched thread is in inside the master's step, else ``None``."""
        frame: FrameType | None = sys._current_frames().get(self._target)
        callee: FrameType | None = None
        innermost = frame
        while frame is not None:
            if frame.f_code is self._code and frame.f_locals.get("self") is self.master:
                return self._describe(frame, callee, innermost)
            callee, frame = frame, frame.f_back
        return None

    def _describe(self, step: FrameType, callee: FrameType | None, innermost: FrameType | None) -> tuple[str, str]:
        local = step.f_locals
        tick = int(local.get("tick", self.master.tick))
        t = self.master.grid.time(tick)
        inner = f" (in {innermost.f_code.co_name})" if innermost is not None and innermost is not callee else ""
        if callee is None:
            return "master", f"step at t={t!r}"
        owner = callee.f_locals.get("self")
        unit = local.get("unit")
        if unit is not None and owner is unit:
            return str(unit.name), f"step at t={t!r}{inner}"
        name = getattr(owner, "name", None) or type(owner).__name__ if owner is not None else callee.f_code.co_name
        return str(name), f"{callee.f_code.co_name} at t={t!r}{inner}"
