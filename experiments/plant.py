"""Turn a Hydra ``plant`` config into a :class:`~cosim.system.SystemSpec`; the setting its
simulation loop runs in (:func:`frozen_heap`)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cosim import paths
from cosim.core.observer import Observer
from cosim.core.unit import Unit
from cosim.errors import ConfigurationError, CosimError
from cosim.ssp import read_ssp
from cosim.system import SystemSpec, UnitSpec, deep_merge, parse_connections

_RESERVED = {"step_ticks", "description"}


# plant keys that change what is recorded or shown of an episode, not how the plant behaves
PRESENTATION_KEYS = ("duration", "record", "record_interval", "plot_panels", "renderer", "description")


def setting_key(root: DictConfig | Mapping[str, Any]) -> str:
    """The name under which detectors and their datasets are kept for the config ``root``:
    ``<plant.name>-<8 hex digits>`` over its ``plant`` (less :data:`PRESENTATION_KEYS`), ``twin``
    and ``network`` sections, unresolved.

    Detectors learn the behaviour of one plant, twin and network: ``plant.robot=panda`` or a
    changed conduit gets models of its own rather than those of the default cell. Unresolved,
    ``${seed}`` and ``${fmu:press}`` stay as written, so every seed of a setting shares them.
    """
    plant = root.get("plant") if root is not None else None
    if plant is None:
        raise ConfigurationError("the config has no plant section to key detectors by (${setting_key:})")

    def unresolved(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node

    setting = {"plant": {k: v for k, v in unresolved(plant).items() if k not in PRESENTATION_KEYS},
               "twin": unresolved(root.get("twin")), "network": unresolved(root.get("network"))}
    digest = hashlib.sha256(json.dumps(setting, sort_keys=True, default=str).encode()).hexdigest()
    return f"{plant.get('name', 'plant')}-{digest[:8]}"


def register_resolvers() -> None:
    """``${fmu:conveyor}`` builds (or takes from the cache) the repository's FMU ``conveyor``;
    ``${setting_key:}`` names the plant, twin and network of the config it is in
    (:func:`setting_key`); ``${cache:detectors}`` is a cache's directory
    (:func:`cosim.paths.cache_dir`)."""

    def fmu_path(model: str, fmi_version: str = "2.0") -> str:
        from cosim.twin.integrity import KeyStore, manifest_path, sign_fmu
        from models.build import build_fmu

        path = build_fmu(model, fmi_version=str(fmi_version))
        if not manifest_path(path).is_file():  # built here from this repository's sources: sign it
            sign_fmu(path, KeyStore(), name=model)
        return str(path)

    if not OmegaConf.has_resolver("fmu"):
        OmegaConf.register_new_resolver("fmu", fmu_path)
    if not OmegaConf.has_resolver("cache"):
        OmegaConf.register_new_resolver("cache", lambda name: str(paths.cache_dir(str(name))))
    if not OmegaConf.has_resolver("setting_key"):
        OmegaConf.register_new_resolver("setting_key", lambda _root_: setting_key(_root_))


def plant_spec(plant: DictConfig | Mapping[str, Any]) -> SystemSpec:
    """Build the system description of a plant config.

    A plant is either ``path: <file.ssp|file.ssd>`` (SSP import, ``base_step`` from config) or
    ``units`` (each a Hydra ``_target_`` config, keyed by unit name) plus ``connections``.
    """
    cfg = plant if isinstance(plant, DictConfig) else OmegaConf.create(dict(plant))
    name = cfg.get("name", "?")
    base_step = _number(cfg, "base_step", float)
    if base_step <= 0:
        raise ConfigurationError(f"plant.base_step must be positive, got {base_step}")
    algorithm = str(cfg.get("algorithm", "jacobi"))
    rates: dict[str, int] = plain(cfg.get("step_ticks")) or {}
    if "path" in cfg.keys():  # noqa: SIM118 - `in cfg` is False for a missing (???) value
        if OmegaConf.is_missing(cfg, "path") or not cfg.path:
            raise ConfigurationError(f"plant '{name}' needs a path: plant.path=/abs/path/plant.ssp")
        path = Path(str(cfg.path)).expanduser()
        if path.suffix.lower() not in (".ssp", ".ssd"):
            raise ConfigurationError(f"plant.path '{path}' is not an .ssp or .ssd file")
        spec = read_ssp(path).to_spec(base_step, algorithm, rates)
        spec.inputs.update(plain(cfg.get("inputs")) or {})
        return spec
    units_cfg = cfg.get("units")
    if not units_cfg:
        raise ConfigurationError(f"plant '{name}' has neither 'units' nor 'path'")
    units = []
    for name, ucfg in units_cfg.items():
        if ucfg is None:
            continue  # a unit switched off by an override (plant.units.x=null)
        if "_target_" not in ucfg:
            raise ConfigurationError(f"plant unit '{name}' has no _target_")
        try:
            step_ticks = int(ucfg.get("step_ticks", rates.get(name, 1)))
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"plant.units.{name}.step_ticks must be an integer, got {ucfg.get('step_ticks')!r}"
            ) from None
        units.append(UnitSpec(str(name), _factory(str(name), ucfg), step_ticks))
    return SystemSpec(
        base_step=float(base_step),
        units=units,
        connections=parse_connections(plain(cfg.get("connections")) or []),
        inputs=plain(cfg.get("inputs")) or {},
        start_time=_number(cfg, "start_time", float, 0.0),
        stop_time=_number(cfg, "duration", float, None),
        algorithm=str(algorithm),
        order=list(cfg.order) if cfg.get("order") else None,
        name=str(cfg.get("name", "plant")),
    )


def _number(cfg: DictConfig, key: str, kind: type, default: Any = ...) -> Any:
    """``cfg[key]`` as ``kind``; a clear error naming ``plant.<key>`` when it is not one."""
    value = cfg.get(key, None)
    if value is None:
        if default is ...:
            raise ConfigurationError(f"plant.{key} is not set")
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"plant.{key} must be a {kind.__name__}, got {value!r}") from None


def plain(value: Any) -> Any:
    """A config node as plain Python containers (resolved); anything else unchanged."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _factory(default_name: str, ucfg: DictConfig):
    def make(name: str | None = None, overrides: Mapping[str, Any] | None = None) -> Unit:
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        resolved = plain(ucfg)  # resolved while still attached to the root config (${seed})
        kwargs = deep_merge({k: v for k, v in resolved.items() if k not in _RESERVED}, overrides or {})
        name = name or default_name
        try:
            return instantiate(kwargs, name=name, _convert_="all")
        except InstantiationException as exc:
            cause = exc.__cause__
            if isinstance(cause, CosimError):
                raise cause from None
            raise ConfigurationError(f"plant unit '{name}': cannot instantiate {ucfg.get('_target_')}: "
                                     f"{cause or exc}") from None

    return make


