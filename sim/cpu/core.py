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
from sim.cpu.task import Task

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
    """One CPU: program invocations (FIFO, preemption off) and user tasks (``sim.cpu.task``)."""

    def __init__(self, machine: Machine, cpu_id: int):
        self.m = machine
        self.env: simpy.Environment = machine.env
        self.id = cpu_id
        self.queue: deque[Invocation] = deque()
        self.runq: deque[Task] = deque()
        self.current: Task | None = None  # the task on this CPU (possibly interrupted)
        self.t = 0  # local clock while running a program (ps)
        self.busy_ps = 0  # time spent running programs
        self.task_ps = 0  # time spent running tasks (including context switches)
        self.invocations = 0
        self.context_switches = 0
        self._kick: simpy.Event | None = None
        self.running: Invocation | None = None
        # The engine prices each shared access through this, bound to the core once.
        self.access = partial(machine.access, cpu_id)
        self.process = self.env.process(self._loop())

    # -- scheduling -------------------------------------------------------------------------
    def _poke(self) -> None:
        kick = self._kick
        if kick is not None and not kick.triggered:
            kick.succeed()

    def enqueue(self, inv: Invocation) -> None:
        self.queue.append(inv)
        self._poke()

    def make_runnable(self, task: Task) -> None:
        self.m.scheduler.set_active(task, "runnable")
        self.runq.append(task)
        self._poke()

    @property
    def has_work(self) -> bool:
        return bool(self.queue) or self.running is not None

    def horizon(self) -> int:
        """Time of the next event that is not this core's: the limit of running ahead."""
        nxt = self.env.peek()
        return NEVER if nxt == float("inf") else int(nxt)

    def _wait(self, delay: int | None):
        """Wait ``delay`` ps (None: forever) or until poked; returns when either happens."""
        env = self.env
        kick = self._kick = env.event()
        if delay is None:
            yield kick
        else:
            yield env.any_of([env.timeout(delay), kick])
        self._kick = None

    def _loop(self):
        env = self.env
        sched = self.m.scheduler
        while True:
            queue = self.queue
            if queue and queue[0].at_ps <= env.now:
                inv = queue.popleft()
                self.running = inv
                yield from self._run(inv)
                self.running = None
                self.invocations += 1
                inv.done.succeed(inv)
                continue
            due_in = queue[0].at_ps - env.now if queue else None
            task = self.current
            if task is None and self.runq:
                task = self.runq.popleft()
                # A task only comes from the run queue after the CPU was idle or ran another
                # task: a context switch each time.
                self.context_switches += 1
                task.switches += 1
                yield env.timeout(sched.switch_ps)
                self.task_ps += sched.switch_ps
                self.current = task
                sched.set_active(task, "running")
                if task.woken_at_ps is not None:
                    task.latencies_ps.append(env.now - task.woken_at_ps)
                    task.woken_at_ps = None
                self._slice_used = 0
            if task is not None:
                yield from self._run_task(task, due_in)
                continue
            yield from self._wait(due_in)

    def _run_task(self, task: Task, due_in: int | None):
        """Advance ``task`` until it blocks, ends, migrates, is preempted, or an invocation is due."""
        env = self.env
        sched = self.m.scheduler
        if task.remaining_ps == 0:
            sched.advance(task, self)
            if self.current is not task:
                return
        limit = task.remaining_ps
        if due_in is not None:
            limit = min(limit, due_in)
        if self.runq:
            limit = min(limit, max(0, sched.slice_ps - self._slice_used))
        start = env.now
        if limit > 0:
            yield from self._wait(limit)
        ran = env.now - start
        task.remaining_ps -= ran
        task.cpu_ps += ran
        self.task_ps += ran
        self._slice_used += ran
        if self.runq and self._slice_used >= sched.slice_ps and task.remaining_ps > 0:
            # Time slice over with another task waiting: round robin.
            self.current = None
            self.make_runnable(task)

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
            regions,
            ctx_addr,
            0,
            0,
            0,
            0,
            stack_top=m.kernel.stack_top[self.id],
            budget=m.insn_budget,
            t=t0,
            horizon=self.horizon(),
            access=self.access,
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
        # The helper's entry (the call instruction) was priced by the engine (Costs.call).
        yield from self._sync(t)
        lock = m.kernel.kbpf_lock_for(hid, args) if m.locking == "kbpf" else None
        if lock is not None:
            t = yield from m.spinlocks.acquire(self.id, lock, t)
        op = fn(*args)
        answer = None
        locks = m.spinlocks
        access = self.access
        work_ps = m.work_ps
        stats = m.stats
        # The map this call works on: what the per-map operation and work counts are keyed by.
        target = m.kernel.helper_map(hid, args)
        r0 = 0
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
                    key = (target, req.kind)
                    stats.work[key] = stats.work.get(key, 0) + req.units
                elif kind is Acquire:
                    yield from self._sync(t)
                    t0 = t
                    t = yield from locks.acquire(self.id, req.lock, t)
                    if stats.timeline is not None and t - t0 > locks.atomic_ps:
                        stats.timeline.append((self.id, "lock", t0, t, req.lock.name))
                elif kind is Release:
                    # The release store is a shared access too: it happens at its true time.
                    yield from self._sync(t)
                    t = locks.release(self.id, req.lock, t)
                elif kind is Callback:
                    prog = self.running.prog
                    sub = prog.compiled.call_timed(
                        req.func,
                        req.args,
                        stack_top=m.kernel.stack_top[self.id],
                        budget=m.insn_budget,
                        t=t,
                        horizon=self.horizon(),
                        access=access,
                        regions=m.kernel.cpu_regions[self.id],
                    )
                    answer, t = yield from self._drive_program(sub, t)
                else:
                    raise TypeError(f"helper {hid} yielded an unknown request {req!r}")
        finally:
            if lock is not None:
                t = locks.release(self.id, lock, t)
            if m.kernel.dynamic_maps:
                m.kernel.after_helper()
        r0 &= 0xFFFFFFFFFFFFFFFF
        if target:
            ret = m.kernel.helper_ret.get(hid)
            outcome = (
                ("null" if r0 == 0 else "ok")
                if ret == "pointer"
                else (("ok" if r0 == 0 else "err") if ret == "errno" else "ok")
            )
            key = (target, hid, outcome)
            stats.ops[key] = stats.ops.get(key, 0) + 1
        return r0, t
