"""Pack the SSP examples in ``models/ssp/<name>/`` into ``.ssp`` archives.

An example folder holds a ``SystemStructure.ssd`` and any ``.ssv`` files; components refer to
``resources/<model>.fmu``, where ``<model>`` is one of the repository's buildable FMUs. The
FMUs are built (or taken from the cache) and packed with the rest. The archive is cached like
the FMUs, by a hash of its content.

    python -m models.ssp demo        # prints the path of the .ssp
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import tempfile
import zipfile
from pathlib import Path

from cosim.errors import ConfigurationError
from models.build import build_fmu, default_cache_dir

SSP_ROOT = Path(__file__).resolve().parent / "ssp"
_FMU_SOURCE = re.compile(r'source="resources/([A-Za-z0-9_]+)\.fmu"')


def available_ssps() -> list[str]:
    return sorted(p.name for p in SSP_ROOT.iterdir() if (p / "SystemStructure.ssd").is_file())


def build_ssp(name: str, cache_dir: str | Path | None = None) -> Path:
    """Return the path of the packed ``.ssp`` for example ``name``, building its FMUs if needed."""
    folder = SSP_ROOT / name
    ssd = folder / "SystemStructure.ssd"
    if not ssd.is_file():
        raise ConfigurationError(f"no SSP example '{name}'; examples are {available_ssps()}")
    members: dict[str, Path] = {
        p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()
    }
    for model in sorted(set(_FMU_SOURCE.findall(ssd.read_text()))):
        members[f"resources/{model}.fmu"] = build_fmu(model)
    digest = hashlib.sha256()
    for arcname, path in sorted(members.items()):
        digest.update(arcname.encode() + b"\0" + path.read_bytes())
    out_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}-{digest.hexdigest()[:20]}.ssp"
    if target.is_file():
        return target
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".ssp.tmp")
    os.close(fd)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in sorted(members.items()):
            zf.write(path, arcname)
    os.replace(tmp, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=available_ssps())
    print(build_ssp(parser.parse_args().name))


if __name__ == "__main__":
    main()
