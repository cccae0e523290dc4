"""The kernel's virtual address space: the direct map and the vmalloc area.

Two ranges, as on x86-64 with 4-level paging:

* the **direct map** at ``PAGE_OFFSET``: every physical byte ``p`` is at ``PAGE_OFFSET + p``, so
  translating is one subtraction and a range is always physically contiguous.  kmalloc'd
  objects, slab pages and per-CPU areas live here.
* the **vmalloc area** from ``VMALLOC_START``: page tables (a dict from virtual page number to
  frame) built by :meth:`KernelVM.vmap`.  One frame may be mapped at several pages — the ring
  buffer maps its data pages twice so a record that wraps reads contiguously — so vmap'd memory
  is reached only by walking the table page by page, never through a flat view.  Each area is
  followed by an unmapped guard page, so running off its end faults.

Hot paths (:meth:`KernelVM.read`, :meth:`KernelVM.write`, :meth:`KernelVM.translate`) try the
direct map first with a couple of attribute lookups and fall back to the page walk.  The cache
model will price accesses by the physical ranges :meth:`KernelVM.phys_ranges` reports; this
module only moves data.
"""

from __future__ import annotations

import errno
from bisect import bisect_left, insort
from collections.abc import Sequence

from kbpf.errors import BpfError
from sim.mem.physical import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, MemoryFault, PhysicalMemory

#: Start of the direct map (x86-64, 4-level paging, no KASLR).
PAGE_OFFSET = 0xFFFF_8880_0000_0000
#: The vmalloc area (x86-64, 4-level paging): 32 TiB.
VMALLOC_START = 0xFFFF_C900_0000_0000
VMALLOC_END = 0xFFFF_E8FF_FFFF_FFFF

_OFFSET_MASK = PAGE_SIZE - 1
_UNMAPPED = "unmapped kernel address"


