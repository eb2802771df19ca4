"""Deployment and update attacks: an unsigned or modified model update (OTA), a poisoned
supply-chain component.

Every model update of a running system goes through its :class:`UpdateEndpoint`
(:func:`update_endpoint`): first the interceptors (a containment layer registers one with
:meth:`UpdateEndpoint.intercept` to quarantine an update, e.g. load it into a sandbox
instead), then — when verification is on — the integrity layer
(:func:`cosim.twin.integrity.verify_artifact`: a missing manifest, an unknown signer or a
hash mismatch refuses the update with :class:`~cosim.errors.IntegrityError`), and only then
is it applied to the unit through its public ``set``. Each outcome is an event on the
attack (``update_applied``, ``update_refused``, ``update_quarantined``) and in the
endpoint's :attr:`~UpdateEndpoint.log`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from cosim.attacks.base import Attack, plain_value, register
from cosim.errors import ConfigurationError, CosimError, IntegrityError

if TYPE_CHECKING:
    from cosim.core.master import Master
    from cosim.twin.integrity import KeyStore, Manifest


@dataclass
class ModelUpdate:
    """A model update on its way into a unit.

    Attributes:
        unit: the unit it updates.
        kind: ``parameters`` (a JSON parameter set) or ``fmu`` (an FMU file).
        artifact: the bytes (parameters) or the file (FMU) that is verified.
        manifest: its signed manifest (``None``: unsigned; for a file, ``None`` means the
            ``<file>.manifest.json`` next to it).
        parameters: what applying it sets on the unit.
        name: the component name its manifest must carry.
        origin: who sent it (the attack's name).
    """

    unit: str
    kind: str
    artifact: bytes | Path
    manifest: Manifest | None
    parameters: dict[str, Any]
    name: str
    origin: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


Interceptor = Callable[[ModelUpdate], "str | None"]


class UpdateEndpoint:
    """The path every model update takes into one running system (see the module docs)."""

    def __init__(self, master: Master) -> None:
        self._master = weakref.ref(master)
        self.interceptors: list[Interceptor] = []
        self.log: list[dict[str, Any]] = []

    def intercept(self, fn: Interceptor) -> Interceptor:
        """Register ``fn(update) -> str | None``: a string (e.g. ``"quarantined"``) takes the
        update out of the path — it is not verified nor applied; ``None`` lets it go on."""
        self.interceptors.append(fn)
        return fn

    def submit(self, update: ModelUpdate, verify: bool = True, keystore: KeyStore | None = None) -> str:
        """Deliver an update: ``"applied"``, ``"refused: <reason>"`` or an interceptor's verdict."""
        master = self._master()
        assert master is not None, "the master of this update endpoint is gone"
        t = master.time
        result = None
        for fn in self.interceptors:
            result = fn(update)
            if result:
                break
        if not result and verify:
            from cosim.twin.integrity import verify_artifact

            try:
                verify_artifact(update.artifact, update.manifest, keystore, kind=update.kind, name=update.name)
            except IntegrityError as exc:
                result = f"refused: {exc.reason}"
        if not result:
            unit = master.units[update.unit]
            names = list(update.parameters)
            try:
                unit.set(names, [update.parameters[n] for n in names])
                result = "applied"
            except CosimError as exc:  # e.g. a parameter the unit cannot change while running
                result = f"failed: {exc}"
        self.log.append({"t": t, "unit": update.unit, "kind": update.kind, "origin": update.origin,
                         "result": result})
        return result


def update_endpoint(master: Master) -> UpdateEndpoint:
    """The update endpoint of ``master`` (created on first use; it goes with the master:
    an interceptor may refer to the master without keeping it alive)."""
    endpoint = master.extensions.get("update_endpoint")
    if endpoint is None:
        endpoint = master.extensions["update_endpoint"] = UpdateEndpoint(master)
    return endpoint


class UpdateAttack(Attack):
    """Common part of the deployment attacks: deliver a :class:`ModelUpdate` at the start.

    Args:
        verify: whether the receiving side verifies updates (in a preset:
            ``${oc.select:twin.verify_models,true}``, the twin's own setting).
        keystore: key directory the receiving side trusts (default: this installation's).
    """

    physical = False

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 verify: bool = True, keystore: str | None = None, twin_prefix: str = "twin_") -> None:
        super().__init__(name, target, start, duration, seed)
        self.verify, self.keystore_dir, self.twin_prefix = bool(verify), keystore, twin_prefix
        self.result: str | None = None

    def ground_truth(self) -> Any:
        interval = super().ground_truth()
        from dataclasses import replace

        return replace(interval, physical=not self.target.startswith(self.twin_prefix))

    def verifying_keys(self) -> KeyStore:
        from cosim.twin.integrity import KeyStore

        return KeyStore(self.keystore_dir)

    def build_update(self, master: Master) -> ModelUpdate:
        raise NotImplementedError

    def install(self, master: Master) -> None:
        unit = master.units.get(self.target)
        if unit is None:
            raise ConfigurationError(f"attack '{self.name}': no unit '{self.target}' to update")
        update = self.build_update(master)
        unknown = [p for p in update.parameters if p not in unit.variables]
        if unknown:
            raise ConfigurationError(f"attack '{self.name}': unit '{self.target}' has no parameter(s) {unknown}")
        start, _ = self.ticks(master)

        def deliver(tick: int) -> None:
            if tick != start:
                return
            self.result = update_endpoint(master).submit(update, self.verify, self.verifying_keys())
            what = self.result.split(":")[0]
            label = {"applied": "update_applied", "refused": "update_refused"}.get(what, f"update_{what}")
            self.record(master.grid.time(tick), label, unit=self.target, result=self.result,
                        parameters=update.parameters)

        self.add_timer(master, deliver)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "result": self.result}


