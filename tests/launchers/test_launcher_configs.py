"""The launcher configs compose with Hydra's compose API and carry the documented fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[2]


def launcher(name: str, *overrides: str, env: dict[str, str] | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=[f"hydra/launcher={name}", "plant=demo", *overrides],
                      return_hydra_config=True)
    node = cfg.hydra.launcher
    assert isinstance(node, DictConfig)
    return node


@pytest.mark.filterwarnings(r"ignore:\s+.hydra/launcher/ray. is validated against ConfigStore schema:UserWarning")
def test_ray_joins_a_cluster_by_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = launcher("ray")
    assert get_class(cfg._target_).__name__ == "RayLauncher"
    assert cfg.ray.init.address == "auto"            # the cluster `ray start` made on this machine
    assert cfg.ray.init.object_store_memory is None  # ray.init rejects it when joining a cluster
    assert cfg.ray.remote.num_cpus == 1
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6390")
    assert launcher("ray").ray.init.address == "127.0.0.1:6390"
    assert launcher("ray", "hydra.launcher.ray.init.address=10.1.2.3:6379").ray.init.address == "10.1.2.3:6379"


def test_ray_local_starts_its_own_ray() -> None:
    cfg = launcher("ray_local")
    assert get_class(cfg._target_).__name__ == "RayLauncher"
    assert cfg.ray.init.address is None and cfg.ray.remote.num_cpus == 1


def test_slurm_has_the_documented_fields() -> None:
    cfg = launcher("slurm", "hydra.launcher.partition=cpu", "hydra.launcher.mem_gb=8")
    assert get_class(cfg._target_).__name__ == "SlurmLauncher"
    values = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(values, dict)
    for key in ("partition", "timeout_min", "cpus_per_task", "mem_gb", "array_parallelism", "account", "qos",
                "setup", "additional_parameters", "submitit_folder"):
        assert key in values, key
    assert cfg.partition == "cpu" and cfg.mem_gb == 8 and cfg.cpus_per_task == 1
    assert cfg.timeout_min == 60 and cfg.array_parallelism == 64
    assert values["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


def test_slurm_rejects_an_unknown_field() -> None:
    # The plugin's schema sits under slurm.yaml, so a typo is an error, not a silent no-op.
    with pytest.raises(Exception, match="partion"):
        launcher("slurm", "hydra.launcher.partion=cpu")


def test_slurm_local_runs_without_a_cluster() -> None:
    cfg = launcher("slurm_local")
    assert get_class(cfg._target_).__name__ == "LocalLauncher"
    assert cfg.timeout_min == 60 and cfg.cpus_per_task == 1
