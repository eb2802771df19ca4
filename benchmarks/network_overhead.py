"""Per-tick cost of routing through conduits (not a test; meant for ``benchmarks/``).

Twelve source units in zone ``field`` send three outputs each to one unit in zone
``control``: 12 frames per tick over one conduit. Reported: the time per tick of the same
system without a network, and the overhead per tick of each conduit setting.

    .venv/bin/python tests/network/bench_network_overhead.py [--ticks 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

from cosim import Master, PythonUnit
from cosim.core.unit import real
from cosim.network import ConduitConfig, Network

N_SOURCES = 12


class Source(PythonUnit):
    VARIABLES = (real("a", "output"), real("b", "output"), real("c", "output"))

    def do_step(self, t: float, h: float) -> None:
        v = self.values
        v["a"], v["b"], v["c"] = t, h, t + h


class Sink(PythonUnit):
    VARIABLES = tuple(real(f"u{i}_{k}", "input") for i in range(N_SOURCES) for k in "abc")

    def do_step(self, t: float, h: float) -> None:
        pass


SETTINGS: dict[str, dict | None] = {
    "no network": None,
    "zero delay": {},
    "zero delay, hmac": {"auth": "hmac"},
    "latency 5 ms": {"latency_s": 0.005},
    "latency + jitter + loss": {"latency_s": 0.005, "jitter_s": 0.001, "loss": 0.01},
    "latency, hmac": {"latency_s": 0.005, "auth": "hmac"},
}


def build(setting: dict | None) -> Master:
    m = Master(0.001)
    for i in range(N_SOURCES):
        m.add_unit(Source(f"s{i}"))
    m.add_unit(Sink("d"))
    for i in range(N_SOURCES):
        for k in "abc":
            m.connect(f"s{i}.{k}", f"d.u{i}_{k}")
    if setting is not None:
        keys = {"f2c": b"k" * 32} if setting.get("auth") else None
        m.attach_network(Network({"field": [f"s{i}" for i in range(N_SOURCES)], "control": ["d"]},
                                 [ConduitConfig("f2c", "field", "control", "telemetry", **setting)],
                                 seed=1, hmac_keys=keys))
    return m.build()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    best = dict.fromkeys(SETTINGS, float("inf"))
    for _ in range(args.repeat):  # interleaved, best of --repeat
        for name, setting in SETTINGS.items():
            m = build(setting)
            m.step(100)
            t0 = time.perf_counter()
            m.step(args.ticks)
            best[name] = min(best[name], (time.perf_counter() - t0) / args.ticks)
    base = best["no network"]
    print(f"{N_SOURCES} frames per tick, {args.ticks} ticks, best of {args.repeat}")
    for name, per_tick in best.items():
        print(f"  {name:26s} {per_tick * 1e6:8.2f} us/tick   overhead {(per_tick - base) * 1e6:7.2f} us/tick")


if __name__ == "__main__":
    main()
