"""The map operations table and the map object a host holds (``struct bpf_map_ops`` / ``struct
bpf_map``; kbpf-basic's ``BpfMapCommonOps`` / ``UnifiedMap``).

A map family subclasses :class:`BpfMapOps` and overrides what it supports; every operation it
leaves out fails *centrally* with the errno Linux v6.6 gives for it (``ABSENT_ERRNO``), so no
family repeats "not supported" code.  Which errno that is follows where Linux meets the missing
operation:

* ``lookup_elem``/``update_elem``/``delete_elem``/``get_next_key``: ENOTSUPP, what maps that
  cannot do them return (``ringbuf_map_*_elem``);
* ``lookup_and_delete_elem``: ENOTSUPP (``map_lookup_and_delete_elem`` starts at -ENOTSUPP and
  only hash maps and queues change it);
* ``lookup_percpu_elem``, ``for_each_elem``, ``push/pop/peek_elem``, ``map_values_ptr_range``:
  EINVAL, the verifier's answer when a program uses them on a map that lacks them;
* ``map_mem_usage``: EINVAL (``map_create`` refuses a type without it);
* ``map_mmap``: ENOTSUPP (``bpf_map_mmap``).

The data operations are generators of :mod:`kbpf.host` requests (see ``ARCHITECTURE.md``, "The
shape of a map operation"): they yield ``Touch`` for the memory they read or write, ``Acquire``/
``Release`` where Linux takes a lock, ``Callback`` for ``for_each``, ``Work`` for byte copies, and
return their result.  Program-side ``lookup_elem`` returns an address (0 for NULL).  Metadata
queries (``map_values_ptr_range``, ``map_mem_usage``, ``map_mmap``, ``program_regions``,
``readable``/``writable``) are plain methods: nothing in the kernel prices them.

Keys and values arrive as ``bytes`` (the helper or syscall has read them from program or user
memory); the CPU comes from ``host.current_cpu_id()``.
"""

from __future__ import annotations

import errno
from typing import Any

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.host import KernelAuxiliaryOps, Lock, Op, PerCpuVariantsOps, PollWaker, Touch, Work
from kbpf.linux_bpf import (
    BPF_F_MMAPABLE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BpfMapType,
)
from kbpf.map.meta import BpfMapMeta

#: The errno an operation fails with when a map family does not implement it.
ABSENT_ERRNO: dict[str, int] = {
    "lookup_elem": ENOTSUPP,
    "update_elem": ENOTSUPP,
    "delete_elem": ENOTSUPP,
    "get_next_key": ENOTSUPP,
    "lookup_and_delete_elem": ENOTSUPP,
    "lookup_percpu_elem": errno.EINVAL,
    "for_each_elem": errno.EINVAL,
    "push_elem": errno.EINVAL,
    "pop_elem": errno.EINVAL,
    "peek_elem": errno.EINVAL,
    "map_values_ptr_range": errno.EINVAL,
    "map_mem_usage": errno.EINVAL,
    "map_mmap": ENOTSUPP,
}

#: ``sizeof(struct bpf_map)`` as kbpf lays it out: four cache lines [chosen: the order of the
#: x86-64 v6.x structure (about 250 bytes); not measured on a built kernel].
BPF_MAP_STRUCT_SIZE = 256
#: Where the per-map lock word of the ``locking = "kbpf"`` model sits inside the map header:
#: the start of the header's last cache line, away from the read-mostly fields.
MAP_LOCK_OFFSET = 192

PERCPU_MAP_TYPES = frozenset(
    {
        BpfMapType.BPF_MAP_TYPE_PERCPU_HASH,
        BpfMapType.BPF_MAP_TYPE_LRU_PERCPU_HASH,
        BpfMapType.BPF_MAP_TYPE_PERCPU_ARRAY,
        BpfMapType.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    }
)
#: Maps whose syscall-side values are file descriptors (``IS_FD_MAP``): 4-byte values.
FD_MAP_TYPES = frozenset(
    {
        BpfMapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY,
        BpfMapType.BPF_MAP_TYPE_CGROUP_ARRAY,
        BpfMapType.BPF_MAP_TYPE_ARRAY_OF_MAPS,
        BpfMapType.BPF_MAP_TYPE_PROG_ARRAY,
        BpfMapType.BPF_MAP_TYPE_HASH_OF_MAPS,
    }
)


