"""BPF_MAP_TYPE_QUEUE and BPF_MAP_TYPE_STACK (kernel/bpf/queue_stack_maps.c at v6.6).

Both maps hold values without keys in one circular array of ``size = max_entries + 1`` slots,
``value_size`` bytes apart (no rounding: ``elements[index * value_size]``).  ``head`` is where
the next push writes, ``tail`` the oldest element; ``head == tail`` means empty and
``head + 1 == tail`` (modulo ``size``) full, which is why one slot more than ``max_entries`` is
allocated.  A queue pops at ``tail`` (FIFO), a stack at ``head - 1`` (LIFO).

Layout, as ``queue_stack_map_alloc`` makes it: one allocation holding ``struct
bpf_queue_stack``: the ``struct bpf_map`` header (the map's address), the raw spinlock, ``head``,
``tail`` and ``size`` (16 bytes: :data:`QS_LOCK_OFFSET` …), then ``elements`` 8-byte aligned at
:data:`QS_ELEMENTS_OFFSET`.  ``head``/``tail`` are kept in Python for speed and mirrored into
their words so the memory reads as the kernel's would; every operation touches them.

Every operation — program-side push/pop/peek and the syscall side alike — takes the map's one
``raw_spinlock_t`` (``raw_spin_lock_irqsave``).  v6.6 uses ``raw_spin_trylock_irqsave`` and
returns EBUSY when called in NMI context; kbpf programs never run in NMI, so only the normal path
is modelled.

A full map refuses a push with E2BIG unless the push says ``BPF_EXIST``, which first drops the
*oldest* element (advances ``tail``) — for the stack too, where the oldest is the bottom of the
stack, not the top.  kbpf-basic removes the newest from a full stack and ignores ``BPF_EXIST`` for
the queue; kbpf follows Linux (docs/deviations.md).

The syscall side maps onto these operations as Linux does: LOOKUP_ELEM peeks, UPDATE_ELEM
pushes with the given flags, LOOKUP_AND_DELETE_ELEM pops (``kbpf.map.syscall``); lookup by key
returns NULL, update/delete by key and GET_NEXT_KEY fail with EINVAL.
"""

from __future__ import annotations

import errno
from typing import ClassVar

from kbpf.errors import BpfError
from kbpf.host import Acquire, Lock, Op, Release, Touch, Work
from kbpf.linux_bpf import (
    BPF_EXIST,
    BPF_F_ACCESS_MASK,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY_PROG,
    BPF_NOEXIST,
)
from kbpf.map.meta import BpfMapMeta
from kbpf.map.ops import BPF_MAP_STRUCT_SIZE, BpfMapOps

#: ``QUEUE_STACK_CREATE_FLAG_MASK``.
QUEUE_STACK_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
#: ``KMALLOC_MAX_SIZE`` on x86-64 (``1 << (MAX_ORDER + PAGE_SHIFT)`` = 4 MiB): larger values
#: could not be copied to user space, so Linux refuses them with E2BIG.
KMALLOC_MAX_SIZE = 1 << 22
#: Offsets inside ``struct bpf_queue_stack``: the lock word, then ``u32 head, tail, size``.
QS_LOCK_OFFSET = BPF_MAP_STRUCT_SIZE
QS_HEAD_OFFSET = QS_LOCK_OFFSET + 4
QS_TAIL_OFFSET = QS_LOCK_OFFSET + 8
QS_SIZE_OFFSET = QS_LOCK_OFFSET + 12
#: ``offsetof(struct bpf_queue_stack, elements)`` = ``sizeof(struct bpf_queue_stack)``.
QS_ELEMENTS_OFFSET = QS_LOCK_OFFSET + 16