def instantiate_observer(name: str, ocfg: Any, **kwargs: Any) -> Observer:
    """An observer from a ``_target_`` config (extra keyword arguments override it)."""
    from hydra.utils import instantiate

    if ocfg is None or "_target_" not in ocfg:
        raise ConfigurationError(f"observer '{name}' needs a _target_ in the plant config")
    try:
        obs = instantiate(plain(ocfg), **kwargs, _convert_="all")
    except Exception as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, CosimError):
            raise cause from None
        raise ConfigurationError(f"observer '{name}': cannot instantiate {ocfg.get('_target_')}: {cause}") from None
    if not isinstance(obs, Observer):
        raise ConfigurationError(f"observer '{name}': {type(obs).__name__} is not a cosim Observer")
    return obs


def plant_observers(plant: DictConfig) -> dict[str, Observer]:
    """The plant's own observers (``observers: {name: {_target_: ...}}``), e.g. its accounting."""
    return {str(name): instantiate_observer(str(name), ocfg)
            for name, ocfg in (plant.get("observers") or {}).items() if ocfg is not None}


def system_spec(cfg: DictConfig) -> tuple[SystemSpec, Any]:
    """The plant of ``cfg`` plus, with ``twin.enabled``, its digital twin.

    Returns the system description and the twin's layout (``None`` without a twin).
    """
    from cosim.twin.replica import add_twin

    spec = plant_spec(cfg.plant)
    twin = cfg.get("twin")
    if not twin or not twin.get("enabled"):
        return spec, None
    plant_twin = cfg.plant.get("twin")
    if not plant_twin or not plant_twin.get("replicate"):
        raise ConfigurationError(f"plant '{spec.name}' does not say what its twin mirrors (plant.twin.replicate)")
    layout = add_twin(
        spec,
        list(plant_twin.replicate),
        prefix=str(twin.get("prefix", "twin_")),
        overrides=plain(plant_twin.get("overrides")) or {},
        step_ticks=plain(plant_twin.get("step_ticks")) or {},
        exclude_signals=plain(plant_twin.get("exclude_signals")) or [],
    )
    if twin.get("verify_models", True):
        _verify_replica_models(spec, list(layout.replicas.values()))
    return spec, layout


