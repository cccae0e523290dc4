"""Cores: SimPy processes that run program invocations with the engine's timed form.

Each core keeps a *local clock* ``t`` (integer picoseconds) that runs ahead of SimPy's clock on
private work.  The engine's generator yields only where something shared happens:

* ``yield t`` — meet the clock before a shared access: the core waits until ``env.now == t``
  and answers the new *horizon* (when the next other event is due);
* ``yield (helper_id, r1, r2, r3, r4, r5, t)`` — a helper call, which this module drives:
  each of the helper's requests (``Acquire``, ``Release``, ``Touch``, ``Work``, ``Callback``)
  is answered in simulated time.

The look-ahead rule: a core meets the clock only when another event is due before its local
time (``t > horizon``), so an invocation alone on the machine costs about one event, while two
cores touching one line interleave at their true simulated times.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import simpy

from kbpf.errors import BpfError
from kbpf.host import Acquire, Callback, Release, Touch, Work

if TYPE_CHECKING:  # pragma: no cover
    from sim.machine import Machine

#: A horizon beyond any simulated time: nothing else is scheduled.
NEVER = 1 << 62


@dataclass(eq=False)
class Invocation:
    """One scheduled run of a program on a CPU; filled in when it has run."""

    prog: Any
    cpu: int
    ctx: bytes
    at_ps: int
    seq: int
    r0: int | None = None
    fault: BpfError | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    done: simpy.Event | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.end_ns is not None


class Core:
    """One CPU: a FIFO of invocations run in submission order, one at a time, preemption off."""

    def __init__(self, machine: Machine, cpu_id: int):
        self.m = machine
        self.env: simpy.Environment = machine.env
        self.id = cpu_id
        self.queue: deque[Invocation] = deque()
        self.t = 0  # local clock while running (ps)
        self.busy_ps = 0
        self.invocations = 0
        self._wake: simpy.Event | None = None
        self.running: Invocation | None = None
        # The engine prices each shared access through this, bound to the core once.
        self.access = partial(machine.access, cpu_id)
        self.process = self.env.process(self._loop())

    # -- scheduling -------------------------------------------------------------------------
    def enqueue(self, inv: Invocation) -> None:
        self.queue.append(inv)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    @property
    def has_work(self) -> bool:
        return bool(self.queue) or self.running is not None

    def horizon(self) -> int:
        """Time of the next event that is not this core's: the limit of running ahead."""
        nxt = self.env.peek()
        return NEVER if nxt == float("inf") else int(nxt)

    def _loop(self):
        env = self.env
        while True:
            if not self.queue:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            inv = self.queue.popleft()
            if inv.at_ps > env.now:
                yield env.timeout(inv.at_ps - env.now)
            self.running = inv
            yield from self._run(inv)
            self.running = None
            self.invocations += 1
            inv.done.succeed(inv)

    # -- running one invocation -------------------------------------------------------------
    def _run(self, inv: Invocation):
        m = self.m
        env = self.env
        t0 = env.now
        inv.start_ns = t0 // 1000
        prog = inv.prog
        ctx_addr = m.kernel.stage_context(self.id, inv.ctx, writable=prog.ctx_writable)
        regions = m.kernel.cpu_regions[self.id]
        gen = prog.compiled.run_timed(
            regions, ctx_addr, 0, 0, 0, 0,
            stack_top=m.kernel.stack_top[self.id], budget=m.insn_budget,
            t=t0, horizon=self.horizon(), access=self.access,
        )
        t = t0
        try:
            r0, t = yield from self._drive_program(gen, t)
            inv.r0 = r0 & 0xFFFFFFFFFFFFFFFF
        except BpfError as err:
            inv.fault = err
            t = max(t, self.t, env.now)
            m.record_fault(inv, err)
        if t > env.now:
            yield env.timeout(t - env.now)
        self.busy_ps += env.now - t0
        inv.end_ns = env.now // 1000

    def _drive_program(self, gen, t: int):
        """Answer a program generator's yields until it returns ``(r0, t)``."""
        env = self.env
        send = gen.send
        answer = None
        while True:
            try:
                req = send(answer)
            except StopIteration as done:
                return done.value
            if req.__class__ is int:
                # Meet the clock at a shared access.
                if req > env.now:
                    yield env.timeout(req - env.now)
                self.t = req
                answer = self.horizon()
            else:
                hid, a1, a2, a3, a4, a5, t = req
                r0, t = yield from self._call_helper(hid, (a1, a2, a3, a4, a5), t)
                answer = (r0, t, self.horizon())

    def _sync(self, t: int):
        """Wait for the clock if another event is due before local time ``t``."""
        env = self.env
        if t > env.now and t > self.horizon():
            yield env.timeout(t - env.now)

    def _call_helper(self, hid: int, args: tuple[int, ...], t: int):
        """Drive one helper's request generator in simulated time; returns ``(r0, t)``."""
        m = self.m
        host = m.host
        fn = m.kernel.request_helpers.get(hid)
        if fn is None:
            raise BpfError(22, f"helper {hid} is not available")
        t += m.costs_helper_entry_ps
        yield from self._sync(t)
        lock = m.kernel.kbpf_lock_for(hid, args) if m.locking == "kbpf" else None
        if lock is not None:
            t = yield from m.spinlocks.acquire(self.id, lock, t)
        op = fn(*args)
        answer = None
        locks = m.spinlocks
        access = self.access
        work_ps = m.work_ps
        try:
            while True:
                host.cpu = self.id
                self.t = t
                try:
                    req = op.send(answer)
                except StopIteration as done:
                    r0 = done.value
                    break
                answer = None
                kind = req.__class__
                if kind is Touch:
                    yield from self._sync(t)
                    t += access(req.addr, req.size, req.write, t)
                elif kind is Work:
                    t += work_ps.get(req.kind, 0) * req.units
                elif kind is Acquire:
                    yield from self._sync(t)
                    t = yield from locks.acquire(self.id, req.lock, t)
                elif kind is Release:
                    t = locks.release(self.id, req.lock, t)
                elif kind is Callback:
                    prog = self.running.prog
                    sub = prog.compiled.call_timed(
                        req.func, req.args, stack_top=m.kernel.stack_top[self.id],
                        budget=m.insn_budget, t=t, horizon=self.horizon(), access=access,
                        regions=m.kernel.cpu_regions[self.id],
                    )
                    answer, t = yield from self._drive_program(sub, t)
                else:
                    raise TypeError(f"helper {hid} yielded an unknown request {req!r}")
        finally:
            if lock is not None:
                t = locks.release(self.id, lock, t)
        return r0 & 0xFFFFFFFFFFFFFFFF, t
