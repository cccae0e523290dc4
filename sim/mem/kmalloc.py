"""kmalloc: small kernel objects carved from slab pages, large ones straight from the buddy.

As in Linux (SLUB), a request is rounded up to the smallest of the kmalloc size classes —
8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096 and 8192 bytes — and served from that
class's slabs: blocks of 1 to 8 pages, cut into equal objects.  A request above 8 KiB
(``KMALLOC_MAX_CACHE_SIZE``) gets whole pages: a buddy block of order ``ceil(log2(pages))``,
or, beyond the buddy's largest order, an exact run of contiguous frames (where Linux would use
vmalloc; the host protocol promises physically contiguous memory, so we find a run instead).

Every allocation is zeroed (``kzalloc``) and is a *direct-map* virtual address.

Alignment: objects are at multiples of their class size from a slab start, and a slab of order
``k`` starts at a multiple of ``4096 << k``, so a power-of-two class is naturally aligned (a 64-byte
object at a multiple of 64), 96-byte objects are 32-byte aligned and 192-byte ones 64-byte
aligned.  With ``align`` larger than the class guarantees, the next class that does is used
(``kmalloc(65, align=64)`` comes from kmalloc-128); past 8 KiB, the buddy block is large enough
to be aligned.

Choices are deterministic: the lowest-addressed slab with a free object, and its lowest free
object.  A cache keeps one empty slab for reuse and gives further empty slabs back to the buddy.
"""

from __future__ import annotations

import errno
from heapq import heappop, heappush

from kbpf.errors import BpfError
from sim.mem.buddy import BuddyAllocator
from sim.mem.kernel_vm import KernelVM
from sim.mem.physical import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory

KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
KMALLOC_MAX_CACHE_SIZE = KMALLOC_SIZES[-1]
#: Objects per slab aimed for, and the largest slab order (SLUB's defaults for a small machine).
_MIN_OBJECTS = 8
_SLAB_MAX_ORDER = 3
_MIN_ALIGN = 8  # ARCH_KMALLOC_MINALIGN on x86-64
_SMALL_ALIGNS = frozenset({1, 2, 4, 8})  # what every class guarantees

_ZEROS = memoryview(bytes(KMALLOC_MAX_CACHE_SIZE))