def twin_sync(cfg: DictConfig, layout: Any) -> Observer:
    """The twin's synchroniser, from ``twin.sync`` and the plant's ``twin`` scales."""
    from cosim.twin.sync import TwinSync

    sync = plain(cfg.twin.get("sync")) or {}
    plant_twin = cfg.plant.twin
    try:
        return TwinSync(layout, scales=plain(plant_twin.get("scales")) or {},
                        bound_exclude=plain(plant_twin.get("bound_exclude")) or [], **sync)
    except TypeError as exc:
        raise ConfigurationError(f"twin.sync: {exc}") from None


@dataclass
class BuiltSystem:
    """What :func:`build_system` made: the description, the twin layout (``None`` without a
    twin), the built master and the twin's synchroniser (made, not yet added to the master, so
    that callers choose the order of their observers)."""

    spec: SystemSpec
    layout: Any
    master: Any
    sync: Observer | None


def build_system(cfg: DictConfig, record: Any = False, record_interval: int = 1) -> BuiltSystem:
    """The plant (and twin) of ``cfg`` built with its network, as every entry point needs it."""
    spec, layout = system_spec(cfg)
    master = spec.build(record=record, record_interval=int(record_interval), network=network_factory(cfg))
    return BuiltSystem(spec, layout, master, twin_sync(cfg, layout) if layout is not None else None)


def recording(cfg: DictConfig) -> tuple[Any, int]:
    """``(record, record_interval)`` from ``cfg.record``, falling back on the plant's choices."""
    record = cfg.record.variables if cfg.record.get("variables") is not None else cfg.plant.get("record")
    interval = cfg.record.get("interval") or cfg.plant.get("record_interval") or 1
    return (OmegaConf.to_container(record) if record is not None else True), int(interval)


def network_factory(cfg: DictConfig) -> Any:
    """``network(unit_names) -> Network`` from the ``network`` group, or ``None`` without one.

    Zone lists may name units the system does not have (the twin's, when it is off); they
    are left out. HMAC keys of ``auth: hmac`` conduits come from this installation's key
    store (generated on first use, never committed).
    """
    net_cfg = cfg.get("network")
    if not net_cfg or not net_cfg.get("enabled"):
        return None
    described = {k: v for k, v in (plain(net_cfg) or {}).items() if k != "enabled"}

    def make(units: list[str]) -> Any:
        from cosim.network import network_from_config
        from cosim.twin.integrity import KeyStore

        present = set(units) | {"net"}
        zones = {}
        for zone, members in (described.get("zones") or {}).items():
            if isinstance(members, Mapping):
                members = {**members, "units": [u for u in members.get("units", []) if u in present]}
            else:
                members = [u for u in members if u in present]
            zones[zone] = members
        config = {**described, "zones": zones, "exempt": [*described.get("exempt", []), "net"]}
        keys = None
        hmac_conduits = [c["name"] for c in config.get("conduits", []) if c.get("auth") == "hmac"]
        if hmac_conduits:
            store = KeyStore()
            keys = {name: store.hmac_key(f"conduit-{name}") for name in hmac_conduits}
        return network_from_config(config, [*units, "net"], int(cfg.get("seed", 0)), keys)

    return make


def _verify_replica_models(spec: SystemSpec, replicas: list[str]) -> None:
    """The twin's FMUs are verified against their signed manifests before they are loaded."""
    from cosim.twin.integrity import KeyStore, verify_fmu
    from cosim.units.fmu import FMUUnit

    for unit_spec in spec.units:
        if unit_spec.name not in replicas:
            continue

        def verified(*args: Any, _factory: Any = unit_spec.factory, **kwargs: Any) -> Unit:
            unit = _factory(*args, **kwargs)
            if isinstance(unit, FMUUnit):
                verify_fmu(unit.path, KeyStore())  # its binary is loaded later, at setup
            return unit

        unit_spec.factory = verified


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Run the simulation loop with what exists before it (models, worlds, configuration:
    ~200k objects) out of the garbage collector's generations. The loop frees what it
    allocates, so a full collection in it would walk them all (~0.2 s) for nothing."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
