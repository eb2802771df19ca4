"""Signed, hashed and versioned twin components: key store, manifests, FMUs, snapshots."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest

from cosim import Master, SnapshotError
from cosim.errors import CosimError, IntegrityError
from cosim.twin.integrity import (
    KEY_DIR_ENV,
    REPO_ROOT,
    KeyStore,
    Manifest,
    SignedSnapshot,
    default_key_dir,
    manifest_path,
    sign_artifact,
    sign_fmu,
    verify_artifact,
    verify_fmu,
)
from cosim.units.fmu import FMUUnit
from models.build import build_fmu
from tests.conftest import Clock, Integrator, Noisy


@pytest.fixture
def keys(tmp_path, monkeypatch) -> KeyStore:
    monkeypatch.setenv(KEY_DIR_ENV, str(tmp_path / "keys"))
    return KeyStore()


@pytest.fixture
def fmu(tmp_path) -> Path:
    path = tmp_path / "models" / "conveyor.fmu"
    path.parent.mkdir()
    shutil.copyfile(build_fmu("conveyor"), path)
    return path


@pytest.fixture
def params(tmp_path) -> Path:
    path = tmp_path / "press_params.yaml"
    path.write_text("supply_pressure: 6.0\nrelief_pressure: 8.0\nstroke: 0.1\n")
    return path


def flip_file(path: Path, index: int) -> None:
    data = bytearray(path.read_bytes())
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------- key store
def test_key_pair_generated_once_and_reused(keys, tmp_path, monkeypatch):
    assert keys.directory == tmp_path / "keys" == default_key_dir()
    assert not keys.has_signing_key()  # nothing is created before first use
    fp = keys.fingerprint
    private = keys.private_key_path
    pem = private.read_bytes()
    assert b"PRIVATE KEY" in pem and mode(private) == 0o600
    assert (keys.directory / KeyStore.PUBLIC).read_bytes() == keys.public_key_pem()
    assert (keys.directory / ".gitignore").read_text().splitlines()[-1] == "*"
    again = KeyStore()  # another process, same installation
    assert again.fingerprint == fp and private.read_bytes() == pem
    assert KeyStore(tmp_path / "elsewhere").fingerprint != fp
    monkeypatch.delenv(KEY_DIR_ENV)
    assert default_key_dir() == REPO_ROOT / ".keys"
    assert ".keys/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_private_key_readable_by_others_is_refused(keys):
    assert keys.fingerprint
    keys.private_key_path.chmod(0o644)
    with pytest.raises(IntegrityError, match=r"key store.*signing_key.pem is accessible by other users.*chmod 600"):
        KeyStore().sign(b"x")


def test_hmac_keys_per_name(keys):
    a = keys.hmac_key("field->control")
    assert len(a) == 32
    assert KeyStore().hmac_key("field->control") == a  # created once, shared by every user of the key dir
    assert keys.hmac_key("control->enterprise") != a
    odd = keys.hmac_key("../../etc/passwd")
    assert odd != a
    files = sorted(p.name for p in (keys.directory / "hmac").iterdir())
    assert all("/" not in f for f in files) and len(files) == 3
    assert all(mode(p) == 0o600 for p in (keys.directory / "hmac").iterdir())
    assert not (keys.directory.parent / "etc").exists()
    with pytest.raises(IntegrityError, match="non-empty name"):
        keys.hmac_key("")


# ---------------------------------------------------------------------------- artifacts
def test_sign_and_verify_files_and_bytes(keys, params, fmu):
    m = sign_artifact(params, "parameters", "press", "3", keys)
    assert manifest_path(params).is_file()
    assert Manifest.load(manifest_path(params)) == m
    assert m.signer == keys.fingerprint and m.size == params.stat().st_size
    assert verify_artifact(params, None, keys, kind="parameters", name="press", version="3") == m

    fm = sign_fmu(fmu, keys, version="1.2")
    assert fm.kind == "fmu" and fm.name == "conveyor" and fm.meta["modelIdentifier"] == "conveyor"
    assert verify_fmu(fmu, keys, version="1.2").sha256 == fm.sha256
    FMUUnit("conveyor", fmu)  # the verified file loads

    blob = b"\x00weights\xff" * 100
    mb = sign_artifact(blob, "parameters", "detector", 7, keys, meta={"seed": "1"})
    assert mb.version == "7" and not manifest_path("detector").exists()
    verify_artifact(blob, mb, keys)
    verify_artifact(blob, Manifest.from_json(mb.to_json()), keys)
    with pytest.raises(IntegrityError, match="parameters 'detector' version 7 failed: hash mismatch"):
        verify_artifact(blob[:-1] + b"\x00", mb, keys)
    with pytest.raises(IntegrityError, match="missing manifest"):
        verify_artifact(blob, None, keys)


@pytest.mark.parametrize("which", ["fmu", "params"])
@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_one_flipped_byte_is_a_hash_mismatch(keys, fmu, params, which, where):
    path = fmu if which == "fmu" else params
    sign_artifact(path, "fmu" if which == "fmu" else "parameters", path.stem, "1", keys)
    size = path.stat().st_size
    flip_file(path, int(size * where) if where != -1 else size - 1)
    with pytest.raises(IntegrityError, match=f"integrity check of '{path}' failed: hash mismatch") as info:
        verify_artifact(path, None, keys)
    assert isinstance(info.value, CosimError) and info.value.reason == "hash mismatch"


@pytest.mark.parametrize("field, value", [
    ("version", "2"), ("name", "press"), ("kind", "urdf"), ("size", 1), ("created", "2020-01-01T00:00:00Z"),
    ("meta", {"fmiVersion": "3.0"}), ("sha256", "0" * 64),
])
def test_edited_manifest_field_is_a_bad_signature(keys, fmu, field, value):
    sign_fmu(fmu, keys)
    mpath = manifest_path(fmu)
    data = json.loads(mpath.read_text())
    data[field] = value
    mpath.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="failed: bad signature"):
        verify_fmu(fmu, keys)


def test_tampered_content_with_rehashed_manifest_is_a_bad_signature(keys, params):
    sign_artifact(params, "parameters", "press", "1", keys)
    params.write_text("supply_pressure: 60.0\n")  # an attacker raises the pressure...
    mpath = manifest_path(params)
    data = json.loads(mpath.read_text())
    data["sha256"] = hashlib.sha256(params.read_bytes()).hexdigest()  # ...and fixes the hash
    data["size"] = params.stat().st_size
    mpath.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="bad signature"):
        verify_artifact(params, None, keys)


def test_other_signer_is_unknown_until_trusted(keys, tmp_path, fmu):
    other = KeyStore(tmp_path / "other_installation")
    sign_fmu(fmu, other)
    with pytest.raises(IntegrityError, match="unknown signer") as info:
        verify_fmu(fmu, keys)
    assert str(fmu) in str(info.value)
    assert keys.trust(other.public_key_pem()) == other.fingerprint
    verify_fmu(fmu, keys)
    forged = KeyStore(tmp_path / "attacker")  # same fingerprint claimed, other key: bad signature
    m = Manifest.load(manifest_path(fmu))
    fake = Manifest(**{**m.to_dict(), "signature": sign_artifact(b"", "fmu", "x", "1", forged).signature})
    with pytest.raises(IntegrityError, match="bad signature"):
        verify_artifact(fmu, fake, keys)


def test_expectations_missing_and_malformed_manifests(keys, fmu, params):
    sign_fmu(fmu, keys, version="1.0")
    with pytest.raises(IntegrityError, match=r"version mismatch.*expected '2.0'.*'1.0'"):
        verify_fmu(fmu, keys, version="2.0")
    with pytest.raises(IntegrityError, match="name mismatch"):
        verify_fmu(fmu, keys, name="press")
    sign_artifact(params, "parameters", "press", "1", keys)
    with pytest.raises(IntegrityError, match=r"kind mismatch.*expected 'fmu'"):
        verify_fmu(params, keys)
    manifest_path(params).unlink()
    with pytest.raises(IntegrityError, match=f"'{params}' failed: missing manifest"):
        verify_artifact(params, None, keys)
    manifest_path(params).write_text("{not json")
    with pytest.raises(IntegrityError, match="malformed manifest"):
        verify_artifact(params, None, keys)
    manifest_path(params).write_text(json.dumps({"kind": "x"}))
    with pytest.raises(IntegrityError, match=r"malformed manifest.*missing fields"):
        verify_artifact(params, None, keys)
    with pytest.raises(IntegrityError, match="not an FMU"):
        sign_fmu(params, keys)


# ---------------------------------------------------------------------------- snapshots
def small_master() -> Master:
    m = Master(0.01)
    m.add_unit(Clock("clock"))
    m.add_unit(Noisy("noisy", seed=2))
    m.add_unit(FMUUnit("conveyor", build_fmu("conveyor")))
    m.add_unit(Integrator("integral"))
    m.connect("clock.t", "noisy.u")
    m.connect("noisy.y", "conveyor.motor_cmd")
    m.connect("conveyor.belt_speed", "integral.u")
    return m


def run(m: Master, n: int) -> list[tuple]:
    rows = []
    for _ in range(n):
        m.step()
        rows.append((m.tick, m.get("noisy.y"), m.get("conveyor.speed_meas"), m.get("integral.y")))
    return rows


def fingerprint_of(m: Master) -> tuple:
    return m.tick, {name: unit.export_state() for name, unit in m.units.items()}


def test_signed_snapshot_restores_when_intact(keys, tmp_path):
    with small_master() as m, small_master() as clone:
        m.build()
        m.step(20)
        snap = SignedSnapshot.take(m, None, keys, version="1")
        assert snap.tick == 20 and snap.unit_names == ["clock", "conveyor", "integral", "noisy"]
        assert snap.manifest.kind == "snapshot" and snap.manifest.signer == keys.fingerprint
        original = run(m, 30)
        snap.restore_into(m)  # rollback
        assert m.tick == 20 and run(m, 30) == original
        path = snap.save(tmp_path / "snap.bin")
        loaded = SignedSnapshot.load(path, KeyStore())
        loaded.restore_into(clone, version="1")  # a sandbox clone in another master
        assert clone.tick == 20 and run(clone, 30) == original


def test_tampered_snapshot_is_refused_and_leaves_the_master_untouched(keys, tmp_path):
    with small_master() as m:
        m.build()
        m.step(20)
        snap = SignedSnapshot.take(m, ["conveyor", "integral"], keys, version="1")
        m.step(15)
        before = fingerprint_of(m)
        positions = [0, 20, len(snap.data) // 2, len(snap.data) - 1]
        for pos in positions:
            data = bytearray(snap.data)
            data[pos] ^= 0x01
            bad = SignedSnapshot(bytes(data), snap.manifest, keys)
            with pytest.raises(IntegrityError, match="snapshot 'snapshot' version 1 failed: hash mismatch"):
                bad.restore_into(m)
            assert fingerprint_of(m) == before
        for field, value in (("version", "2"), ("meta", {"tick": "0", "units": "conveyor,integral"})):
            edited = Manifest(**{**snap.manifest.to_dict(), field: value})
            with pytest.raises(IntegrityError, match="bad signature"):
                SignedSnapshot(snap.data, edited, keys).restore_into(m)
            assert fingerprint_of(m) == before
        stranger = SignedSnapshot.take(m, None, KeyStore(tmp_path / "stranger"), version="1")
        with pytest.raises(IntegrityError, match="unknown signer"):
            stranger.restore_into(m, keys)
        with pytest.raises(IntegrityError, match="version mismatch"):
            snap.restore_into(m, version="3")
        assert fingerprint_of(m) == before
        # a file-level edit of the saved snapshot is refused the same way
        path = snap.save(tmp_path / "s.bin")
        flip_file(path, 50)
        with pytest.raises(IntegrityError, match="hash mismatch"):
            SignedSnapshot.load(path, keys).restore_into(m)
        manifest_path(path).unlink()
        with pytest.raises(IntegrityError, match="missing manifest"):
            SignedSnapshot.load(path, keys)
        assert fingerprint_of(m) == before
        snap.restore_into(m)  # the intact one still restores
        assert m.tick == 20


def test_verified_snapshot_that_does_not_fit_is_a_snapshot_error(keys):
    with small_master() as m:
        m.build()
        snap = SignedSnapshot.take(m, None, keys, version="1")
        other = Master(0.01)
        other.add_unit(Clock("clock"))
        with pytest.raises(SnapshotError, match=r"unit\(s\) \[.conveyor.*that this system does not have"):
            snap.restore_into(other)
        other.terminate()
