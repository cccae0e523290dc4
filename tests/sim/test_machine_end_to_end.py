"""One real program through every layer: assembler, bpf(2), preprocessor, engine, cores, maps.

These are the foundation's acceptance tests: a program that looks up key 0 of an ARRAY map and
atomically adds 1, submitted 1000 times on each of two CPUs, leaves 2000 in the map.
"""

import errno

import pytest

from kbpf.asm import assemble
from kbpf.errors import BpfError
from sim import Machine

U32_0 = (0).to_bytes(4, "little")


def count_program(fd: int, key: int = 0) -> bytes:
    return assemble(f"""
        stw [%r10-4], {key}
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd {fd}
        call 1
        jeq %r0, 0, miss
        mov %r1, 1
        lock add [%r0], %r1
        mov %r0, 1
        exit
    miss:
        mov %r0, 0
        exit
    """)


def test_atomic_add_from_two_cpus_counts_every_invocation():
    m = Machine(cpus=2, seed=0)
    counts = m.create_map("array", key_size=4, value_size=8, max_entries=4, name="counts")
    prog = m.load_program(count_program(counts.fd), name="count")
    invs = [m.submit(prog, cpu=cpu) for cpu in (0, 1) for _ in range(1000)]
    assert m.now_ns == 0
    m.run()
    assert all(inv.r0 == 1 and inv.fault is None for inv in invs)
    assert int.from_bytes(counts.lookup(U32_0), "little") == 2000
    assert m.now_ns > 0
    # The two CPUs ran concurrently: the run took about half of the summed run times.
    busy = sum(inv.end_ns - inv.start_ns for inv in invs)
    assert m.now_ns < 0.75 * busy


def test_lookup_past_the_end_of_an_array_returns_null_to_the_program():
    m = Machine(cpus=2, seed=0)
    counts = m.create_map("array", key_size=4, value_size=8, max_entries=4)
    prog = m.load_program(count_program(counts.fd, key=5), name="count5")
    assert m.run_program(prog, cpu=1) == 0  # bpf_map_lookup_elem gave NULL
    assert [int.from_bytes(counts.lookup(k.to_bytes(4, "little")), "little") for k in range(4)] == [
        0
    ] * 4


def test_run_program_returns_r0_and_advances_time():
    m = Machine(cpus=1)
    prog = m.load_program(assemble("mov %r0, 1\n" * 30 + "mov %r0, 42\nexit"), name="answer")
    assert m.run_program(prog) == 42
    assert m.now_ns >= 10  # 32 instructions at 333 ps


def test_a_program_faulting_leaves_the_machine_usable():
    m = Machine(cpus=1)
    bad = m.load_program(assemble("lddw %r1, 0x1000\nldxdw %r0, [%r1]\nexit"), name="wild")
    with pytest.raises(BpfError) as exc:
        m.run_program(bad)
    assert exc.value.errno == errno.EFAULT
    assert (
        "wild" in str(exc.value) and "0x1000" in str(exc.value) and "insn 2" in str(exc.value)
    )  # lddw takes slots 0-1
    good = m.load_program(assemble("mov %r0, 7\nexit"), name="ok")
    assert m.run_program(good) == 7
    inv = m.submit(bad)
    m.run()
    assert inv.fault is not None and m.faults[-1] is inv.fault


def test_load_time_checks_fail_prog_load_with_a_log_naming_the_instruction():
    m = Machine(cpus=1)
    with pytest.raises(BpfError) as exc:
        m.load_program(assemble("mov %r0, 0\nja +5\nexit"), name="jump")
    assert exc.value.errno == errno.EINVAL
    assert "1" in str(exc.value)  # the jump at instruction 1


def test_simulated_time_is_picoseconds_inside_and_nanoseconds_outside():
    m = Machine(cpus=1, freq_ghz=3.0)
    prog = m.load_program(assemble("mov %r0, 0\n" * 2999 + "exit"), name="long")
    m.run_program(prog)
    # 3000 one-cycle instructions at 3 GHz: one microsecond (333 ps each, rounded).
    assert 990 <= m.now_ns <= 1010
    assert m.now_ns == int(m.env.now) // 1000


