"""Build the station FMUs from the sources in this package, with a content-hash cache.

Two kinds of models are buildable:

* C models in ``models/fmus/<name>/``: a ``spec.json`` (the one source of truth for the
  variable table) and the model's C sources. At build time this module generates
  ``model_spec.h`` / ``model_spec.c`` and ``modelDescription.xml`` from the spec, compiles
  them with the scaffold in ``models/fmus/common/`` (an FMI 2.0 or FMI 3.0 Co-Simulation
  wrapper) and packs the ``.fmu``. The FMI headers come from the installed fmpy package.
* Python stations in ``models/stations/<name>.py``: a pythonfmu ``Fmi2Slave`` exported with
  pythonfmu (FMI 2.0 only), with FMU-state support switched on.

Every FMU is cached under a SHA-256 of everything that determines it (sources, this
builder, FMI version, compiler identity, platform). The cache directory is, in order:
the ``cache_dir`` argument, ``$COSIM_FMU_CACHE``, ``<cache root>/fmus`` (:mod:`cosim.paths`). Builds happen
in a private temporary directory and are published with an atomic rename, so concurrent
builds of the same FMU are safe (the last identical file wins).

Command line::

    python -m models.build conveyor            # FMI 2.0, prints the path of the .fmu
    python -m models.build press --fmi 3.0
    python -m models.build --list
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosim import paths
from cosim.errors import ConfigurationError, CosimError

__all__ = [
    "BuildResult",
    "FMUBuildError",
    "available_models",
    "build",
    "build_fmu",
    "default_cache_dir",
    "generate_c_sources",
    "load_spec",
    "model_description_xml",
    "platform_dir",
]

log = logging.getLogger(__name__)

MODELS_ROOT = Path(__file__).resolve().parent
REPO_ROOT = paths.REPO_ROOT
FMI_VERSIONS = ("2.0", "3.0")
CACHE_ENV = paths.CACHES["fmus"]  # COSIM_FMU_CACHE
GENERATION_TOOL = "cosim models.build"
CFLAGS = ("-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-fvisibility=hidden")

# Units used by the specs, as SI base-unit exponents (and factor to SI).
UNITS: dict[str, dict[str, float]] = {
    "s": {"s": 1},
    "m": {"m": 1},
    "m2": {"m": 2},
    "1/m": {"m": -1},
    "m/s": {"m": 1, "s": -1},
    "A": {"A": 1},
    "N": {"kg": 1, "m": 1, "s": -2},
    "N/m": {"kg": 1, "s": -2},
    "Pa": {"kg": 1, "m": -1, "s": -2},
    "bar": {"kg": 1, "m": -1, "s": -2, "factor": 1e5},
}
LOG_CATEGORIES = {
    "logStatusWarning": "Messages with status Warning",
    "logStatusDiscard": "Messages with status Discard",
    "logStatusError": "Messages with status Error",
    "logAll": "All messages",
}
_C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FMUBuildError(CosimError):
    """An FMU could not be built. Names the model and carries the compiler's stderr."""

    def __init__(
        self, model: str, detail: str, *, stderr: str = "", command: list[str] | None = None
    ) -> None:
        self.model = model
        self.detail = detail
        self.stderr = stderr
        self.command = list(command or [])
        message = f"building FMU '{model}' failed: {detail}"
        if self.command:
            message += "\ncommand: " + " ".join(shlex.quote(c) for c in self.command)
        if stderr:
            message += "\n" + stderr.rstrip()
        super().__init__(message)


@dataclass(frozen=True)
class BuildResult:
    """Outcome of :func:`build`: where the FMU is and whether it came from the cache."""

    model: str
    fmi_version: str
    path: Path
    digest: str
    cache_hit: bool


# ----------------------------------------------------------------------------- discovery


def _roots(source_root: str | Path | None) -> tuple[Path, Path, Path]:
    root = Path(source_root).resolve() if source_root is not None else MODELS_ROOT
    return root, root / "fmus", root / "stations"


def _c_models(source_root: str | Path | None) -> dict[str, Path]:
    _, fmus, _ = _roots(source_root)
    if not fmus.is_dir():
        return {}
    return {d.name: d for d in sorted(fmus.iterdir()) if d.is_dir() and (d / "spec.json").is_file()}


