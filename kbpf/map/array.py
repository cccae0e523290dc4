"""BPF_MAP_TYPE_ARRAY and BPF_MAP_TYPE_PERCPU_ARRAY (kernel/bpf/arraymap.c at v6.6).

An array's keys are the u32 indices ``0 .. max_entries-1``; every element exists from creation,
zero-filled, ``elem_size = round_up(value_size, 8)`` bytes apart.

Layout, as Linux allocates it:

* ARRAY: one kmalloc'd block: the ``struct bpf_array`` header (the map's address) followed by the
  values at ``ARRAY_VALUE_OFFSET``.  With ``BPF_F_MMAPABLE`` the block is built from whole pages
  (``alloc_page`` + ``vmap``): a header page whose end holds the header, then the value pages,
  so the values start page-aligned and ``map_mmap`` hands user space exactly those pages.
* PERCPU_ARRAY: the header is followed by ``pptrs[max_entries]``; each element's values come
  from one ``alloc_percpu(elem_size)``: one kernel address per CPU, each in that CPU's per-CPU
  area.  A program-side lookup returns the current CPU's address; the syscall side copies every
  CPU's ``elem_size`` bytes (``bpf_percpu_array_copy``/``_update``).

kbpf-sim runs as root, so ``bpf_bypass_spec_v1()`` holds and the array is not rounded up to a
power of two for the Spectre-v1 index mask.  Array operations take no lock: Linux relies on RCU
and plain stores (a ``BPF_F_LOCK`` update would take the ``bpf_spin_lock`` inside the value,
which needs BTF that kbpf maps never carry, so ``BPF_F_LOCK`` is EINVAL here as in Linux).
"""

from __future__ import annotations

import errno
from typing import ClassVar

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.host import Callback, Op, Touch, Work
from kbpf.linux_bpf import (
    BPF_EXIST,
    BPF_F_ACCESS_MASK,
    BPF_F_INNER_MAP,
    BPF_F_LOCK,
    BPF_F_MMAPABLE,
    BPF_F_NUMA_NODE,
    BPF_F_PRESERVE_ELEMS,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY_PROG,
    BPF_NOEXIST,
    PAGE_SIZE,
    BpfMapType,
)
from kbpf.map.meta import BpfMapMeta
from kbpf.map.ops import BPF_MAP_STRUCT_SIZE, BpfMapOps, round_up

#: ``ARRAY_CREATE_FLAG_MASK``.
ARRAY_CREATE_FLAG_MASK = (
    BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK | BPF_F_PRESERVE_ELEMS | BPF_F_INNER_MAP
)
#: ``PCPU_MIN_UNIT_SIZE``: the largest per-CPU allocation, so the largest per-CPU value.
PCPU_MIN_UNIT_SIZE = 32 << 10
INT_MAX = (1 << 31) - 1
U32_MAX = (1 << 32) - 1
#: ``sizeof(struct bpf_array)`` = ``offsetof(struct bpf_array, value)``: the map header plus
#: ``elem_size``, ``index_mask`` and the ``aux`` pointer.
ARRAY_VALUE_OFFSET = BPF_MAP_STRUCT_SIZE + 16


def _index(key: bytes) -> int:
    return int.from_bytes(key[:4], "little")


def _page_align(n: int) -> int:
    return round_up(n, PAGE_SIZE)


