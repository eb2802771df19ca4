"""Import a plant from an SSP file (System Structure and Parameterization, SSP 1.0/2.0).

Supported: an ``.ssp`` archive or a bare ``.ssd`` file; FMU components; nested systems
(flattened, unit names joined with ``_``, connections followed through system connectors);
parameter bindings on components with inline or file-based SSV parameter sets, their
``prefix`` and simple SSM name mappings; ``DefaultExperiment`` start and stop time (read here
because fmpy's reader leaves them out). SSP defines no step size: the caller gives one.
Unsupported content (connection transformations, non-FMU components) raises a clear
:class:`ConfigurationError` rather than being ignored.
"""

from __future__ import annotations

import shutil
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosim.core.variables import Value
from cosim.errors import ConfigurationError, ModelLoadError
from cosim.system import SystemSpec, UnitSpec, deep_merge
from cosim.units.fmu import FMUUnit

NS = {
    "ssd": "http://ssp-standard.org/SSP1/SystemStructureDescription",
    "ssc": "http://ssp-standard.org/SSP1/SystemStructureCommon",
    "ssv": "http://ssp-standard.org/SSP1/SystemStructureParameterValues",
    "ssm": "http://ssp-standard.org/SSP1/SystemStructureParameterMapping",
}
FMU_TYPES = {"application/x-fmu-sharedlibrary", None}
_VALUE_TAGS = ("Real", "Float64", "Float32", "Integer", "Int8", "UInt8", "Int16", "UInt16", "Int32",
               "UInt32", "Int64", "UInt64", "Boolean", "String", "Enumeration")


@dataclass
class SSPPlant:
    """What an SSP file describes, before any FMU is loaded."""

    name: str
    components: dict[str, Path]
    parameters: dict[str, dict[str, Value]]
    connections: list[tuple[str, str]]
    start_time: float = 0.0
    stop_time: float | None = None
    root: Path = field(default_factory=Path)  # where the archive was unpacked (kept for the run)

    def to_spec(self, base_step: float, algorithm: str = "jacobi",
                step_ticks: Mapping[str, int] | None = None) -> SystemSpec:
        rates = dict(step_ticks or {})
        unknown = set(rates) - set(self.components)
        if unknown:
            raise ConfigurationError(f"SSP '{self.name}': step_ticks for unknown components {sorted(unknown)}")
        units = [
            UnitSpec(name, _fmu_factory(name, path, self.parameters.get(name, {})), rates.get(name, 1))
            for name, path in self.components.items()
        ]
        return SystemSpec(base_step=base_step, units=units, connections=list(self.connections),
                          start_time=self.start_time, stop_time=self.stop_time,
                          algorithm=algorithm, name=self.name)

    def cleanup(self) -> None:
        if self.root.name.startswith("cosim-ssp-"):
            shutil.rmtree(self.root, ignore_errors=True)


def _fmu_factory(default_name: str, path: Path, params: dict[str, Value]) -> Callable[..., FMUUnit]:
    def make(name: str | None = None, overrides: Mapping[str, Any] | None = None) -> FMUUnit:
        kwargs = deep_merge({"parameters": params}, overrides or {})
        return FMUUnit(name or default_name, path, **kwargs)

    return make


