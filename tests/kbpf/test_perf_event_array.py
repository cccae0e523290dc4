"""BPF_MAP_TYPE_PERF_EVENT_ARRAY as kernel/bpf/arraymap.c (v6.6) defines it, and
``bpf_perf_event_output`` (helper 25) as kernel/trace/bpf_trace.c runs it for tracing programs."""

import errno

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.helper import init_helper_functions, request_helpers
from kbpf.host import Acquire, Release, TaskInfo, Touch, Work, drive
from kbpf.linux_bpf import (
    BPF_ANY,
    BPF_F_CTXLEN_MASK,
    BPF_F_CURRENT_CPU,
    BPF_F_MMAPABLE,
    BPF_F_PRESERVE_ELEMS,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY_PROG,
    BPF_NOEXIST,
    PAGE_SIZE,
    PERF_ATTR_SIZE_VER8,
    PERF_COUNT_SW_BPF_OUTPUT,
    PERF_COUNT_SW_CPU_CLOCK,
    PERF_SAMPLE_RAW,
    PERF_TYPE_SOFTWARE,
    BpfFuncId,
    BpfMapElemAttr,
    PerfEventAttr,
)
from kbpf.map import (
    bpf_map_delete_elem,
    bpf_map_get_next_key,
    bpf_map_lookup_and_delete_elem,
    bpf_map_lookup_elem,
    bpf_map_update_elem,
)
from kbpf.map.array import ARRAY_VALUE_OFFSET
from kbpf.perf import PERF_EVENT_IOC_DISABLE, PERF_EVENT_IOC_ENABLE, BpfPerfEvent, PerfProbeArgs
from kbpf.perf.ring_page import circ_space
from tests.kbpf.perf_consumer import PerfConsumer
from tests.kbpf.testhost import TestHost, create_map, scratch, u32

PEA = "perf_event_array"
U64 = (1 << 64) - 1


def open_event(host, cpu, config=PERF_COUNT_SW_BPF_OUTPUT, pages=1, flags=0, pid=-1, eid=1):
    """perf_event_open(BPF_OUTPUT, pid, cpu) as libbpf's perf_buffer does, an fd for it, and the
    mmap of 1 + ``pages`` pages (None: not mapped).  Returns (event, fd, consumer)."""
    attr = PerfEventAttr(
        type=PERF_TYPE_SOFTWARE,
        size=PERF_ATTR_SIZE_VER8,
        config=config,
        sample_type=PERF_SAMPLE_RAW,
        sample_period=1,
        wakeup_events=1,
        flags=flags,
    )
    args = PerfProbeArgs.try_from_perf_attr(host, attr, pid, cpu, ncpus=host.ncpus)
    ev = BpfPerfEvent(host, args, eid)
    cons = None
    if pages is not None:
        cons = PerfConsumer(host, ev.do_mmap(0, (1 + pages) * PAGE_SIZE, True))
    return ev, host.install_perf_event(ev), cons


class Syscalls:
    """bpf(2) on one map from a process on CPU 0: keys and values in its memory."""

    def __init__(self, host, fd):
        self.host, self.fd = host, fd
        host.tasks[0] = TaskInfo(1000, 1000, "user")

    def _call(self, fn, key, value=b"", flags=0, out=0):
        h = self.host
        kp = h.map_user(u32(key)) if key is not None else 0
        vp = h.map_user(value or bytes(max(out, 8)))
        saved, h.cpu = h.cpu, 0
        try:
            drive(fn(h, BpfMapElemAttr(self.fd, kp, vp, flags)), h)
        finally:
            h.cpu = saved
        return h.copy_from_user(vp, out) if out else None

    def update(self, key, fd, flags=BPF_ANY):
        self._call(bpf_map_update_elem, key, u32(fd), flags)

    def lookup(self, key):
        return self._call(bpf_map_lookup_elem, key, out=4)

    def delete(self, key):
        self._call(bpf_map_delete_elem, key)

    def next_key(self, key):
        return int.from_bytes(self._call(bpf_map_get_next_key, key, out=4), "little")


