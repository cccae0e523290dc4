"""Per-CPU memory: one area per CPU, the same offset in each, like Linux's percpu chunks.

A *chunk* is one *unit* of direct-mapped memory per CPU (from kmalloc, page-aligned).  An
allocation takes a free range ``[off, off+size)`` of the chunk and owns it in every CPU's unit,
so CPU ``c``'s copy is at ``units[c] + off``: each CPU's copy lives in that CPU's own memory,
the copies of different CPUs never overlap, and no two of them share a cache line unless the
units do (they never do: units are whole pages).

Chunks are created on demand with the default unit size (32 KiB, Linux's
``PCPU_MIN_UNIT_SIZE``); an allocation larger than that gets a chunk of its own, sized for it.
Placement is first fit over chunks in creation order, lowest offset first, so it is
reproducible.  Empty chunks are given back, except a first chunk of the default size.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from kbpf.errors import BpfError
from sim.mem.kernel_vm import PAGE_OFFSET
from sim.mem.kmalloc import Kmalloc
from sim.mem.physical import PAGE_SIZE

#: Linux's PCPU_MIN_UNIT_SIZE: the default per-CPU unit, and BPF's limit on a per-CPU value.
PCPU_MIN_UNIT_SIZE = 32 * 1024


class _Chunk:
    """A unit per CPU plus the free ranges of the (shared) offset space."""

    __slots__ = ("units", "unit_size", "free", "used")

    def __init__(self, units: list[int], unit_size: int):
        self.units = units
        self.unit_size = unit_size
        self.free: list[list[int]] = [[0, unit_size]]  # sorted, disjoint [start, end) ranges
        self.used = 0

    def take(self, size: int, align: int) -> int | None:
        """First fit: the lowest aligned offset with ``size`` free bytes, or None."""
        for i, (start, end) in enumerate(self.free):
            off = -(-start // align) * align
            if off + size <= end:
                pieces = [[start, off]] if off > start else []
                if off + size < end:
                    pieces.append([off + size, end])
                self.free[i : i + 1] = pieces
                self.used += size
                return off
        return None

    def give_back(self, off: int, size: int) -> None:
        """Return ``[off, off+size)``, merging with free neighbours."""
        free = self.free
        i = 0
        while i < len(free) and free[i][0] < off:
            i += 1
        free.insert(i, [off, off + size])
        if i + 1 < len(free) and free[i][1] == free[i + 1][0]:
            free[i][1] = free[i + 1][1]
            del free[i + 1]
        if i > 0 and free[i - 1][1] == free[i][0]:
            free[i - 1][1] = free[i][1]
            del free[i]
        self.used -= size


class PerCpuAllocator:
    """Per-CPU allocation for ``ncpus`` CPUs, units carved from ``kmalloc``."""

    def __init__(self, ncpus: int, kmalloc: Kmalloc, unit_size: int = PCPU_MIN_UNIT_SIZE):
        if ncpus <= 0:
            raise ValueError(f"per-CPU allocator needs at least one CPU, got {ncpus}")
        if unit_size <= 0 or unit_size % PAGE_SIZE:
            raise ValueError(f"per-CPU unit size {unit_size} must be a multiple of {PAGE_SIZE}")
        self.ncpus = ncpus
        self.unit_size = unit_size
        self._kmalloc = kmalloc
        self._phys = kmalloc.phys
        self._chunks: list[_Chunk] = []
        self._allocs: dict[int, tuple[_Chunk, int, int]] = {}  # CPU 0's address -> chunk, off, size

    def alloc(self, size: int, align: int = 8) -> list[int]:
        """``size`` zeroed bytes in every CPU's area; returns one kernel address per CPU, index =
        CPU.  ``align`` is a power of two up to a page."""
        if size <= 0:
            raise BpfError(errno.EINVAL, f"per-CPU allocation of {size} bytes")
        if align <= 0 or align & (align - 1) or align > PAGE_SIZE:
            raise BpfError(
                errno.EINVAL, f"per-CPU align {align} is not a power of two up to {PAGE_SIZE}"
            )
        for chunk in self._chunks:
            if chunk.unit_size >= size:
                off = chunk.take(size, align)
                if off is not None:
                    break
        else:
            unit = max(self.unit_size, -(-size // PAGE_SIZE) * PAGE_SIZE)
            chunk = self._new_chunk(unit)
            off = chunk.take(size, align)  # a fresh unit is zeroed already
            addrs = [u + off for u in chunk.units]
            self._allocs[addrs[0]] = (chunk, off, size)
            return addrs
        addrs = [u + off for u in chunk.units]
        zero = self._phys.zero
        for a in addrs:
            zero(a - PAGE_OFFSET, size)
        self._allocs[addrs[0]] = (chunk, off, size)
        return addrs

    def free(self, addrs: Sequence[int]) -> None:
        """Free an allocation, given the list :meth:`alloc` returned."""
        addrs = list(addrs)
        entry = self._allocs.get(addrs[0]) if addrs else None
        if entry is None:
            first = f"{addrs[0]:#x}" if addrs else "[]"
            raise RuntimeError(f"free_percpu of {first}, which is not a live per-CPU allocation")
        chunk, off, size = entry
        if addrs != [u + off for u in chunk.units]:
            raise RuntimeError(
                f"free_percpu of {addrs[0]:#x}: the addresses are not the ones alloc returned"
            )
        del self._allocs[addrs[0]]
        chunk.give_back(off, size)
        # Keep the first default-sized chunk (as Linux keeps its first chunk); give back the rest.
        if chunk.used == 0 and (chunk is not self._chunks[0] or chunk.unit_size != self.unit_size):
            self._chunks.remove(chunk)
            for u in chunk.units:
                self._kmalloc.kfree(u)

    def _new_chunk(self, unit: int) -> _Chunk:
        units: list[int] = []
        try:
            for _ in range(self.ncpus):
                units.append(self._kmalloc(unit, PAGE_SIZE))
        except BpfError:
            for u in units:
                self._kmalloc.kfree(u)
            raise
        chunk = _Chunk(units, unit)
        self._chunks.append(chunk)
        return chunk

    def size_of(self, addr: int) -> int:
        """The size of the allocation whose CPU-0 address is ``addr``."""
        entry = self._allocs.get(addr)
        if entry is None:
            raise RuntimeError(f"{addr:#x} is not a live per-CPU allocation")
        return entry[2]

    def stats(self) -> dict:
        """Chunks, live allocations and bytes in use per CPU."""
        return {
            "chunks": len(self._chunks),
            "allocations": len(self._allocs),
            "bytes_per_cpu": sum(c.used for c in self._chunks),
        }

    def __repr__(self) -> str:
        return f"PerCpuAllocator({self.ncpus} CPUs, {len(self._chunks)} chunks)"
