"""BPF_MAP_TYPE_QUEUE and BPF_MAP_TYPE_STACK, as kernel/bpf/queue_stack_maps.c (v6.6) and
Documentation/bpf/map_queue_stack.rst define them: program-side push/pop/peek (helpers 87-89),
the syscall side (lookup = peek, update = push, lookup_and_delete = pop), and the lock and
memory traffic of each operation."""

import errno
from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kbpf.errors import BpfError
from kbpf.helper import init_helper_functions
from kbpf.host import Acquire, Release, TaskInfo, Touch, Work, drive, recorded
from kbpf.linux_bpf import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY_PROG,
    BPF_NOEXIST,
    BpfMapElemAttr,
)
from kbpf.map import (
    bpf_map_delete_elem,
    bpf_map_get_next_key,
    bpf_map_lookup_and_delete_elem,
    bpf_map_lookup_elem,
    bpf_map_update_elem,
)
from kbpf.map.queue_stack import (
    KMALLOC_MAX_SIZE,
    QS_ELEMENTS_OFFSET,
    QS_HEAD_OFFSET,
    QS_LOCK_OFFSET,
    QueueMap,
)
from tests.kbpf.testhost import TestHost, create_map, scratch

QUEUE, STACK = "queue", "stack"
U64 = (1 << 64) - 1


def val(n: int, size: int = 8) -> bytes:
    return n.to_bytes(size, "little")


def fails(errno_, op, host):
    with pytest.raises(BpfError) as e:
        drive(op, host)
    assert e.value.errno == errno_, str(e.value)
    return e.value


def push(m, host, n, flags=BPF_ANY, size=8):
    drive(m.push_elem(val(n, size), flags), host)


def pop(m, host):
    return int.from_bytes(drive(m.pop_elem(), host), "little")


@pytest.fixture
def host():
    return TestHost(ncpus=2, seed=3)


def qmap(host, kind, max_entries=3, value_size=8, **kw):
    m, fd = create_map(host, kind, key_size=0, value_size=value_size, max_entries=max_entries, **kw)
    return m, fd


# ---------------------------------------------------------------------------------------------
# Creation: queue_stack_map_alloc_check
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [QUEUE, STACK])
@pytest.mark.parametrize(
    "kw, code, why",
    [
        (dict(max_entries=0), errno.EINVAL, "a queue holds at least one element"),
        (dict(key_size=4), errno.EINVAL, "queues and stacks have no keys"),
        (dict(value_size=0), errno.EINVAL, "values have a size"),
        (dict(map_flags=BPF_F_NO_PREALLOC), errno.EINVAL, "only NUMA and access flags"),
        (dict(map_flags=BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG), errno.EINVAL, "access flags"),
        (dict(value_size=KMALLOC_MAX_SIZE + 1), errno.E2BIG, "beyond KMALLOC_MAX_SIZE"),
    ],
)
def test_alloc_check_errors(host, kind, kw, code, why):
    args = dict(key_size=0, value_size=8, max_entries=4) | kw
    with pytest.raises(BpfError) as e:
        create_map(host, kind, **args)
    assert e.value.errno == code, why


@pytest.mark.parametrize("flags", [BPF_F_NUMA_NODE, BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG])
def test_accepted_create_flags(host, flags):
    m, _ = qmap(host, QUEUE, map_flags=flags)
    assert isinstance(m.ops, QueueMap)


def test_key_size_error_names_the_expected_size(host):
    with pytest.raises(BpfError, match="expected 0"):
        create_map(host, STACK, key_size=4, value_size=8, max_entries=2)


def test_storage_is_max_entries_plus_one_packed_slots(host):
    """Slots are ``value_size`` apart (no rounding to 8), and there is one more than
    ``max_entries`` so that full and empty differ."""
    m, _ = qmap(host, QUEUE, max_entries=3, value_size=5)
    ops = m.ops
    assert ops.elements == m.addr + QS_ELEMENTS_OFFSET and ops.size == 4
    for n in range(3):
        push(m, host, 0xA0 + n, size=5)
    assert [host.read(ops.elements + i * 5, 5) for i in range(3)] == [
        val(0xA0 + n, 5) for n in range(3)
    ]
    assert m.map_mem_usage() == QS_ELEMENTS_OFFSET + 4 * 5


# ---------------------------------------------------------------------------------------------
# Order, fullness, BPF_EXIST
# ---------------------------------------------------------------------------------------------


