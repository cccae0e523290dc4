"""Map operations per second through kbpf's synchronous driver, against a plain dict.

For each map type, the same operation mix runs through ``kbpf.host.drive`` on a simulated
machine's host (program-side ops, as a helper would call them; no simulated time) and on a Python
dict doing the same key/value work, timed in the same run.  Prints ops/s and the ratio
(``dict / kbpf``: how many times slower than a dict the modelled kernel path is).

    python bench/bench_maps.py [--n 20000]
"""

from __future__ import annotations

import argparse
import time

from kbpf.errors import BpfError
from kbpf.host import drive
from kbpf.linux_bpf import BPF_ANY
from sim import Machine

TYPES = [
    ("array", dict(key_size=4, value_size=8)),
    ("percpu_array", dict(key_size=4, value_size=8)),
    ("hash", dict(key_size=4, value_size=8)),
    ("percpu_hash", dict(key_size=4, value_size=8)),
    ("lru_hash", dict(key_size=4, value_size=8)),
    ("lru_percpu_hash", dict(key_size=4, value_size=8)),
    ("queue", dict(key_size=0, value_size=8)),
    ("stack", dict(key_size=0, value_size=8)),
]


def best(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_type(name: str, attrs: dict, n: int) -> tuple[float, float, int]:
    m = Machine(cpus=2, memory_mib=512)
    entries = max(64, n)
    handle = m.create_map(name, max_entries=entries, **attrs)
    umap = m.kernel.map_from_fd(m.kernel.facade, handle.fd).umap
    host = m.host
    keys = [(i % entries).to_bytes(4, "little") for i in range(n)]
    value = (7).to_bytes(8, "little")
    ops = umap.ops

    if name in ("queue", "stack"):

        def kbpf_run():
            for _ in range(n):
                drive(ops.push_elem(value, BPF_ANY), host)
            for _ in range(n):
                drive(ops.pop_elem(), host)

        def dict_run():
            d: dict[int, bytes] = {}
            for i in range(n):
                d[i] = value
            for i in range(n):
                d.pop(i)

        nops = 2 * n
    else:

        def kbpf_run():
            for k in keys:
                drive(ops.update_elem(k, value, BPF_ANY), host)
            for k in keys:
                drive(ops.lookup_elem(k), host)

        def dict_run():
            d: dict[bytes, bytes] = {}
            for k in keys:
                d[k] = value
            for k in keys:
                d.get(k)

        nops = 2 * n
    t_kbpf = best(kbpf_run)
    t_dict = best(dict_run)
    return nops / t_kbpf, nops / t_dict, nops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="keys per phase (default 20000)")
    args = ap.parse_args()
    print(f"{'map type':<18}{'kbpf ops/s':>14}{'dict ops/s':>14}{'dict/kbpf':>12}")
    for name, attrs in TYPES:
        try:
            k, d, _ = bench_type(name, attrs, args.n)
        except BpfError as e:
            print(f"{name:<18} skipped: {e}")
            continue
        print(f"{name:<18}{k:>14,.0f}{d:>14,.0f}{d / k:>11.1f}x")


if __name__ == "__main__":
    main()