def _py_models(source_root: str | Path | None) -> dict[str, Path]:
    _, _, stations = _roots(source_root)
    if not stations.is_dir():
        return {}
    return {f.stem: f for f in sorted(stations.glob("*.py")) if not f.name.startswith("_")}


def available_models(source_root: str | Path | None = None) -> list[str]:
    """Names of all buildable models (C models and Python stations), sorted."""
    return sorted(set(_c_models(source_root)) | set(_py_models(source_root)))


def default_cache_dir() -> Path:
    """``$COSIM_FMU_CACHE`` if set, else ``<cache root>/fmus`` (:func:`cosim.paths.cache_dir`)."""
    return paths.cache_dir("fmus")


def platform_dir(fmi_version: str) -> str:
    """The binaries/ sub-directory for this host: e.g. ``linux64`` (FMI 2.0) or ``x86_64-linux`` (FMI 3.0)."""
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "x86", "i686": "x86"}.get(
        machine, machine
    )
    if sys.platform.startswith("linux"):
        system = "linux"
    elif sys.platform == "darwin":
        system = "darwin"
    elif sys.platform in ("win32", "cygwin"):
        system = "windows"
    else:
        system = sys.platform
    if fmi_version == "2.0":
        bits = "64" if struct.calcsize("P") == 8 else "32"
        return {"windows": "win"}.get(system, system) + bits
    return f"{arch}-{system}"


def _shared_lib_suffix() -> str:
    if sys.platform == "darwin":
        return ".dylib"
    if sys.platform in ("win32", "cygwin"):
        return ".dll"
    return ".so"


# ----------------------------------------------------------------------------- spec


def load_spec(model: str, source_root: str | Path | None = None) -> dict[str, Any]:
    """Read and validate ``fmus/<model>/spec.json``; returns the normalised spec.

    The returned variables list starts with the independent variable ``time`` (value
    reference 0); every variable has ``vr``, ``type``, ``causality``, ``variability``.
    """
    models = _c_models(source_root)
    if model not in models:
        raise ConfigurationError(f"'{model}' is not a C model; C models: {sorted(models)}")
    path = models[model] / "spec.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FMUBuildError(model, f"cannot read {path}: {exc}") from exc
    return _normalise_spec(model, raw, path)


def _normalise_spec(model: str, raw: dict[str, Any], path: Path) -> dict[str, Any]:
    problems: list[str] = []
    if raw.get("model_name", model) != model:
        problems.append(f"model_name '{raw.get('model_name')}' differs from the directory name '{model}'")
    variables = [
        {
            "name": "time",
            "vr": 0,
            "type": "Real",
            "causality": "independent",
            "variability": "continuous",
            "unit": "s",
            "description": "Simulation time",
        }
    ]
    seen = {"time"}
    for i, var in enumerate(raw.get("variables", [])):
        v = dict(var)
        name = v.get("name", f"#{i}")
        if not isinstance(name, str) or not _C_NAME.match(name):
            problems.append(f"variable {name!r}: name must be a C identifier")
        if name in seen:
            problems.append(f"variable '{name}': duplicate name (or reserved 'time')")
        seen.add(name)
        vtype = v.get("type")
        caus = v.get("causality")
        if vtype not in ("Real", "Integer", "Boolean"):
            problems.append(f"variable '{name}': type must be Real, Integer or Boolean, not {vtype!r}")
        if caus not in ("parameter", "input", "output"):
            problems.append(f"variable '{name}': causality must be parameter, input or output, not {caus!r}")
        default_var = "fixed" if caus == "parameter" else ("continuous" if vtype == "Real" else "discrete")
        v.setdefault("variability", default_var)
        allowed = {"parameter": {"fixed", "tunable"}}.get(
            caus, {"continuous", "discrete"} if vtype == "Real" else {"discrete"}
        )
        if v["variability"] not in allowed:
            problems.append(
                f"variable '{name}': variability {v['variability']!r} not allowed for {caus} {vtype}"
            )
        if caus in ("parameter", "input") and "start" not in v:
            problems.append(f"variable '{name}': a {caus} needs a start value")
        if caus == "output" and "start" in v:
            problems.append(f"variable '{name}': outputs are calculated and must not have a start value")
        if "start" in v:
            start = v["start"]
            ok = {
                "Real": isinstance(start, (int, float)) and not isinstance(start, bool),
                "Integer": isinstance(start, int)
                and not isinstance(start, bool)
                and -(2**31) <= start < 2**31,
                "Boolean": isinstance(start, bool),
            }.get(vtype, False)
            if not ok:
                problems.append(f"variable '{name}': start {start!r} does not fit type {vtype}")
        unit = v.get("unit")
        if unit is not None and (vtype != "Real" or unit not in UNITS):
            problems.append(
                f"variable '{name}': unknown unit {unit!r} (known: {sorted(UNITS)}) or not a Real"
            )
        v["vr"] = len(variables)
        variables.append(v)
    if problems:
        raise FMUBuildError(model, f"invalid spec {path}:\n  - " + "\n  - ".join(problems))
    return {
        "model_name": model,
        "description": raw.get("description", ""),
        "default_experiment": raw.get("default_experiment"),
        "variables": variables,
    }