def errno_of(fn, *args):
    try:
        fn(*args)
    except BpfError as e:
        return e.errno
    return 0


class Program:
    """Calls helper 25 as a program on ``host.cpu`` would, with its data on a scratch stack."""

    def __init__(self, host, umap):
        self.host, self.map = host, umap
        self.helpers = init_helper_functions(host)

    def output(self, cpu, flags, data=b"", map_addr=None):
        self.host.cpu = cpu
        ptr = scratch(self.host, data, 1)
        r0 = self.helpers[BpfFuncId.BPF_FUNC_perf_event_output](
            0x1000, map_addr or self.map.addr, flags & U64, ptr, len(data)
        )
        return (U64 - r0 + 1) if r0 >> 63 else r0  # a negative errno as its errno


@pytest.fixture
def host():
    return TestHost(ncpus=4, seed=2)


def perf_map(host, entries=4, flags=0):
    return create_map(host, PEA, value_size=4, max_entries=entries, map_flags=flags)


# ---------------------------------------------------------------------------------------------
# Creation: fd_array_map_alloc_check, then array_map_alloc_check
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, why",
    [
        (dict(value_size=8), "values are 4-byte fds"),
        (dict(map_flags=BPF_F_RDONLY_PROG), "no program access flags for fd arrays"),
        (dict(map_flags=BPF_F_WRONLY_PROG), "no program access flags for fd arrays"),
        (dict(max_entries=0), "an array needs a slot"),
        (dict(key_size=8), "keys are u32 indices"),
        (dict(map_flags=BPF_F_MMAPABLE), "only ARRAY is mmap-able"),
    ],
)
def test_create_errors(host, kw, why):
    args = dict(value_size=4, max_entries=4)
    args.update(kw)
    with pytest.raises(BpfError) as e:
        create_map(host, PEA, **args)
    assert e.value.errno == errno.EINVAL, why


def test_create(host):
    m, _ = perf_map(host, flags=BPF_F_PRESERVE_ELEMS | BPF_F_RDONLY)
    assert m.sys_value_size == 4
    assert m.map_mem_usage() == ARRAY_VALUE_OFFSET + 4 * 8
    assert host.read(m.ops.slots, 32) == bytes(32)
    assert m.program_regions() == []


# ---------------------------------------------------------------------------------------------
# The syscall side
# ---------------------------------------------------------------------------------------------


def test_update_stores_an_entry_and_takes_a_reference(host):
    m, fd = perf_map(host)
    ev, efd, _ = open_event(host, 0)
    us = Syscalls(host, fd)
    us.update(2, efd)
    assert m.ops.event_at(2) is ev and ev.refs == 2
    ee = int.from_bytes(host.read(m.ops.slots + 16, 8), "little")
    assert int.from_bytes(host.read(ee, 8), "little") == ev.addr  # bpf_event_entry.event
    other, ofd, _ = open_event(host, 0, eid=2)
    us.update(2, ofd)  # replaces, dropping the old entry's reference
    assert m.ops.event_at(2) is other and ev.refs == 1 and other.refs == 2


@pytest.mark.parametrize(
    "key, which, flags, code",
    [
        (0, "event", BPF_NOEXIST, errno.EINVAL),  # fd arrays take BPF_ANY only
        (4, "event", BPF_ANY, errno.E2BIG),
        (0, "closed", BPF_ANY, errno.EBADF),
        (0, "map", BPF_ANY, errno.EBADF),  # perf_event_get: not a perf file
        (0, "inherit", BPF_ANY, errno.EOPNOTSUPP),  # perf_event_read_local refuses inherit
    ],
)
def test_update_errors(host, key, which, flags, code):
    m, fd = perf_map(host)
    fds = {
        "event": open_event(host, 0)[1],
        "closed": 99,
        "map": fd,
        "inherit": open_event(host, 0, flags=1 << 1, pages=None)[1],
    }
    assert errno_of(Syscalls(host, fd).update, key, fds[which], flags) == code
    assert m.ops.entries == {}


