"""Per-process user address spaces: mmap, munmap, mprotect and page permissions.

Each simulated process has a page table from virtual page number to a page-table entry that,
as on real hardware, is one integer: the frame's physical address in the high bits and flags in
the low twelve — the ``PROT_*`` bits, whether the frame belongs to the mapping (anonymous memory,
freed on munmap) and whether the mapping may ever become writable.  A lookup is one dict get and
a mask.

Two kinds of mapping:

* :meth:`UserAddressSpace.mmap_anon` — fresh zeroed frames, populated at once (as with
  ``MAP_POPULATE``), so a fault is always a permission or unmapped error, never a page-in;
* :meth:`UserAddressSpace.mmap_frames` — existing kernel frames shown to the process with a
  protection per page: how a ring buffer is mmap'd (the consumer page writable, the producer
  page and data pages read-only, and never made writable by ``mprotect``, as Linux clears
  ``VM_MAYWRITE`` on them).

Readability follows x86: a page with any of read, write or execute permission can be read.
New mappings are placed top-down below ``MMAP_BASE``, first fit, like Linux's default layout, so
addresses look familiar (``0x7ffff7fff000``) and are reproducible.
"""

from __future__ import annotations

import errno
from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass

from kbpf.errors import BpfError
from sim.mem.buddy import BuddyAllocator
from sim.mem.physical import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, MemoryFault, PhysicalMemory

PROT_NONE = 0
PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4
_PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC

#: Lowest mappable address (``vm.mmap_min_addr``) and the end of user space (x86-64 TASK_SIZE).
USER_START = 0x10000
USER_END = 0x7FFF_FFFF_F000
#: Where top-down mmap placement starts (the top of the mmap area without ASLR).
MMAP_BASE = 0x7FFF_F800_0000

_PTE_ANON = 0x100  # the frame belongs to this mapping: freed on munmap
_PTE_MAYWRITE = 0x200  # mprotect may add PROT_WRITE
_OFFSET_MASK = PAGE_SIZE - 1

_UNMAPPED = "unmapped"
_READ_ONLY = "write to read-only page"
_NO_ACCESS = "read of a PROT_NONE page"


@dataclass(frozen=True, slots=True)
class Mapping:
    """A run of pages with one protection and kind, as a line of ``/proc/PID/maps`` shows it."""

    start: int
    end: int
    prot: int
    anonymous: bool

    def __str__(self) -> str:
        perms = "".join(
            c if self.prot & bit else "-"
            for c, bit in (("r", PROT_READ), ("w", PROT_WRITE), ("x", PROT_EXEC))
        )
        kind = "[anon]" if self.anonymous else "[kernel frames]"
        return f"{self.start:012x}-{self.end:012x} {perms}p {kind}"


