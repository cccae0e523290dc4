"""Contention costs simulated time for the reasons it costs real time.

Each test runs assembled programs on a Machine and checks a figure that only the mechanism can
produce: plain increments on two CPUs lose updates because their loads and stores interleave;
an atomic counter shared by four CPUs does not get faster, because its line moves for every
add; a per-CPU counter scales, because each CPU's line stays home; a lock around every helper
call serialises even per-CPU work; a ticket lock's hand-off grows with its waiters and a
queued lock's does not; a working set larger than the L2 is slower per access.  Nothing here
states an expected time: only comparisons between runs of the same mechanism.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kbpf.asm import assemble
from sim import Machine

ROOT = Path(__file__).resolve().parents[2]
KEY0 = (0).to_bytes(4, "little")


def lookup_key0(fd: int) -> str:
    return f"""
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd {fd}
        call 1
        jeq %r0, 0, out
    """


PLAIN = "ldxdw %r1, [%r0]\nadd %r1, 1\nstxdw [%r0], %r1\n"
ATOMIC = "mov %r1, 1\nlock add [%r0], %r1\n"


def counter_program(fd: int, body: str) -> bytes:
    return assemble(lookup_key0(fd) + body + "out:\nmov %r0, 0\nexit\n")


def loop_program(fd: int, loops: int, body: str) -> bytes:
    """The same increment, ``loops`` times inside a ``bpf_loop`` callback."""
    return assemble(
        f"""
        mov %r1, {loops}
        lddw %r2, func cb
        mov %r3, 0
        mov %r4, 0
        call 181
        mov %r0, 0
        exit
    cb:
    """
        + lookup_key0(fd)
        + body
        + "out:\nmov %r0, 0\nexit\n"
    )


def value(mp) -> int:
    return int.from_bytes(mp.lookup(KEY0)[:8], "little")


def run_counter(
    cpus: int, total: int, body: str = ATOMIC, map_type: str = "array", **machine
) -> tuple[Machine, object]:
    """``total`` invocations of the counter program spread over ``cpus`` CPUs, all at time 0."""
    m = Machine(cpus=cpus, **machine)
    mp = m.create_map(map_type, key_size=4, value_size=8, max_entries=1)
    prog = m.load_program(counter_program(mp.fd, body), name="count")
    for i in range(total):
        m.submit(prog, cpu=i % cpus)
    m.run()
    assert not m.faults
    return m, mp


# -- lost updates ---------------------------------------------------------------------------


def test_plain_increments_lose_updates_only_when_the_cpus_overlap():
    together, mp = run_counter(2, 400, PLAIN)
    assert value(mp) < 400
    m = Machine(cpus=2)
    mp = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    prog = m.load_program(counter_program(mp.fd, PLAIN))
    for _ in range(200):
        m.submit(prog, cpu=0)
    m.run()
    for _ in range(200):  # the second CPU starts after the first has finished
        m.submit(prog, cpu=1)
    m.run()
    assert value(mp) == 400
    line = m.cache.line_stats(value_addr(m, mp))
    assert line["transfers"] == 1  # the counter's line moved once, from CPU 0 to CPU 1


def value_addr(m: Machine, mp) -> int:
    """The kernel address of element 0: what a program's lookup returns."""
    return m.kernel.map_from_fd(m.kernel.facade, mp.fd).umap.ops.elem_addr(0)


def test_plain_increments_in_a_bpf_loop_callback_lose_updates_too():
    loops = 100
    m = Machine(cpus=2)
    mp = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    prog = m.load_program(loop_program(mp.fd, loops, PLAIN), name="loop_inc")
    m.submit(prog, cpu=0)
    m.submit(prog, cpu=1)
    m.run()
    assert not m.faults and value(mp) < 2 * loops
    m = Machine(cpus=2)
    mp = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    prog = m.load_program(loop_program(mp.fd, loops, PLAIN), name="loop_inc")
    first = m.submit(prog, cpu=0)
    m.run()
    second = m.submit(prog, cpu=1)  # now: after the first has finished
    m.run()
    assert second.start_ns >= first.end_ns
    assert value(mp) == 2 * loops
    # The atomic version never loses one, even overlapped.
    m = Machine(cpus=2)
    mp = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    prog = m.load_program(loop_program(mp.fd, loops, ATOMIC), name="loop_atomic")
    m.submit(prog, cpu=0)
    m.submit(prog, cpu=1)
    m.run()
    assert value(mp) == 2 * loops


