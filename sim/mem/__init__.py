"""The simulated machine's memory: frames, buddy allocator, kmalloc, page tables, user mmap.

Every byte a program or a user mmap can address lives in :class:`PhysicalMemory` — one lazily
allocated anonymous mmap — and is reached through the direct map, vmap'd page tables or a
process's user page table.  This package moves data and keeps the address spaces; timing
(caches, coherence) is layered on top by physical address.
"""

from sim.mem.buddy import BuddyAllocator
from sim.mem.kernel_vm import PAGE_OFFSET, VMALLOC_END, VMALLOC_START, KernelVM
from sim.mem.kmalloc import KMALLOC_MAX_CACHE_SIZE, KMALLOC_SIZES, Kmalloc
from sim.mem.memory import Memory
from sim.mem.percpu import PCPU_MIN_UNIT_SIZE, PerCpuAllocator
from sim.mem.physical import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, MemoryFault, PhysicalMemory
from sim.mem.user_vm import (
    MMAP_BASE,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    USER_END,
    USER_START,
    Mapping,
    UserAddressSpace,
)

__all__ = [
    "BuddyAllocator",
    "KernelVM",
    "Kmalloc",
    "KMALLOC_MAX_CACHE_SIZE",
    "KMALLOC_SIZES",
    "Mapping",
    "Memory",
    "MemoryFault",
    "MMAP_BASE",
    "PAGE_MASK",
    "PAGE_OFFSET",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "PCPU_MIN_UNIT_SIZE",
    "PerCpuAllocator",
    "PhysicalMemory",
    "PROT_EXEC",
    "PROT_NONE",
    "PROT_READ",
    "PROT_WRITE",
    "USER_END",
    "USER_START",
    "UserAddressSpace",
    "VMALLOC_END",
    "VMALLOC_START",
]