def test_other_event_kinds_go_in(host):
    """The map takes any event perf_event_read_local does not refuse with EOPNOTSUPP (a CPU
    clock, a BPF output event on another CPU): it is the helper that wants BPF_OUTPUT."""
    m, fd = perf_map(host)
    us = Syscalls(host, fd)
    us.update(0, open_event(host, 0, config=PERF_COUNT_SW_CPU_CLOCK, pages=None)[1])
    us.update(1, open_event(host, 3, pages=None)[1])
    assert sorted(m.ops.entries) == [0, 1]


def test_lookup_is_not_supported(host):
    """perf event arrays have no map_fd_sys_lookup_elem: ENOTSUPP, filled or not, in range or
    not; programs cannot look up either."""
    m, fd = perf_map(host)
    us = Syscalls(host, fd)
    us.update(0, open_event(host, 0)[1])
    assert errno_of(us.lookup, 0) == ENOTSUPP
    assert errno_of(us.lookup, 9) == ENOTSUPP
    lookup = init_helper_functions(host)[BpfFuncId.BPF_FUNC_map_lookup_elem]
    assert lookup(m.addr, scratch(host, u32(0)), 0, 0, 0) == 0


def test_delete(host):
    m, fd = perf_map(host)
    ev, efd, _ = open_event(host, 0)
    us = Syscalls(host, fd)
    assert errno_of(us.delete, 1) == errno.ENOENT
    assert errno_of(us.delete, 4) == errno.E2BIG
    us.update(1, efd)
    us.delete(1)
    assert m.ops.entries == {} and ev.refs == 1
    assert host.read(m.ops.slots + 8, 8) == bytes(8)
    assert errno_of(us.delete, 1) == errno.ENOENT


def test_get_next_key_walks_every_index(host):
    m, fd = perf_map(host, entries=3)
    us = Syscalls(host, fd)
    assert [us.next_key(None), us.next_key(0), us.next_key(1), us.next_key(7)] == [0, 1, 2, 0]
    assert errno_of(us.next_key, 2) == errno.ENOENT


def test_operations_the_family_lacks(host):
    m, fd = perf_map(host)
    assert errno_of(drive, m.ops.update_elem(u32(0), u32(0), 0), host) == ENOTSUPP
    assert errno_of(m.map_mmap, 0, PAGE_SIZE, False) == ENOTSUPP
    us = Syscalls(host, fd)
    code = errno_of(us._call, bpf_map_lookup_and_delete_elem, 0, b"", 0, 4)
    assert code == ENOTSUPP
    for_each = init_helper_functions(host)[BpfFuncId.BPF_FUNC_for_each_map_elem]
    assert for_each(m.addr, 0x40, 0, 0, 0) == -errno.EINVAL & U64


# ---------------------------------------------------------------------------------------------
# Release of a map file, BPF_F_PRESERVE_ELEMS, freeing
# ---------------------------------------------------------------------------------------------


def test_release_removes_what_that_file_inserted(host):
    """perf_event_fd_array_release: closing a map file deletes the entries inserted through it;
    entries inserted through another file of the same map stay."""
    m, _ = perf_map(host)
    a, b = object(), object()
    events = [open_event(host, cpu)[:2] for cpu in range(3)]
    for i, (_, efd) in enumerate(events):
        drive(m.ops.sys_update_elem(u32(i), u32(efd), BPF_ANY, map_file=a if i < 2 else b), host)
    assert drive(m.ops.map_release(a), host) == 2
    assert sorted(m.ops.entries) == [2]
    assert [ev.refs for ev, _ in events] == [1, 1, 2]
    prog = Program(host, m)
    assert prog.output(0, BPF_F_CURRENT_CPU, b"x") == errno.ENOENT  # libbpf closed too early
    assert prog.output(2, BPF_F_CURRENT_CPU, b"x") == 0