# ----------------------------------------------------------------------------- generators


def _fmt_real(x: float) -> str:
    return repr(float(x))


def _fmt_start(v: dict[str, Any]) -> str:
    if v["type"] == "Boolean":
        return "true" if v["start"] else "false"
    if v["type"] == "Integer":
        return str(int(v["start"]))
    return _fmt_real(v["start"])


def generate_c_sources(spec: dict[str, Any], token: str) -> tuple[str, str]:
    """Return (model_spec.h, model_spec.c) for a normalised spec."""
    name = spec["model_name"]
    ctype = {"Real": "double", "Integer": "int32_t", "Boolean": "int32_t"}
    vt = {"Real": "VT_REAL", "Integer": "VT_INTEGER", "Boolean": "VT_BOOLEAN"}
    caus = {
        "parameter": "CAUS_PARAMETER",
        "input": "CAUS_INPUT",
        "output": "CAUS_OUTPUT",
        "independent": "CAUS_INDEPENDENT",
    }
    var = {
        "fixed": "VARIAB_FIXED",
        "tunable": "VARIAB_TUNABLE",
        "continuous": "VARIAB_CONTINUOUS",
        "discrete": "VARIAB_DISCRETE",
    }
    h = [
        f"/* Generated by models/build.py from fmus/{name}/spec.json -- do not edit. */",
        "#ifndef MODEL_SPEC_H",
        "#define MODEL_SPEC_H",
        "",
        "#include <stdint.h>",
        "",
        f'#define MODEL_IDENTIFIER "{name}"',
        f'#define MODEL_TOKEN "{token}"',
        "",
        "typedef struct {",
    ]
    for v in spec["variables"]:
        h.append(f"    {ctype[v['type']]} {v['name']}; /* vr {v['vr']}, {v['causality']} {v['type']} */")
    h += ["} ModelVariables;", ""]
    h += [f"#define VR_{v['name']} {v['vr']}u" for v in spec["variables"]]
    h += ["", "#endif", ""]

    c = [
        f"/* Generated by models/build.py from fmus/{name}/spec.json -- do not edit. */",
        "#include <stddef.h>",
        '#include "model.h"',
        '#include "model_spec.h"',
        "",
        "const char MODEL_IDENTIFIER_STRING[] = MODEL_IDENTIFIER;",
        "const char MODEL_TOKEN_STRING[] = MODEL_TOKEN;",
        "",
        "const VarInfo MODEL_VARIABLES[] = {",
    ]
    for v in spec["variables"]:
        c.append(
            f'    {{{v["vr"]}u, "{v["name"]}", {vt[v["type"]]}, {caus[v["causality"]]}, '
            f"{var[v['variability']]}, offsetof(ModelVariables, {v['name']})}},"
        )
    c += [
        "};",
        "const size_t MODEL_N_VARIABLES = sizeof MODEL_VARIABLES / sizeof MODEL_VARIABLES[0];",
        "",
        "void model_set_start_values(void *data)",
        "{",
        "    ModelVariables *v = (ModelVariables *)data;",
    ]
    for v in spec["variables"]:
        if "start" in v:
            value = (1 if v["start"] else 0) if v["type"] == "Boolean" else _fmt_start(v)
            c.append(f"    v->{v['name']} = {value};")
    c += ["}", ""]
    return "\n".join(h), "\n".join(c)


