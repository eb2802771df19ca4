"""Hydra's basic sweeper, validating each override value once instead of every job's config.

Before launching, Hydra's ``BasicSweeper`` composes the config of every job of the batch to
catch composition errors early; composing takes ~0.3 s here, so ``experiment=paper_table``
(285 jobs) spent about 1.5 minutes composing in the main process while the workers waited.
:class:`CosimSweeper` composes a job only when it brings an override (``key=value``) that no
composed job had: the first job, then one per new attack, defence, seed... (27 composes for
``paper_table``). A misspelt option or key still stops the sweep before any job runs, with
Hydra's error, and the sweep's MLflow parent run ends FAILED with that error. An error
that only a combination of values causes surfaces later, when the launcher composes that job.

Hydra loads sweepers only from the ``hydra_plugins`` package, hence this module's place;
``conf/run.yaml`` selects it with ``override hydra/sweeper: cosim``.
"""

# No ``from __future__ import annotations``: Hydra's plugin scan runs this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


@dataclass
class CosimSweeperConf:
    _target_: str = "hydra_plugins.cosim_sweeper.cosim_sweeper.CosimSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045 (OmegaConf reads the annotation)
    params: Optional[dict[str, str]] = None  # noqa: UP045


ConfigStore.instance().store(group="hydra/sweeper", name="cosim", node=CosimSweeperConf, provider="cosim")


class CosimSweeper(BasicSweeper):
    """``BasicSweeper`` whose up-front validation composes one job per new override value."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        seen: set[str] = set()
        chosen = []
        for overrides in batch:
            if not seen.issuperset(overrides):
                chosen.append(overrides)
                seen.update(overrides)
        try:
            super().validate_batch_is_legal(chosen)
        except Exception as exc:  # no job will run: the sweep's parent run ends FAILED, with the error
            from cosim.tracking.callbacks import fail_sweep

            assert self.config is not None
            fail_sweep(str(self.config.hydra.sweep.dir), str(exc).strip() or type(exc).__name__)
            raise