def test_queue_is_fifo_and_stack_is_lifo(host):
    q, _ = qmap(host, QUEUE, max_entries=4)
    s, _ = qmap(host, STACK, max_entries=4)
    for n in (1, 2, 3):
        push(q, host, n)
        push(s, host, n)
    assert int.from_bytes(drive(q.peek_elem(), host), "little") == 1
    assert int.from_bytes(drive(s.peek_elem(), host), "little") == 3
    assert [pop(q, host) for _ in range(3)] == [1, 2, 3]
    assert [pop(s, host) for _ in range(3)] == [3, 2, 1]


@pytest.mark.parametrize("kind", [QUEUE, STACK])
def test_full_map_refuses_a_push_with_e2big(host, kind):
    m, _ = qmap(host, kind, max_entries=3)
    for n in range(3):
        push(m, host, n)
    fails(errno.E2BIG, m.push_elem(val(9), BPF_ANY), host)
    assert len(m.ops) == 3


def test_bpf_exist_on_a_full_queue_drops_the_oldest(host):
    m, _ = qmap(host, QUEUE, max_entries=3)
    for n in (1, 2, 3):
        push(m, host, n)
    push(m, host, 4, BPF_EXIST)
    assert [pop(m, host) for _ in range(3)] == [2, 3, 4]


def test_bpf_exist_on_a_full_stack_drops_the_oldest_not_the_top(host):
    """Linux advances ``tail`` for both types: the bottom of the stack goes."""
    m, _ = qmap(host, STACK, max_entries=3)
    for n in (1, 2, 3):
        push(m, host, n)
    push(m, host, 4, BPF_EXIST)
    assert [pop(m, host) for _ in range(3)] == [4, 3, 2]
    fails(errno.ENOENT, m.pop_elem(), host)


@pytest.mark.parametrize("kind", [QUEUE, STACK])
def test_bpf_exist_on_a_map_with_room_is_a_plain_push(host, kind):
    m, _ = qmap(host, kind, max_entries=3)
    push(m, host, 7, BPF_EXIST)
    assert len(m.ops) == 1 and pop(m, host) == 7


@pytest.mark.parametrize("kind", [QUEUE, STACK])
@pytest.mark.parametrize("flags", [BPF_NOEXIST, BPF_NOEXIST | BPF_EXIST, BPF_F_LOCK, 8])
def test_push_flags_other_than_any_or_exist_are_einval(host, kind, flags):
    m, _ = qmap(host, kind)
    fails(errno.EINVAL, m.push_elem(val(1), flags), host)


@pytest.mark.parametrize("kind", [QUEUE, STACK])
def test_pop_and_peek_of_an_empty_map_are_enoent(host, kind):
    m, _ = qmap(host, kind)
    fails(errno.ENOENT, m.pop_elem(), host)
    fails(errno.ENOENT, m.peek_elem(), host)
    push(m, host, 1)
    pop(m, host)
    fails(errno.ENOENT, m.peek_elem(), host)


@pytest.mark.parametrize("kind", [QUEUE, STACK])
def test_keyed_operations(host, kind):
    """Lookup by key is NULL; update, delete and get_next_key are EINVAL."""
    m, _ = qmap(host, kind)
    push(m, host, 1)
    assert drive(m.lookup_elem(b""), host) == 0
    fails(errno.EINVAL, m.update_elem(b"", val(1), BPF_ANY), host)
    fails(errno.EINVAL, m.delete_elem(b""), host)
    fails(errno.EINVAL, m.get_next_key(None), host)


def test_head_and_tail_wrap_around_the_slots(host):
    m, _ = qmap(host, QUEUE, max_entries=2)
    out = []
    for n in range(10):
        push(m, host, n)
        if n % 2:
            out += [pop(m, host), pop(m, host)]
    assert out == list(range(10))
    ops = m.ops
    # head and tail are mirrored into their words
    raw = host.read(m.addr + QS_HEAD_OFFSET, 8)
    assert (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")) == (
        ops.head,
        ops.tail,
    )
    assert ops.head == ops.tail == 10 % 3


# ---------------------------------------------------------------------------------------------
# Locks and memory traffic
# ---------------------------------------------------------------------------------------------


def trace(op, host):
    """Run ``op`` through :func:`drive`, returning (result, the requests it made)."""
    seen: list = []
    return drive(recorded(op, seen), host), seen