def test_preserve_elems_keeps_entries_until_the_map_goes(host):
    m, _ = perf_map(host, flags=BPF_F_PRESERVE_ELEMS)
    a = object()
    ev, efd, _ = open_event(host, 0)
    drive(m.ops.sys_update_elem(u32(0), u32(efd), BPF_ANY, map_file=a), host)
    assert drive(m.ops.map_release(a), host) == 0
    assert Program(host, m).output(0, BPF_F_CURRENT_CPU, b"x") == 0
    live = host.kmalloc_live()
    m.free()  # perf_event_fd_array_map_free clears a PRESERVE_ELEMS map
    assert ev.refs == 1
    assert host.kmalloc_live() == live - 2  # the entry and the map


# ---------------------------------------------------------------------------------------------
# bpf_perf_event_output
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def filled(host):
    """A 4-slot map: slots 0 and 1 hold BPF output events on CPUs 0 and 1 (mapped), slot 2 a
    CPU-clock event on CPU 2, slot 3 stays empty."""
    m, fd = perf_map(host)
    us = Syscalls(host, fd)
    e0, fd0, c0 = open_event(host, 0, eid=10)
    e1, fd1, c1 = open_event(host, 1, eid=11)
    us.update(0, fd0)
    us.update(1, fd1)
    us.update(2, open_event(host, 2, config=PERF_COUNT_SW_CPU_CLOCK, pages=None)[1])
    return m, Program(host, m), (e0, c0), (e1, c1)


def test_output_to_this_cpu(host, filled):
    m, prog, (e0, c0), (e1, c1) = filled
    assert prog.output(1, BPF_F_CURRENT_CPU, b"hi there") == 0
    assert prog.output(0, 0, b"abc") == 0  # an explicit index naming this CPU's slot
    assert c1.consume() == [("sample", b"hi there" + bytes(4))]
    assert c0.consume() == [("sample", b"abc" + bytes(1))]


@pytest.mark.parametrize(
    "cpu, flags, code",
    [
        (0, 1 << 32, errno.EINVAL),  # any bit beyond the index
        (0, BPF_F_CTXLEN_MASK, errno.EINVAL),  # ctx length is for the skb/xdp variants only
        (0, 4, errno.E2BIG),  # index beyond max_entries
        (0, 3, errno.ENOENT),  # an empty slot
        (3, BPF_F_CURRENT_CPU, errno.ENOENT),  # CPU 3's slot is empty
        (2, BPF_F_CURRENT_CPU, errno.EINVAL),  # a CPU clock is no BPF output event
        (0, 1, errno.EOPNOTSUPP),  # slot 1's event runs on CPU 1, not on CPU 0
    ],
)
def test_output_errors(host, filled, cpu, flags, code):
    m, prog, (e0, c0), (e1, c1) = filled
    assert prog.output(cpu, flags, b"data") == code
    assert c0.consume() == [] and c1.consume() == []


def test_current_cpu_beyond_the_map(host):
    m, _ = perf_map(host, entries=2)
    assert Program(host, m).output(3, BPF_F_CURRENT_CPU, b"x") == errno.E2BIG


def test_output_needs_a_perf_event_array(host, filled):
    other, _ = create_map(host, "array")
    assert filled[1].output(0, 0, b"x", map_addr=other.addr) == errno.EINVAL


def test_disabled_event_refuses_output(host, filled):
    """A disabled event is not running (oncpu -1), so the helper answers EOPNOTSUPP before it
    looks at the ring; enabling it again lets output through."""
    m, prog, (e0, c0), _ = filled
    e0.ioctl(PERF_EVENT_IOC_DISABLE)
    assert prog.output(0, BPF_F_CURRENT_CPU, b"x") == errno.EOPNOTSUPP
    assert e0.lost_samples == 0
    e0.ioctl(PERF_EVENT_IOC_ENABLE)
    assert prog.output(0, BPF_F_CURRENT_CPU, b"x") == 0


def test_task_bound_event_only_while_its_task_runs(host):
    m, fd = perf_map(host)
    ev, efd, _ = open_event(host, -1, pid=4242)
    Syscalls(host, fd).update(1, efd)
    prog = Program(host, m)
    assert prog.output(1, 1, b"x") == errno.EOPNOTSUPP
    ev.set_task_cpu(1)
    assert prog.output(1, 1, b"x") == 0


