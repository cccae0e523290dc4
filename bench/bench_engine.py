"""How fast the engine runs eBPF, against a bare Python interpreter loop in the same process.

The baseline is the smallest interpreter one could write: three pre-decoded instructions in a
list and an if/elif dispatch — no masking of operands, no memory, no budget.  Each engine
workload runs a real eBPF program through the engine (every 64-bit mask and the instruction
budget kept); its instruction count is the budget it used, so insns/s are exact.

Run: ``python bench/bench_engine.py`` (``--iterations N`` to change the loop length).  Each
figure is the best of several interleaved repetitions, so other load on the machine costs
as little as possible.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baseline import baseline  # noqa: E402  (bench/ is on sys.path when run as a script)

from kbpf.insn import EbpfInst, encode_all  # noqa: E402
from sim.conformance import drive_timed  # noqa: E402
from sim.cpu.engine import Budget, Region, RegionSet, compile_program  # noqa: E402

STACK_TOP = 0x7FFF_0000_0000
DATA = 0x1_0000_0000


def I(opc, dst=0, src=0, off=0, imm=0):  # noqa: E743 - reads like the kernel's BPF_* macros
    return EbpfInst(opc, dst, src, off, imm)


def alu_loop(n_iter: int) -> bytes:
    """``r0 += r1; r1 += 1; if r1 < N goto loop``."""
    return encode_all(
        [
            I(0xB7, 0, imm=0),  # r0 = 0
            I(0xB7, 1, imm=0),  # r1 = 0
            I(0x0F, 0, 1),  # loop: r0 += r1
            I(0x07, 1, imm=1),  # r1 += 1
            I(0xA5, 1, off=-3, imm=n_iter),  # if r1 < N goto loop
            I(0x95),
        ]
    )


def memory_loop(n_iter: int) -> bytes:
    """A running sum kept in memory behind the pointer in r1 (a non-stack region): a load and
    a store per iteration, through the per-site region cache."""
    return encode_all(
        [
            I(0xB7, 2, imm=0),  # r2 = 0
            I(0x79, 3, 1, 0),  # loop: r3 = *(u64 *)(r1 + 0)
            I(0x0F, 3, 2),  # r3 += r2
            I(0x7B, 1, 3, 8),  # *(u64 *)(r1 + 8) = r3
            I(0x79, 4, 1, 8),  # r4 = *(u64 *)(r1 + 8)
            I(0x7B, 1, 4, 0),  # *(u64 *)(r1 + 0) = r4
            I(0x07, 2, imm=1),  # r2 += 1
            I(0xA5, 2, off=-7, imm=n_iter),  # if r2 < N goto loop
            I(0x79, 0, 1, 0),  # r0 = *(u64 *)(r1 + 0)
            I(0x95),
        ]
    )


def helper_loop(n_iter: int) -> bytes:
    """A helper call per iteration (helper 1 returns its argument plus one)."""
    return encode_all(
        [
            I(0xB7, 6, imm=0),  # r6 = 0
            I(0xB7, 7, imm=0),  # r7 = 0
            I(0xBF, 1, 6),  # loop: r1 = r6
            I(0x85, imm=1),  # call 1
            I(0x0F, 7, 0),  # r7 += r0
            I(0x07, 6, imm=1),  # r6 += 1
            I(0xA5, 6, off=-5, imm=n_iter),  # if r6 < N goto loop
            I(0xBF, 0, 7),  # r0 = r7
            I(0x95),
        ]
    )


HELPERS = {1: lambda a, b, c, d, e: a + 1}


def machine() -> tuple[RegionSet, bytearray]:
    data = bytearray(64)
    regions = RegionSet(
        [
            Region(STACK_TOP - 4096, STACK_TOP, buf=bytearray(4096), name="stack", shared=False),
            Region(DATA, DATA + len(data), buf=data, name="data"),
        ]
    )
    return regions, data


def drive(gen):
    """A trivial timed driver: every clock request is met at once with nothing else due for a
    second (so the program never needs to stop), helpers answered from ``HELPERS``."""
    return drive_timed(gen, HELPERS, step=1_000_000_000)


def access(addr, size, write, t):
    return 1000


def run_engine(code: bytes, timed: bool) -> int:
    prog = compile_program(code, name="bench")
    regions, _ = machine()
    bud = Budget(1 << 60)
    if timed:
        drive(
            prog.run_timed(
                regions,
                DATA,
                stack_top=STACK_TOP,
                budget=bud,
                t=0,
                horizon=1_000_000_000,
                access=access,
            )
        )
    else:
        prog.run(regions, DATA, stack_top=STACK_TOP, helpers=HELPERS, budget=bud)
    return bud.used


def best_rate(fn, reps: int) -> float:
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        n = fn()
        dt = time.perf_counter() - t0
        best = max(best, n / dt)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300_000, help="loop iterations per run")
    ap.add_argument("--reps", type=int, default=5, help="repetitions (best is kept)")
    args = ap.parse_args(argv)
    n = args.iterations
    workloads = [
        ("ALU loop (functional)", alu_loop(n), False),
        ("memory loop (functional)", memory_loop(n), False),
        ("helper loop (functional)", helper_loop(n), False),
        ("ALU loop (timed)", alu_loop(n), True),
    ]
    rates = {name: 0.0 for name, _, _ in workloads}
    base = 0.0
    for _ in range(args.reps):  # interleaved, so that load elsewhere hits all alike
        base = max(base, best_rate(lambda: baseline(n), 1))
        for name, code, timed in workloads:
            rates[name] = max(rates[name], best_rate(lambda c=code, t=timed: run_engine(c, t), 1))
    print(f"{'baseline (bare Python dispatch loop)':40s} {base / 1e6:8.2f} M insn/s   1.00x")
    for name, _, _ in workloads:
        r = rates[name]
        print(f"{name:40s} {r / 1e6:8.2f} M insn/s   {r / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
