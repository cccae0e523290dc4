"""The machine's memory: physical frames, buddy, kmalloc, kernel page tables, per-CPU areas.

:class:`Memory` builds the pieces in dependency order and offers the memory half of kbpf's
``KernelAuxiliaryOps`` under the protocol's own names (``alloc_page``, ``free_page``, ``vmap``,
``unmap``, ``kmalloc``, ``kfree``, ``read``, ``write``) plus ``alloc_percpu``/``free_percpu``,
so ``SimHost`` delegates to it without translation.  User memory is per process
(:meth:`Memory.new_user_space`); the host picks the current process's space for
``copy_from_user``/``copy_to_user``.

Nothing here takes simulated time.  Caches will price accesses separately, by physical address
(:meth:`sim.mem.kernel_vm.KernelVM.phys_ranges`), while the bytes keep moving through here.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from kbpf.errors import BpfError
from sim.mem.buddy import BuddyAllocator
from sim.mem.kernel_vm import KernelVM
from sim.mem.kmalloc import Kmalloc
from sim.mem.percpu import PCPU_MIN_UNIT_SIZE, PerCpuAllocator
from sim.mem.physical import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from sim.mem.user_vm import UserAddressSpace


class Memory:
    """``memory_mib`` MiB of physical memory for ``ncpus`` CPUs, allocated lazily.

    Attributes: ``phys`` (:class:`PhysicalMemory`), ``buddy`` (:class:`BuddyAllocator`),
    ``kernel`` (:class:`KernelVM`), ``kmalloc`` (:class:`Kmalloc` — callable, so
    ``mem.kmalloc(size, align)`` is the host-protocol method), ``percpu``
    (:class:`PerCpuAllocator`).
    """

    def __init__(
        self,
        memory_mib: int = 256,
        ncpus: int = 1,
        *,
        max_order: int = 10,
        percpu_unit_size: int = PCPU_MIN_UNIT_SIZE,
    ):
        if not isinstance(memory_mib, int) or memory_mib <= 0:
            raise ValueError(f"memory_mib must be a positive integer, got {memory_mib!r}")
        self.ncpus = ncpus
        self.phys = PhysicalMemory(memory_mib << 20)
        self.buddy = BuddyAllocator(self.phys.nframes, max_order)
        self.kernel = KernelVM(self.phys)
        self.kmalloc = Kmalloc(self.buddy, self.phys, self.kernel)
        self.percpu = PerCpuAllocator(ncpus, self.kmalloc, percpu_unit_size)
        # Hot path: kernel reads and writes go straight to the KernelVM's bound methods (an
        # instance attribute shadows the documented method below and saves a call per access).
        self.read = self.kernel.read
        self.write = self.kernel.write
        self.translate = self.kernel.translate

    # -- KernelAuxiliaryOps: pages and mappings ------------------------------------------------

    def alloc_page(self) -> int:
        """One zeroed frame; returns its *physical* address.  ENOMEM when none is free."""
        phys = self.buddy.alloc(0) << PAGE_SHIFT
        self.phys.zero(phys, PAGE_SIZE)
        return phys

    def free_page(self, phys_addr: int) -> None:
        if phys_addr & (PAGE_SIZE - 1):
            raise RuntimeError(f"free_page of {phys_addr:#x}, which is not page-aligned")
        self.buddy.free(phys_addr >> PAGE_SHIFT, 0)

    def vmap(self, phys_addrs: Sequence[int]) -> int:
        """Map frames (by physical address), in order, at consecutive kernel pages."""
        pfns = []
        for i, p in enumerate(phys_addrs):
            if p & (PAGE_SIZE - 1):
                raise BpfError(errno.EINVAL, f"vmap: page {i} address {p:#x} is not page-aligned")
            pfns.append(p >> PAGE_SHIFT)
        return self.kernel.vmap(pfns)

    def unmap(self, vaddr: int) -> None:
        self.kernel.unmap(vaddr)

    # -- KernelAuxiliaryOps: kmalloc and access ------------------------------------------------

    def kfree(self, addr: int) -> None:
        self.kmalloc.kfree(addr)

    def read(self, addr: int, size: int) -> bytes:  # shadowed per instance, see __init__
        """Kernel memory by address (direct map or vmap'd pages); MemoryFault if unmapped."""
        return self.kernel.read(addr, size)

    def write(self, addr: int, data) -> None:  # shadowed per instance, see __init__
        """Write kernel memory by address; MemoryFault (and nothing written) if unmapped."""
        self.kernel.write(addr, data)

    def translate(self, addr: int) -> int:  # shadowed per instance, see __init__
        """The physical address behind a kernel address."""
        return self.kernel.translate(addr)

    # -- per-CPU memory ------------------------------------------------------------------------

    def alloc_percpu(self, size: int, align: int = 8) -> list[int]:
        """``size`` zeroed bytes in each CPU's per-CPU area: one kernel address per CPU."""
        return self.percpu.alloc(size, align)

    def free_percpu(self, addrs: Sequence[int]) -> None:
        self.percpu.free(addrs)

    # -- processes -----------------------------------------------------------------------------

    def new_user_space(self) -> UserAddressSpace:
        """An empty address space for a new process."""
        return UserAddressSpace(self.phys, self.buddy)

    # -- the whole -----------------------------------------------------------------------------

    def stats(self) -> dict:
        """Frames, buddy free blocks per order, kmalloc use, vmap areas, per-CPU use."""
        buddy = self.buddy
        return {
            "frames": buddy.nframes,
            "free_frames": buddy.free_frames,
            "allocated_frames": buddy.allocated_frames,
            "buddy_free_blocks": buddy.free_blocks(),
            "kmalloc": self.kmalloc.stats(),
            "vmap": {"areas": len(self.kernel.areas()), "pages": self.kernel.vmap_pages},
            "percpu": self.percpu.stats(),
        }

    def close(self) -> None:
        """Release the host memory now (it is released anyway when the Memory is collected)."""
        self.phys.close()

    def __repr__(self) -> str:
        return (
            f"Memory({self.phys.size >> 20} MiB, {self.ncpus} CPUs, "
            f"{self.buddy.free_frames} of {self.buddy.nframes} frames free)"
        )
