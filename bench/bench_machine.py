"""How fast a whole Machine simulates, against bare Python and bare SimPy timed in the same run.

Three figures, on default Machines with timing and the coherent caches on:

1. **The ALU loop through ``Machine.run_program``** (``r0 += r1; r1 += 1; if r1 < N goto
   loop``, N = 1,000,000 by default, with an instruction budget that allows it), as
   instructions per second and as a ratio to the smallest interpreter one could write (three
   pre-decoded instructions and an if/elif dispatch: the brief's baseline, also in
   ``bench_engine.py``).  The goal is a ratio of at least 1.0.
2. **Map operations per wall-clock second** on 1, 4 and 16 CPUs: every CPU runs invocations of
   a program that looks up key 0 of an ARRAY map and atomically adds 1 to the value (one
   lookup and one atomic add per invocation, all CPUs on one line, so the 4- and 16-CPU runs
   exercise the directory's transfers and waits), with simulation events per second (counted
   at ``env.step``) and simulated nanoseconds per operation.
3. **A bare SimPy loop**: 8 processes each ``yield env.timeout(1)``, events per second — the
   ceiling any SimPy model on this host can reach.

Run: ``python bench/bench_machine.py`` (``--iterations``, ``--ops``, ``--reps``).  Each figure
is the best of ``--reps`` interleaved repetitions, so other load on the host costs as little
as possible.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import simpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baseline import baseline  # noqa: E402  (bench/ is on sys.path when run as a script)

from kbpf.asm import assemble  # noqa: E402
from sim import Machine  # noqa: E402


def alu_machine(n_iter: int):
    text = f"""
        mov %r0, 0
        mov %r1, 0
    loop:
        add %r0, %r1
        add %r1, 1
        jlt %r1, {n_iter}, loop
        exit
    """
    insns = 3 * n_iter + 3
    m = Machine(cpus=1, insn_budget=insns)
    return m, m.load_program(assemble(text), name="alu"), insns


def run_alu(n_iter: int) -> tuple[float, int]:
    """Wall seconds of one ``run_program`` of the ALU loop on a fresh default Machine."""
    m, prog, insns = alu_machine(n_iter)
    t0 = time.perf_counter()
    r0 = m.run_program(prog)
    dt = time.perf_counter() - t0
    assert r0 == n_iter * (n_iter - 1) // 2, r0
    return dt, insns


def count_program(fd: int) -> bytes:
    return assemble(f"""
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd {fd}
        call 1
        jeq %r0, 0, out
        mov %r1, 1
        lock add [%r0], %r1
    out:
        mov %r0, 0
        exit
    """)


def run_map_ops(cpus: int, ops: int) -> dict:
    """``ops`` invocations (one lookup + one atomic add each) spread over ``cpus`` CPUs."""
    m = Machine(cpus=cpus)
    mp = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    prog = m.load_program(count_program(mp.fd), name="count")
    for i in range(ops):
        m.submit(prog, cpu=i % cpus)
    events = [0]
    step = m.env.step

    def counting_step():
        events[0] += 1
        step()

    m.env.step = counting_step
    t0 = time.perf_counter()
    m.run()
    dt = time.perf_counter() - t0
    assert int.from_bytes(mp.lookup(b"\0\0\0\0"), "little") == ops
    return {
        "wall": dt,
        "ops": ops,
        "events": events[0],
        "sim_ns": m.now_ns,
        "transfers": m.cache.stats()["total"]["transfers"],
    }


def bare_simpy(n_events: int, procs: int = 8) -> float:
    """Events per second of ``procs`` processes each looping on ``yield env.timeout(1)``."""
    env = simpy.Environment()
    per = n_events // procs

    def loop():
        for _ in range(per):
            yield env.timeout(1)

    for _ in range(procs):
        env.process(loop())
    t0 = time.perf_counter()
    env.run()
    return per * procs / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=1_000_000, help="ALU loop iterations")
    ap.add_argument("--ops", type=int, default=20_000, help="map operations per CPU count")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (best is kept)")
    args = ap.parse_args(argv)
    n = args.iterations
    base = machine = 0.0
    simpy_rate = 0.0
    maps: dict[int, dict] = {}
    for _ in range(args.reps):  # interleaved, so that load elsewhere hits all alike
        t0 = time.perf_counter()
        count = baseline(n)
        base = max(base, count / (time.perf_counter() - t0))
        dt, insns = run_alu(n)
        machine = max(machine, insns / dt)
        simpy_rate = max(simpy_rate, bare_simpy(400_000))
        for cpus in (1, 4, 16):
            r = run_map_ops(cpus, args.ops)
            if cpus not in maps or r["wall"] < maps[cpus]["wall"]:
                maps[cpus] = r
    print(f"ALU loop, N = {n:,} ({3 * n + 3:,} instructions), best of {args.reps}")
    print(f"  {'baseline (bare Python dispatch loop)':44s} {base / 1e6:7.2f} M insn/s   1.00x")
    print(
        f"  {'Machine.run_program (timed, caches on)':44s} {machine / 1e6:7.2f} M insn/s   "
        f"{machine / base:.2f}x"
    )
    print()
    print(f"Map operations (ARRAY lookup + atomic add per invocation), {args.ops:,} per row")
    print(
        f"  {'CPUs':>4s} {'ops/s wall':>12s} {'events/s':>12s} {'events/op':>10s} "
        f"{'sim ns/op':>10s} {'line transfers':>15s}"
    )
    for cpus, r in maps.items():
        print(
            f"  {cpus:4d} {r['ops'] / r['wall']:12,.0f} {r['events'] / r['wall']:12,.0f} "
            f"{r['events'] / r['ops']:10.2f} {r['sim_ns'] / r['ops']:10.1f} "
            f"{r['transfers']:15,d}"
        )
    print(f"  {'bare SimPy timeout loop (8 processes)':44s} {simpy_rate:12,.0f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