class ArrayMap(BpfMapOps):
    """BPF_MAP_TYPE_ARRAY (``array_map_ops``); the shared code of PERCPU_ARRAY."""

    percpu: ClassVar[bool] = False

    # -- allocation ---------------------------------------------------------------------------
    @classmethod
    def alloc_check(cls, meta: BpfMapMeta, percpu_ops) -> None:
        """``array_map_alloc_check``."""
        flags = meta.map_flags
        if meta.max_entries == 0:
            raise BpfError(errno.EINVAL, "array max_entries must be at least 1")
        if meta.key_size != 4:
            raise BpfError(errno.EINVAL, f"array key_size {meta.key_size}, expected 4")
        if meta.value_size == 0:
            raise BpfError(errno.EINVAL, "array value_size must be at least 1")
        if flags & ~ARRAY_CREATE_FLAG_MASK:
            raise BpfError(
                errno.EINVAL, f"map_flags {flags & ~ARRAY_CREATE_FLAG_MASK:#x} not valid for arrays"
            )
        if flags & BPF_F_RDONLY_PROG and flags & BPF_F_WRONLY_PROG:
            raise BpfError(errno.EINVAL, "BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG together")
        if cls.percpu and flags & BPF_F_NUMA_NODE:
            raise BpfError(errno.EINVAL, "PERCPU_ARRAY cannot be placed on a NUMA node")
        if meta.map_type != BpfMapType.BPF_MAP_TYPE_ARRAY and flags & (
            BPF_F_MMAPABLE | BPF_F_INNER_MAP
        ):
            raise BpfError(errno.EINVAL, "BPF_F_MMAPABLE and BPF_F_INNER_MAP are for ARRAY only")
        if (
            meta.map_type != BpfMapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY
            and flags & BPF_F_PRESERVE_ELEMS
        ):
            raise BpfError(errno.EINVAL, "BPF_F_PRESERVE_ELEMS is for PERF_EVENT_ARRAY only")
        if meta.value_size > INT_MAX:
            raise BpfError(errno.E2BIG, f"value_size {meta.value_size} exceeds INT_MAX")
        if cls.percpu and round_up(meta.value_size, 8) > PCPU_MIN_UNIT_SIZE:
            raise BpfError(
                errno.E2BIG,
                f"per-CPU value of {round_up(meta.value_size, 8)} bytes exceeds "
                f"PCPU_MIN_UNIT_SIZE ({PCPU_MIN_UNIT_SIZE})",
            )

    def __init__(self, meta, host, percpu_ops, poll_waker=None):
        """``array_map_alloc``: every element allocated and zeroed now."""
        super().__init__(meta, host, percpu_ops, poll_waker)
        self.max_entries = meta.max_entries
        self.value_size = meta.value_size
        self.elem_size = round_up(meta.value_size, 8)
        self.ncpus = percpu_ops.num_cpus()
        self._pages: list[int] = []  # physical pages of an mmap-able array: header, values
        self._head_pages = 0
        self._vmap = 0
        self._by_cpu: list[list[int]] = []  # per-CPU arrays: _by_cpu[cpu][index] -> address
        self._pcpu_allocs: list[list[int]] = []
        self.values = 0
        #: ``bpf_for_each_array_elem`` passes ``&key`` on its stack; kbpf keeps one 4-byte key
        #: slot per CPU that programs may read (a callback that nests a for_each over the same
        #: map on the same CPU sees the inner walk's key afterwards).
        self._key_slot = percpu_ops.alloc_percpu(8, 8)
        try:
            self._alloc_storage()
        except BpfError:
            percpu_ops.free_percpu(self._key_slot)
            raise

    def _alloc_storage(self) -> None:
        data_size = self.max_entries * self.elem_size
        if self.meta.map_flags & BPF_F_MMAPABLE:
            head_pages = _page_align(ARRAY_VALUE_OFFSET) // PAGE_SIZE
            npages = head_pages + _page_align(data_size) // PAGE_SIZE
            try:
                for _ in range(npages):
                    self._pages.append(self.host.alloc_page())
                self._vmap = self.host.vmap(self._pages)
            except BpfError:
                for phys in self._pages:
                    self.host.free_page(phys)
                self._pages = []
                raise
            self.values = self._vmap + head_pages * PAGE_SIZE
            self.map_addr = self.values - ARRAY_VALUE_OFFSET
            self._head_pages = head_pages
        else:
            self.map_addr = self.host.kmalloc(ARRAY_VALUE_OFFSET + data_size, 64)
            self.values = self.map_addr + ARRAY_VALUE_OFFSET

    def map_free(self) -> None:
        self.percpu_ops.free_percpu(self._key_slot)
        if self._vmap:
            self.host.unmap(self._vmap)
            for phys in self._pages:
                self.host.free_page(phys)
            self._vmap = 0
            self._pages = []
        elif self.map_addr:
            self.host.kfree(self.map_addr)
        self.map_addr = 0

    # -- element operations -------------------------------------------------------------------
    def elem_addr(self, index: int) -> int:
        """The value address of element ``index`` (for PERCPU_ARRAY: the current CPU's)."""
        return self.values + index * self.elem_size

    def lookup_elem(self, key: bytes) -> Op:
        """``array_map_lookup_elem``: out of range -> NULL.  Linux inlines this lookup into the
        program (``map_gen_lookup``), so it reads no map memory: nothing to touch."""
        index = int.from_bytes(key[:4], "little")
        if index >= self.max_entries:
            return 0
        return self.values + index * self.elem_size
        yield  # a generator, like every map operation

    def _check_update(self, key: bytes, flags: int) -> int:
        """``array_map_update_elem``'s checks, in order; returns the index."""
        if (flags & ~BPF_F_LOCK) > BPF_EXIST:
            raise BpfError(errno.EINVAL, f"update flags {flags:#x}: unknown bits")
        index = _index(key)
        if index >= self.max_entries:
            raise BpfError(
                errno.E2BIG, f"index {index} out of range (max_entries {self.max_entries})"
            )
        if flags & BPF_NOEXIST:
            raise BpfError(errno.EEXIST, "BPF_NOEXIST: every array element already exists")
        if flags & BPF_F_LOCK:
            # With BTF, BPF_F_LOCK would take the value's bpf_spin_lock around the copy.
            raise BpfError(errno.EINVAL, "BPF_F_LOCK needs a bpf_spin_lock in the value")
        return index

    def update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """``array_map_update_elem`` (program side, and syscall side of ARRAY): copy
        ``value_size`` bytes into the element; PERCPU_ARRAY writes the current CPU's copy."""
        index = self._check_update(key, flags)
        addr = self.elem_addr(index)
        size = self.value_size
        yield Touch(addr, size, True)
        yield Work("copy_bytes", size)
        self.host.write(addr, bytes(value[:size]))

    def delete_elem(self, key: bytes) -> Op:
        """``array_map_delete_elem``: array elements cannot be deleted."""
        raise BpfError(errno.EINVAL, "array elements cannot be deleted")
        yield

    def get_next_key(self, key: bytes | None) -> Op:
        """``array_map_get_next_key``: no key or an out-of-range one -> index 0; the last index
        -> ENOENT; otherwise the next index."""
        index = U32_MAX if key is None else _index(key)
        if index >= self.max_entries:
            return (0).to_bytes(4, "little")
        if index == self.max_entries - 1:
            raise BpfError(errno.ENOENT, "no key after the last index")
        return (index + 1).to_bytes(4, "little")
        yield

    def for_each_elem(self, func: int, ctx: int, flags: int) -> Op:
        """``bpf_for_each_array_elem``: call ``func(map, &key, value, ctx, 0)`` for index 0, 1,
        …; a non-zero return stops the walk.  Returns the number of elements visited, the one
        that stopped it included.  PERCPU_ARRAY passes the current CPU's values."""
        if flags:
            raise BpfError(errno.EINVAL, f"for_each flags {flags:#x} must be 0")
        cpu = self.host.current_cpu_id()
        key_addr = self._key_slot[cpu]
        values = self._by_cpu[cpu] if self.percpu else None
        write = self.host.write
        num = 0
        for i in range(self.max_entries):
            val = values[i] if values is not None else self.values + i * self.elem_size
            num += 1
            write(key_addr, i.to_bytes(4, "little"))
            yield Touch(key_addr, 4, True)
            ret = yield Callback(func, (self.map_addr, key_addr, val, ctx, 0))
            if ret:
                break
        return num

    # -- queries ------------------------------------------------------------------------------
    def map_values_ptr_range(self) -> tuple[int, int]:
        """``array_map_direct_value_addr``: only a one-element array has a fixed value address
        (global data); others are ENOTSUPP."""
        if self.max_entries != 1:
            raise BpfError(
                ENOTSUPP,
                f"direct value access needs max_entries == 1 (this array has {self.max_entries})",
            )
        return (self.values, self.values + self.value_size)

    def map_mem_usage(self) -> int:
        """``array_map_mem_usage``."""
        usage = ARRAY_VALUE_OFFSET
        entries = self.max_entries
        if self.meta.map_flags & BPF_F_MMAPABLE:
            return _page_align(usage) + _page_align(entries * self.elem_size)
        return usage + entries * self.elem_size

    def map_mmap(self, offset: int, size: int, read: bool, write: bool) -> list[int]:
        """``array_map_mmap``: only ``BPF_F_MMAPABLE`` arrays; the range must lie within the
        page-aligned value area."""
        if not self.meta.map_flags & BPF_F_MMAPABLE:
            raise BpfError(errno.EINVAL, "array was not created with BPF_F_MMAPABLE")
        if offset % PAGE_SIZE or offset < 0 or size <= 0:
            raise BpfError(errno.EINVAL, f"mmap offset {offset} / size {size} not page-aligned")
        limit = _page_align(self.max_entries * self.elem_size)
        if offset + size > limit:
            raise BpfError(
                errno.EINVAL, f"mmap of [{offset}, {offset + size}) beyond the {limit}-byte values"
            )
        first = self._head_pages + offset // PAGE_SIZE
        return self._pages[first : first + _page_align(size) // PAGE_SIZE]

    def program_regions(self) -> list[tuple[int, int, bool]]:
        """The value area (writable unless ``BPF_F_RDONLY_PROG``; padding between values of a
        ``value_size`` that is not a multiple of 8 is included) and each CPU's for_each key."""
        writable = not self.meta.map_flags & BPF_F_RDONLY_PROG
        regions = [(self.values, self.values + self.max_entries * self.elem_size, writable)]
        regions += [(a, a + 4, False) for a in self._key_slot]
        return regions


class PerCpuArrayMap(ArrayMap):
    """BPF_MAP_TYPE_PERCPU_ARRAY (``percpu_array_map_ops``): shares allocation checks, update
    checks, delete, get_next_key and for_each with ARRAY; differs in where values live."""

    percpu: ClassVar[bool] = True

    def _alloc_storage(self) -> None:
        # Header followed by pptrs[max_entries] (one 8-byte per-CPU pointer per element).
        self.map_addr = self.host.kmalloc(ARRAY_VALUE_OFFSET + 8 * self.max_entries, 64)
        self.values = self.map_addr + ARRAY_VALUE_OFFSET  # the pptrs array
        try:
            for _ in range(self.max_entries):
                self._pcpu_allocs.append(self.percpu_ops.alloc_percpu(self.elem_size, 8))
        except BpfError:
            self._free_percpu_values()
            self.host.kfree(self.map_addr)
            raise
        # pptrs[i] records element i's per-CPU base (kbpf stores CPU 0's address).
        self.host.write(
            self.values, b"".join(a[0].to_bytes(8, "little") for a in self._pcpu_allocs)
        )
        self._by_cpu = [[a[cpu] for a in self._pcpu_allocs] for cpu in range(self.ncpus)]

    def _free_percpu_values(self) -> None:
        for addrs in self._pcpu_allocs:
            self.percpu_ops.free_percpu(addrs)
        self._pcpu_allocs = []
        self._by_cpu = []

    def map_free(self) -> None:
        self._free_percpu_values()
        super().map_free()

    def elem_addr(self, index: int) -> int:
        return self._by_cpu[self.host.current_cpu_id()][index]

    def lookup_elem(self, key: bytes) -> Op:
        """``percpu_array_map_lookup_elem``: ``this_cpu_ptr(pptrs[index])``: reads the
        element's per-CPU pointer from the map, returns this CPU's address."""
        index = int.from_bytes(key[:4], "little")
        if index >= self.max_entries:
            return 0
        yield Touch(self.values + 8 * index, 8)
        return self._by_cpu[self.host.current_cpu_id()][index]

    def lookup_percpu_elem(self, key: bytes, cpu: int) -> Op:
        """``percpu_array_map_lookup_percpu_elem``: CPU ``cpu``'s copy; NULL for a CPU that does
        not exist or an index out of range."""
        index = _index(key)
        if cpu >= self.ncpus or index >= self.max_entries:
            return 0
        yield Touch(self.values + 8 * index, 8)
        return self._by_cpu[cpu][index]

    def sys_lookup_elem(self, key: bytes, flags: int) -> Op:
        """``bpf_percpu_array_copy``: ``elem_size`` bytes from every CPU, in CPU order;
        ENOENT out of range."""
        index = _index(key)
        if index >= self.max_entries:
            raise BpfError(errno.ENOENT, f"index {index} out of range")
        size = self.elem_size
        out = []
        for addrs in self._by_cpu:
            addr = addrs[index]
            yield Touch(addr, size)
            out.append(self.host.read(addr, size))
        yield Work("copy_bytes", size * self.ncpus)
        return b"".join(out)

    def sys_update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """``bpf_percpu_array_update``: flags above BPF_EXIST (BPF_F_LOCK included) -> EINVAL,
        out of range -> E2BIG, BPF_NOEXIST -> EEXIST; then ``elem_size`` bytes per CPU."""
        if flags > BPF_EXIST:
            raise BpfError(errno.EINVAL, f"per-CPU update flags {flags:#x}: unknown bits")
        index = _index(key)
        if index >= self.max_entries:
            raise BpfError(
                errno.E2BIG, f"index {index} out of range (max_entries {self.max_entries})"
            )
        if flags == BPF_NOEXIST:
            raise BpfError(errno.EEXIST, "BPF_NOEXIST: every array element already exists")
        size = self.elem_size
        for cpu, addrs in enumerate(self._by_cpu):
            addr = addrs[index]
            yield Touch(addr, size, True)
            self.host.write(addr, bytes(value[cpu * size : (cpu + 1) * size]))
        yield Work("copy_bytes", size * self.ncpus)

    def map_values_ptr_range(self) -> tuple[int, int]:
        raise self._absent("map_values_ptr_range")

    def map_mem_usage(self) -> int:
        """``array_map_mem_usage`` for per-CPU arrays."""
        entries = self.max_entries
        return ARRAY_VALUE_OFFSET + entries * 8 + entries * self.elem_size * self.ncpus

    def map_mmap(self, offset: int, size: int, read: bool, write: bool) -> list[int]:
        raise self._absent("map_mmap")

    def program_regions(self) -> list[tuple[int, int, bool]]:
        """Every CPU's copy of every value (a program on one CPU may reach another CPU's copy
        through ``map_lookup_percpu_elem``), merged where allocations are adjacent, plus the
        for_each key slots."""
        writable = not self.meta.map_flags & BPF_F_RDONLY_PROG
        size = self.elem_size
        spans = sorted(a for addrs in self._by_cpu for a in addrs)
        regions: list[tuple[int, int, bool]] = []
        for start in spans:
            if regions and regions[-1][1] == start:
                regions[-1] = (regions[-1][0], start + size, writable)
            else:
                regions.append((start, start + size, writable))
        regions += [(a, a + 4, False) for a in self._key_slot]
        return regions
