"""Support for the sweep launcher tests: a Ray head on loopback, and a helper that runs a sweep.

The Ray head runs in a private network namespace that has only a loopback interface, so none of
Ray's servers (GCS, raylet, agents: some bind every interface) can be reached from outside this
machine. The sweep's driver joins that namespace too and connects to the head by address.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HEAD_START_TIMEOUT_S = 180.0
SWEEP_TIMEOUT_S = 600.0


@dataclass
class Sweep:
    """A finished sweep: the driver's exit code and output, and its sweep directory."""

    returncode: int
    output: str
    sweep_dir: Path
    driver_pid: int
    wall_s: float

    def job_summary(self, num: int, name: str = "simulate.json") -> dict[str, object]:
        path = self.sweep_dir / str(num) / name
        assert path.is_file(), f"job {num} wrote no {name}; driver output:\n{self.output[-4000:]}"
        return dict(json.loads(path.read_text()))


def run_sweep(module: str, overrides: Sequence[str], sweep_dir: Path, *, prefix: Sequence[str] = (),
              env: dict[str, str] | None = None) -> Sweep:
    """Run ``python -m <module> -m <overrides> hydra.sweep.dir=<sweep_dir>`` from the repo root."""
    cmd = [*prefix, sys.executable, "-m", module, "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        output, _ = proc.communicate(timeout=SWEEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"sweep did not finish in {SWEEP_TIMEOUT_S} s:\n{output[-4000:]}")
    return Sweep(proc.returncode, output, sweep_dir, proc.pid, time.perf_counter() - t0)


@dataclass
class RayHead:
    """A Ray head started for the tests: its address, log folder and how to enter its network."""

    address: str
    temp_dir: Path
    netns_prefix: list[str]
    env: dict[str, str]
    start_s: float
    pids: list[int] = field(default_factory=list)

    def worker_logs(self) -> list[Path]:
        return sorted((self.temp_dir / "session_latest" / "logs").glob("worker-*.out"))

    def tasks_started(self) -> int:
        """Hydra jobs started so far on this head (Ray marks each task's start in its worker log)."""
        return sum(log.read_text(errors="replace").count(":task_name:_run_job\n") for log in self.worker_logs())


def _fail_or_skip(reason: str) -> None:
    # CI must run the Ray test; elsewhere (no root, no namespaces) it is skipped with the reason.
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _processes_mentioning(text: str) -> list[int]:
    """Pids of processes whose command line contains ``text`` (our unique Ray temp dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM a process group we created, then SIGKILL it if it outlives ``timeout``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    """A Ray head (2 CPUs, no dashboard) on 127.0.0.1 in a loopback-only network namespace."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None or not (VENV_BIN / "ray").exists():
        _fail_or_skip("needs unshare, nsenter and the ray CLI (pip install -e '.[ray]')")
    # A short temp dir: Ray's unix socket paths under it must stay below 108 characters.
    temp_dir = Path(tempfile.mkdtemp(prefix="rayt-", dir="/tmp"))
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep 3600"],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    head: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(0.3)
        if holder.poll() is not None:
            err = holder.stderr.read().decode() if holder.stderr else ""
            _fail_or_skip(f"cannot create a network namespace (unshare --net): {err.strip()}")
        prefix = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
        port = int(subprocess.run(
            [*prefix, sys.executable, "-c",
             "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"],
            check=True, capture_output=True, text=True).stdout)
        # Token authentication with a token of the test's own (whatever ~/.ray/auth_token holds);
        # no drain on SIGTERM: nothing runs on the head when the tests are done.
        env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
        log_path = temp_dir / "head.log"
        t0 = time.perf_counter()
        with log_path.open("wb") as log:
            head = subprocess.Popen(
                [*prefix, str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                 f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                 "--object-store-memory=100000000", f"--temp-dir={temp_dir}"],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})
        while "Ray runtime started" not in log_path.read_text(errors="replace"):
            if head.poll() is not None or time.perf_counter() - t0 > HEAD_START_TIMEOUT_S:
                pytest.fail(f"Ray head did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.5)
        yield RayHead(address=f"127.0.0.1:{port}", temp_dir=temp_dir, netns_prefix=prefix, env=env,
                      start_s=time.perf_counter() - t0, pids=[head.pid, holder.pid])
    finally:
        if head is not None:
            _stop(head, timeout=60)  # `ray start --block` drains and stops its processes on SIGTERM
        for pid in _processes_mentioning(str(temp_dir)):  # any Ray process of ours that outlived it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _stop(holder, timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)
