"""Hydra's basic sweeper, validating each override value once instead of every job's config.

Before launching, Hydra's ``BasicSweeper`` composes the config of every job of the batch to
catch composition errors early; composing takes ~0.3 s here, so ``experiment=paper_table``
(285 jobs) spent about 1.5 minutes composing in the main process while the workers waited.
:class:`CosimSweeper` composes a job only when it brings an override (``key=value``) that no
composed job had: the first job, then one per new attack, defence, seed... (27 composes for
``paper_table``). A misspelt option or key still stops the sweep before any job runs, with
Hydra's error, and the sweep's MLflow parent run ends FAILED with that error.

An error that only a combination of values causes surfaces later, when the launcher composes
that job, and stops the launch (Hydra's launchers give up on the whole batch). The sweeper then
composes every job of the batch, records those that do not compose as FAILED jobs (summary and
MLflow child run with the error, :func:`~cosim.tracking.callbacks.fail_job`), and launches the
others again with ``resume=true``: what finished is kept, what the stopped launch cut short
runs again (its MLflow run marked KILLED), and the sweep goes on.

Hydra loads sweepers only from the ``hydra_plugins`` package, hence this module's place;
``conf/run.yaml`` selects it with ``override hydra/sweeper: cosim``.
"""

# No ``from __future__ import annotations``: Hydra's plugin scan runs this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


@dataclass
class CosimSweeperConf:
    _target_: str = "hydra_plugins.cosim_sweeper.cosim_sweeper.CosimSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045 (OmegaConf reads the annotation)
    params: Optional[dict[str, str]] = None  # noqa: UP045


ConfigStore.instance().store(group="hydra/sweeper", name="cosim", node=CosimSweeperConf, provider="cosim")


class CosimSweeper(BasicSweeper):
    """``BasicSweeper`` whose up-front validation composes one job per new override value, and
    whose launches go on past jobs that do not compose."""

    def setup(self, **kwargs: Any) -> None:
        super().setup(**kwargs)
        assert self.launcher is not None
        launch = self.launcher.launch

        def launch_or_skip(job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
            try:
                return launch(job_overrides, initial_job_idx=initial_job_idx)
            except Exception:
                bad = self._uncomposable(job_overrides)
                if not bad:
                    raise
            return self._launch_composable(launch, job_overrides, initial_job_idx, bad)

        self.launcher.launch = launch_or_skip  # type: ignore[method-assign]

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return super().sweep(arguments)
        except Exception as exc:  # the sweep stops: its parent run ends FAILED, with the error
            from cosim.tracking.callbacks import fail_sweep

            assert self.config is not None
            fail_sweep(str(self.config.hydra.sweep.dir), str(exc).strip() or type(exc).__name__)
            raise

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        seen: set[str] = set()
        chosen = []
        for overrides in batch:
            if not seen.issuperset(overrides):
                chosen.append(overrides)
                seen.update(overrides)
        super().validate_batch_is_legal(chosen)

    def _uncomposable(self, batch: Sequence[Sequence[str]]) -> dict[int, Exception]:
        """The jobs of ``batch`` (by position) whose overrides do not compose, with the error."""
        assert self.hydra_context is not None and self.config is not None
        bad = {}
        for i, overrides in enumerate(batch):
            try:
                self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            except Exception as exc:
                bad[i] = exc
        return bad

    def _launch_composable(self, launch: Any, batch: Sequence[Sequence[str]], initial_job_idx: int,
                           bad: dict[int, Exception]) -> list[Any]:
        """Record the ``bad`` jobs as FAILED; launch each run of consecutive good ones (keeping
        their job numbers) with ``resume=true``."""
        from cosim.tracking.callbacks import fail_job

        assert self.config is not None
        sweep_dir = str(self.config.hydra.sweep.dir)
        for i, exc in bad.items():
            fail_job(sweep_dir, str(initial_job_idx + i), list(batch[i]), str(exc).strip() or type(exc).__name__,
                     type(exc).__name__)
        results: list[Any] = []
        start = 0
        for end in [*sorted(bad), len(batch)]:
            if end > start:
                chunk = [[o for o in overrides if not o.startswith("resume=")] + ["resume=true"]
                         for overrides in batch[start:end]]
                results += launch(chunk, initial_job_idx=initial_job_idx + start)
            start = end + 1
        return results