def round_up(x: int, align: int) -> int:
    return (x + align - 1) // align * align


class BpfMapOps:
    """One map family's operations; construction is ``map_alloc``.

    ``alloc_check`` (a classmethod, run before anything is allocated) holds the family's
    attribute rules, as ``map_alloc_check`` does.  ``__init__`` allocates the map's memory from
    the host and sets ``map_addr``, the kernel address standing for ``struct bpf_map``.
    """

    def __init__(
        self,
        meta: BpfMapMeta,
        host: KernelAuxiliaryOps,
        percpu_ops: PerCpuVariantsOps,
        poll_waker: PollWaker | None = None,
    ):
        self.meta = meta
        self.host = host
        self.percpu_ops = percpu_ops
        self.poll_waker = poll_waker
        self.map_addr = 0

    # -- allocation ---------------------------------------------------------------------------
    @classmethod
    def alloc_check(cls, meta: BpfMapMeta, percpu_ops: PerCpuVariantsOps) -> None:
        """Reject attributes the family cannot take (``BpfError``); default: accept."""

    def alloc_map_struct(self, extra: int = 0) -> int:
        """kmalloc the ``struct bpf_map`` header (plus ``extra`` bytes of family data right
        after it) and return its address; families with their own layout call ``kmalloc``
        themselves."""
        return self.host.kmalloc(BPF_MAP_STRUCT_SIZE + extra, 64)

    def map_free(self) -> None:
        """Give the map's memory back (``map_free``).  The default frees the header."""
        if self.map_addr:
            self.host.kfree(self.map_addr)
            self.map_addr = 0

    @classmethod
    def implements(cls, op: str) -> bool:
        """Whether the family overrides ``op`` (e.g. ``"map_mem_usage"``)."""
        return getattr(cls, op) is not getattr(BpfMapOps, op)

    def _absent(self, op: str) -> BpfError:
        return BpfError(
            ABSENT_ERRNO[op],
            f"{self.meta.map_type.name} does not support {op.removesuffix('_elem')}",
        )

    # -- data operations (generators) -----------------------------------------------------------
    def lookup_elem(self, key: bytes) -> Op:
        """Program side (and syscall side unless ``sys_lookup_elem`` says otherwise): the
        value's kernel address, or 0."""
        raise self._absent("lookup_elem")
        yield  # makes this a generator

    def update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        raise self._absent("update_elem")
        yield

    def delete_elem(self, key: bytes) -> Op:
        raise self._absent("delete_elem")
        yield

    def for_each_elem(self, func: int, ctx: int, flags: int) -> Op:
        """Call the program's ``func(map, key, value, ctx, 0)`` per element (``Callback``);
        stop when it returns non-zero; return the number of elements visited."""
        raise self._absent("for_each_elem")
        yield

    def lookup_and_delete_elem(self, key: bytes, flags: int) -> Op:
        """Return the value bytes (syscall layout) and delete the element."""
        raise self._absent("lookup_and_delete_elem")
        yield

    def lookup_percpu_elem(self, key: bytes, cpu: int) -> Op:
        """CPU ``cpu``'s copy of the value: its address, or 0."""
        raise self._absent("lookup_percpu_elem")
        yield

    def get_next_key(self, key: bytes | None) -> Op:
        """The key after ``key`` (the first key for ``None``) as bytes; ENOENT at the end."""
        raise self._absent("get_next_key")
        yield

    def push_elem(self, value: bytes, flags: int) -> Op:
        raise self._absent("push_elem")
        yield

    def pop_elem(self) -> Op:
        """Return the value bytes removed."""
        raise self._absent("pop_elem")
        yield

    def peek_elem(self) -> Op:
        """Return the value bytes, leaving the element."""
        raise self._absent("peek_elem")
        yield

    def freeze(self) -> Op:
        """The family's consent to BPF_MAP_FREEZE.  Linux freezes every map type generically
        (only STRUCT_OPS maps and maps with BTF-managed fields refuse, with ENOTSUPP), so the
        default consents; :meth:`UnifiedMap.freeze` does the rest."""
        return
        yield

    def sys_lookup_elem(self, key: bytes, flags: int) -> Op:
        """Syscall side: the value in the user layout (``bpf_map_copy_value``).  Default: the
        ``value_size`` bytes at :meth:`lookup_elem`'s address, ENOENT for NULL.  Per-CPU
        families return every CPU's copy; LRU families must not mark the element
        (``map_lookup_elem_sys_only``); queues and stacks peek."""
        addr = yield from self.lookup_elem(key)
        if not addr:
            raise BpfError(errno.ENOENT, "no element with that key")
        size = self.meta.value_size
        yield Touch(addr, size)
        yield Work("copy_bytes", size)
        return self.host.read(addr, size)

    def sys_update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """Syscall side of update (``bpf_map_update_value``); per-CPU families take one value
        per CPU, queues and stacks push.  Default: :meth:`update_elem`."""
        return (yield from self.update_elem(key, value, flags))

    # -- queries (plain) --------------------------------------------------------------------------
    def map_values_ptr_range(self) -> tuple[int, int]:
        """``(start, end)`` of the value a ``BPF_PSEUDO_MAP_VALUE`` load may point into."""
        raise self._absent("map_values_ptr_range")

    def map_mem_usage(self) -> int:
        """Bytes the map uses, as ``map_mem_usage`` computes them."""
        raise self._absent("map_mem_usage")

    def map_mmap(self, offset: int, size: int, read: bool, write: bool) -> list[int]:
        """Physical addresses of the pages that back ``[offset, offset + size)`` of the map's
        mmap-able area (page-aligned ``offset``)."""
        raise self._absent("map_mmap")

    def readable(self) -> bool:
        """Poll readiness for reading (EPOLLIN), as kbpf-basic's ``readable``; only stream
        maps (the ring buffer) are pollable."""
        return False

    def writable(self) -> bool:
        """Poll readiness for writing (EPOLLOUT)."""
        return False

    def program_regions(self) -> list[tuple[int, int, bool]]:
        """``(start, end, writable)`` address ranges a program may touch through this map
        (values, scratch keys handed to callbacks).  The machine checks every program access
        against them; no region means programs can reach nothing of this map."""
        return []