@register("ota")
class OTAUpdate(UpdateAttack):
    """An unsigned or modified over-the-air model update of a unit (the target, e.g.
    ``twin_conveyor``): at the start, the parameter set ``parameters`` is delivered as

    * ``unsigned``: without a manifest (refused: ``missing manifest``);
    * ``foreign``: signed with the attacker's own key (refused: ``unknown signer``);
    * ``modified``: a genuine, signed update of the same parameters with their current
      values, altered in transit (refused: ``hash mismatch``).

    With ``verify=false`` (``twin.verify_models=false``) it is applied: the unit's
    parameters change.
    """

    kind = "ota"
    MODES = ("unsigned", "foreign", "modified")

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 parameters: Mapping[str, Any] | None = None, mode: str = "unsigned", verify: bool = True,
                 keystore: str | None = None, attacker_keystore: str | None = None,
                 twin_prefix: str = "twin_") -> None:
        super().__init__(name, target, start, duration, seed, verify, keystore, twin_prefix)
        if mode not in self.MODES:
            raise ConfigurationError(f"attack '{name}': unknown ota mode '{mode}'; modes are {self.MODES}")
        if not parameters:
            raise ConfigurationError(f"attack '{name}': an update needs parameters, e.g. {{gain: 0.25}}")
        self.parameters, self.mode, self.attacker_keystore = _parameters(name, parameters), mode, attacker_keystore

    def build_update(self, master: Master) -> ModelUpdate:
        from cosim.twin.integrity import KeyStore, sign_artifact

        def blob(params: Mapping[str, Any]) -> bytes:
            return json.dumps({"unit": self.target, "parameters": dict(params)}, sort_keys=True).encode()

        payload = blob(self.parameters)
        manifest = None
        if self.mode == "foreign":
            keys_dir = self.attacker_keystore or tempfile.mkdtemp(prefix="cosim-attacker-keys-")
            manifest = sign_artifact(payload, "parameters", self.target, 1, KeyStore(keys_dir))
        elif self.mode == "modified":
            unit = master.units[self.target]
            names = [n for n in self.parameters if n in unit.variables]
            genuine = blob(dict(zip(names, unit.get(names), strict=True)))
            manifest = sign_artifact(genuine, "parameters", self.target, 1, self.verifying_keys())
        return ModelUpdate(self.target, "parameters", payload, manifest, dict(self.parameters), self.target,
                           self.name, {"mode": self.mode})


