"""User tasks and the scheduling policy of the simulated CPUs.

A task is a generator function ``body(task)`` that yields what it does next:

* ``Run(ns)`` — compute for ``ns`` of CPU time on its CPU;
* ``Sleep(ns)`` — block for ``ns`` (a timed sleep: woken by the timer);
* ``Wait(queue)`` — block on a :class:`WaitQueue` (poll/epoll) until something wakes it;
  the ``yield`` evaluates to the number of wake-ups it slept through (at least 1);
* ``Migrate(cpu)`` — move to another CPU's run queue.

The policy (each choice stated, since the plots depend on it):

* Each CPU has a FIFO run queue; the task at its head runs until it blocks, migrates, or its
  time slice (preset ``sched.time_slice_ns``) ends while another task is runnable there.
* A woken task becomes runnable on its CPU ``sched.wakeup_ns`` after the wake-up; switching
  the CPU to a different task (or from idle to a task) costs ``sched.context_switch_ns``.
* A woken task does not preempt the running task (no wake-up preemption).
* Program invocations run with preemption disabled and come first: queued invocations run before
  any task, and an invocation arriving while a task runs interrupts it at that instant, in that
  task's context (``get_current_pid_tgid`` sees the task); the task's remaining work resumes
  after it, so an invocation on its CPU delays the task by exactly the invocation's length.
* Migration costs ``sched.migration_ns`` before the task joins the other CPU's queue.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kbpf.host import TaskInfo

if TYPE_CHECKING:  # pragma: no cover
    from sim.kernel.process import Process


@dataclass(frozen=True, slots=True)
class Run:
    ns: int


@dataclass(frozen=True, slots=True)
class Sleep:
    ns: int


@dataclass(frozen=True, slots=True)
class Wait:
    queue: WaitQueue


@dataclass(frozen=True, slots=True)
class Migrate:
    cpu: int


class WaitQueue:
    """Tasks blocked in poll on one object (a ring buffer, a perf event).

    ``wake_up()`` wakes every waiter, as ``wake_up_interruptible`` does; a wake-up with nobody
    waiting is remembered (``pending``) so that a task arriving at ``Wait`` right after does not
    sleep through data that is already there — poll checks readiness before sleeping.
    """

    def __init__(self, name: str):
        self.name = name
        self.forward_to: WaitQueue | None = None  # an epoll set watching this queue
        self.waiters: deque[Task] = deque()
        self.pending = 0
        self.wakeups = 0  # wake_up() calls that woke at least one task
        self.calls = 0  # every wake_up() call

    def wake_up(self, scheduler: Scheduler, at_ps: int | None = None) -> int:
        """Wake every waiter; ``at_ps`` is the waker's local time when it runs ahead of the
        event clock (a core inside a helper).  Returns how many tasks it woke: waking a sleeper
        is counted; a wake-up with nobody waiting is remembered as pending."""
        woke = 0
        if self.forward_to is not None:
            woke += self.forward_to.wake_up(scheduler, at_ps)
        self.calls += 1
        if not self.waiters:
            self.pending += 1
            return woke
        self.wakeups += 1
        while self.waiters:
            scheduler.wake(self.waiters.popleft(), self.pending + 1, at_ps)
            woke += 1
        self.pending = 0
        return woke


@dataclass(eq=False)
class Task:
    """A user task: pid/tgid/comm, its process, its CPU and its body."""

    pid: int
    tgid: int
    comm: str
    process: Process | None
    cpu: int
    body: Any = field(repr=False, default=None)
    state: str = "runnable"  # runnable | running | sleeping | dead
    remaining_ps: int = 0  # CPU time left of the current Run
    wake_value: int = 0
    wakeups: int = 0
    switches: int = 0
    cpu_ps: int = 0
    woken_at_ps: int | None = None
    latencies_ps: list[int] = field(default_factory=list)  # wake-up to running, per wake-up
    error: BaseException | None = None

    @property
    def info(self) -> TaskInfo:
        return TaskInfo(self.pid, self.tgid, self.comm[:15])


class Scheduler:
    """Wake-ups and migrations between the cores' run queues (the policy above)."""

    def __init__(self, machine):
        self.m = machine
        self.env = machine.env
        p = machine.preset
        self.wakeup_ps = p.get_ps("sched", "wakeup_ns")
        self.switch_ps = p.get_ps("sched", "context_switch_ns")
        self.migration_ps = p.get_ps("sched", "migration_ns")
        self.slice_ps = p.get_ps("sched", "time_slice_ns")
        self.tasks: list[Task] = []

    #: States in which a task has work: ``Machine.run()`` keeps going while any task is in one.
    ACTIVE = frozenset({"runnable", "running", "waking", "migrating"})

    def add(self, task: Task) -> None:
        self.tasks.append(task)
        task.state = "new"
        self.m.cores[task.cpu].make_runnable(task)

    def set_active(self, task: Task, state: str) -> None:
        """Change ``task``'s state, keeping the machine's count of tasks that have work."""
        was = task.state in self.ACTIVE
        task.state = state
        now = state in self.ACTIVE
        if was != now:
            self.m.task_activity(+1 if now else -1)

    def advance(self, task: Task, core) -> None:
        """Run ``task``'s body to its next request that takes time (no simulated time passes)."""
        value = task.wake_value or None
        task.wake_value = 0
        while True:
            try:
                req = task.body.send(value)
            except StopIteration:
                self._leave(task, core, "dead")
                return
            except Exception as e:  # a bug in a task body: recorded, the machine goes on
                task.error = e
                self.m.task_errors.append((task, e))
                self._leave(task, core, "dead")
                return
            value = None
            kind = type(req)
            if kind is Run:
                if not isinstance(req.ns, int) or req.ns < 0:
                    raise ValueError(
                        f"task {task.comm}: Run needs a non-negative int of ns, got {req.ns!r}"
                    )
                task.remaining_ps = req.ns * 1000
                if task.remaining_ps:
                    return
            elif kind is Sleep:
                self._leave(task, core, "sleeping")
                self.sleep_for(task, req.ns * 1000)
                return
            elif kind is Wait:
                q = req.queue
                if q.pending:
                    value, q.pending = q.pending, 0
                    continue
                q.waiters.append(task)
                self._leave(task, core, "sleeping")
                return
            elif kind is Migrate:
                if req.cpu == task.cpu:
                    continue
                if not 0 <= req.cpu < self.m.ncpus:
                    raise ValueError(f"task {task.comm}: no CPU {req.cpu}")
                self._leave(task, core, "migrating")
                self.migrate(task, req.cpu)
                return
            else:
                raise TypeError(
                    f"task {task.comm} yielded {req!r}; expected Run, Sleep, Wait or Migrate"
                )

    def _leave(self, task: Task, core, state: str) -> None:
        if core.current is task:
            core.current = None
        self.set_active(task, state)

    def wake(self, task: Task, value: int = 1, at_ps: int | None = None) -> None:
        """Make a sleeping task runnable the wake-up latency after ``at_ps`` (default: now)."""
        if task.state != "sleeping":
            return
        self.set_active(task, "waking")
        task.wake_value = value
        task.wakeups += 1
        now = self.env.now
        at = now if at_ps is None or at_ps < now else at_ps
        task.woken_at_ps = at

        def arrive(_ev, task=task):
            self.m.cores[task.cpu].make_runnable(task)

        self.env.timeout(self.wakeup_ps + at - now).callbacks.append(arrive)

    def migrate(self, task: Task, cpu: int) -> None:
        task.cpu = cpu

        def arrive(_ev, task=task):
            self.m.cores[cpu].make_runnable(task)

        self.env.timeout(self.migration_ps).callbacks.append(arrive)

    def sleep_for(self, task: Task, ps: int) -> None:
        """A timed sleep: the timer fires on the task's own CPU, so no wake-up IPI is paid."""

        def expire(_ev, task=task):
            task.woken_at_ps = self.env.now
            self.m.cores[task.cpu].make_runnable(task)

        self.env.timeout(ps).callbacks.append(expire)