class SlabCache:
    """One size class (``kmalloc-64``): its slabs and what is in use."""

    __slots__ = ("size", "align", "order", "objs", "slabs", "partial", "inuse", "empty")

    def __init__(self, size: int):
        self.size = size
        self.align = size & -size  # largest power of two dividing the size
        pages = -(-size * _MIN_OBJECTS // PAGE_SIZE)
        self.order = min(_SLAB_MAX_ORDER, (pages - 1).bit_length())
        self.objs = (PAGE_SIZE << self.order) // size
        self.slabs: dict[int, Slab] = {}  # base phys -> slab
        self.partial: list[int] = []  # min-heap of bases of slabs with free objects (may be stale)
        self.inuse = 0
        self.empty = 0  # slabs with no object in use

    @property
    def name(self) -> str:
        return f"kmalloc-{self.size}"


class Slab:
    """A block of pages cut into objects of one class; ``state[i]`` is 1 while object i is in use."""

    __slots__ = ("base", "cache", "free", "state", "inuse")

    def __init__(self, base: int, cache: SlabCache):
        self.base = base
        self.cache = cache
        self.free = list(range(cache.objs))  # min-heap of free object indices (sorted = heap)
        self.state = bytearray(cache.objs)
        self.inuse = 0


class Kmalloc:
    """The kmalloc caches over a buddy allocator; addresses are in ``kernel_vm``'s direct map.

    Calling the object allocates (``kmalloc(size, align)``), so a facade can expose it under the
    host-protocol name ``kmalloc`` and still give access to :meth:`stats` and the caches.
    """

    def __init__(self, buddy: BuddyAllocator, phys: PhysicalMemory, kernel_vm: KernelVM):
        self.buddy = buddy
        self.phys = phys
        self._buf = phys.buf
        self._base = kernel_vm.phys_to_virt(0)  # the direct map's start
        self.caches = [SlabCache(s) for s in KMALLOC_SIZES]
        # (size + 7) >> 3 -> index of the smallest class holding `size` bytes.
        self._class_of = [0] * ((KMALLOC_MAX_CACHE_SIZE >> 3) + 1)
        ci = 0
        for i in range(len(self._class_of)):
            while KMALLOC_SIZES[ci] < i << 3:
                ci += 1
            self._class_of[i] = ci
        self._page_slab: dict[int, Slab] = {}  # pfn -> slab, for every page of every slab
        # phys -> buddy order (>= 0), or -frames for a contiguous run beyond max_order.
        self._large: dict[int, int] = {}
        self.large_bytes = 0

    # -- allocation ---------------------------------------------------------------------------

    def alloc(self, size: int, align: int = _MIN_ALIGN) -> int:
        """``size`` zeroed bytes aligned to ``align`` (a power of two); returns a direct-map
        address.  Size 0 gets a unique 8-byte object (Linux returns ``ZERO_SIZE_PTR``; a real
        address keeps addresses usable as identities).  ENOMEM when memory is exhausted."""
        if 0 <= size <= KMALLOC_MAX_CACHE_SIZE and align in _SMALL_ALIGNS:
            cache = self.caches[self._class_of[(size + 7) >> 3]]  # the common case
        else:
            if size < 0:
                raise ValueError(f"kmalloc of negative size {size}")
            if align <= 0 or align & (align - 1):
                raise BpfError(errno.EINVAL, f"kmalloc align {align} is not a power of two")
            cache = None
            if size <= KMALLOC_MAX_CACHE_SIZE:
                for c in self.caches[self._class_of[(size + 7) >> 3] :]:
                    if c.align >= align:
                        cache = c
                        break
            if cache is None:
                return self._alloc_large(size, align)
        phys = self._alloc_object(cache)
        n = cache.size
        self._buf[phys : phys + n] = _ZEROS[:n]
        return self._base + phys

    __call__ = alloc  # ``mem.kmalloc(size, align)``: the host-protocol name, without a hop

    def _alloc_object(self, cache: SlabCache) -> int:
        partial = cache.partial
        slabs = cache.slabs
        while partial:
            slab = slabs.get(partial[0])
            if slab is not None and slab.free:
                break
            heappop(partial)  # stale: the slab was released, or is full
        else:
            slab = self._new_slab(cache)
        idx = heappop(slab.free)
        slab.state[idx] = 1
        if slab.inuse == 0:
            cache.empty -= 1
        slab.inuse += 1
        cache.inuse += 1
        if not slab.free:
            heappop(partial)  # it is partial[0]
        return slab.base + idx * cache.size

    def _new_slab(self, cache: SlabCache) -> Slab:
        pfn = self.buddy.alloc(cache.order)
        slab = Slab(pfn << PAGE_SHIFT, cache)
        for i in range(1 << cache.order):
            self._page_slab[pfn + i] = slab
        cache.slabs[slab.base] = slab
        cache.empty += 1  # counted as empty until its first object is taken
        heappush(cache.partial, slab.base)
        return slab

    def _alloc_large(self, size: int, align: int) -> int:
        pages = max(1, -(-size // PAGE_SIZE))
        order = max((pages - 1).bit_length(), (max(align, PAGE_SIZE) // PAGE_SIZE - 1).bit_length())
        buddy = self.buddy
        if order <= buddy.max_order:
            pfn = buddy.alloc(order)
            self._large[pfn << PAGE_SHIFT] = order
            nbytes = PAGE_SIZE << order
        else:
            if align > PAGE_SIZE << buddy.max_order:
                raise BpfError(
                    errno.EINVAL,
                    f"kmalloc of {size} bytes: align {align} exceeds the largest block "
                    f"({PAGE_SIZE << buddy.max_order} bytes)",
                )
            pfn = buddy.alloc_contig(pages)
            self._large[pfn << PAGE_SHIFT] = -pages
            nbytes = pages * PAGE_SIZE
        phys = pfn << PAGE_SHIFT
        self.phys.zero(phys, nbytes)
        self.large_bytes += nbytes
        return self._base + phys

    # -- freeing ------------------------------------------------------------------------------

    def kfree(self, addr: int) -> None:
        """Free what :meth:`alloc` returned; anything else is a RuntimeError naming ``addr``."""
        phys = addr - self._base
        slab = self._page_slab.get(phys >> PAGE_SHIFT)
        if slab is None:
            kind = self._large.pop(phys, None)
            if kind is None:
                raise RuntimeError(f"kfree of {addr:#x}, which kmalloc did not return")
            if kind >= 0:
                self.buddy.free(phys >> PAGE_SHIFT, kind)
                self.large_bytes -= PAGE_SIZE << kind
            else:
                self.buddy.free_contig(phys >> PAGE_SHIFT, -kind)
                self.large_bytes -= -kind * PAGE_SIZE
            return
        cache = slab.cache
        idx, rem = divmod(phys - slab.base, cache.size)
        if rem or idx >= cache.objs or not slab.state[idx]:
            what = "not the start of an object" if rem or idx >= cache.objs else "already free"
            raise RuntimeError(f"kfree of {addr:#x} in a {cache.name} slab: {what}")
        slab.state[idx] = 0
        if not slab.free:  # was full: becomes partial again
            heappush(cache.partial, slab.base)
        heappush(slab.free, idx)
        slab.inuse -= 1
        cache.inuse -= 1
        if slab.inuse == 0:
            if cache.empty:  # keep one empty slab per cache, give the rest back
                self._release_slab(slab)
            else:
                cache.empty += 1

    def _release_slab(self, slab: Slab) -> None:
        cache = slab.cache
        del cache.slabs[slab.base]  # its entry in cache.partial goes stale
        pfn = slab.base >> PAGE_SHIFT
        for i in range(1 << cache.order):
            del self._page_slab[pfn + i]
        self.buddy.free(pfn, cache.order)

    # -- inspection ---------------------------------------------------------------------------

    def ksize(self, addr: int) -> int:
        """The usable size of the allocation at ``addr``: its class size, or its whole pages."""
        phys = addr - self._base
        slab = self._page_slab.get(phys >> PAGE_SHIFT)
        if slab is not None:
            cache = slab.cache
            idx, rem = divmod(phys - slab.base, cache.size)
            if not rem and idx < cache.objs and slab.state[idx]:
                return cache.size
        else:
            kind = self._large.get(phys)
            if kind is not None:
                return PAGE_SIZE << kind if kind >= 0 else -kind * PAGE_SIZE
        raise RuntimeError(f"ksize of {addr:#x}, which is not a live kmalloc allocation")

    def stats(self) -> dict:
        """Objects, bytes (objects x class size) and slabs per class, and large allocations."""
        classes = {
            c.name: {"objects": c.inuse, "bytes": c.inuse * c.size, "slabs": len(c.slabs)}
            for c in self.caches
        }
        small = sum(c.inuse * c.size for c in self.caches)
        return {
            "classes": classes,
            "large": {"allocations": len(self._large), "bytes": self.large_bytes},
            "bytes_in_use": small + self.large_bytes,
        }

    def __repr__(self) -> str:
        return f"Kmalloc({self.stats()['bytes_in_use']} bytes in use)"