@register("supply_chain")
class SupplyChain(UpdateAttack):
    """A poisoned supply-chain component: a copy of the target unit's FMU whose parameter
    defaults (``parameters``) were changed in its ``modelDescription.xml``, shipped with the
    genuine component's manifest (its signature no longer matches: ``hash mismatch``), and
    delivered at the start as a component update. Accepted (``verify=false``), the poisoned
    defaults take effect in the running unit, as when it is loaded from that component.

    The poisoned copy is written to ``workdir`` (default: a new temporary directory), never
    over the original.
    """

    kind = "supply_chain"

    def __init__(self, name: str, target: str, start: float, duration: float | None = None, seed: int = 0,
                 parameters: Mapping[str, Any] | None = None, verify: bool = True, keystore: str | None = None,
                 workdir: str | None = None, twin_prefix: str = "twin_") -> None:
        super().__init__(name, target, start, duration, seed, verify, keystore, twin_prefix)
        if not parameters:
            raise ConfigurationError(f"attack '{name}': a poisoned component needs parameters, e.g. {{gain: 0.3}}")
        self.parameters, self.workdir = _parameters(name, parameters), workdir
        self.component: Path | None = None

    def build_update(self, master: Master) -> ModelUpdate:
        from cosim.twin.integrity import Manifest, manifest_path

        unit = master.units[self.target]
        original = getattr(unit, "path", None)
        if original is None or not Path(original).is_file():
            raise ConfigurationError(f"attack '{self.name}': unit '{self.target}' is not loaded from an FMU file")
        out = Path(self.workdir or tempfile.mkdtemp(prefix="cosim-supply-chain-"))
        out.mkdir(parents=True, exist_ok=True)
        poisoned = out / Path(original).name
        defaults = poison_fmu(Path(original), poisoned, self.parameters)
        component = Path(original).stem
        if manifest_path(original).is_file():  # the genuine component's signature, shipped along
            shutil.copyfile(manifest_path(original), manifest_path(poisoned))
            component = Manifest.load(manifest_path(original)).name
        self.component = poisoned
        return ModelUpdate(self.target, "fmu", poisoned, None, defaults, component, self.name,
                           {"component": str(poisoned)})


def _parameters(name: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """An update's parameter set: names to booleans or finite numbers."""
    if not isinstance(parameters, Mapping):
        raise ConfigurationError(f"attack '{name}': parameters must be a mapping {{name: value}}, got {parameters!r}")
    return {str(k): plain_value(f"attack '{name}'", f"parameters.{k}", v) for k, v in parameters.items()}


def poison_fmu(source: Path, dest: Path, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Copy the FMU ``source`` to ``dest`` with the start values of ``defaults`` changed in
    its ``modelDescription.xml``; returns the new defaults as read back from ``dest``."""
    with zipfile.ZipFile(source) as zin:
        xml = zin.read("modelDescription.xml")
        root = ElementTree.fromstring(xml)
        found: dict[str, Any] = {}
        for var in root.iter("ScalarVariable"):
            name = var.get("name")
            if name in defaults:
                typed = next(iter(var), None)
                if typed is None:
                    continue
                typed.set("start", str(defaults[name]))
                found[name] = defaults[name]
        for var in root.iter():  # FMI 3: <Float64 name=... start=...>
            name = var.get("name")
            if name in defaults and var.tag != "ScalarVariable" and var.get("start") is not None:
                var.set("start", str(defaults[name]))
                found[name] = defaults[name]
        missing = sorted(set(defaults) - set(found))
        if missing:
            raise ConfigurationError(f"FMU '{source.name}' has no parameter(s) {missing} with a start value")
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
            for item in zin.infolist():
                data = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True) \
                    if item.filename == "modelDescription.xml" else zin.read(item.filename)
                zout.writestr(item, data)
    from fmpy.model_description import read_model_description

    md = read_model_description(str(dest), validate=False)
    return {v.name: _number(v.start) for v in md.modelVariables if v.name in defaults}


def _number(text: Any) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in str(text) else value
