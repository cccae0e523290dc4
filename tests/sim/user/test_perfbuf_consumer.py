"""perf_event_output into per-CPU perf rings, read by a libbpf-like perf_buffer."""

import struct

from kbpf.asm import assemble
from sim import Machine

BPF_F_CURRENT_CPU = 0xFFFFFFFF


def emitter(fd: int, size: int = 12) -> bytes:
    """Write ``size`` bytes (the CPU id, then the time) to this CPU's perf event."""
    return assemble(f"""
        mov %r6, %r1
        call 8
        stxw [%r10-16], %r0
        call 5
        stxdw [%r10-12], %r0
        mov %r1, %r6
        lddw %r2, map_fd {fd}
        lddw %r3, {BPF_F_CURRENT_CPU}
        mov %r4, %r10
        add %r4, -16
        mov %r5, {size}
        call 25
        exit
    """)


def test_samples_arrive_on_the_ring_of_the_cpu_that_wrote_them():
    m = Machine(cpus=2)
    perf = m.create_map("perf_event_array", key_size=4, value_size=4, max_entries=2, name="perf")
    prog = m.load_program(emitter(perf.fd, size=10), name="emit")
    assert m.run_program(prog, cpu=0) == (-2) & (2**64 - 1)  # no event stored yet: -ENOENT
    got = []
    pb = m.perf_buffer(perf, lambda cpu, data: got.append((cpu, data)), page_cnt=2)
    for cpu in (0, 1, 1):
        assert m.run_program(prog, cpu=cpu) == 0
    assert pb.consume() == 3
    assert [c for c, _ in got] == [0, 1, 1]
    for cpu, data in got:
        # 10 bytes, padded so that the u32 size and the data end 8-aligned: 12 bytes
        assert len(data) == 12
        assert struct.unpack_from("<I", data)[0] == cpu


def test_a_full_ring_loses_samples_and_reports_them_as_lost():
    m = Machine(cpus=1)
    perf = m.create_map("perf_event_array", key_size=4, value_size=4, max_entries=1, name="perf")
    prog = m.load_program(emitter(perf.fd, size=200), name="emit")
    lost = []
    pb = m.perf_buffer(perf, lambda cpu, data: None, lambda cpu, n: lost.append(n), page_cnt=1)
    results = [m.run_program(prog) for _ in range(40)]  # 40 x 216 bytes > one 4 KiB page
    ok = results.count(0)
    assert 0 < ok < 40
    assert pb.consume() == ok
    m.run_program(prog)  # room again: the LOST record goes out with this sample
    pb.consume()
    assert sum(lost) == 40 - ok


def test_a_consumer_task_reads_producers_on_other_cpus():
    m = Machine(cpus=3)
    perf = m.create_map("perf_event_array", key_size=4, value_size=4, max_entries=3, name="perf")
    prog = m.load_program(emitter(perf.fd), name="emit")
    got = []
    pb = m.perf_buffer(perf, lambda cpu, data: got.append(cpu), task_cpu=0)
    m.run()
    t0 = m.now_ns
    for k in range(10):
        for cpu in (1, 2):
            m.submit(prog, cpu=cpu, at_ns=t0 + 2000 * k)
    m.run()
    assert sorted(got) == [1] * 10 + [2] * 10
    assert pb.task.wakeups >= 1