class UnifiedMap:
    """A created map as its host holds it (kbpf-basic's ``UnifiedMap``; ``struct bpf_map``).

    ``addr`` is the kernel address of the map's header (what ``LD_DW_IMM`` src=1 loads and what
    helpers receive in r1); ``lock`` is the lock word the host takes around every helper call
    and syscall on the map under ``locking = "kbpf"`` (kbpf never takes it itself); ``frozen``
    is set by BPF_MAP_FREEZE; ``write_active`` counts syscall writes in flight and writable
    mmaps (``bpf_map_write_active``), which make a concurrent freeze fail with EBUSY.
    """

    __slots__ = ("meta", "ops", "addr", "lock", "frozen", "write_active", "ncpus", "host_state")

    def __init__(self, meta: BpfMapMeta, ops: BpfMapOps, lock: Lock, ncpus: int):
        self.meta = meta
        self.ops = ops
        self.addr = ops.map_addr
        self.lock = lock
        self.frozen = False
        self.write_active = 0
        self.ncpus = ncpus
        #: Free for the host (the simulated kernel keeps its fd references here).
        self.host_state: Any = None

    def __repr__(self) -> str:
        name = f" {self.meta.name!r}" if self.meta.name else ""
        return f"UnifiedMap({self.meta.map_type.name}{name} @ {self.addr:#x})"

    # -- delegation -----------------------------------------------------------------------------
    def lookup_elem(self, key: bytes) -> Op:
        return self.ops.lookup_elem(key)

    def update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        return self.ops.update_elem(key, value, flags)

    def delete_elem(self, key: bytes) -> Op:
        return self.ops.delete_elem(key)

    def for_each_elem(self, func: int, ctx: int, flags: int) -> Op:
        return self.ops.for_each_elem(func, ctx, flags)

    def lookup_and_delete_elem(self, key: bytes, flags: int) -> Op:
        return self.ops.lookup_and_delete_elem(key, flags)

    def lookup_percpu_elem(self, key: bytes, cpu: int) -> Op:
        return self.ops.lookup_percpu_elem(key, cpu)

    def get_next_key(self, key: bytes | None) -> Op:
        return self.ops.get_next_key(key)

    def push_elem(self, value: bytes, flags: int) -> Op:
        return self.ops.push_elem(value, flags)

    def pop_elem(self) -> Op:
        return self.ops.pop_elem()

    def peek_elem(self) -> Op:
        return self.ops.peek_elem()

    def map_values_ptr_range(self) -> tuple[int, int]:
        return self.ops.map_values_ptr_range()

    def map_mem_usage(self) -> int:
        return self.ops.map_mem_usage()

    def readable(self) -> bool:
        return self.ops.readable()

    def writable(self) -> bool:
        return self.ops.writable()

    def program_regions(self) -> list[tuple[int, int, bool]]:
        return self.ops.program_regions()

    # -- generic map behaviour --------------------------------------------------------------------
    @property
    def is_percpu(self) -> bool:
        return self.meta.map_type in PERCPU_MAP_TYPES

    @property
    def sys_value_size(self) -> int:
        """``bpf_map_value_size``: bytes a syscall value holds: one rounded value per CPU for
        per-CPU maps, a 4-byte fd for fd maps, else ``value_size``."""
        if self.meta.map_type in PERCPU_MAP_TYPES:
            return round_up(self.meta.value_size, 8) * self.ncpus
        if self.meta.map_type in FD_MAP_TYPES:
            return 4
        return self.meta.value_size

    def sys_can_read(self) -> bool:
        """FMODE_CAN_READ of the map's fd: not created ``BPF_F_WRONLY``."""
        return not self.meta.map_flags & BPF_F_WRONLY

    def sys_can_write(self) -> bool:
        """FMODE_CAN_WRITE as ``map_get_sys_perms`` computes it: not created ``BPF_F_RDONLY``
        and not frozen."""
        return not (self.meta.map_flags & BPF_F_RDONLY or self.frozen)

    def prog_can_write(self) -> bool:
        """Programs may modify the map unless it was created ``BPF_F_RDONLY_PROG``."""
        return not self.meta.map_flags & BPF_F_RDONLY_PROG

    def freeze(self) -> Op:
        """BPF_MAP_FREEZE (``map_freeze``): STRUCT_OPS -> ENOTSUPP; an already frozen map ->
        EBUSY (API.md's contract; v6.6 answers EPERM because a frozen map's fd has lost
        FMODE_CAN_WRITE: see docs/deviations.md); no syscall write permission (BPF_F_RDONLY)
        -> EPERM; writes in flight or a writable mmap -> EBUSY.  Afterwards syscall writes fail
        with EPERM; programs may still write unless the map is ``BPF_F_RDONLY_PROG``."""
        if self.meta.map_type == BpfMapType.BPF_MAP_TYPE_STRUCT_OPS:
            raise BpfError(ENOTSUPP, "STRUCT_OPS maps cannot be frozen")
        if self.frozen:
            raise BpfError(errno.EBUSY, "map is already frozen")
        if not self.sys_can_write():
            raise BpfError(
                errno.EPERM, "map is created BPF_F_RDONLY: no write permission to freeze it"
            )
        if self.write_active:
            raise BpfError(errno.EBUSY, "map has writes in flight or a writable mmap")
        if self.frozen:  # unreachable through the permission check, kept as syscall.c has it
            raise BpfError(errno.EBUSY, "map is already frozen")
        yield from self.ops.freeze()
        self.frozen = True

    def map_mmap(self, offset: int, size: int, write: bool) -> list[int]:
        """``bpf_map_mmap``: the pages backing ``[offset, offset + size)``.  A writable mapping
        of a frozen map is EPERM, of a ``BPF_F_RDONLY_PROG`` map EACCES; it counts as a write
        in flight until :meth:`munmap_writable`."""
        if not self.ops.implements("map_mmap"):
            raise self.ops._absent("map_mmap")
        if write:
            if self.frozen:
                raise BpfError(errno.EPERM, "cannot map a frozen map writable")
            if self.meta.map_flags & BPF_F_RDONLY_PROG:
                raise BpfError(errno.EACCES, "cannot map a BPF_F_RDONLY_PROG map writable")
        pages = self.ops.map_mmap(offset, size, True, write)
        if write:
            self.write_active += 1
        return pages

    def munmap_writable(self) -> None:
        """A writable mapping went away."""
        if self.write_active <= 0:
            raise RuntimeError(f"{self!r}: munmap without a writable mapping")
        self.write_active -= 1

    @property
    def mmapable(self) -> bool:
        return bool(self.meta.map_flags & BPF_F_MMAPABLE)

    def free(self) -> None:
        """Release the map's memory (the last reference went away)."""
        self.ops.map_free()