def test_run_until_stops_at_that_time():
    m = Machine(cpus=1)
    prog = m.load_program(assemble("mov %r0, 0\nexit"), name="p")
    m.submit(prog, at_ns=5000)
    m.run(until_ns=2000)
    assert m.now_ns == 2000 and m.busy
    m.run()
    assert not m.busy and m.now_ns >= 5000


def test_run_from_inside_a_running_simulation_is_refused():
    m = Machine(cpus=1)
    prog = m.load_program(assemble("mov %r0, 0\nexit"), name="p")
    inv = m.submit(prog)
    errors = []

    def reenter(_event):
        try:
            m.run()
        except RuntimeError as e:
            errors.append(e)

    inv.done.callbacks.append(reenter)
    m.run()
    assert errors and "inside" in str(errors[0])


def test_map_handle_errors_name_the_expected_size():
    m = Machine(cpus=2)
    arr = m.create_map("array", key_size=4, value_size=8, max_entries=2, name="a")
    with pytest.raises(BpfError) as exc:
        arr.update(b"\0\0\0", b"\0" * 8)
    assert exc.value.errno == errno.EINVAL and "4 bytes" in str(exc.value)
    with pytest.raises(BpfError) as exc:
        m.create_map("array", key_size=4, value_size=8, max_entries=1, name="x" * 16)
    assert exc.value.errno == errno.EINVAL


def test_per_cpu_array_values_are_per_cpu():
    m = Machine(cpus=2)
    pc = m.create_map("percpu_array", key_size=4, value_size=4, max_entries=1, name="pc")
    prog = m.load_program(
        assemble(f"""
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd {pc.fd}
        call 1
        jeq %r0, 0, out
        ldxw %r1, [%r0]
        add %r1, 1
        stxw [%r0], %r1
    out:
        mov %r0, 0
        exit
    """),
        name="pcinc",
    )
    for _ in range(3):
        m.submit(prog, cpu=0)
    m.submit(prog, cpu=1)
    m.run()
    vals = [int.from_bytes(v, "little") for v in pc.lookup_percpu(U32_0)]
    assert vals == [3, 1]
    # The syscall view: round_up(value_size, 8) bytes per possible CPU.
    assert len(pc.lookup(U32_0)) == 16


def test_attach_and_fire_run_every_attached_program_on_that_cpu():
    m = Machine(cpus=2)
    a = m.load_program(assemble("call 8\nadd %r0, 100\nexit"), name="a")  # smp_processor_id + 100
    b = m.load_program(assemble("ldxw %r0, [%r1]\nexit"), name="b")  # reads its context
    assert m.fire("demo/emit", cpu=1) == []  # created on first use, nothing attached
    link = m.attach(a, "demo/emit")
    m.attach(b, "demo/emit")
    invs = m.fire("demo/emit", cpu=1, ctx=(7).to_bytes(4, "little"))
    m.run()
    assert [inv.r0 for inv in invs] == [101, 7]
    m.kernel.close(m.kernel.facade, link)  # detaching a leaves b
    assert [inv.prog.name for inv in m.fire("demo/emit", cpu=0, ctx=bytes(4))] == ["b"]
    with pytest.raises(ValueError, match="category/name"):
        m.attach(a, "no-slash")


def test_a_tracepoint_context_is_read_only():
    m = Machine(cpus=1)
    w = m.load_program(assemble("stw [%r1], 1\nmov %r0, 0\nexit"), name="w")
    m.attach(w, "demo/ro")
    (inv,) = m.fire("demo/ro", ctx=bytes(8))
    m.run()
    assert inv.fault is not None and inv.fault.errno == errno.EFAULT


def test_a_recorded_timeline_holds_the_line_transfers_of_a_shared_counter():
    m = Machine(cpus=2)
    counts = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    prog = m.load_program(count_program(counts.fd), name="count")
    timeline = m.record_timeline()
    for cpu in (0, 1):
        for _ in range(20):
            m.submit(prog, cpu=cpu)
    m.run()
    transfers = [ev for ev in timeline if ev[1] == "transfer"]
    assert transfers and {ev[0] for ev in transfers} == {0, 1}
    assert len(transfers) == m.cache.transfers  # the counter's line: every move recorded
    assert all(end > start for _cpu, _k, start, end, _addr in transfers)
