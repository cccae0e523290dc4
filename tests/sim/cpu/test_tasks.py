"""The task policy of sim.cpu.task: wake-up latency, context switches, invocations first."""

from kbpf.asm import assemble
from sim import Machine
from sim.cpu.task import Migrate, Run, Sleep, Wait, WaitQueue


def test_a_woken_tasks_latency_is_the_wakeup_plus_the_context_switch():
    m = Machine(cpus=2)
    q = WaitQueue("poll")
    task = m.spawn(lambda t: (yield Wait(q)), cpu=1, comm="reader")
    m.run()  # the task starts, blocks in poll: no work left
    assert task.state == "sleeping"
    m.env.timeout(5_000_000).callbacks.append(lambda _e: q.wake_up(m.scheduler))
    m.run(until_ns=m.now_ns + 6_000)  # a pending timer is not work: run past it explicitly
    m.run()
    s = m.scheduler
    assert task.latencies_ps == [s.wakeup_ps + s.switch_ps]
    assert q.wakeups == 1 and task.state == "dead"


def long_program(m, n=3000):
    return m.load_program(assemble("mov %r0, 0\n" * n + "exit"), name="long")


def test_an_invocation_on_its_cpu_delays_the_task_by_its_length():
    finish = []
    for with_invocation in (False, True):
        m = Machine(cpus=1)
        prog = long_program(m)
        done = []

        def body(task, m=m, done=done):
            yield Run(10_000)
            done.append(m.env.now)

        m.spawn(body, cpu=0)
        inv = m.submit(prog, cpu=0, at_ns=4_000) if with_invocation else None
        m.run()
        finish.append((done[0], inv))
    (plain, _), (delayed, inv) = finish
    assert inv.end_ns > inv.start_ns >= 4_000
    # delayed by exactly the invocation's length (known outside to the nanosecond)
    assert abs((delayed - plain) - (inv.end_ns - inv.start_ns) * 1000) < 1000


def test_programs_see_the_interrupted_task_and_the_idle_task_otherwise():
    m = Machine(cpus=2)
    prog = m.load_program(assemble("call 14\nexit"), name="who")
    task = m.spawn(lambda t: (yield Run(50_000)), cpu=0, comm="worker")
    inv_busy = m.submit(prog, cpu=0, at_ns=10_000)
    inv_idle = m.submit(prog, cpu=1, at_ns=10_000)
    m.run()
    assert inv_busy.r0 == (task.tgid << 32) | task.pid
    assert inv_idle.r0 == 0  # swapper/1: pid 0, tgid 0


def test_a_woken_task_waits_for_a_running_invocation():
    m = Machine(cpus=1)
    prog = long_program(m, 30000)  # ~10 us
    q = WaitQueue("poll")
    task = m.spawn(lambda t: (yield Wait(q)), cpu=0)
    m.run()
    inv = m.submit(prog, cpu=0)
    t0 = m.env.now
    m.env.timeout(1_000_000).callbacks.append(lambda _e: q.wake_up(m.scheduler))  # wake 1 us later
    m.run()
    s = m.scheduler
    assert inv.end_ns * 1000 > t0 + 1_000_000 + s.wakeup_ps
    # the invocation's end (ns resolution outside) plus a context switch
    expected = inv.end_ns * 1000 - (t0 + 1_000_000) + s.switch_ps
    assert expected <= task.latencies_ps[0] < expected + 1000


def test_round_robin_time_slices_and_migration():
    m = Machine(cpus=2)
    s = m.scheduler
    order = []

    def spinner(name):
        def body(task):
            for _ in range(3):
                yield Run(s.slice_ps // 1000)
                order.append((name, task.cpu))

        return body

    a = m.spawn(spinner("a"), cpu=0)
    b = m.spawn(spinner("b"), cpu=0)
    m.run()
    assert [n for n, _ in order] == ["a", "b", "a", "b", "a", "b"]
    assert a.switches >= 3 and b.switches >= 3

    def mover(task):
        yield Run(1000)
        yield Migrate(1)
        yield Run(1000)

    t = m.spawn(mover, cpu=0)
    m.run()
    assert t.cpu == 1 and t.state == "dead"


def test_a_sleeping_task_is_not_work_but_a_wake_up_before_poll_is_not_lost():
    m = Machine(cpus=1)
    q = WaitQueue("poll")
    q.wake_up(m.scheduler)  # data arrived before anyone polled
    seen = []

    def body(task):
        seen.append((yield Wait(q)))  # returns at once: the pending wake-up
        yield Sleep(1000)
        yield Wait(q)  # sleeps: nothing pending

    task = m.spawn(body, cpu=0)
    m.run()
    assert seen == [1] and task.state == "sleeping" and not m.busy
