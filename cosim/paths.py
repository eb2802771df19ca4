"""Where the project keeps what it makes.

Everything rebuilt when missing lives under one cache root, ``$COSIM_CACHE_DIR`` or
``<repo root>/.cache`` (``rm -r .cache`` forgets it all):

======================  =================================================  ======================
``fmus/``               FMUs built from ``models/`` (and their manifests)  ``$COSIM_FMU_CACHE``
``detectors/``          per setting: generated runs and fitted detectors   ``$COSIM_DETECTOR_DIR``
``baselines/``          attack-free episodes, per config and seed          (``baseline.cache_dir``)
``ik/``                 solved waypoint poses of the robot controller      ``$COSIM_IK_CACHE``
``native/``             the stacked IDS's compiled C kernel
======================  =================================================  ======================

The last column moves one cache alone (the config key: for one run or sweep). Not caches,
and kept apart: the key store (``$COSIM_KEY_DIR`` or ``<repo root>/.keys``,
:mod:`cosim.twin.integrity`) and the MLflow store (``$MLFLOW_TRACKING_URI`` or
``<repo root>/mlflow.db``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_ENV = "COSIM_CACHE_DIR"
#: The caches, by name (sub-directories of the cache root), and the variable that moves each alone.
CACHES: dict[str, str | None] = {"fmus": "COSIM_FMU_CACHE", "detectors": "COSIM_DETECTOR_DIR", "baselines": None,
                                 "ik": "COSIM_IK_CACHE", "native": None}


def cache_root() -> Path:
    """``$COSIM_CACHE_DIR`` if set, else ``<repo root>/.cache``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else REPO_ROOT / ".cache"


def cache_dir(name: str) -> Path:
    """The directory of cache ``name``: its own variable if set, else ``<cache root>/<name>``."""
    if name not in CACHES:
        raise ValueError(f"unknown cache '{name}'; the caches are {list(CACHES)}")
    env = CACHES[name]
    value = os.environ.get(env) if env else None
    return Path(value).expanduser() if value else cache_root() / name