def read_ssp(path: str | Path) -> SSPPlant:
    """Read an ``.ssp`` archive or ``.ssd`` file.

    Raises:
        ModelLoadError: the file is missing, not a ZIP archive, or has no SystemStructure.ssd.
        ConfigurationError: the structure is invalid or uses unsupported features.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError("ssp", f"read '{path}'", "file not found")
    if path.suffix.lower() == ".ssd":
        root_dir, ssd_file = path.parent, path
    else:
        root_dir = Path(tempfile.mkdtemp(prefix="cosim-ssp-"))
        try:
            with zipfile.ZipFile(path) as zf:
                zf.extractall(root_dir)
        except zipfile.BadZipFile:
            shutil.rmtree(root_dir, ignore_errors=True)
            raise ModelLoadError("ssp", f"read '{path}'", "not a valid SSP (corrupt or not a ZIP archive)") from None
        ssd_file = root_dir / "SystemStructure.ssd"
        if not ssd_file.is_file():
            shutil.rmtree(root_dir, ignore_errors=True)
            raise ModelLoadError("ssp", f"read '{path}'", "the archive has no SystemStructure.ssd")
    try:
        tree = ET.parse(ssd_file)
    except ET.ParseError as exc:
        raise ModelLoadError("ssp", f"parse '{ssd_file.name}'", str(exc)) from None
    return _Reader(path, root_dir, tree.getroot()).plant()


class _Reader:
    def __init__(self, source: Path, root_dir: Path, root: ET.Element) -> None:
        self.source = source
        self.root_dir = root_dir
        self.root = root
        self.components: dict[str, Path] = {}
        self.parameters: dict[str, dict[str, Value]] = {}
        # edges between (owner path, connector) nodes; owner "" is the top system
        self.edges: dict[tuple[str, str], tuple[str, str]] = {}
        self.kinds: dict[tuple[str, str], str] = {}

    def error(self, detail: str) -> ConfigurationError:
        return ConfigurationError(f"SSP '{self.source.name}': {detail}")

    def plant(self) -> SSPPlant:
        if self.root.tag != f"{{{NS['ssd']}}}SystemStructureDescription":
            raise self.error(f"root element is <{self.root.tag}>, not ssd:SystemStructureDescription")
        system = self.root.find("ssd:System", NS)
        if system is None:
            raise self.error("no ssd:System element")
        self._system(system, prefix="")
        connections = self._resolve()
        start, stop = 0.0, None
        exp = self.root.find("ssd:DefaultExperiment", NS)
        if exp is not None:
            start = float(exp.get("startTime", "0"))
            stop = float(exp.get("stopTime")) if exp.get("stopTime") is not None else None
        name = self.root.get("name") or system.get("name") or self.source.stem
        return SSPPlant(name, self.components, self.parameters, connections, start, stop, self.root_dir)

    def _system(self, system: ET.Element, prefix: str) -> None:
        for conn in system.findall("ssd:Connectors/ssd:Connector", NS):
            self.kinds[(prefix, conn.get("name", ""))] = conn.get("kind", "")
        elements = system.find("ssd:Elements", NS)
        for element in list(elements) if elements is not None else []:
            tag = element.tag.split("}")[-1]
            local = element.get("name")
            if not local:
                raise self.error(f"an ssd:{tag} has no name")
            full = f"{prefix}_{local}" if prefix else local
            if tag == "System":
                self._system(element, full)
            elif tag == "Component":
                self._component(element, full)
            elif tag == "SignalDictionaryReference":
                raise self.error(f"signal dictionaries ({local}) are not supported")
        for c in system.findall("ssd:Connections/ssd:Connection", NS):
            transforms = ("ssc:LinearTransformation", "ssd:LinearTransformation", "ssc:MapTransformation")
            if any(c.find(tag, NS) is not None for tag in transforms):
                raise self.error(f"connection {c.get('startElement')}.{c.get('startConnector')} has a "
                                 "transformation; transformations are not supported")
            start = self._node(prefix, c.get("startElement"), c.get("startConnector"))
            end = self._node(prefix, c.get("endElement"), c.get("endConnector"))
            if end in self.edges:
                raise self.error(f"connector {end[1]} of '{end[0] or 'the system'}' is fed twice")
            self.edges[end] = start

    def _node(self, prefix: str, element: str | None, connector: str | None) -> tuple[str, str]:
        if not connector:
            raise self.error("a connection has no connector name")
        if element:
            return (f"{prefix}_{element}" if prefix else element, connector)
        return (prefix, connector)

    def _component(self, element: ET.Element, name: str) -> None:
        ctype = element.get("type")
        if ctype not in FMU_TYPES:
            raise self.error(f"component '{name}' has type '{ctype}'; only FMUs are supported")
        source = element.get("source")
        if not source:
            raise self.error(f"component '{name}' has no source")
        path = (self.root_dir / source).resolve()
        if not path.is_file():
            raise ModelLoadError(name, f"read SSP '{self.source.name}'", f"component source '{source}' not found")
        self.components[name] = path
        for conn in element.findall("ssd:Connectors/ssd:Connector", NS):
            self.kinds[(name, conn.get("name", ""))] = conn.get("kind", "")
        params: dict[str, Value] = {}
        for binding in element.findall("ssd:ParameterBindings/ssd:ParameterBinding", NS):
            params.update(self._binding(name, binding))
        if params:
            self.parameters[name] = params

    def _binding(self, component: str, binding: ET.Element) -> dict[str, Value]:
        prefix = binding.get("prefix", "")
        if binding.get("source"):
            ssv_path = (self.root_dir / binding.get("source", "")).resolve()
            if not ssv_path.is_file():
                raise ModelLoadError(component, f"read SSP '{self.source.name}'",
                                     f"parameter file '{binding.get('source')}' not found")
            pset = ET.parse(ssv_path).getroot()
        else:
            pset = binding.find("ssd:ParameterValues/ssv:ParameterSet", NS)
            if pset is None:
                return {}
        values: dict[str, Value] = {}
        for p in pset.findall("ssv:Parameters/ssv:Parameter", NS):
            values[p.get("name", "")] = self._value(component, p)
        mapping = binding.find("ssd:ParameterMapping", NS)
        if mapping is not None:
            values = self._mapping(component, mapping, values)
        out: dict[str, Value] = {}
        for key, value in values.items():
            if prefix and not key.startswith(prefix):
                continue
            out[key[len(prefix):]] = value
        return out

    def _value(self, component: str, p: ET.Element) -> Value:
        for tag in _VALUE_TAGS:
            v = p.find(f"ssv:{tag}", NS)
            if v is None:
                continue
            text = v.get("value")
            if text is None:
                raise self.error(f"parameter '{p.get('name')}' of '{component}' has no value")
            if tag in ("Real", "Float64", "Float32"):
                return float(text)
            if tag == "Boolean":
                return text.strip().lower() in ("true", "1")
            if tag == "String":
                return text
            return int(text)
        raise self.error(f"parameter '{p.get('name')}' of '{component}' has no supported value type")

    def _mapping(self, component: str, mapping: ET.Element, values: dict[str, Value]) -> dict[str, Value]:
        if mapping.get("source"):
            root = ET.parse((self.root_dir / mapping.get("source", "")).resolve()).getroot()
        else:
            root = mapping.find("ssm:ParameterMapping", NS)
            if root is None:
                return values
        renamed = dict(values)
        for entry in root.findall("ssm:MappingEntry", NS):
            if len(entry):
                raise self.error(f"parameter mapping of '{component}' uses transformations; not supported")
            src, dst = entry.get("source"), entry.get("target")
            if src in renamed and dst:
                renamed[dst] = renamed.pop(src)
        return renamed

    def _resolve(self) -> list[tuple[str, str]]:
        """Follow each component input back through system connectors to a component output."""
        out: list[tuple[str, str]] = []
        for end, start in self.edges.items():
            if end[0] not in self.components:
                continue  # ends on a system connector; reached from the component side
            seen = {end}
            node = start
            while node[0] not in self.components:
                if node in seen or node not in self.edges:
                    node = ("", "")
                    break
                seen.add(node)
                node = self.edges[node]
            if node == ("", ""):
                continue  # fed by a top-level system input that nothing drives
            out.append((f"{node[0]}.{node[1]}", f"{end[0]}.{end[1]}"))
        return out