def model_description_xml(spec: dict[str, Any], fmi_version: str, token: str) -> str:
    """The modelDescription.xml text for a normalised spec."""
    if fmi_version not in FMI_VERSIONS:
        raise ConfigurationError(f"unsupported FMI version {fmi_version!r}; choose one of {FMI_VERSIONS}")
    fmi3 = fmi_version == "3.0"
    name = spec["model_name"]
    root = ET.Element(
        "fmiModelDescription",
        {
            "fmiVersion": fmi_version,
            "modelName": name,
            ("instantiationToken" if fmi3 else "guid"): token,
            "description": spec.get("description", ""),
            "generationTool": GENERATION_TOOL,
            "variableNamingConvention": "flat",
        },
    )
    if not fmi3:
        root.set("numberOfEventIndicators", "0")
    cs = {"modelIdentifier": name, "canHandleVariableCommunicationStepSize": "true"}
    if fmi3:
        cs.update(canGetAndSetFMUState="true", canSerializeFMUState="true")
    else:
        cs.update(
            canGetAndSetFMUstate="true",
            canSerializeFMUstate="true",
            canNotUseMemoryManagementFunctions="true",
        )
    ET.SubElement(root, "CoSimulation", cs)

    units = sorted({v["unit"] for v in spec["variables"] if v.get("unit")})
    if units:
        ud = ET.SubElement(root, "UnitDefinitions")
        for u in units:
            unit = ET.SubElement(ud, "Unit", {"name": u})
            ET.SubElement(
                unit,
                "BaseUnit",
                {k: (_fmt_real(x) if k == "factor" else str(int(x))) for k, x in UNITS[u].items()},
            )
    cats = ET.SubElement(root, "LogCategories")
    for cat, desc in LOG_CATEGORIES.items():
        ET.SubElement(cats, "Category", {"name": cat, "description": desc})
    if spec.get("default_experiment"):
        ET.SubElement(
            root, "DefaultExperiment", {k: _fmt_real(x) for k, x in spec["default_experiment"].items()}
        )

    mv = ET.SubElement(root, "ModelVariables")
    for v in spec["variables"]:
        attrs = {"name": v["name"], "valueReference": str(v["vr"])}
        if v.get("description"):
            attrs["description"] = v["description"]
        attrs["causality"] = v["causality"]
        attrs["variability"] = v["variability"]
        type_attrs: dict[str, str] = {}
        if "start" in v:
            type_attrs["start"] = _fmt_start(v)
        if v.get("unit"):
            type_attrs["unit"] = v["unit"]
        for bound in ("min", "max"):
            if bound in v:
                type_attrs[bound] = _fmt_real(v[bound]) if v["type"] == "Real" else str(int(v[bound]))
        if fmi3:
            tag = {"Real": "Float64", "Integer": "Int32", "Boolean": "Boolean"}[v["type"]]
            ET.SubElement(mv, tag, {**attrs, **type_attrs})
        else:
            sv = ET.SubElement(mv, "ScalarVariable", attrs)
            ET.SubElement(sv, v["type"], type_attrs)

    ms = ET.SubElement(root, "ModelStructure")
    outputs = [v for v in spec["variables"] if v["causality"] == "output"]
    # Outputs change only in doStep: no direct feed-through from any input.
    if fmi3:
        for v in outputs:
            ET.SubElement(ms, "Output", {"valueReference": str(v["vr"]), "dependencies": ""})
        for v in outputs:
            ET.SubElement(ms, "InitialUnknown", {"valueReference": str(v["vr"])})
    elif outputs:
        index = {v["name"]: i + 1 for i, v in enumerate(spec["variables"])}
        out = ET.SubElement(ms, "Outputs")
        for v in outputs:
            ET.SubElement(out, "Unknown", {"index": str(index[v["name"]]), "dependencies": ""})
        init = ET.SubElement(ms, "InitialUnknowns")
        for v in outputs:
            ET.SubElement(init, "Unknown", {"index": str(index[v["name"]])})
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ----------------------------------------------------------------------------- hashing


