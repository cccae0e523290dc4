"""pcpu_freelist (kernel/bpf/percpu_freelist.c, v6.6): per-CPU locked lists of free elements,
pushed to the current CPU's list, popped from the current CPU first and then from the others."""

from kbpf.host import Acquire, Release, Touch, drive
from kbpf.host import recorded as recording
from kbpf.map.freelist import FREELIST_LOCK_OFFSET, PcpuFreelist
from tests.kbpf.testhost import TestHost


def make(ncpus=4, nodes=10):
    host = TestHost(ncpus=ncpus, seed=0)
    extra = host.kmalloc(16, 8)
    fl = PcpuFreelist(host, host, extra, "t")
    addrs = [0x1000 + 0x40 * i for i in range(nodes)]
    fl.populate(addrs)
    return host, fl, addrs


def pop(host, fl, cpu, log=None):
    host.cpu = cpu
    return drive(recording(fl.pop(), log if log is not None else []), host)


def test_heads_and_locks_live_in_each_cpus_per_cpu_area():
    host, fl, _ = make()
    for cpu, head in enumerate(fl.heads):
        lo, hi = host.percpu_unit(cpu)
        assert lo <= head < hi
        assert fl.locks[cpu].addr == head + FREELIST_LOCK_OFFSET


def test_populate_spreads_evenly_the_remainder_to_the_first_cpus():
    _, fl, _ = make(ncpus=4, nodes=10)
    assert fl.counts() == [3, 3, 2, 2]


def test_pop_takes_the_current_cpus_most_recently_pushed_node_first():
    host, fl, addrs = make()
    # CPU 1 was given addrs[3:6], pushed in order, so addrs[5] is its first.
    assert [pop(host, fl, 1) for _ in range(3)] == [addrs[5], addrs[4], addrs[3]]


def test_pop_on_an_empty_cpu_steals_from_the_next_cpus_in_wrap_order():
    host, fl, addrs = make()
    for _ in range(3):
        pop(host, fl, 3)  # CPU 3's two, then CPU 0's first
    assert fl.counts() == [2, 3, 2, 0]
    log = []
    assert pop(host, fl, 3, log) == addrs[1]  # wraps to CPU 0 again
    # CPU 3's empty head was read but its lock never taken; CPU 0's lock was.
    assert log[0] == Touch(fl.heads[3], 8)
    assert Acquire(fl.locks[3]) not in log
    assert log[1] == Touch(fl.heads[0], 8) and log[2] == Acquire(fl.locks[0])
    assert log[-1] == Release(fl.locks[0])


def test_push_goes_to_the_current_cpu_under_its_lock():
    host, fl, _ = make()
    host.cpu = 2
    log = []
    drive(recording(fl.push(0xABC0), log), host)
    assert fl.counts() == [3, 3, 3, 2]
    assert log[0] == Acquire(fl.locks[2]) and log[-1] == Release(fl.locks[2])
    assert pop(host, fl, 2) == 0xABC0


def test_pop_from_all_empty_lists_reads_every_head_and_the_extralist_then_fails():
    host, fl, _ = make(nodes=0)
    log = []
    assert pop(host, fl, 2, log) == 0
    reads = [r for r in log if isinstance(r, Touch)]
    assert [r.addr for r in reads] == [fl.heads[c] for c in (2, 3, 0, 1)] + [fl.extralist_addr]
    assert not any(isinstance(r, Acquire) for r in log)  # no lock taken at all


def test_the_extralist_is_popped_last_under_its_own_lock():
    host, fl, _ = make(nodes=1)
    drive(fl.push_extra(0x7000), host)
    assert pop(host, fl, 1) == 0x1000  # the per-CPU node (on CPU 0) comes first
    log = []
    assert pop(host, fl, 1, log) == 0x7000
    assert Acquire(fl.extra_lock) in log and log[-1] == Release(fl.extra_lock)
    assert len(fl) == 0


def test_a_list_emptied_while_waiting_for_its_lock_is_left_for_the_next_cpu():
    host, fl, addrs = make(ncpus=2, nodes=3)  # CPU 0: addrs[0:2], CPU 1: addrs[2:3]
    host.cpu = 1
    waiting = fl.pop()
    assert next(waiting) == Touch(fl.heads[1], 8)
    assert waiting.send(None) == Acquire(fl.locks[1])  # ...and now CPU 0 empties CPU 1's list
    assert pop(host, fl, 0) == addrs[1] and pop(host, fl, 0) == addrs[0]
    assert pop(host, fl, 0) == addrs[2]
    fl.lists[0].append(addrs[0])  # something for CPU 1 to find on CPU 0's list
    host.cpu = 1
    assert waiting.send(None) == Release(fl.locks[1])
    rest = drive(recording(waiting, []), host)
    assert rest == addrs[0]


def test_destroy_returns_the_heads():
    host, fl, _ = make()
    fl.destroy()
    assert len(host._pcpu_live) == 0
