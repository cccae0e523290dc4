"""Ring-buffer producers on CPUs and a libbpf-like consumer reading the real pages."""

import struct

import pytest

from kbpf.asm import assemble
from kbpf.errors import BpfError
from sim import Machine


def producer(fd: int, size: int = 16, flags: int = 0) -> bytes:
    """Reserve ``size`` bytes, store the CPU id and the time, submit."""
    return assemble(f"""
        lddw %r1, map_fd {fd}
        mov %r2, {size}
        mov %r3, 0
        call 131                    # bpf_ringbuf_reserve
        jeq %r0, 0, full
        mov %r6, %r0
        call 8                      # smp_processor_id
        stxw [%r6], %r0
        call 5                      # ktime_get_ns
        stxdw [%r6+8], %r0
        mov %r1, %r6
        mov %r2, {flags}
        call 132                    # bpf_ringbuf_submit
        mov %r0, 1
        exit
    full:
        mov %r0, 0
        exit
    """)


def test_a_passive_consumer_reads_every_record_in_order():
    m = Machine(cpus=2)
    rb = m.create_map("ringbuf", max_entries=4096, name="events")
    prog = m.load_program(producer(rb.fd), name="emit")
    got = []
    cons = m.ring_buffer(rb, lambda data: got.append(struct.unpack("<IIQ", data)))
    for _ in range(5):
        m.run_program(prog, cpu=1)
    assert cons.consume() == 5
    assert [g[0] for g in got] == [1] * 5
    times = [g[2] for g in got]
    assert times == sorted(times)
    assert cons.consume() == 0


def test_drops_when_full_and_the_consumer_frees_space():
    m = Machine(cpus=1)
    rb = m.create_map("ringbuf", max_entries=4096, name="events")
    prog = m.load_program(producer(rb.fd, size=1000), name="emit")
    results = [m.run_program(prog) for _ in range(5)]
    assert results == [1, 1, 1, 1, 0]  # 4 records of 1008 bytes fit in 4096; the 5th is dropped
    cons = m.ring_buffer(rb, lambda data: None)
    assert cons.consume() == 4
    assert m.run_program(prog) == 1


def test_a_consumer_task_is_woken_and_sees_every_record_once():
    m = Machine(cpus=4)
    rb = m.create_map("ringbuf", max_entries=1 << 16, name="events")
    prog = m.load_program(producer(rb.fd), name="emit")
    got = []
    cons = m.ring_buffer(rb, lambda data: got.append(struct.unpack("<IIQ", data)[0]), task_cpu=0)
    m.run()  # the consumer starts and sleeps in poll
    t0 = m.now_ns
    invs = [m.submit(prog, cpu=c, at_ns=t0 + 1000 + 500 * k) for k in range(20) for c in (1, 2, 3)]
    m.run()
    produced = sum(inv.r0 for inv in invs)
    assert produced == len(got) == 60
    assert sorted(got) == sorted([1, 2, 3] * 20)
    assert cons.task.wakeups >= 1 and cons.waitq.wakeups == cons.task.wakeups


def test_only_ring_buffers_have_ring_consumers():
    m = Machine(cpus=1)
    arr = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    with pytest.raises(BpfError, match="not a ring buffer"):
        m.ring_buffer(arr, print)


def sequenced_producer(rb_fd: int, seq_fd: int) -> bytes:
    """Take this CPU's next sequence number (a PERCPU_ARRAY counter), reserve 16 bytes, store
    (cpu, seq) and submit.  Returns 1 if the record went in, 0 if the ring was full."""
    return assemble(f"""
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd {seq_fd}
        call 1
        jeq %r0, 0, full
        ldxdw %r7, [%r0]
        mov %r1, %r7
        add %r1, 1
        stxdw [%r0], %r1
        lddw %r1, map_fd {rb_fd}
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, full
        mov %r6, %r0
        call 8
        stxw [%r6], %r0
        stxdw [%r6+8], %r7
        mov %r1, %r6
        mov %r2, 0
        call 132
        mov %r0, 1
        exit
    full:
        mov %r0, 0
        exit
    """)


def test_three_producers_and_a_consumer_task_deliver_each_record_once_in_reservation_order():
    """Producers on CPUs 1-3 race for the ring's producer lock while a consumer task on CPU 0
    sleeps in poll and is woken; a small ring makes some reservations fail.  Every record that
    went in is delivered exactly once; each CPU's records arrive in the order it reserved them;
    the rest are counted as dropped."""
    m = Machine(cpus=4)
    rb = m.create_map("ringbuf", max_entries=4096, name="events")
    seq = m.create_map("percpu_array", key_size=4, value_size=8, max_entries=1, name="seq")
    prog = m.load_program(sequenced_producer(rb.fd, seq.fd), name="emit")
    got = []
    cons = m.ring_buffer(
        rb, lambda data: got.append(struct.unpack("<IIQ", data)), task_cpu=0, per_record_ns=2000
    )
    m.run()
    t0 = m.now_ns
    invs = [m.submit(prog, cpu=c, at_ns=t0 + 50 * k) for k in range(300) for c in (1, 2, 3)]
    m.run()
    went_in = sum(inv.r0 for inv in invs)
    dropped = len(invs) - went_in
    assert dropped > 0 and len(got) == went_in  # delivered once, or counted as dropped
    for cpu in (1, 2, 3):
        seqs = [s for c, _, s in got if c == cpu]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert cons.task.wakeups >= 1 and cons.polls > 1  # woken, then reading while data keeps coming
    print(
        f"records {len(got)}, dropped {dropped}, consumer wake-ups {cons.task.wakeups}, reads {cons.polls}"
    )


def test_waking_a_sleeping_reader_costs_the_producer_and_no_wakeup_does_not():
    """A commit that notifies the reader pays for the irq_work that wakes it on the producer's
    CPU (preset work.ringbuf_wakeup_ps); BPF_RB_NO_WAKEUP skips the notification and its cost."""
    lengths = {}
    for flags in (0, 1):  # 1 = BPF_RB_NO_WAKEUP
        m = Machine(cpus=2)
        rb = m.create_map("ringbuf", max_entries=4096, name="events")
        prog = m.load_program(producer(rb.fd, flags=flags), name="emit")
        cons = m.ring_buffer(rb, lambda data: None, task_cpu=0)
        m.run()  # the reader sleeps in poll
        inv = m.submit(prog, cpu=1)
        m.run()
        lengths[flags] = (inv.end_ns - inv.start_ns, cons.task.wakeups)
    (woke_ns, woken), (quiet_ns, not_woken) = lengths[0], lengths[1]
    assert (woken, not_woken) == (1, 0)
    assert woke_ns - quiet_ns >= Machine(cpus=1).work_ps["ringbuf_wakeup"] // 1000 - 1