def test_push_and_pop_take_the_map_lock_around_their_traffic(host):
    m, _ = qmap(host, STACK, max_entries=2, value_size=12)
    ops = m.ops
    lock = ops.lock
    assert lock.addr == m.addr + QS_LOCK_OFFSET
    _, reqs = trace(m.push_elem(bytes(12), BPF_ANY), host)
    assert reqs == [
        Acquire(lock),
        Touch(m.addr + QS_HEAD_OFFSET, 12),  # head, tail, size: is it full?
        Touch(ops.elements, 12, True),  # the value into slot head
        Work("copy_bytes", 12),
        Touch(m.addr + QS_HEAD_OFFSET, 8, True),  # head moves
        Release(lock),
    ]
    _, reqs = trace(m.peek_elem(), host)
    assert reqs == [
        Acquire(lock),
        Touch(m.addr + QS_HEAD_OFFSET, 12),
        Touch(ops.elements, 12),
        Work("copy_bytes", 12),
        Release(lock),
    ]
    _, reqs = trace(m.pop_elem(), host)
    assert reqs[-2:] == [Touch(m.addr + QS_HEAD_OFFSET, 8, True), Release(lock)]


def test_a_failing_operation_releases_the_lock(host):
    m, _ = qmap(host, QUEUE, max_entries=1)
    ops = m.ops
    with pytest.raises(BpfError):
        drive(m.pop_elem(), host)
    assert ops.lock.owner is None
    push(m, host, 1)
    with pytest.raises(BpfError):
        drive(m.push_elem(val(2), BPF_ANY), host)
    assert ops.lock.owner is None


# ---------------------------------------------------------------------------------------------
# Helpers 87-89
# ---------------------------------------------------------------------------------------------


def test_helpers_push_pop_peek_through_program_memory(host):
    m, _ = qmap(host, QUEUE, max_entries=2)
    helpers = init_helper_functions(host)
    src, dst = scratch(host, val(0x1234)), scratch(host, size=8)
    assert helpers[87](m.addr, src, BPF_ANY, 0, 0) == 0
    assert helpers[89](m.addr, dst, 0, 0, 0) == 0 and host.read(dst, 8) == val(0x1234)
    host.write(dst, bytes(8))
    assert helpers[88](m.addr, dst, 0, 0, 0) == 0 and host.read(dst, 8) == val(0x1234)
    assert helpers[88](m.addr, dst, 0, 0, 0) == -errno.ENOENT & U64
    assert helpers[87](m.addr, src, BPF_NOEXIST, 0, 0) == -errno.EINVAL & U64
    helpers[87](m.addr, src, BPF_ANY, 0, 0)
    helpers[87](m.addr, src, BPF_ANY, 0, 0)
    assert helpers[87](m.addr, src, BPF_ANY, 0, 0) == -errno.E2BIG & U64


def test_push_to_a_rdonly_prog_map_is_eacces(host):
    m, _ = qmap(host, STACK, map_flags=BPF_F_RDONLY_PROG)
    helpers = init_helper_functions(host)
    assert helpers[87](m.addr, scratch(host, val(1)), BPF_ANY, 0, 0) == -errno.EACCES & U64


# ---------------------------------------------------------------------------------------------
# Syscall side
# ---------------------------------------------------------------------------------------------


class UserSpace:
    """A process calling bpf(2) on a queue or stack: no key (NULL), values in its memory."""

    def __init__(self, host: TestHost, fd: int, value_size: int = 8):
        self.host, self.fd, self.size = host, fd, value_size
        host.tasks[0] = TaskInfo(1000, 1000, "tester")

    def _call(self, fn, value=b"", flags=0, key=0, out=False):
        h = self.host
        vp = h.map_user(value or bytes(self.size))
        drive(fn(h, BpfMapElemAttr(self.fd, key, vp, flags)), h)
        return h.copy_from_user(vp, self.size) if out else None

    def update(self, value, flags=BPF_ANY, key=0):
        self._call(bpf_map_update_elem, value, flags, key)

    def lookup(self, flags=0):
        return self._call(bpf_map_lookup_elem, flags=flags, out=True)

    def lookup_and_delete(self, flags=0):
        return self._call(bpf_map_lookup_and_delete_elem, flags=flags, out=True)

    def delete(self):
        self._call(bpf_map_delete_elem)

    def next_key(self):
        self._call(bpf_map_get_next_key)


def sys_fails(errno_, fn, *args, **kw):
    with pytest.raises(BpfError) as e:
        fn(*args, **kw)
    assert e.value.errno == errno_, str(e.value)


