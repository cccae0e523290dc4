"""Spinlocks whose costs are the lines they move through the caches.

An uncontended acquire is one atomic read-modify-write of the lock word, priced by where that
line is; waiters are served first come, first served; and the two lock kinds hand over in the
two ways the literature describes: a ticket lock's hand-off grows with the number of spinners
(every one of them re-reads the lock word after each release), a queued lock's does not.
"""

import pytest

from kbpf.errors import BpfError
from kbpf.host import Lock
from sim import Machine


def machine(cpus=4, kind="queued", seed=0):
    return Machine(cpus=cpus, seed=seed, cost_model={"preset": "default", "lock.kind": kind})


def new_lock(m, name="test"):
    return Lock(m.mem.kmalloc(64, 64), name)


def at(env, t):
    """Meet the clock at local time ``t``, as a core does before a shared access."""
    if t > env.now:
        yield env.timeout(t - env.now)


def test_an_uncontended_acquire_is_one_priced_read_modify_write():
    m = machine()
    p, lock, locks = m.preset, new_lock(m), m.spinlocks
    atomic = p.get_ps("mem", "atomic_rmw_ns")
    l1 = p.get_ps("mem", "l1_hit_cycles")
    got = []

    def body():
        t = yield from locks.acquire(0, lock, 0)
        got.append(t)  # the lock word came from memory
        t = locks.release(0, lock, t)
        got.append(t)
        t = yield from locks.acquire(0, lock, t)
        got.append(t)  # now it is in CPU 0's L1
        t = locks.release(0, lock, t)
        yield from at(m.env, t)
        t = yield from locks.acquire(1, lock, t)  # CPU 1 takes the line from CPU 0
        got.append(t)
        locks.release(1, lock, t)

    m.env.process(body())
    m.env.run()
    dram = p.get_ps("mem", "dram_ns")
    xfer = p.get_ps("coherence", "same_l3_transfer_ns")
    assert got[0] == dram + atomic
    assert got[1] == got[0] + l1  # the release store hits the line it owns
    assert got[2] == got[1] + l1 + atomic
    assert got[3] == got[2] + l1 + xfer + atomic
    st = lock.host_state
    assert (st.acquisitions, st.contended, st.wait_ps, st.handoffs) == (3, 0, 0, 0)
    assert m.cache.line_stats(lock.addr)["transfers"] == 1


@pytest.mark.parametrize("kind", ["queued", "ticket"])
def test_waiters_get_the_lock_in_arrival_order(kind):
    m = machine(cpus=4, kind=kind)
    lock, locks, env = new_lock(m), m.spinlocks, m.env
    order = []

    def holder():
        t = yield from locks.acquire(0, lock, 0)
        yield from at(env, t + 1_000_000)  # hold it for a microsecond
        order.append(0)
        locks.release(0, lock, env.now)

    def waiter(cpu, arrive_ps):
        yield env.timeout(arrive_ps)
        t = yield from locks.acquire(cpu, lock, env.now)
        order.append(cpu)
        yield from at(env, t)
        t = locks.release(cpu, lock, t)

    env.process(holder())
    for cpu, arrive in ((3, 200_000), (1, 300_000), (2, 400_000)):
        env.process(waiter(cpu, arrive))
    env.run()
    assert order == [0, 3, 1, 2]
    st = lock.host_state
    assert (st.acquisitions, st.contended, st.handoffs, st.max_waiters) == (4, 3, 3, 3)
    assert st.wait_ps > 3 * 600_000  # each waited at least until the holder's release


def test_misuse_is_refused():
    m = machine()
    lock, locks = new_lock(m), m.spinlocks
    errors = []

    def body():
        t = yield from locks.acquire(0, lock, 0)
        try:
            yield from locks.acquire(0, lock, t)
        except BpfError as err:  # a program error (EDEADLK), not a crash of the machine
            errors.append(str(err))
        try:
            locks.release(1, lock, t)
        except RuntimeError as err:
            errors.append(str(err))

    m.env.process(body())
    m.env.run()
    assert "self-deadlock" in errors[0] and "held by 0" in errors[1]
    with pytest.raises(ValueError, match="lock.kind"):
        type(locks)(m.env, m.cache.access, "mcs", 0, [])


def contend(kind, ncpus, rounds=25, critical_ns=30, seed=0):
    """``ncpus`` CPUs each take the lock ``rounds`` times, holding it ``critical_ns``."""
    m = machine(cpus=ncpus, kind=kind, seed=seed)
    lock, locks, env = new_lock(m), m.spinlocks, m.env

    def worker(cpu):
        t = 0
        for _ in range(rounds):
            yield from at(env, t)
            t = yield from locks.acquire(cpu, lock, max(t, env.now))
            t += critical_ns * 1000
            yield from at(env, t)
            t = locks.release(cpu, lock, t)

    for cpu in range(ncpus):
        env.process(worker(cpu))
    env.run()
    return lock.host_state, m


def test_queued_hand_offs_stay_flat_and_ticket_hand_offs_grow_with_the_waiters():
    mean = {}
    for kind in ("queued", "ticket"):
        for n in (2, 4, 8):
            st, _ = contend(kind, n)
            assert st.handoffs > 0.9 * st.acquisitions - n  # saturated: almost all hand-offs
            mean[kind, n] = st.handoff_ps / st.handoffs
    assert mean["queued", 8] < 1.25 * mean["queued", 4]
    assert mean["ticket", 8] > 1.6 * mean["ticket", 4] > 1.6 * 1.2 * mean["ticket", 2]
    assert mean["ticket", 8] > mean["queued", 8]


def test_a_ticket_release_makes_every_spinner_re_read_the_lock_word():
    few, m_few = contend("ticket", 2)
    many, m_many = contend("ticket", 6)
    per_acq = [
        m.cache.line_stats(st.lock.addr)["transfers"] / st.acquisitions
        for st, m in ((few, m_few), (many, m_many))
    ]
    assert per_acq[1] > 2 * per_acq[0]
    # A queued lock's word moves a fixed number of times per acquisition, however many wait.
    queued = []
    for n in (3, 6):
        st, m = contend("queued", n)
        queued.append(m.cache.line_stats(st.lock.addr)["transfers"] / st.acquisitions)
    assert queued[1] < 1.2 * queued[0] and queued[1] < 0.6 * per_acq[1]


def test_the_order_of_ticket_re_reads_comes_from_the_seed():
    runs = [contend("ticket", 5, seed=s)[0] for s in (0, 0, 1)]
    assert runs[0].handoff_ps == runs[1].handoff_ps
    assert runs[0].acquisitions == runs[2].acquisitions


def test_a_release_ahead_of_the_event_clock_still_makes_an_earlier_request_wait():
    """A core runs ahead: it may release at a local time later than a request SimPy processes
    after it.  That request was made while the lock was held, so it waits for the release."""
    m = machine(cpus=2)
    lock, locks, env = new_lock(m), m.spinlocks, m.env
    got = []

    def holder():
        t = yield from locks.acquire(0, lock, 0)
        locks.release(0, lock, t + 1_000_000)  # one microsecond later, without meeting the clock

    def asker():
        yield env.timeout(500_000)
        got.append((yield from locks.acquire(1, lock, env.now)))

    env.process(holder())
    env.process(asker())
    env.run()
    st = lock.host_state
    assert got[0] > 1_000_000
    assert (st.contended, st.handoffs, st.wait_ps) == (1, 1, got[0] - 500_000)