class UserAddressSpace:
    """One process's user memory over shared physical memory and buddy allocator."""

    def __init__(self, phys: PhysicalMemory, buddy: BuddyAllocator):
        self.phys = phys
        self.buddy = buddy
        self._buf = phys.buf
        self._pt: dict[int, int] = {}  # vpn -> pte = phys page | flags
        # Mapped regions as [start, end) pairs, sorted, for placing new mappings and for
        # mappings(); a munmap in the middle of one splits it.
        self._vmas: list[tuple[int, int]] = []

    # -- mapping ------------------------------------------------------------------------------

    def mmap_anon(self, size: int, prot: int = PROT_READ | PROT_WRITE) -> int:
        """Map ``size`` bytes (rounded up to pages) of zeroed memory; return the address."""
        _check_prot(prot)
        npages = _pages("mmap", size)
        addr = self._place(npages)
        buddy, phys = self.buddy, self.phys
        pfns: list[int] = []
        try:
            for _ in range(npages):
                pfns.append(buddy.alloc(0))
        except BpfError:
            for pfn in pfns:
                buddy.free(pfn, 0)
            raise
        flags = prot | _PTE_ANON | _PTE_MAYWRITE
        vpn = addr >> PAGE_SHIFT
        pt = self._pt
        for i, pfn in enumerate(pfns):
            phys.zero(pfn << PAGE_SHIFT, PAGE_SIZE)
            pt[vpn + i] = (pfn << PAGE_SHIFT) | flags
        insort(self._vmas, (addr, addr + (npages << PAGE_SHIFT)))
        return addr

    def mmap_frames(self, pfns: Sequence[int], prots: int | Sequence[int]) -> int:
        """Map existing frames, in order, at consecutive pages; ``prots`` is one protection for
        all pages or one per page.  The frames stay the kernel's: munmap does not free them, and
        a page mapped without PROT_WRITE can never be made writable."""
        pfns = list(pfns)
        if not pfns:
            raise BpfError(errno.EINVAL, "mmap of zero frames")
        prot_list = [prots] * len(pfns) if isinstance(prots, int) else list(prots)
        if len(prot_list) != len(pfns):
            raise BpfError(
                errno.EINVAL, f"mmap_frames: {len(pfns)} frames but {len(prot_list)} protections"
            )
        nframes = self.phys.nframes
        for i, (pfn, prot) in enumerate(zip(pfns, prot_list, strict=True)):
            _check_prot(prot)
            if not (isinstance(pfn, int) and 0 <= pfn < nframes):
                raise BpfError(errno.EINVAL, f"mmap_frames: page {i} frame {pfn!r} is not a frame")
        addr = self._place(len(pfns))
        vpn = addr >> PAGE_SHIFT
        pt = self._pt
        for i, (pfn, prot) in enumerate(zip(pfns, prot_list, strict=True)):
            pt[vpn + i] = (pfn << PAGE_SHIFT) | prot | (_PTE_MAYWRITE if prot & PROT_WRITE else 0)
        insort(self._vmas, (addr, addr + (len(pfns) << PAGE_SHIFT)))
        return addr

    def munmap(self, addr: int, size: int) -> None:
        """Unmap every page in ``[addr, addr+size)`` (unmapped pages in the range are fine, as in
        Linux); anonymous frames go back to the buddy allocator."""
        _check_page_aligned("munmap", addr)
        npages = _pages("munmap", size)
        end = addr + (npages << PAGE_SHIFT)
        if not USER_START <= addr < end <= USER_END:
            raise BpfError(errno.EINVAL, f"munmap [{addr:#x}, {end:#x}) outside user space")
        pt, buddy = self._pt, self.buddy
        vpn = addr >> PAGE_SHIFT
        for i in range(npages):
            pte = pt.pop(vpn + i, None)
            if pte is not None and pte & _PTE_ANON:
                buddy.free(pte >> PAGE_SHIFT, 0)
        vmas: list[tuple[int, int]] = []
        for s, e in self._vmas:
            if e <= addr or s >= end:
                vmas.append((s, e))
            else:
                if s < addr:
                    vmas.append((s, addr))
                if e > end:
                    vmas.append((end, e))
        self._vmas = vmas

    def mprotect(self, addr: int, size: int, prot: int) -> None:
        """Change the protection of every page in the range.  ENOMEM if a page is unmapped,
        EACCES if PROT_WRITE is asked of a page that may not be written (all or nothing)."""
        _check_page_aligned("mprotect", addr)
        _check_prot(prot)
        npages = _pages("mprotect", size)
        pt = self._pt
        vpn = addr >> PAGE_SHIFT
        for i in range(npages):
            pte = pt.get(vpn + i)
            if pte is None:
                raise BpfError(errno.ENOMEM, f"mprotect: {(vpn + i) << PAGE_SHIFT:#x} is unmapped")
            if prot & PROT_WRITE and not pte & _PTE_MAYWRITE:
                raise BpfError(
                    errno.EACCES,
                    f"mprotect: {(vpn + i) << PAGE_SHIFT:#x} maps a kernel page that may not "
                    "be made writable",
                )
        for i in range(npages):
            pt[vpn + i] = (pt[vpn + i] & ~_PROT_ALL) | prot

    def destroy(self) -> None:
        """Unmap everything (process exit): anonymous frames go back to the buddy allocator."""
        for s, e in list(self._vmas):
            self.munmap(s, e - s)

    # -- access -------------------------------------------------------------------------------

    def translate(self, addr: int, write: bool = False) -> int:
        """The physical address behind user address ``addr`` for a read or a write; MemoryFault
        if unmapped or not permitted."""
        pte = self._pt.get(addr >> PAGE_SHIFT)
        if pte is not None and pte & (PROT_WRITE if write else _PROT_ALL):
            return (pte & PAGE_MASK) | (addr & _OFFSET_MASK)
        raise self._fault(addr, write, pte, addr, 1)

    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr``; MemoryFault naming the first byte that may not be read."""
        off = addr & _OFFSET_MASK
        if 0 <= size <= PAGE_SIZE - off:  # within one page: the common case
            pte = self._pt.get(addr >> PAGE_SHIFT)
            if pte is not None and pte & _PROT_ALL:
                p = (pte & PAGE_MASK) | off
                return self._buf[p : p + size]
        buf = self._buf
        return b"".join([buf[p : p + n] for p, n in self.phys_ranges(addr, size, False)])

    def write(self, addr: int, data) -> None:
        """Write ``data`` at ``addr``; every page is checked before the first byte moves."""
        size = len(data)
        off = addr & _OFFSET_MASK
        if size <= PAGE_SIZE - off:  # within one page: the common case
            pte = self._pt.get(addr >> PAGE_SHIFT)
            if pte is not None and pte & PROT_WRITE:
                p = (pte & PAGE_MASK) | off
                self._buf[p : p + size] = data
                return
        view = memoryview(data).cast("B")
        buf = self._buf
        pos = 0
        for p, n in self.phys_ranges(addr, len(view), True):
            buf[p : p + n] = view[pos : pos + n]
            pos += n

    def copy_from_user(self, addr: int, size: int) -> bytes:
        """What the kernel's ``copy_from_user`` does for a syscall or helper: the bytes, or
        ``BpfError(EFAULT)`` — a plain BpfError, not a MemoryFault, because the caller turns it
        into -EFAULT rather than faulting."""
        try:
            return self.read(addr, size)
        except MemoryFault as fault:
            raise BpfError(errno.EFAULT, f"copy_from_user: {fault.strerror}") from None

    def copy_to_user(self, addr: int, data) -> None:
        """``copy_to_user``: all of ``data`` or nothing (unlike Linux, which may copy a prefix
        before the faulting page; callers only ever see -EFAULT either way), else EFAULT."""
        try:
            self.write(addr, data)
        except MemoryFault as fault:
            raise BpfError(errno.EFAULT, f"copy_to_user: {fault.strerror}") from None

    def strncpy_from_user(self, addr: int, max_len: int) -> bytes:
        """A NUL-terminated string at ``addr``, without its NUL, at most ``max_len`` bytes (the
        string is cut there, as ``strncpy_from_user`` leaves it).  EFAULT if an unreadable byte
        comes before the NUL."""
        out = bytearray()
        while len(out) < max_len:
            n = min(max_len - len(out), PAGE_SIZE - (addr & _OFFSET_MASK))
            try:
                chunk = self.read(addr, n)
            except MemoryFault as fault:
                raise BpfError(errno.EFAULT, f"strncpy_from_user: {fault.strerror}") from None
            nul = chunk.find(0)
            if nul >= 0:
                out += chunk[:nul]
                break
            out += chunk
            addr += n
        return bytes(out)

    def phys_ranges(self, addr: int, size: int, write: bool = False) -> list[tuple[int, int]]:
        """Physical pieces ``(phys, length)`` of ``[addr, addr+size)``, one per page, after
        checking every page for the access (the seam for the cache model, as in KernelVM)."""
        if size < 0:
            raise ValueError(f"user access of negative size {size} at {addr:#x}")
        need = PROT_WRITE if write else _PROT_ALL
        pt = self._pt
        out: list[tuple[int, int]] = []
        a, end = addr, addr + size
        while a < end:
            pte = pt.get(a >> PAGE_SHIFT)
            if pte is None or not pte & need:
                raise self._fault(a, write, pte, addr, size)
            n = min(end, (a & PAGE_MASK) + PAGE_SIZE) - a
            out.append(((pte & PAGE_MASK) | (a & _OFFSET_MASK), n))
            a += n
        return out

    @staticmethod
    def _fault(addr: int, write: bool, pte: int | None, start: int, size: int) -> MemoryFault:
        if pte is None:
            reason = _UNMAPPED
        else:
            reason = _READ_ONLY if write else _NO_ACCESS
        return MemoryFault(addr, "write" if write else "read", reason, start, size)

    # -- inspection ---------------------------------------------------------------------------

    def mappings(self) -> list[Mapping]:
        """The mapped pages as runs of one protection and kind, by address."""
        out: list[Mapping] = []
        pt = self._pt
        for s, e in self._vmas:
            run_start, run_key = s, None
            for a in range(s, e, PAGE_SIZE):
                pte = pt[a >> PAGE_SHIFT]
                key = (pte & _PROT_ALL, bool(pte & _PTE_ANON))
                if key != run_key:
                    if run_key is not None:
                        out.append(Mapping(run_start, a, *run_key))
                    run_start, run_key = a, key
            out.append(Mapping(run_start, e, *run_key))
        return out

    @property
    def mapped_pages(self) -> int:
        return len(self._pt)

    def _place(self, npages: int) -> int:
        """Top-down first fit: the highest free range of ``npages`` pages below MMAP_BASE."""
        size = npages << PAGE_SHIFT
        top = MMAP_BASE
        for s, e in reversed(self._vmas):
            if e > top:
                top = min(top, s)
                continue
            if top - e >= size:
                break
            top = s
        if top - size < USER_START:
            raise BpfError(errno.ENOMEM, f"mmap of {npages} pages: user address space exhausted")
        return top - size

    def __repr__(self) -> str:
        return f"UserAddressSpace({len(self._pt)} pages mapped in {len(self._vmas)} regions)"


def _check_prot(prot: int) -> None:
    if not isinstance(prot, int) or prot & ~_PROT_ALL:
        raise BpfError(
            errno.EINVAL, f"invalid protection {prot!r} (PROT_READ|PROT_WRITE|PROT_EXEC)"
        )


def _check_page_aligned(what: str, addr: int) -> None:
    if addr & _OFFSET_MASK:
        raise BpfError(errno.EINVAL, f"{what}: address {addr:#x} is not page-aligned")


def _pages(what: str, size: int) -> int:
    if size <= 0:
        raise BpfError(errno.EINVAL, f"{what} of {size} bytes")
    return (size + PAGE_SIZE - 1) >> PAGE_SHIFT
