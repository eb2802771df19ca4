"""One cache root, one variable per cache, and the configs that find them there."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from cosim import paths
from experiments.plant import register_resolvers

register_resolvers()
CONF = Path(paths.REPO_ROOT) / "conf"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for env in [paths.CACHE_ENV, *(e for e in paths.CACHES.values() if e)]:
        monkeypatch.delenv(env, raising=False)
    return monkeypatch


def test_every_cache_is_under_the_repository_cache_by_default(clean_env):
    for name in paths.CACHES:
        assert paths.cache_dir(name) == paths.REPO_ROOT / ".cache" / name
    assert ".cache/" in (paths.REPO_ROOT / ".gitignore").read_text().splitlines()


def test_the_cache_root_moves_every_cache_and_a_cache_variable_moves_one(clean_env, tmp_path):
    clean_env.setenv(paths.CACHE_ENV, str(tmp_path / "root"))
    assert {paths.cache_dir(n) for n in paths.CACHES} == {tmp_path / "root" / n for n in paths.CACHES}
    clean_env.setenv("COSIM_DETECTOR_DIR", str(tmp_path / "models"))
    assert paths.cache_dir("detectors") == tmp_path / "models"
    assert paths.cache_dir("fmus") == tmp_path / "root" / "fmus"
    clean_env.setenv("COSIM_FMU_CACHE", "~/fmus")
    assert paths.cache_dir("fmus") == Path.home() / "fmus"


def test_an_unknown_cache_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"unknown cache 'fmu'.*'fmus'"):
        paths.cache_dir("fmu")


def test_the_configs_keep_detectors_and_baselines_in_the_cache(clean_env, tmp_path):
    clean_env.setenv(paths.CACHE_ENV, str(tmp_path))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("run", overrides=["detector=dt"])
        gen = compose("generate")
    assert Path(cfg.detector.model_dir).parent == tmp_path / "detectors"
    assert Path(cfg.detector.model_dir).name.startswith("smart_factory-")
    assert Path(gen.out) == Path(cfg.detector.model_dir) / "data"
    assert Path(cfg.baseline.cache_dir) == tmp_path / "baselines"