class KernelVM:
    """Direct map plus vmap page tables over one :class:`PhysicalMemory`."""

    def __init__(self, phys: PhysicalMemory):
        self.phys = phys
        self._buf = phys.buf
        self._direct_size = phys.size
        self._pt: dict[int, int] = {}  # vmalloc-area virtual page number -> pfn
        self._areas: dict[int, int] = {}  # area start address -> pages (guard page excluded)
        self._starts: list[int] = []  # area starts, sorted (first-fit address search)

    # -- address conversion -------------------------------------------------------------------

    def phys_to_virt(self, phys: int) -> int:
        """The direct-map address of physical address ``phys``."""
        if not 0 <= phys < self._direct_size:
            raise ValueError(f"physical address {phys:#x} beyond memory ({self._direct_size:#x})")
        return PAGE_OFFSET + phys

    def virt_to_phys(self, vaddr: int) -> int:
        """The physical address of a *direct-map* address (Linux's ``__pa``); see
        :meth:`translate` for any kernel address."""
        off = vaddr - PAGE_OFFSET
        if 0 <= off < self._direct_size:
            return off
        raise ValueError(f"{vaddr:#x} is not a direct-map address")

    def is_direct(self, vaddr: int) -> bool:
        return 0 <= vaddr - PAGE_OFFSET < self._direct_size

    def translate(self, addr: int, access: str = "access") -> int:
        """The physical address behind kernel address ``addr``; MemoryFault (naming
        ``access``) if unmapped."""
        off = addr - PAGE_OFFSET
        if 0 <= off < self._direct_size:
            return off
        pfn = self._pt.get(addr >> PAGE_SHIFT)
        if pfn is None:
            raise MemoryFault(addr, access, _UNMAPPED)
        return (pfn << PAGE_SHIFT) | (addr & _OFFSET_MASK)

    # -- data movement ------------------------------------------------------------------------

    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr``; pages of a vmap'd range are resolved one by one."""
        off = addr - PAGE_OFFSET
        end = off + size
        if 0 <= off <= end <= self._direct_size:  # direct map: one slice
            return self._buf[off:end]
        page_off = addr & _OFFSET_MASK
        if 0 <= size <= PAGE_SIZE - page_off:  # within one vmap'd page: one lookup, one slice
            pfn = self._pt.get(addr >> PAGE_SHIFT)
            if pfn is not None:
                p = (pfn << PAGE_SHIFT) | page_off
                return self._buf[p : p + size]
        buf = self._buf
        return b"".join([buf[p : p + n] for p, n in self.phys_ranges(addr, size, "read")])

    def write(self, addr: int, data) -> None:
        """Write ``data`` (any bytes-like object) at ``addr``.  A write that would fault anywhere
        writes nothing: every page is resolved before the first byte moves."""
        off = addr - PAGE_OFFSET
        end = off + len(data)
        if 0 <= off <= end <= self._direct_size:
            self._buf[off:end] = data
            return
        page_off = addr & _OFFSET_MASK
        if end - off <= PAGE_SIZE - page_off:  # within one vmap'd page
            pfn = self._pt.get(addr >> PAGE_SHIFT)
            if pfn is not None:
                p = (pfn << PAGE_SHIFT) | page_off
                self._buf[p : p + end - off] = data
                return
        buf = self._buf
        view = memoryview(data).cast("B")
        pos = 0
        for p, n in self.phys_ranges(addr, len(view), "write"):
            buf[p : p + n] = view[pos : pos + n]
            pos += n

    def phys_ranges(self, vaddr: int, size: int, access: str = "read") -> list[tuple[int, int]]:
        """The physical pieces ``(phys, length)`` that ``[vaddr, vaddr+size)`` covers, in order.

        One piece in the direct map; for a vmap'd range, one per run of physically consecutive
        pages.  This is the seam for the cache model: it prices an access by these ranges.
        Raises :class:`MemoryFault` naming the first unmapped byte.
        """
        if size < 0:
            raise ValueError(f"{access} of negative size {size} at {vaddr:#x}")
        off = vaddr - PAGE_OFFSET
        direct = self._direct_size
        if 0 <= off <= off + size <= direct:
            return [(off, size)]
        if size == 0:
            return []
        if 0 <= off < direct:  # starts in the direct map, runs off its end
            raise MemoryFault(PAGE_OFFSET + direct, access, _UNMAPPED, vaddr, size)
        pt = self._pt
        out: list[tuple[int, int]] = []
        addr, end = vaddr, vaddr + size
        while addr < end:
            pfn = pt.get(addr >> PAGE_SHIFT)
            if pfn is None:
                raise MemoryFault(addr, access, _UNMAPPED, vaddr, size)
            n = min(end, (addr & PAGE_MASK) + PAGE_SIZE) - addr
            p = (pfn << PAGE_SHIFT) | (addr & _OFFSET_MASK)
            if out and out[-1][0] + out[-1][1] == p:
                out[-1] = (out[-1][0], out[-1][1] + n)
            else:
                out.append((p, n))
            addr += n
        return out

    def contiguous(self, vaddr: int, size: int):
        """``(buf, offset)`` if ``[vaddr, vaddr+size)`` is one physically contiguous piece the
        engine may slice directly (``buf[offset:offset+size]``), else None.

        Always so inside the direct map; for a vmap'd range only within one page.  None also
        for unmapped memory: the caller's slow path (:meth:`read`/:meth:`write`) raises the
        fault with its message.
        """
        off = vaddr - PAGE_OFFSET
        if 0 <= off <= off + size <= self._direct_size:
            return self._buf, off
        page_off = vaddr & _OFFSET_MASK
        if size < 0 or page_off + size > PAGE_SIZE:
            return None
        pfn = self._pt.get(vaddr >> PAGE_SHIFT)
        if pfn is None:
            return None
        return self._buf, (pfn << PAGE_SHIFT) | page_off

    # -- vmap ---------------------------------------------------------------------------------

    def vmap(self, pfns: Sequence[int]) -> int:
        """Map frames ``pfns`` in order at consecutive pages of a new area; return its address.

        A frame may appear more than once (aliasing).  The area is placed at the lowest free
        address of the vmalloc area with room for it and its guard page (first fit, so addresses
        are reproducible and freed areas are reused, as Linux reuses purged vmap areas).
        """
        pfns = list(pfns)
        if not pfns:
            raise BpfError(errno.EINVAL, "vmap of zero pages")
        nframes = self.phys.nframes
        for i, pfn in enumerate(pfns):
            if not (isinstance(pfn, int) and 0 <= pfn < nframes):
                raise BpfError(
                    errno.EINVAL, f"vmap: page {i} frame {pfn!r} is not a frame (0..{nframes - 1})"
                )
        need = (len(pfns) + 1) << PAGE_SHIFT  # the area and its guard page
        start = VMALLOC_START
        for s in self._starts:
            if s - start >= need:
                break
            start = s + ((self._areas[s] + 1) << PAGE_SHIFT)
        if start + need - 1 > VMALLOC_END:
            raise BpfError(errno.ENOMEM, f"vmap of {len(pfns)} pages: vmalloc area exhausted")
        insort(self._starts, start)
        self._areas[start] = len(pfns)
        vpn = start >> PAGE_SHIFT
        pt = self._pt
        for i, pfn in enumerate(pfns):
            pt[vpn + i] = pfn
        return start

    def unmap(self, vaddr: int) -> None:
        """Remove the whole area that starts at ``vaddr`` (``vunmap``).  Frames are not freed."""
        npages = self._areas.pop(vaddr, None)
        if npages is None:
            raise RuntimeError(f"unmap of {vaddr:#x}, which is not the start of a vmap area")
        del self._starts[bisect_left(self._starts, vaddr)]
        vpn = vaddr >> PAGE_SHIFT
        pt = self._pt
        for i in range(npages):
            del pt[vpn + i]

    def areas(self) -> list[tuple[int, int]]:
        """Live vmap areas as ``(start, pages)``, by address."""
        return [(s, self._areas[s]) for s in self._starts]

    @property
    def vmap_pages(self) -> int:
        return len(self._pt)

    def __repr__(self) -> str:
        return f"KernelVM(direct map {self._direct_size >> 20} MiB, {len(self._areas)} vmap areas)"