# -- scaling -----------------------------------------------------------------------------------


def test_an_atomic_counter_shared_by_four_cpus_loses_nothing_and_does_not_scale():
    one, mp1 = run_counter(1, 400)
    four, mp4 = run_counter(4, 400)
    assert value(mp1) == value(mp4) == 400
    # The same work on four CPUs takes at least half as long: the line moves for every add.
    assert four.now_ns >= 0.5 * one.now_ns
    total = four.cache.stats()["total"]
    assert total["transfers"] > 300  # almost every add fetched the line from another core


def test_a_per_cpu_counter_on_four_cpus_finishes_about_four_times_sooner():
    one, mp1 = run_counter(1, 800, PLAIN, "percpu_array")
    four, mp4 = run_counter(4, 800, PLAIN, "percpu_array")
    assert sum(int.from_bytes(v[:8], "little") for v in mp4.lookup_percpu(KEY0)) == 800
    speedup = one.now_ns / four.now_ns
    assert 3.0 <= speedup <= 4.5, speedup
    # No line was written by two CPUs: each CPU's counter stayed in its own cache.
    assert four.cache.stats()["total"]["invalidations"] == 0


def test_the_kbpf_map_lock_serialises_even_a_per_cpu_counter():
    one, _ = run_counter(1, 400, PLAIN, "percpu_array", locking="kbpf")
    four, mp = run_counter(4, 400, PLAIN, "percpu_array", locking="kbpf")
    assert sum(int.from_bytes(v[:8], "little") for v in mp.lookup_percpu(KEY0)) == 400
    assert four.now_ns >= one.now_ns  # four cores are no faster than one
    (lock,) = [s for s in four.spinlocks.summary() if s["name"].startswith("map")]
    assert lock["acquisitions"] == 400 and lock["contended"] > 300
    linux, _ = run_counter(4, 400, PLAIN, "percpu_array")
    assert linux.now_ns < 0.5 * one.now_ns and not linux.spinlocks.summary()


@pytest.mark.parametrize("kind", ["queued", "ticket"])
def test_lock_hand_offs_against_the_number_of_contending_cpus(kind):
    """Wait and hand-off per acquisition of the map lock (locking="kbpf"), 1 to 8 CPUs."""
    handoff, wait = {}, {}
    for n in range(1, 9):
        m, _ = run_counter(
            n, 40 * n, ATOMIC, locking="kbpf", cost_model={"preset": "default", "lock.kind": kind}
        )
        (st,) = [s for s in m.spinlocks.summary() if s["name"].startswith("map")]
        wait[n] = st["wait_ps"] / st["acquisitions"]
        if n > 1:
            handoff[n] = st["handoff_ps"] / st["handoffs"]
    assert wait[1] == 0 and all(wait[n] > 0 for n in range(2, 9))
    if kind == "queued":
        # One line transfer chain per hand-off, whoever waits behind: flat from 3 waiters on.
        assert max(handoff[n] for n in range(3, 9)) < 1.2 * min(handoff[n] for n in range(3, 9))
    else:
        # Every spinner re-reads the lock word after each release: it grows with them.
        assert all(handoff[n + 1] > handoff[n] for n in range(3, 8))
        assert handoff[8] > 2 * handoff[3]


# -- capacity ----------------------------------------------------------------------------------


def walk_program(fd: int, n: int) -> bytes:
    """Look up keys 0..n-1 of an ARRAY map and load each value."""
    return assemble(f"""
        mov %r6, 0
    loop:
        stxw [%r10-4], %r6
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd {fd}
        call 1
        jeq %r0, 0, next
        ldxdw %r1, [%r0]
    next:
        add %r6, 1
        jlt %r6, {n}, loop
        mov %r0, 0
        exit
    """)


