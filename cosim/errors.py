"""One error hierarchy for the whole framework.

Every error the framework raises on purpose derives from :class:`CosimError`, so a caller
(or a sweep job) can catch one type and still get a message that names the thing at fault.
"""

from __future__ import annotations


class CosimError(Exception):
    """Base of every error raised by this framework."""


class ConfigurationError(CosimError):
    """A system, plant or scenario description is invalid (caught before simulating)."""


class InvalidConnectionError(ConfigurationError):
    """A connection is invalid: unknown unit or variable, causality or type mismatch,
    an input fed twice. The message names both ends."""


class ContractError(ConfigurationError):
    """A unit (or other plug-in) does not meet the interface the framework expects.

    Attributes:
        problems: every problem found, so a user fixes them all in one go.
    """

    def __init__(self, subject: str, problems: list[str]) -> None:
        self.subject = subject
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{subject} does not meet the contract ({len(self.problems)} problem(s)):\n{lines}")


class UnitError(CosimError):
    """A unit failed while being set up, stepped, read or written."""

    def __init__(self, unit: str, call: str, detail: str) -> None:
        self.unit = unit
        self.call = call
        self.detail = detail
        super().__init__(f"unit '{unit}': {call} failed: {detail}")


class FMUError(UnitError):
    """An FMU could not be loaded or an FMI call failed. Names the FMU and the call."""


class ModelLoadError(UnitError):
    """A model file (FMU archive, URDF, SSP) is missing, corrupt or unusable here."""


class NonFiniteValueError(UnitError):
    """A unit produced NaN or infinity on an output."""


class StepDiscarded(CosimError):
    """A unit refused a step (FMI Discard / requested termination).

    The master ends the run gracefully at the last completed tick and keeps everything
    recorded up to that point.
    """

    def __init__(self, unit: str, tick: int, detail: str = "") -> None:
        self.unit = unit
        self.tick = tick
        super().__init__(f"unit '{unit}' discarded the step at tick {tick}" + (f": {detail}" if detail else ""))


class SnapshotError(CosimError):
    """A snapshot cannot be taken or restored (wrong system, unit cannot save state)."""


class IntegrityError(CosimError):
    """An artifact (FMU, parameter file, snapshot, ...) failed verification.

    Attributes:
        artifact: what was being verified (a path, or kind and name of an in-memory artifact).
        reason: what failed: ``"hash mismatch"``, ``"bad signature"``, ``"unknown signer"``,
            ``"version mismatch"``, ``"missing manifest"``, ``"kind mismatch"``,
            ``"name mismatch"``, ``"malformed manifest"``, ``"malformed snapshot"``,
            ``"missing artifact"``, ``"not an FMU"``, ``"key store"``.
        detail: more about it.
    """

    def __init__(self, artifact: str, reason: str, detail: str = "") -> None:
        self.artifact = artifact
        self.reason = reason
        self.detail = detail
        super().__init__(f"integrity check of {artifact} failed: {reason}" + (f" ({detail})" if detail else ""))


class StepTimeout(UnitError):
    """A step did not return within the watchdog's timeout (a hung model).

    A call into native code cannot be interrupted from inside the process: the job records
    what it has and ends (see :mod:`cosim.core.watchdog`).

    Attributes:
        tick: the tick being stepped.
        timeout_s: the timeout that ran out.
    """

    def __init__(self, unit: str, call: str, timeout_s: float, tick: int) -> None:
        self.tick = tick
        self.timeout_s = timeout_s
        super().__init__(unit, call, f"no return within {timeout_s:g} s (watchdog.step_timeout_s)")
        self.args = (f"unit '{unit}': {call} hung: no return within {timeout_s:g} s (watchdog.step_timeout_s)",)

    def __str__(self) -> str:
        return str(self.args[0])


class JobKilled(CosimError):
    """An episode's process ended abnormally (a signal such as SIGKILL or SIGSEGV, or exit
    without a result): recorded by the supervising process."""


class TrackingError(CosimError):
    """The tracking server (MLflow) could not be reached or refused a call; the episode's
    results stay in its run directory (log them later with ``python -m experiments.relog``)."""