def test_syscall_lookup_peeks_update_pushes_lookup_and_delete_pops(host):
    m, fd = qmap(host, QUEUE, max_entries=2)
    us = UserSpace(host, fd)
    sys_fails(errno.ENOENT, us.lookup)
    us.update(val(5))
    us.update(val(6))
    assert us.lookup() == val(5) and len(m.ops) == 2  # peek leaves it
    sys_fails(errno.E2BIG, us.update, val(7))
    us.update(val(7), BPF_EXIST)  # drops 5
    assert us.lookup_and_delete() == val(6)
    assert us.lookup_and_delete() == val(7)
    sys_fails(errno.ENOENT, us.lookup_and_delete)


def test_syscall_errors(host):
    m, fd = qmap(host, STACK, max_entries=2)
    us = UserSpace(host, fd)
    us.update(val(1))
    sys_fails(errno.EINVAL, us.update, val(2), BPF_NOEXIST)
    sys_fails(errno.EINVAL, us.update, val(2), BPF_F_LOCK)
    sys_fails(errno.EINVAL, us.lookup_and_delete, BPF_F_LOCK)  # queues take no flags
    sys_fails(errno.EINVAL, us.delete)
    sys_fails(errno.EINVAL, us.next_key)
    sys_fails(errno.EINVAL, us.update, val(2), BPF_ANY, host.map_user(b"k"))  # a key given
    assert us.lookup() == val(1) and len(m.ops) == 1


# ---------------------------------------------------------------------------------------------
# A model: a bounded deque
# ---------------------------------------------------------------------------------------------


class QueueStackMachine(RuleBasedStateMachine):
    """Random pushes (with and without BPF_EXIST), pops and peeks against a deque that drops
    its oldest element on an overwriting push, for both map types."""

    @initialize(
        kind=st.sampled_from([QUEUE, STACK]),
        max_entries=st.integers(1, 5),
        value_size=st.integers(1, 12),
    )
    def setup(self, kind, max_entries, value_size):
        self.host = TestHost(ncpus=1)
        self.kind, self.max, self.vs = kind, max_entries, value_size
        self.map, _ = qmap(self.host, kind, max_entries=max_entries, value_size=value_size)
        self.model: deque[bytes] = deque()
        self.counter = 0

    def _next_value(self) -> bytes:
        self.counter += 1
        return (self.counter * 0x9E3779B1 & (1 << 96) - 1).to_bytes(12, "little")[: self.vs]

    def _expect(self, op, code):
        with pytest.raises(BpfError) as e:
            drive(op, self.host)
        assert e.value.errno == code

    @rule(exist=st.booleans())
    def push(self, exist):
        value = self._next_value()
        op = self.map.push_elem(value, BPF_EXIST if exist else BPF_ANY)
        if len(self.model) == self.max and not exist:
            self._expect(op, errno.E2BIG)
            return
        drive(op, self.host)
        if len(self.model) == self.max:
            self.model.popleft()  # the oldest, for the stack too
        self.model.append(value)

    def _next(self, remove):
        if not self.model:
            return None
        if self.kind == QUEUE:
            return self.model.popleft() if remove else self.model[0]
        return self.model.pop() if remove else self.model[-1]

    @rule()
    def pop(self):
        want = self._next(True)
        if want is None:
            self._expect(self.map.pop_elem(), errno.ENOENT)
        else:
            assert drive(self.map.pop_elem(), self.host) == want

    @rule()
    def peek(self):
        want = self._next(False)
        if want is None:
            self._expect(self.map.peek_elem(), errno.ENOENT)
        else:
            assert drive(self.map.peek_elem(), self.host) == want

    @invariant()
    def sizes_agree(self):
        assert len(self.map.ops) == len(self.model)
        assert self.map.ops.lock.owner is None


QueueStackMachine.TestCase.settings = settings(stateful_step_count=30)
test_queue_stack_against_a_deque = QueueStackMachine.TestCase


def test_pop_and_peek_on_an_empty_map_zero_the_programs_buffer(host):
    """__queue_map_get: an empty queue or stack memsets the destination before -ENOENT."""
    helpers = init_helper_functions(host)
    for kind in (QUEUE, STACK):
        m, _fd = qmap(host, kind, max_entries=4)
        dst = host.kmalloc(8)
        for helper in (88, 89):
            host.write(dst, b"\xff" * 8)
            assert helpers[helper](m.addr, dst, 0, 0, 0) == (-errno.ENOENT) & U64
            assert host.read(dst, 8) == bytes(8)