def test_unmapped_event_and_full_ring(host):
    m, fd = perf_map(host)
    us = Syscalls(host, fd)
    ev, efd, _ = open_event(host, 0, pages=None)
    us.update(0, efd)
    prog = Program(host, m)
    assert prog.output(0, 0, b"x") == errno.ENOSPC
    ev.do_mmap(0, 2 * PAGE_SIZE, True)
    assert prog.output(0, 0, bytes(4060)) == 0
    assert prog.output(0, 0, bytes(12)) == errno.ENOSPC
    assert ev.lost_samples == 1


def test_oversized_output_is_refused(host, filled):
    m, prog, _, _ = filled
    assert prog.output(0, 0, bytes(0x10000)) == errno.E2BIG


def test_empty_output(host, filled):
    m, prog, (e0, c0), _ = filled
    assert prog.output(0, 0, b"") == 0
    assert c0.consume() == [("sample", bytes(4))]


def test_helper_requests(host, filled):
    """The helper's traffic, in order: max_entries, the slot, the entry, the event's type and
    oncpu, the program's data, then the event's output (see test_perf); no lock anywhere."""
    m, _, (e0, _), _ = filled
    host.cpu = 0
    data = scratch(host, b"12345678")
    gen = request_helpers(host)[BpfFuncId.BPF_FUNC_perf_event_output](0, m.addr, 0, data, 8)
    reqs = []
    try:
        req = next(gen)
        while True:
            reqs.append(req)
            req = gen.send(None)
    except StopIteration as done:
        assert done.value == 0
    ee = m.ops.entries[0].addr
    assert reqs[:6] == [
        Touch(m.addr + 36, 4),
        Touch(m.ops.slots, 8),
        Touch(ee, 8),
        Touch(e0.addr, 16),
        Touch(e0.addr + 64, 8),
        Touch(data, 8),
    ]
    assert not any(isinstance(r, (Acquire, Release)) for r in reqs)
    assert [r.kind for r in reqs if isinstance(r, Work)] == [
        "copy_bytes",
        "copy_bytes",
        "perf_wakeup",
    ]
    assert sum(r.units for r in reqs if isinstance(r, Work) and r.kind == "copy_bytes") == 20


# ---------------------------------------------------------------------------------------------
# A random walk against a model
# ---------------------------------------------------------------------------------------------

DATA_SIZE = PAGE_SIZE


