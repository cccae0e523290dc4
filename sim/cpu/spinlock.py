"""Spinlocks in simulated time: plain objects, not ``simpy.Resource``.

A lock has an owner and a FIFO of waiting cores.  An uncontended acquire costs one priced
read-modify-write of the lock word; a contended one waits until the owner releases, and the
release hands the lock straight to the head waiter, which pays a hand-off (the lock word's line
moving to its core).  Waits and wait time are counted per lock, so scenarios can plot them.

The lock word is a :class:`kbpf.host.Lock` created by kbpf where Linux has a spinlock; this
module keeps the machine's state for it in ``lock.host_state``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import simpy

from kbpf.host import Lock


@dataclass(slots=True)
class LockState:
    """The simulated state and statistics of one kbpf lock."""

    lock: Lock
    owner: int | None = None  # cpu id holding it
    waiters: deque = field(default_factory=deque)  # (cpu, simpy.Event, t_request)
    acquisitions: int = 0
    contended: int = 0
    wait_ps: int = 0

    @property
    def name(self) -> str:
        return self.lock.name


def state_of(lock: Lock) -> LockState:
    st = lock.host_state
    if st is None:
        st = lock.host_state = LockState(lock)
    return st


class SpinLocks:
    """The machine's spinlock mechanism: acquire/release in simulated time with preset costs."""

    def __init__(self, env: simpy.Environment, uncontended_ps: int, handoff_ps: int):
        self.env = env
        self.uncontended_ps = uncontended_ps
        self.handoff_ps = handoff_ps
        self.all: dict[int, LockState] = {}  # id(lock) -> state, in creation order (for metrics)

    def acquire(self, cpu: int, lock: Lock, t: int):
        """Generator run inside a core's SimPy process at local time ``t`` (ps, >= env.now).

        Returns the local time at which ``cpu`` holds the lock.
        """
        st = state_of(lock)
        self.all.setdefault(id(lock), st)
        if st.owner == cpu:
            raise RuntimeError(f"cpu {cpu} acquires {lock!r} which it already holds (self-deadlock)")
        st.acquisitions += 1
        if st.owner is None and not st.waiters:
            st.owner = cpu
            return t + self.uncontended_ps
        # Contended: wait (spinning, the CPU stays busy) until a release hands the lock over.
        st.contended += 1
        granted = self.env.event()
        st.waiters.append((cpu, granted, t))
        handed_at = yield granted
        st.wait_ps += handed_at - t
        return handed_at

    def release(self, cpu: int, lock: Lock, t: int) -> int:
        """Release at local time ``t``; the head waiter gets the lock after a hand-off.

        Returns the releasing core's local time after the release store.
        """
        st = state_of(lock)
        if st.owner != cpu:
            raise RuntimeError(f"cpu {cpu} releases {lock!r} held by {st.owner}")
        if st.waiters:
            nxt, ev, t_req = st.waiters.popleft()
            st.owner = nxt
            handed = max(t, t_req) + self.handoff_ps
            # The waiter resumes now with its local clock at the hand-off instant: like every core
            # it runs ahead of the event clock and meets it again at its next shared access.
            ev.succeed(handed)
        else:
            st.owner = None
        return t