def _hash_files(h: Any, files: list[Path], base: Path) -> None:
    for f in sorted(files):
        h.update(str(f.relative_to(base)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")


def _model_files(directory: Path) -> list[Path]:
    return [
        p
        for p in directory.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
    ]


def _fmi_header_dir() -> Path:
    import fmpy

    path = Path(fmpy.__file__).resolve().parent / "c-code"
    if not (path / "fmi2Functions.h").is_file() or not (path / "fmi3Functions.h").is_file():
        raise FMUBuildError("*", f"FMI headers not found in the fmpy package ({path})")
    return path


@functools.lru_cache(maxsize=8)
def _compiler_identity(cc: str) -> str:
    argv = shlex.split(cc)
    if not argv or shutil.which(argv[0]) is None:
        raise FMUBuildError("*", f"C compiler {cc!r} not found (set $CC or install cc)")
    try:
        proc = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FMUBuildError("*", f"cannot run C compiler {cc!r}: {exc}") from exc
    # the full $CC string counts: extra flags in it (e.g. sanitizers) change the binary
    return f"{cc}\n{shutil.which(argv[0])}\n{proc.stdout.strip()}"


def _compiler() -> tuple[list[str], str]:
    cc = os.environ.get("CC") or "cc"
    return shlex.split(cc), _compiler_identity(cc)


# ----------------------------------------------------------------------------- building


def build(
    model: str,
    fmi_version: str = "2.0",
    cache_dir: str | Path | None = None,
    *,
    source_root: str | Path | None = None,
    force: bool = False,
) -> BuildResult:
    """Build (or fetch from the cache) the FMU of ``model``; see :func:`build_fmu`."""
    fmi_version = str(fmi_version)
    if fmi_version not in FMI_VERSIONS:
        raise ConfigurationError(f"unsupported FMI version {fmi_version!r}; choose one of {FMI_VERSIONS}")
    c_models, py_models = _c_models(source_root), _py_models(source_root)
    if model in c_models and model in py_models:
        raise ConfigurationError(f"model '{model}' is defined both in C and in Python; rename one")
    if model not in c_models and model not in py_models:
        raise ConfigurationError(
            f"unknown model '{model}'; available: {', '.join(available_models(source_root)) or '(none)'}"
        )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)

    if model in c_models:
        digest, pack = _prepare_c(model, c_models[model], fmi_version, source_root)
    else:
        if fmi_version != "2.0":
            raise ConfigurationError(
                f"model '{model}' is a pythonfmu station; pythonfmu exports FMI 2.0 only "
                f"(asked for {fmi_version})"
            )
        digest, pack = _prepare_python(model, py_models[model])

    target = cache / f"{model}-fmi{fmi_version}-{digest[:20]}.fmu"
    if target.is_file() and not force:
        log.debug("FMU cache hit: %s", target)
        return BuildResult(model, fmi_version, target, digest, True)

    log.info("building FMU %s (FMI %s) -> %s", model, fmi_version, target)
    workdir = Path(tempfile.mkdtemp(prefix=f".build-{model}-", dir=cache))
    try:
        fmu = pack(workdir)
        os.replace(fmu, target)  # atomic publish; a concurrent identical build just overwrites
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return BuildResult(model, fmi_version, target, digest, False)


def build_fmu(
    model: str,
    fmi_version: str = "2.0",
    cache_dir: str | Path | None = None,
    *,
    source_root: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Return the path of the ``.fmu`` of ``model`` for ``fmi_version``, building it if needed.

    Args:
        model: one of :func:`available_models`.
        fmi_version: "2.0" or "3.0" (Python stations: "2.0" only).
        cache_dir: cache directory (default :func:`default_cache_dir`).
        source_root: directory holding ``fmus/`` and ``stations/`` (default: this package),
            e.g. a modified copy in tests.
        force: rebuild even if a cached FMU exists.

    Raises:
        ConfigurationError: unknown model or unsupported FMI version.
        FMUBuildError: invalid spec, compiler missing or failing (message has its stderr).
    """
    return build(model, fmi_version, cache_dir, source_root=source_root, force=force).path


def _prepare_c(model: str, model_dir: Path, fmi_version: str, source_root: str | Path | None):
    root, fmus, _ = _roots(source_root)
    common = fmus / "common"
    if not common.is_dir():
        raise FMUBuildError(model, f"scaffold directory {common} is missing")
    spec = load_spec(model, source_root)
    headers = _fmi_header_dir()
    cc, cc_id = _compiler()

    src = hashlib.sha256()
    _hash_files(src, _model_files(common) + _model_files(model_dir), root)
    src.update(Path(__file__).read_bytes())
    source_digest = src.hexdigest()
    token = "{" + str(uuid.UUID(hex=source_digest[:32])) + "}"

    key = hashlib.sha256()
    key.update(source_digest.encode())
    key.update(f"\0fmi={fmi_version}\0platform={platform_dir(fmi_version)}\0cflags={CFLAGS}\0".encode())
    key.update(cc_id.encode())
    _hash_files(key, [p for p in headers.glob("fmi*.h")], headers)
    digest = key.hexdigest()

    def pack(workdir: Path) -> Path:
        gen = workdir / "gen"
        gen.mkdir()
        spec_h, spec_c = generate_c_sources(spec, token)
        (gen / "model_spec.h").write_text(spec_h, encoding="utf-8")
        (gen / "model_spec.c").write_text(spec_c, encoding="utf-8")
        wrapper = common / ("fmi3_wrapper.c" if fmi_version == "3.0" else "fmi2_wrapper.c")
        sources = [wrapper, common / "instance.c", gen / "model_spec.c", *sorted(model_dir.glob("*.c"))]
        lib = workdir / f"{model}{_shared_lib_suffix()}"
        cmd = [
            *cc,
            *CFLAGS,
            f"-I{gen}",
            f"-I{common}",
            f"-I{model_dir}",
            f"-I{headers}",
            *map(str, sources),
            "-o",
            str(lib),
            "-lm",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise FMUBuildError(model, f"cannot run the C compiler: {exc}", command=cmd) from exc
        if proc.returncode != 0 or not lib.is_file():
            raise FMUBuildError(
                model,
                f"C compiler exited with status {proc.returncode} (FMI {fmi_version})",
                stderr=proc.stderr or proc.stdout,
                command=cmd,
            )
        if proc.stderr.strip():
            log.warning("compiler warnings for %s:\n%s", model, proc.stderr)
        fmu = workdir / f"{model}.fmu"
        with zipfile.ZipFile(fmu, "w", compression=zipfile.ZIP_DEFLATED) as z:
            _zip_write(z, "modelDescription.xml", model_description_xml(spec, fmi_version, token).encode())
            _zip_write(
                z, f"binaries/{platform_dir(fmi_version)}/{model}{_shared_lib_suffix()}", lib.read_bytes()
            )
        return fmu

    return digest, pack


def _zip_write(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    z.writestr(info, data)


def _prepare_python(model: str, script: Path):
    try:
        from importlib.metadata import version

        pythonfmu_version = version("pythonfmu")
    except Exception as exc:  # pragma: no cover - depends on the environment
        raise FMUBuildError(model, f"pythonfmu is not installed: {exc}") from exc
    key = hashlib.sha256()
    _hash_files(key, [script], script.parent)
    key.update(Path(__file__).read_bytes())
    key.update(
        f"\0pythonfmu={pythonfmu_version}\0python={sys.version_info[:2]}"
        f"\0platform={platform_dir('2.0')}\0".encode()
    )
    digest = key.hexdigest()

    def pack(workdir: Path) -> Path:
        out = workdir / "out"
        out.mkdir()
        cmd = [
            sys.executable,
            "-m",
            "pythonfmu",
            "build",
            "-f",
            str(script),
            "-d",
            str(out),
            "--handle-state",
            "--serialize-state",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise FMUBuildError(model, f"cannot run pythonfmu: {exc}", command=cmd) from exc
        fmus = list(out.glob("*.fmu"))
        if proc.returncode != 0 or len(fmus) != 1:
            raise FMUBuildError(
                model,
                f"pythonfmu build exited with status {proc.returncode}",
                stderr=proc.stderr or proc.stdout,
                command=cmd,
            )
        return fmus[0]

    return digest, pack


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.build", description="Build a station FMU (cached)."
    )
    parser.add_argument("model", nargs="?", help="model name (see --list)")
    parser.add_argument("--fmi", default="2.0", choices=FMI_VERSIONS, help="FMI version (default 2.0)")
    parser.add_argument(
        "--cache-dir", default=None, help=f"cache directory (default ${CACHE_ENV} or <cache root>/fmus)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--list", action="store_true", help="list buildable models and exit")
    args = parser.parse_args(argv)
    if args.list or not args.model:
        print("\n".join(available_models()))
        return 0
    try:
        print(build_fmu(args.model, args.fmi, args.cache_dir, force=args.force))
    except CosimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
