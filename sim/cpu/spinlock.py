"""Spinlocks in simulated time: plain objects whose costs are the cache lines they move.

A lock is the lock word of a :class:`kbpf.host.Lock` — the 4-byte ``spinlock_t`` at
``lock.addr``, one line of the coherence directory (:mod:`sim.mem.cache`) — plus the machine's
bookkeeping in ``lock.host_state``: the owner, a FIFO of waiting CPUs, and statistics.  Nothing
here is a fixed hand-off cost: every step is a load, store or atomic on a real line, priced by
the :class:`~sim.mem.cache.CacheModel` at the time it happens, so a hand-off costs what moving
those lines costs between those two CPUs, and it queues behind whatever else that line is doing.

* **Uncontended acquire**: one atomic read-modify-write of the lock word (the line comes to the
  acquirer exclusively; ``mem.atomic_rmw_ns`` for the locked instruction itself).
* **Contended acquire**: the same RMW (a ticket lock's ``xadd`` takes a ticket; a queued lock's
  ``xchg`` appends to the tail), then the CPU spins — it stays busy, as Linux's spinning CPU
  does — until a release hands it the lock.  Waiters are served in arrival order (FIFO) by
  both kinds.
* **Release and hand-off**, by ``lock.kind`` in the preset:

  - ``"ticket"``: every waiter spins reading the lock word.  The release is a store to it,
    which invalidates every spinner's copy (the invalidation round trip to the farthest); then
    all spinners re-read it at once, and the directory serves those reads one at a time, in an
    order no spinner controls (drawn from the machine's seeded stream).  The next ticket holder
    has the lock when its own re-read completes, on average behind half the others: the
    hand-off grows linearly with the number of waiters (Boyd-Wickizer et al., simulation.md
    2.4; MIT 6.828's "grows linearly with the number of contending cores", 1.4).  A new
    waiter's ``xadd`` likewise makes every spinner re-read.
  - ``"queued"`` (qspinlock, MCS-like): only the queue head spins on the lock word; every other
    waiter spins on its own per-CPU node, a line nobody else reads.  The release is a store to
    the lock word (invalidating the head's copy); the head re-reads it, takes the lock with a
    store (an atomic when it was the last waiter) and, if someone is behind it, writes that
    CPU's node to make it the new head, which then re-reads its node and the lock word.  The
    number of lines moved per hand-off does not depend on the number of waiters.

The waiter resumes with its local clock at the hand-off instant, and every access of the
hand-off chain is priced at the time it happens (the waiters' re-reads at the release time),
so the lock word's line is busy for exactly as long as that traffic keeps it.

A core runs ahead of the event clock, so a holder may release at a local time later than
another CPU's request that SimPy processes afterwards.  By simulated time that CPU asked while
the lock was held: its read-modify-write queues behind the release store in the directory, and
the acquisition is counted as contended, with its wait and hand-off.

Not modelled: qspinlock's pending bit (its first waiter spins without a queue node) and
``cpu_relax()`` between polls (a spinner notices a change as soon as its line is invalidated).

Statistics per lock (``SpinLocks.all``, in creation order): ``acquisitions``, ``contended``
(acquisitions that had to wait), ``wait_ps`` (from the acquire call to holding, over the
contended ones), ``handoffs`` and ``handoff_ps`` (from the start of a release to the next
holder holding), ``max_waiters``.
"""

from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import simpy

from kbpf.errors import BpfError
from kbpf.host import Lock

KINDS = ("queued", "ticket")
LOCK_WORD_BYTES = 4  # spinlock_t
QNODE_BYTES = 16  # struct mcs_spinlock: next pointer, locked, count
#: The spawn key of the stream that orders a ticket lock's re-reads: distinct from every other
#: stream of the machine (``SeedSequence(seed, spawn_key=(SPINLOCK_STREAM,))``).
SPINLOCK_STREAM = 0x5350494E  # "SPIN"


@dataclass(slots=True)
class LockState:
    """The simulated state and statistics of one kbpf lock."""

    lock: Lock
    owner: int | None = None  # cpu id holding it
    waiters: deque = field(default_factory=deque)  # (cpu, simpy.Event, t_request)
    acquisitions: int = 0
    contended: int = 0
    wait_ps: int = 0
    handoffs: int = 0
    handoff_ps: int = 0
    max_waiters: int = 0
    release_start: int = 0  # local time the last release began
    free_at: int = 0  # local time the last release store completed

    @property
    def name(self) -> str:
        return self.lock.name


def state_of(lock: Lock) -> LockState:
    st = lock.host_state
    if st is None:
        st = lock.host_state = LockState(lock)
    return st