class PerfModel(RuleBasedStateMachine):
    """A 3-slot map on a 2-CPU host, events on CPUs 0 and 1 (mapped, one data page each), a CPU
    1 event never mapped and a dummy software event; random updates, deletes, releases,
    enable/disable, outputs from either CPU and consumption, against a model of Linux's rules:
    slots, event state, and each ring's head, tail, lost count and expected records."""

    @initialize(preserve=st.booleans())
    def make(self, preserve):
        self.host = h = TestHost(ncpus=2, seed=5)
        self.preserve = preserve
        self.map, fd = perf_map(h, entries=3, flags=BPF_F_PRESERVE_ELEMS if preserve else 0)
        self.events = {}
        for name, cpu, config, pages in [
            ("e0", 0, PERF_COUNT_SW_BPF_OUTPUT, 1),
            ("e1", 1, PERF_COUNT_SW_BPF_OUTPUT, 1),
            ("nomap", 1, PERF_COUNT_SW_BPF_OUTPUT, None),
            ("clock", 0, PERF_COUNT_SW_CPU_CLOCK, None),
        ]:
            ev, efd, cons = open_event(h, cpu, config=config, pages=pages)
            self.events[name] = (ev, efd, cons)
        self.prog = Program(h, self.map)
        self.slots = [None, None, None]  # (event name, file)
        for index, name in enumerate(["e0", "e1"]):  # as perf_buffer__new leaves the map
            self.update(index, name, "A")
        self.enabled = {name: True for name in self.events}
        self.rings = {n: dict(head=0, tail=0, lost=0, out=[]) for n in ("e0", "e1")}
        self.counter = 0

    @rule(
        index=st.integers(0, 3),
        name=st.sampled_from(["e0", "e1", "nomap", "clock"]),
        file=st.sampled_from("AB"),
    )
    def update(self, index, name, file):
        ev, efd, _ = self.events[name]
        code = errno_of(
            drive, self.map.ops.sys_update_elem(u32(index), u32(efd), 0, file), self.host
        )
        if index >= 3:
            assert code == errno.E2BIG
        else:
            assert code == 0
            self.slots[index] = (name, file)

    @rule(index=st.integers(0, 3))
    def delete(self, index):
        code = errno_of(drive, self.map.ops.delete_elem(u32(index)), self.host)
        if index >= 3:
            assert code == errno.E2BIG
        elif self.slots[index] is None:
            assert code == errno.ENOENT
        else:
            assert code == 0
            self.slots[index] = None

    @rule(file=st.sampled_from("AB"))
    def release(self, file):
        drive(self.map.ops.map_release(file), self.host)
        if not self.preserve:
            self.slots = [s if s is None or s[1] != file else None for s in self.slots]

    @rule(name=st.sampled_from(["e0", "e1"]), on=st.booleans())
    def toggle(self, name, on):
        self.events[name][0].ioctl(PERF_EVENT_IOC_ENABLE if on else PERF_EVENT_IOC_DISABLE)
        self.enabled[name] = on

    @rule(
        cpu=st.integers(0, 1),
        how=st.sampled_from(["current", "current", 0, 1, 2, 3, "bad"]),
        # 1012 makes 1024-byte records: the fourth meets the one-byte-free rule exactly
        size=st.one_of(st.sampled_from([0, 5, 1012, 1012, 2036]), st.integers(0, 2000)),
    )
    def output(self, cpu, how, size):
        self.counter += 1
        payload = bytes([self.counter & 0xFF]) * size
        flags = {"current": BPF_F_CURRENT_CPU, "bad": 1 << 40}.get(how, how)
        code = self.prog.output(cpu, flags, payload)
        index = cpu if how == "current" else how
        if how == "bad":
            expect = errno.EINVAL
        elif index >= 3:
            expect = errno.E2BIG
        elif self.slots[index] is None:
            expect = errno.ENOENT
        else:
            name = self.slots[index][0]
            ev = self.events[name][0]
            if name == "clock":
                expect = errno.EINVAL
            elif not self.enabled[name] or ev.cpu != cpu:
                expect = errno.EOPNOTSUPP
            elif name == "nomap":
                expect = errno.ENOSPC
            else:
                expect = self._ring_output(self.rings[name], payload)
        assert code == expect

    def _ring_output(self, ring, payload):
        raw = (len(payload) + 4 + 7) // 8 * 8 - 4
        size = 8 + 4 + raw + (24 if ring["lost"] else 0)
        if circ_space(ring["head"], ring["tail"], DATA_SIZE) < size:
            ring["lost"] += 1
            return errno.ENOSPC
        if ring["lost"]:
            ring["out"].append(("lost", ring["lost"]))
            ring["lost"] = 0
        ring["out"].append(("sample", payload, raw))
        ring["head"] += size
        return 0

    @rule(name=st.sampled_from(["e0", "e1"]))
    def consume(self, name):
        got = self.events[name][2].consume()
        ring = self.rings[name]
        assert len(got) == len(ring["out"])
        for (kind, value), want in zip(got, ring["out"], strict=True):
            assert kind == want[0]
            if kind == "lost":
                assert value == want[1]
            else:
                assert len(value) == want[2] and value[: len(want[1])] == want[1]
        ring["out"] = []
        ring["tail"] = ring["head"]

    @invariant()
    def references_follow_the_slots(self):
        if not hasattr(self, "map"):
            return
        for name, (ev, _, _) in self.events.items():
            held = sum(1 for s in self.slots if s is not None and s[0] == name)
            assert ev.refs == 1 + held
        assert [self.map.ops.event_at(i) for i in range(3)] == [
            None if s is None else self.events[s[0]][0] for s in self.slots
        ]


TestPerfModel = PerfModel.TestCase
