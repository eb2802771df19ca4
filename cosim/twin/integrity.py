"""Versioned, hashed and signed twin components.

A twin is only as trustworthy as the models and states it is built from. This module signs
and verifies them:

- :class:`KeyStore`: one Ed25519 key pair per installation, generated on first use, in the key
  directory (``$COSIM_KEY_DIR`` if set, else ``<repo root>/.keys/``; the private key file has
  mode 0600 and the directory holds a ``.gitignore`` so it is never committed), the public
  keys of other installations trusted explicitly (:meth:`KeyStore.trust`), and per-name HMAC
  keys for message authentication on conduits (:meth:`KeyStore.hmac_key`).
- :class:`Manifest`: what is signed about an artifact: kind (``fmu``, ``parameters``,
  ``snapshot``, ``urdf``...), name, version, SHA-256 and size of the content, creation time,
  the signer's key fingerprint and free-form ``meta``; the Ed25519 signature covers the
  canonical JSON of all of it. Stored as ``<file>.manifest.json`` next to a file artifact.
- :func:`sign_artifact` / :func:`verify_artifact` for any file or in-memory bytes;
  :func:`sign_fmu` / :func:`verify_fmu` for FMUs (the twin builder verifies before loading).
- :class:`SignedSnapshot`: the portable state of some units of a master (see
  :mod:`cosim.core.state`) with its signed manifest; :meth:`SignedSnapshot.restore_into`
  verifies first and imports only then, so a tampered snapshot leaves the master untouched.

Every failure raises :class:`~cosim.errors.IntegrityError` naming the artifact and the
reason: ``missing manifest``, ``malformed manifest``, ``unknown signer``, ``bad signature``,
``kind mismatch``, ``name mismatch``, ``version mismatch``, ``hash mismatch``.

Verification order: the signer must be trusted, then the signature must hold (so an edited
manifest field is a ``bad signature``), then the expectations of the caller (kind, name,
version), then the content must hash to the signed digest (a changed byte is a ``hash
mismatch``). A file is verified as it is read at that moment: load it from a location that
others cannot write to, or it may change between verification and use.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cosim.core.state import TICK_KEY, export_units, import_units, parse_snapshot_bytes, snapshot_bytes
from cosim.errors import IntegrityError, SnapshotError
from cosim.paths import REPO_ROOT

if TYPE_CHECKING:
    from cosim.core.master import Master

__all__ = [
    "KEY_DIR_ENV",
    "MANIFEST_SUFFIX",
    "IntegrityError",
    "KeyStore",
    "Manifest",
    "SignedSnapshot",
    "default_key_dir",
    "manifest_path",
    "sign_artifact",
    "sign_fmu",
    "verify_artifact",
    "verify_fmu",
]

KEY_DIR_ENV = "COSIM_KEY_DIR"
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1
_SIGNING_CONTEXT = b"cosim-manifest-v1\n"  # domain separation: these signatures mean "manifest"
_HMAC_KEY_BYTES = 32
_CHUNK = 1 << 20

Artifact = str | os.PathLike[str] | bytes | bytearray | memoryview


def default_key_dir() -> Path:
    """``$COSIM_KEY_DIR`` if set, else ``<repo root>/.keys``."""
    env = os.environ.get(KEY_DIR_ENV)
    return Path(env).expanduser() if env else REPO_ROOT / ".keys"


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """Where the manifest of a file artifact lives: ``<file>.manifest.json``."""
    p = Path(path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


# ---------------------------------------------------------------------------- key store
def _fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


class KeyStore:
    """Signing key, trusted public keys and HMAC keys of one installation.

    Layout of the key directory::

        signing_key.pem        Ed25519 private key (PKCS#8 PEM), mode 0600
        signing_key.pub.pem    its public key, to hand to other installations
        trusted/<fp>.pem       public keys of other signers, trusted by :meth:`trust`
        hmac/<name>.key        32-byte HMAC keys, mode 0600
        .gitignore             "*": nothing in here is ever committed

    The key pair is generated on first use (signing, or asking for the fingerprint); two
    processes racing to create it end up with the same key (atomic publication by link).

    Args:
        directory: the key directory; default :func:`default_key_dir`.
    """

    PRIVATE = "signing_key.pem"
    PUBLIC = "signing_key.pub.pem"
    TRUSTED = "trusted"
    HMAC = "hmac"

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_key_dir()
        self._private: Ed25519PrivateKey | None = None
        self._hmac: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"KeyStore({str(self.directory)!r})"

    # files -------------------------------------------------------------------------------
    def _fail(self, detail: str) -> IntegrityError:
        return IntegrityError(f"key store {self.directory}", "key store", detail)

    def _ensure_dir(self, sub: str | None = None) -> Path:
        path = self.directory if sub is None else self.directory / sub
        try:
            if not self.directory.is_dir():
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            ignore = self.directory / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# cosim key store: never commit these files\n*\n")
            path.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise self._fail(f"cannot create the key directory: {exc}") from None
        return path

    def _publish(self, path: Path, data: bytes, mode: int) -> bool:
        """Create ``path`` with ``data`` unless it exists; True if this call created it."""
        try:
            return self._publish_file(path, data, mode)
        except OSError as exc:
            raise self._fail(f"cannot write {path.name}: {exc}") from None

    @staticmethod
    def _publish_file(path: Path, data: bytes, mode: int) -> bool:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)  # in case the umask narrowed a public file
            try:
                os.link(tmp, path)  # atomic, and fails if another process was first
                return True
            except FileExistsError:
                return False
            except OSError:  # no hard links here: exclusive create of the final name
                try:
                    fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                except FileExistsError:
                    return False
                with os.fdopen(fd2, "wb") as fh:
                    fh.write(data)
                return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _read_secret(self, path: Path) -> bytes:
        try:
            info = path.stat()
            if os.name == "posix" and info.st_mode & 0o077:
                raise self._fail(
                    f"{path.name} is accessible by other users (mode {stat.S_IMODE(info.st_mode):o}); "
                    f"run: chmod 600 {path}"
                )
            return path.read_bytes()
        except OSError as exc:
            raise self._fail(f"cannot read {path.name}: {exc}") from None

    # signing key ---------------------------------------------------------------------------
    @property
    def private_key_path(self) -> Path:
        return self.directory / self.PRIVATE

    def has_signing_key(self) -> bool:
        """Whether the key pair exists already (without creating it)."""
        return self.private_key_path.is_file()

    def _signing_key(self) -> Ed25519PrivateKey:
        if self._private is not None:
            return self._private
        self._ensure_dir()
        path = self.private_key_path
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            self._publish(path, pem, 0o600)  # if another process won the race, its key is read below
        data = self._read_secret(path)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise self._fail(f"{path.name} is not a readable private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise self._fail(f"{path.name} is not an Ed25519 private key")
        self._private = key
        public = self.directory / self.PUBLIC
        if not public.exists():
            self._publish(public, self.public_key_pem(), 0o644)
        return key

    @property
    def public_key(self) -> Ed25519PublicKey:
        """This installation's public key (creates the key pair on first use)."""
        return self._signing_key().public_key()

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the raw public key: how manifests name their signer."""
        return _fingerprint(self.public_key)

    def public_key_pem(self) -> bytes:
        """The public key as PEM, for :meth:`trust` in another installation."""
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature of ``data`` with this installation's key."""
        return self._signing_key().sign(data)

    # trusted keys --------------------------------------------------------------------------
    def trust(self, public_key: bytes | str | Ed25519PublicKey) -> str:
        """Trust another signer's public key (PEM, or 32 raw bytes); returns its fingerprint."""
        if isinstance(public_key, Ed25519PublicKey):
            key = public_key
        else:
            data = public_key.encode() if isinstance(public_key, str) else bytes(public_key)
            try:
                if len(data) == 32:
                    key = Ed25519PublicKey.from_public_bytes(data)
                else:
                    loaded = serialization.load_pem_public_key(data)
                    if not isinstance(loaded, Ed25519PublicKey):
                        raise ValueError("not an Ed25519 public key")
                    key = loaded
            except ValueError as exc:
                raise self._fail(f"cannot trust this public key: {exc}") from None
        fp = _fingerprint(key)
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self._publish(self._ensure_dir(self.TRUSTED) / f"{fp}.pem", pem, 0o644)
        return fp

    def trusted_key(self, fingerprint: str) -> Ed25519PublicKey | None:
        """The public key of a trusted signer (this installation, or one passed to :meth:`trust`)."""
        if self.has_signing_key() and fingerprint == self.fingerprint:
            return self.public_key
        if not (isinstance(fingerprint, str) and len(fingerprint) == 64
                and all(c in "0123456789abcdef" for c in fingerprint)):
            return None
        path = self.directory / self.TRUSTED / f"{fingerprint}.pem"
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(key, Ed25519PublicKey) or _fingerprint(key) != fingerprint:
            return None  # a renamed or foreign file is not trust
        return key

    # HMAC keys -------------------------------------------------------------------------------
    def hmac_key(self, name: str) -> bytes:
        """The 32-byte HMAC key for ``name`` (a conduit, a link...), created on first use.

        Every process using this key directory gets the same key for the same name.
        """
        if not isinstance(name, str) or not name:
            raise self._fail(f"an HMAC key needs a non-empty name, got {name!r}")
        cached = self._hmac.get(name)
        if cached is not None:
            return cached
        filename = quote(name, safe="") + ".key"  # no '/' survives quoting: no path traversal
        if len(filename) > 200:
            raise self._fail(f"HMAC key name too long ({len(name)} characters)")
        path = self._ensure_dir(self.HMAC) / filename
        if not path.exists():
            self._publish(path, secrets.token_bytes(_HMAC_KEY_BYTES), 0o600)
        key = self._read_secret(path)
        if len(key) != _HMAC_KEY_BYTES:
            raise self._fail(f"HMAC key file {path.name} has {len(key)} bytes, expected {_HMAC_KEY_BYTES}")
        self._hmac[name] = key
        return key


# ---------------------------------------------------------------------------- manifests
@dataclass(frozen=True)
class Manifest:
    """Signed description of an artifact. ``signature`` (base64) covers every other field."""

    kind: str
    name: str
    version: str
    sha256: str
    size: int
    created: str
    signer: str
    meta: dict[str, str] = field(default_factory=dict)
    signature: str = ""
    format: int = MANIFEST_FORMAT

    _FIELDS = ("format", "kind", "name", "version", "sha256", "size", "created", "signer", "meta", "signature")

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers (every field but the signature)."""
        body = {k: v for k, v in self.to_dict().items() if k != "signature"}
        return _SIGNING_CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":"),
                                             ensure_ascii=True).encode()

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(getattr(self, k)) if k == "meta" else getattr(self, k)) for k in self._FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, artifact: str = "artifact") -> Manifest:
        """Read a manifest dict; :class:`IntegrityError` ``malformed manifest`` if it is not one."""
        def bad(detail: str) -> IntegrityError:
            return IntegrityError(artifact, "malformed manifest", detail)

        if not isinstance(data, dict):
            raise bad("not a JSON object")
        missing = [k for k in cls._FIELDS if k not in data]
        extra = [k for k in data if k not in cls._FIELDS]
        if missing or extra:
            raise bad(f"missing fields {missing}" if missing else f"unknown fields {extra}")
        if data["format"] != MANIFEST_FORMAT:
            raise bad(f"format {data['format']!r}, this version reads format {MANIFEST_FORMAT}")
        for k in ("kind", "name", "version", "sha256", "created", "signer", "signature"):
            if not isinstance(data[k], str):
                raise bad(f"'{k}' must be a string")
        if not isinstance(data["size"], int) or isinstance(data["size"], bool) or data["size"] < 0:
            raise bad("'size' must be a non-negative integer")
        meta = data["meta"]
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise bad("'meta' must map strings to strings")
        return cls(**{k: data[k] for k in cls._FIELDS})

    @classmethod
    def from_json(cls, text: str | bytes, artifact: str = "artifact") -> Manifest:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise IntegrityError(artifact, "malformed manifest", f"not JSON: {exc}") from None
        return cls.from_dict(data, artifact)

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], artifact: str | None = None) -> Manifest:
        path = Path(path)
        label = artifact or str(path)
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(label, "missing manifest", f"{path} does not exist") from None
        except OSError as exc:
            raise IntegrityError(label, "missing manifest", f"cannot read {path}: {exc}") from None
        return cls.from_json(text, label)


def _digest(artifact: Artifact, label: str) -> tuple[str, int]:
    """SHA-256 hex and size of bytes or of a file's content."""
    if isinstance(artifact, bytes | bytearray | memoryview):
        data = bytes(artifact)
        return hashlib.sha256(data).hexdigest(), len(data)
    h = hashlib.sha256()
    size = 0
    try:
        with open(artifact, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise IntegrityError(label, "missing artifact", str(exc)) from None
    return h.hexdigest(), size


def _label(artifact: Artifact, manifest: Manifest | None = None) -> str:
    if isinstance(artifact, bytes | bytearray | memoryview):
        if manifest is None:
            return "in-memory artifact"
        return f"{manifest.kind} '{manifest.name}' version {manifest.version}"
    return f"'{os.fspath(artifact)}'"


def _check_token(what: str, value: str) -> str:
    value = str(value)
    if not value or any(c in value for c in "\n\r\0"):
        raise ValueError(f"{what} must be a non-empty single-line string, got {value!r}")
    return value


def sign_artifact(artifact: Artifact, kind: str, name: str, version: str | int, keystore: KeyStore | None = None,
                  *, meta: Mapping[str, str] | None = None, created: str | None = None,
                  write: bool = True) -> Manifest:
    """Hash and sign an artifact.

    Args:
        artifact: a file path, or the artifact's bytes.
        kind: ``fmu``, ``parameters``, ``snapshot``, ``urdf``, ...
        name: the component's name.
        version: the component's version (compared exactly by :func:`verify_artifact`).
        keystore: the signer (default: this installation's :class:`KeyStore`).
        meta: extra signed strings (tick, model identifier, ...).
        created: creation time (default now, UTC, ISO 8601).
        write: for a file, also write ``<file>.manifest.json`` next to it.

    Returns:
        The signed manifest.
    """
    ks = keystore if keystore is not None else KeyStore()
    label = _label(artifact)
    digest, size = _digest(artifact, label)
    stamp = created or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    unsigned = Manifest(kind=_check_token("kind", kind), name=_check_token("name", name),
                        version=_check_token("version", str(version)), sha256=digest, size=size,
                        created=stamp, signer=ks.fingerprint,
                        meta={str(k): str(v) for k, v in (meta or {}).items()})
    signature = base64.b64encode(ks.sign(unsigned.signed_bytes())).decode("ascii")
    manifest = Manifest(**{**unsigned.to_dict(), "signature": signature})
    if write and not isinstance(artifact, bytes | bytearray | memoryview):
        manifest.save(manifest_path(artifact))
    return manifest


def verify_artifact(artifact: Artifact, manifest: Manifest | str | os.PathLike[str] | None = None,
                    keystore: KeyStore | None = None, *, kind: str | None = None, name: str | None = None,
                    version: str | int | None = None) -> Manifest:
    """Verify an artifact against its signed manifest.

    Args:
        artifact: a file path, or the artifact's bytes.
        manifest: the manifest, or the path of its JSON file; default for a file
            ``<file>.manifest.json``.
        keystore: whose trusted keys decide (default: this installation's :class:`KeyStore`).
        kind, name, version: expected values (checked when given).

    Returns:
        The verified manifest.

    Raises:
        IntegrityError: naming the artifact and what failed (see the module documentation).
    """
    ks = keystore if keystore is not None else KeyStore()
    label = _label(artifact)
    if manifest is None:
        if isinstance(artifact, bytes | bytearray | memoryview):
            raise IntegrityError(label, "missing manifest", "an in-memory artifact needs its manifest passed in")
        path = manifest_path(artifact)
        if not path.is_file():
            raise IntegrityError(label, "missing manifest", f"no {path.name} next to it")
        manifest = Manifest.load(path, label)
    elif not isinstance(manifest, Manifest):
        manifest = Manifest.load(manifest, label)
    label = _label(artifact, manifest)

    key = ks.trusted_key(manifest.signer)
    if key is None:
        raise IntegrityError(label, "unknown signer", f"key {manifest.signer[:16]}... is neither this "
                             f"installation's nor trusted in {ks.directory}")
    try:
        signature = base64.b64decode(manifest.signature.encode("ascii"), validate=True)
        key.verify(signature, manifest.signed_bytes())
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
        raise IntegrityError(label, "bad signature", "the manifest was altered or not signed by its signer") from None
    for what, want, got in (("kind", kind, manifest.kind), ("name", name, manifest.name),
                            ("version", version, manifest.version)):
        if want is not None and str(want) != got:
            raise IntegrityError(label, f"{what} mismatch", f"expected {str(want)!r}, the manifest says {got!r}")
    digest, size = _digest(artifact, label)
    if digest != manifest.sha256 or size != manifest.size:
        raise IntegrityError(label, "hash mismatch",
                             f"content has SHA-256 {digest[:16]}... ({size} bytes), signed "
                             f"{manifest.sha256[:16]}... ({manifest.size} bytes): the content was altered")
    return manifest


# ---------------------------------------------------------------------------- FMUs
def sign_fmu(path: str | os.PathLike[str], keystore: KeyStore | None = None, *, name: str | None = None,
             version: str | int = "1", meta: Mapping[str, str] | None = None) -> Manifest:
    """Sign an FMU file; writes ``<file>.fmu.manifest.json``.

    ``name`` defaults to the FMU's model identifier; its FMI version and GUID (instantiation
    token) go into the signed ``meta``.
    """
    info: dict[str, str] = {}
    try:
        from fmpy.model_description import read_model_description

        md = read_model_description(os.fspath(path), validate=False)
        token = md.guid if md.fmiVersion.startswith("2") else md.instantiationToken
        ident = (md.coSimulation or md.modelExchange).modelIdentifier
        info = {"fmiVersion": str(md.fmiVersion), "modelIdentifier": str(ident), "token": str(token)}
    except Exception as exc:
        raise IntegrityError(_label(path), "not an FMU", f"cannot read its modelDescription.xml: {exc}") from None
    return sign_artifact(path, "fmu", name or info["modelIdentifier"], version, keystore,
                         meta={**info, **(meta or {})})


def verify_fmu(path: str | os.PathLike[str], keystore: KeyStore | None = None, *, name: str | None = None,
               version: str | int | None = None) -> Manifest:
    """Verify an FMU file against ``<file>.manifest.json`` before loading it.

    Raises:
        IntegrityError: missing manifest, unknown signer, bad signature, a manifest of another
            kind, name or version, or altered content.
    """
    return verify_artifact(path, None, keystore, kind="fmu", name=name, version=version)


# ---------------------------------------------------------------------------- snapshots
@dataclass(frozen=True)
class SignedSnapshot:
    """Portable state of some units of a master plus its tick, hashed and signed.

    ``data`` is :func:`~cosim.core.state.snapshot_bytes` of
    :func:`~cosim.core.state.export_units`; ``manifest`` (kind ``snapshot``) signs it, with the
    tick and the unit names in its ``meta``.
    """

    data: bytes
    manifest: Manifest
    keystore: KeyStore | None = field(default=None, compare=False, repr=False)

    @classmethod
    def take(cls, master: Master, units: Iterable[str] | None, keystore: KeyStore | None, version: str | int,
             *, name: str = "snapshot", allow_unaligned: bool = False) -> SignedSnapshot:
        """Export ``units`` (all when ``None``) of ``master`` and sign them.

        Raises:
            SnapshotError: a unit cannot export its state, or ``master.tick`` falls between the
                steps of a multi-rate unit (see :func:`~cosim.core.state.export_units`).
        """
        states = export_units(master, units, allow_unaligned=allow_unaligned)
        blob = snapshot_bytes(states)
        meta = {"tick": states[TICK_KEY].decode("ascii"),
                "units": ",".join(sorted(n for n in states if n != TICK_KEY))}
        ks = keystore if keystore is not None else KeyStore()
        return cls(blob, sign_artifact(blob, "snapshot", name, version, ks, meta=meta), ks)

    @property
    def tick(self) -> int:
        return int(self.manifest.meta.get("tick", "-1"))

    @property
    def unit_names(self) -> list[str]:
        text = self.manifest.meta.get("units", "")
        return text.split(",") if text else []

    def verify(self, keystore: KeyStore | None = None, *, version: str | int | None = None) -> dict[str, bytes]:
        """Verify signature and content; returns the unit states. Uses ``keystore``, else the
        key store the snapshot was taken or loaded with."""
        ks = keystore or self.keystore
        if ks is None:
            raise IntegrityError(f"snapshot '{self.manifest.name}'", "key store", "no key store to verify with")
        verify_artifact(self.data, self.manifest, ks, kind="snapshot", version=version)
        label = _label(self.data, self.manifest)
        try:
            states = parse_snapshot_bytes(self.data)
        except SnapshotError as exc:
            raise IntegrityError(label, "malformed snapshot", str(exc)) from None
        names = sorted(n for n in states if n != TICK_KEY)
        if names != self.unit_names or states.get(TICK_KEY, b"").decode("ascii", "replace") != self.manifest.meta.get(
                "tick"):
            raise IntegrityError(label, "malformed manifest", "its tick or unit list does not match the content")
        return states

    def restore_into(self, master: Master, keystore: KeyStore | None = None, *,
                     version: str | int | None = None) -> None:
        """Verify, and only then import the units and the tick into ``master``.

        Raises:
            IntegrityError: the snapshot does not verify; ``master`` is untouched.
            SnapshotError: it verifies but does not fit ``master`` (unknown unit, another model);
                the units are put back as they were.
        """
        states = self.verify(keystore, version=version)
        import_units(master, states)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the data to ``path`` and the manifest to ``<path>.manifest.json``."""
        path = Path(path)
        path.write_bytes(self.data)
        self.manifest.save(manifest_path(path))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], keystore: KeyStore | None = None) -> SignedSnapshot:
        """Read a snapshot written by :meth:`save` (not verified yet: :meth:`verify` or
        :meth:`restore_into` do that)."""
        path = Path(path)
        label = _label(path)
        mpath = manifest_path(path)
        if not mpath.is_file():
            raise IntegrityError(label, "missing manifest", f"no {mpath.name} next to it")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IntegrityError(label, "missing artifact", str(exc)) from None
        return cls(data, Manifest.load(mpath, label), keystore)