class SpinLocks:
    """The machine's spinlock mechanism, over its cache model.

    ``access`` is the cache model's ``access(cpu, addr, size, write, t) -> ps``; ``qnodes`` the
    kernel address of each CPU's queue node (per-CPU memory, used by the queued kind);
    ``atomic_ps`` the cost of a locked instruction on top of its line; ``seed`` the machine's
    seed (for the order of a ticket lock's re-reads).
    """

    def __init__(
        self,
        env: simpy.Environment,
        access,
        kind: str,
        atomic_ps: int,
        qnodes: list[int],
        seed: int = 0,
    ):
        if kind not in KINDS:
            raise ValueError(f"lock.kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.env = env
        self.access = access
        self.kind = kind
        self.ticket = kind == "ticket"
        self.atomic_ps = atomic_ps
        self.qnodes = qnodes
        self.rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPINLOCK_STREAM,)))
        self.all: dict[int, LockState] = {}  # id(lock) -> state, in creation order (for metrics)

    def acquire(self, cpu: int, lock: Lock, t: int):
        """Generator run inside a core's SimPy process at local time ``t`` (ps, >= env.now).

        Returns the local time at which ``cpu`` holds the lock.
        """
        st = lock.host_state
        if st is None:
            st = state_of(lock)
        if id(lock) not in self.all:
            self.all[id(lock)] = st
        if st.owner == cpu:
            # On real hardware this CPU would spin forever; the program stops with an error
            # instead, and the machine goes on (docs/deviations.md, the kbpf locking model).
            raise BpfError(
                errno.EDEADLK,
                f"cpu {cpu} acquires {lock!r} which it already holds (self-deadlock)",
            )
        st.acquisitions += 1
        access = self.access
        addr = lock.addr
        t0 = t
        waiters = st.waiters
        free = st.owner is None and not waiters
        late = free and t < st.free_at
        if late:
            # The holder ran ahead of the event clock and released at a local time later than
            # this request: by simulated time the lock was held when we asked, so we spin
            # until that release, then take it.
            t = st.free_at
        # The lock word's read-modify-write: cmpxchg (queued fast path) or xadd (ticket).
        t += access(cpu, addr, LOCK_WORD_BYTES, True, t) + self.atomic_ps
        if free:
            st.owner = cpu
            if late:
                st.contended += 1
                st.wait_ps += t - t0
                st.handoffs += 1
                st.handoff_ps += t - st.release_start
            return t
        st.contended += 1
        if self.ticket:
            # Taking a ticket invalidated every spinner's copy: they all re-read the word.
            self._reread(st, addr, t)
        elif waiters:
            # The tail exchange took the word from the head, which spins on it: it re-reads.
            access(waiters[0][0], addr, LOCK_WORD_BYTES, False, t)
            # Link behind the tail: write the predecessor's node, then spin on our own.
            pred = waiters[-1][0]
            t += access(cpu, self.qnodes[pred], 8, True, t)
            t += access(cpu, self.qnodes[cpu], QNODE_BYTES, False, t)
        # (The queue head spins on the lock word, which the RMW just brought here.)
        granted = self.env.event()
        waiters.append((cpu, granted, t0))
        if len(waiters) > st.max_waiters:
            st.max_waiters = len(waiters)
        handed = yield granted
        st.wait_ps += handed - t0
        return handed

    def release(self, cpu: int, lock: Lock, t: int) -> int:
        """Release at local time ``t``; the head waiter gets the lock after the hand-off.

        Returns the releasing core's local time after the release store.
        """
        st = lock.host_state
        if st is None or st.owner != cpu:
            owner = None if st is None else st.owner
            raise RuntimeError(f"cpu {cpu} releases {lock!r} held by {owner}")
        access = self.access
        addr = lock.addr
        # The release store (ticket: now_serving + 1; queued: clear the locked byte).
        t_rel = t + access(cpu, addr, LOCK_WORD_BYTES, True, t)
        waiters = st.waiters
        if not waiters:
            st.owner = None
            st.release_start = t
            st.free_at = t_rel
            return t_rel
        head, ev, _ = waiters.popleft()
        if self.ticket:
            handed = self._reread(st, addr, t_rel, head)
        else:
            # The head sees the word change, then takes the lock.
            h = t_rel + access(head, addr, LOCK_WORD_BYTES, False, t_rel)
            h += access(head, addr, LOCK_WORD_BYTES, True, h)
            if waiters:
                # Pass the head of the queue on: write the next waiter's node; it re-reads
                # its node and starts spinning on the lock word.
                nxt = waiters[0][0]
                node = self.qnodes[nxt]
                h += access(head, node, 8, True, h)
                n = h + access(nxt, node, QNODE_BYTES, False, h)
                access(nxt, addr, LOCK_WORD_BYTES, False, n)
            else:
                h += self.atomic_ps  # the last waiter takes the word with a cmpxchg
            handed = h
        st.owner = head
        st.handoffs += 1
        st.handoff_ps += handed - t
        # The waiter resumes with its local clock at the hand-off instant: like every core it
        # runs ahead of the event clock and meets it again at its next shared access.
        ev.succeed(handed)
        return t_rel

    def _reread(self, st: LockState, addr: int, t: int, head: int | None = None) -> int:
        """Every ticket-lock spinner (and ``head``, which the release just chose) re-reads the
        lock word at ``t``, served one at a time in a drawn order; returns when ``head``'s
        read completes (``t`` if there is no head)."""
        spinners = [w[0] for w in st.waiters]
        if head is not None:
            spinners.append(head)
        if len(spinners) > 1:
            order = self.rng.permutation(len(spinners))
            spinners = [spinners[i] for i in order]
        access = self.access
        done = t
        for w in spinners:
            end = t + access(w, addr, LOCK_WORD_BYTES, False, t)
            if w == head:
                done = end
        return done

    def summary(self) -> list[dict]:
        """Per lock, in creation order: name and statistics (``wait_ns``, ``handoff_ns`` means)."""
        out = []
        for st in self.all.values():
            out.append(
                {
                    "name": st.name,
                    "acquisitions": st.acquisitions,
                    "contended": st.contended,
                    "wait_ps": st.wait_ps,
                    "handoffs": st.handoffs,
                    "handoff_ps": st.handoff_ps,
                    "mean_handoff_ns": st.handoff_ps / st.handoffs / 1000 if st.handoffs else 0.0,
                    "max_waiters": st.max_waiters,
                }
            )
        return out