def test_a_lookup_loop_slows_down_once_its_working_set_outgrows_the_l2():
    cost = {"preset": "default", "mem.l1d_kib": 2, "mem.l2_kib": 16}
    per_access = {}
    for factor in (0.25, 4):
        m = Machine(cpus=1, cost_model=cost)
        l2_lines = m.preset.kib_lines("mem", "l2_kib")
        n = int(l2_lines * factor)
        mp = m.create_map("array", key_size=4, value_size=64, max_entries=n)
        prog = m.load_program(walk_program(mp.fd, n), name="walk")
        m.run_program(prog)  # warm up: the first pass comes from memory
        inv = m.submit(prog)
        m.run()
        per_access[factor] = (inv.end_ns - inv.start_ns) / n
        stats = m.cache.cpu_stats(0)
        assert (stats["l2_hits"] >= n) if factor < 1 else (stats["llc_hits"] >= n)
    l2 = m.preset.get_ps("mem", "l2_hit_cycles") / 1000
    llc = m.preset.get_ps("mem", "llc_hit_cycles") / 1000
    assert per_access[4] - per_access[0.25] >= 0.9 * (llc - l2)


# -- events --------------------------------------------------------------------------------


def count_events(m: Machine) -> list[int]:
    counter = [0]
    step = m.env.step

    def counting_step():
        counter[0] += 1
        step()

    m.env.step = counting_step
    return counter


def events_per_invocation(alu: int, shared: int, cpus: int = 2, invocations: int = 40) -> float:
    m = Machine(cpus=cpus)
    mp = m.create_map("array", key_size=4, value_size=64, max_entries=1)
    body = "mov %r3, 0\n" + "add %r3, 1\n" * alu
    body += "".join(
        f"ldxdw %r1, [%r0+{8 * (i % 8)}]\nadd %r1, 1\nstxdw [%r0+{8 * (i % 8)}], %r1\n"
        for i in range(shared)
    )
    prog = m.load_program(counter_program(mp.fd, body))
    counter = count_events(m)
    for i in range(invocations):
        m.submit(prog, cpu=i % cpus)
    m.run()
    return counter[0] / invocations


def test_events_grow_with_shared_accesses_not_with_instructions():
    short = events_per_invocation(alu=10, shared=1)
    long = events_per_invocation(alu=2000, shared=1)
    assert long < 1.5 * short  # 200 times the instructions, about the same events
    chatty = events_per_invocation(alu=10, shared=16)
    assert chatty > 3 * short  # sixteen times the shared accesses: many more meetings
    alone = events_per_invocation(alu=10, shared=16, cpus=1)
    assert alone < short  # alone on the machine, nobody else could act in between


# -- the synchronous path and reproducibility ------------------------------------------------


def test_calls_from_python_between_runs_take_no_time_and_leave_the_caches_alone():
    m, mp = run_counter(2, 50, PLAIN)
    before = (m.now_ns, json.dumps(m.cache.stats()), json.dumps(m.spinlocks.summary()))
    mp.update(KEY0, (7).to_bytes(8, "little"))
    assert value(mp) == 7
    h = m.create_map("hash", key_size=4, value_size=8, max_entries=8)
    h.update(KEY0, bytes(8))
    h.lookup(KEY0)
    after = (m.now_ns, json.dumps(m.cache.stats()), json.dumps(m.spinlocks.summary()))
    assert after == before


SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    from tests.sim.test_mechanisms import ATOMIC, PLAIN, run_counter, value
    out = {{}}
    for kind in ("queued", "ticket"):
        m, mp = run_counter(4, 120, PLAIN, locking="kbpf",
                            cost_model={{"preset": "default", "lock.kind": kind}})
        out[kind] = [m.now_ns, value(mp), m.cache.stats(), m.spinlocks.summary(),
                     m.cache.hottest_lines(3)]
    m, mp = run_counter(3, 90, ATOMIC, cost_model="xeon_e5_2680v4")
    out["xeon"] = [m.now_ns, value(mp), m.cache.stats()]
    print(json.dumps(out, sort_keys=True))
""")


def test_the_same_scenario_and_seed_give_identical_results_across_hash_seeds():
    script = SCRIPT.format(root=str(ROOT))
    outputs = []
    for hash_seed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    result = json.loads(outputs[0])
    assert result["ticket"][0] != result["queued"][0]  # the lock kind shows in the figures