class QueueMap(BpfMapOps):
    """BPF_MAP_TYPE_QUEUE (``queue_map_ops``); the shared code of STACK
    (``queue_stack_map_*``).  Subclasses choose where ``pop``/``peek`` read."""

    kind: ClassVar[str] = "queue"

    # -- allocation ---------------------------------------------------------------------------
    @classmethod
    def alloc_check(cls, meta: BpfMapMeta, percpu_ops) -> None:
        """``queue_stack_map_alloc_check`` (kbpf runs as root, so ``bpf_capable()`` holds)."""
        if meta.max_entries == 0:
            raise BpfError(errno.EINVAL, f"{cls.kind} max_entries must be at least 1")
        if meta.key_size != 0:
            raise BpfError(errno.EINVAL, f"{cls.kind} key_size {meta.key_size}, expected 0")
        if meta.value_size == 0:
            raise BpfError(errno.EINVAL, f"{cls.kind} value_size must be at least 1")
        flags = meta.map_flags
        if flags & ~QUEUE_STACK_CREATE_FLAG_MASK:
            raise BpfError(
                errno.EINVAL,
                f"map_flags {flags & ~QUEUE_STACK_CREATE_FLAG_MASK:#x} not valid for a {cls.kind}",
            )
        if flags & BPF_F_RDONLY_PROG and flags & BPF_F_WRONLY_PROG:
            raise BpfError(errno.EINVAL, "BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG together")
        if meta.value_size > KMALLOC_MAX_SIZE:
            raise BpfError(
                errno.E2BIG,
                f"value_size {meta.value_size} exceeds KMALLOC_MAX_SIZE ({KMALLOC_MAX_SIZE})",
            )

    def __init__(self, meta, host, percpu_ops, poll_waker=None):
        """``queue_stack_map_alloc``: one zeroed block for the header and ``max_entries + 1``
        slots."""
        super().__init__(meta, host, percpu_ops, poll_waker)
        self.value_size = meta.value_size
        self.size = meta.max_entries + 1
        self.map_addr = host.kmalloc(QS_ELEMENTS_OFFSET + self.size * self.value_size, 64)
        self.elements = self.map_addr + QS_ELEMENTS_OFFSET
        label = meta.name or self.kind
        #: ``qs->lock``: the one raw spinlock every operation takes.
        self.lock = Lock(self.map_addr + QS_LOCK_OFFSET, f"{self.kind} {label}")
        self.head = 0
        self.tail = 0
        host.write(self.map_addr + QS_SIZE_OFFSET, self.size.to_bytes(4, "little"))

    # -- the circular array ---------------------------------------------------------------------
    def is_empty(self) -> bool:
        """``queue_stack_map_is_empty``."""
        return self.head == self.tail

    def is_full(self) -> bool:
        """``queue_stack_map_is_full``: one more push would make ``head`` meet ``tail``."""
        head = self.head + 1
        if head >= self.size:
            head = 0
        return head == self.tail

    def __len__(self) -> int:
        """Elements held (not a kernel operation: for hosts and tests)."""
        return (self.head - self.tail) % self.size

    def _store_positions(self) -> Op:
        """Write ``head`` and ``tail`` back to their words (one line with the lock)."""
        yield Touch(self.map_addr + QS_HEAD_OFFSET, 8, True)
        self.host.write(
            self.map_addr + QS_HEAD_OFFSET,
            self.head.to_bytes(4, "little") + self.tail.to_bytes(4, "little"),
        )

    def _read_slot(self, index: int) -> Op:
        addr = self.elements + index * self.value_size
        size = self.value_size
        yield Touch(addr, size)
        yield Work("copy_bytes", size)
        return self.host.read(addr, size)

    def _get_index(self) -> int:
        """The slot ``pop``/``peek`` reads (the map is not empty): the queue's oldest."""
        return self.tail

    def _after_pop(self, index: int) -> None:
        """Remove the element at ``index`` (``__queue_map_get`` with ``delete``)."""
        self.tail += 1
        if self.tail >= self.size:
            self.tail = 0

    def _get(self, delete: bool) -> Op:
        """``__queue_map_get`` / ``__stack_map_get``: copy the element out under the lock; an
        empty map is ENOENT (Linux also zeroes the caller's buffer)."""
        yield Acquire(self.lock)
        yield Touch(self.map_addr + QS_HEAD_OFFSET, 12)  # head, tail, size
        if self.is_empty():
            yield Release(self.lock)
            raise BpfError(errno.ENOENT, f"{self.kind} is empty")
        index = self._get_index()
        value = yield from self._read_slot(index)
        if delete:
            self._after_pop(index)
            yield from self._store_positions()
        yield Release(self.lock)
        return value

    # -- operations -----------------------------------------------------------------------------
    def push_elem(self, value: bytes, flags: int) -> Op:
        """``queue_stack_map_push_elem``: BPF_NOEXIST or flags above BPF_EXIST -> EINVAL; full
        -> E2BIG, unless BPF_EXIST, which drops the oldest element to make room."""
        if flags & BPF_NOEXIST or flags > BPF_EXIST:
            raise BpfError(errno.EINVAL, f"push flags {flags:#x}: only BPF_ANY or BPF_EXIST")
        replace = bool(flags & BPF_EXIST)
        yield Acquire(self.lock)
        yield Touch(self.map_addr + QS_HEAD_OFFSET, 12)
        if self.is_full():
            if not replace:
                yield Release(self.lock)
                raise BpfError(errno.E2BIG, f"{self.kind} is full ({self.size - 1} elements)")
            self.tail += 1  # overwrite the oldest element
            if self.tail >= self.size:
                self.tail = 0
        size = self.value_size
        dst = self.elements + self.head * size
        yield Touch(dst, size, True)
        yield Work("copy_bytes", size)
        self.host.write(dst, bytes(value[:size]).ljust(size, b"\0"))
        self.head += 1
        if self.head >= self.size:
            self.head = 0
        yield from self._store_positions()
        yield Release(self.lock)

    def pop_elem(self) -> Op:
        """Remove and return the next element: ENOENT when empty."""
        return (yield from self._get(True))

    def peek_elem(self) -> Op:
        """Return the next element without removing it: ENOENT when empty."""
        return (yield from self._get(False))

    def lookup_elem(self, key: bytes) -> Op:
        """``queue_stack_map_lookup_elem``: always NULL (elements are reached by peek)."""
        return 0
        yield

    def update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """``queue_stack_map_update_elem``: EINVAL (use push)."""
        raise BpfError(errno.EINVAL, f"a {self.kind} has no keys: use push")
        yield

    def delete_elem(self, key: bytes) -> Op:
        """``queue_stack_map_delete_elem``: EINVAL (use pop)."""
        raise BpfError(errno.EINVAL, f"a {self.kind} has no keys: use pop")
        yield

    def get_next_key(self, key: bytes | None) -> Op:
        """``queue_stack_map_get_next_key``: EINVAL."""
        raise BpfError(errno.EINVAL, f"a {self.kind} has no keys to iterate")
        yield

    def sys_lookup_elem(self, key: bytes, flags: int) -> Op:
        """BPF_MAP_LOOKUP_ELEM peeks (``bpf_map_copy_value``)."""
        return (yield from self.peek_elem())

    def sys_update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """BPF_MAP_UPDATE_ELEM pushes with the caller's flags (``bpf_map_update_value``)."""
        return (yield from self.push_elem(value, flags))

    # -- queries ------------------------------------------------------------------------------
    def map_mem_usage(self) -> int:
        """``queue_stack_map_mem_usage``: the structure plus ``max_entries + 1`` values."""
        return QS_ELEMENTS_OFFSET + self.size * self.value_size


class StackMap(QueueMap):
    """BPF_MAP_TYPE_STACK (``stack_map_ops``): pushes like the queue, pops and peeks the newest
    element (``head - 1``)."""

    kind: ClassVar[str] = "stack"

    def _get_index(self) -> int:
        index = self.head - 1
        if index < 0:  # the kernel's u32 wrap: index >= size
            index = self.size - 1
        return index

    def _after_pop(self, index: int) -> None:
        self.head = index
