"""QUEUE and STACK maps from a clang-compiled program (tests/progs/queue_stack.bpf.c).

``bpf_map_push_elem`` (87) appends a value; on a full map it fails with -E2BIG unless flags is
BPF_EXIST, which makes room by dropping the *oldest* element (for a stack too: the bottom one).
``bpf_map_pop_elem`` (88) removes and ``bpf_map_peek_elem`` (89) copies the next value: the
oldest for a QUEUE, the newest for a STACK; both give -ENOENT when the map is empty.  A push
with BPF_NOEXIST is -EINVAL.  The programs
return the helper's result and store the value popped or peeked in ``last``.
"""

from __future__ import annotations

import errno
import struct

import pytest

from kbpf.linux_bpf import BPF_ANY, BPF_EXIST, BPF_NOEXIST, BpfMapType
from sim import Machine

from .conftest import obj_path

QUEUE, STACK = 0, 1


def signed(r0: int) -> int:
    return r0 - (1 << 64) if r0 >= 1 << 63 else r0


class Prog:
    def __init__(self, kind: int):
        self.m = Machine(cpus=1)
        self.obj = self.m.load_object(obj_path("queue_stack"))
        self.kind = kind

    def call(self, name: str, value: int = 0, flags: int = BPF_ANY) -> int:
        ctx = struct.pack("<IIQ", self.kind, flags, value)
        return signed(self.m.run_program(self.obj.programs[name], ctx=ctx))

    def push(self, value: int, flags: int = BPF_ANY) -> int:
        return self.call("push", value, flags)

    def pop(self) -> tuple[int, int]:
        return self.call("pop"), self.last()

    def peek(self) -> tuple[int, int]:
        return self.call("peek"), self.last()

    def last(self) -> int:
        return struct.unpack("<Q", self.obj.maps["queue_st.bss"].lookup(bytes(4)))[0]


def test_declared_without_key():
    m = Machine(cpus=1)
    obj = m.load_object(obj_path("queue_stack"))
    q, s = obj.maps["queue"], obj.maps["stack"]
    assert (q.map_type, q.key_size, q.value_size, q.max_entries) == (
        BpfMapType.BPF_MAP_TYPE_QUEUE,
        0,
        8,
        3,
    )
    assert (s.map_type, s.key_size, s.value_size) == (BpfMapType.BPF_MAP_TYPE_STACK, 0, 8)


@pytest.mark.parametrize("kind", [QUEUE, STACK], ids=["queue", "stack"])
def test_empty_map_gives_enoent(kind):
    p = Prog(kind)
    assert p.pop() == (-errno.ENOENT, 0)
    assert p.peek() == (-errno.ENOENT, 0)


@pytest.mark.parametrize(
    "kind, order", [(QUEUE, [1, 2, 3]), (STACK, [3, 2, 1])], ids=["queue_fifo", "stack_lifo"]
)
def test_pop_order(kind, order):
    p = Prog(kind)
    assert [p.push(v) for v in (1, 2, 3)] == [0, 0, 0]
    assert p.peek() == (0, order[0])
    assert p.peek() == (0, order[0])  # peek does not remove
    assert [p.pop() for _ in range(3)] == [(0, v) for v in order]
    assert p.pop() == (-errno.ENOENT, 0)


@pytest.mark.parametrize(
    "kind, order", [(QUEUE, [2, 3, 4]), (STACK, [4, 3, 2])], ids=["queue", "stack"]
)
def test_full_push_fails_unless_bpf_exist_which_drops_the_oldest(kind, order):
    p = Prog(kind)
    for v in (1, 2, 3):
        p.push(v)
    assert p.push(4) == -errno.E2BIG
    assert p.push(4, BPF_NOEXIST) == -errno.EINVAL  # "no existing key" means nothing here
    assert p.push(4, BPF_EXIST) == 0  # 1, the oldest, is overwritten
    assert [p.pop()[1] for _ in range(3)] == order
    # User space sees the same map: it is empty now.
    handle = p.obj.maps["stack" if kind == STACK else "queue"]
    p.push(9)
    assert handle.peek() == struct.pack("<Q", 9)
