"""The buddy allocator: physical frames in power-of-two blocks, as Linux's page allocator.

A block of order ``k`` is ``2**k`` frames starting at a frame number (pfn) that is a multiple of
``2**k``; its *buddy* is the block of the same order at ``pfn ^ 2**k``.  Allocation takes the
smallest order that has a free block and splits it down, putting each unused upper half on the
free list of its order; freeing merges a block with its buddy for as long as the buddy is free.

Unlike Linux, which takes whatever heads a free list, allocation here always takes the
*lowest-addressed* free block of the smallest sufficient order, so a run is reproducible from
its seed alone and fresh machines lay out memory identically.

Frame 0 (and any further ``reserved`` frames) is never handed out, as on x86 where the first
frames belong to the firmware: physical address 0 is never a valid allocation.
"""

from __future__ import annotations

import errno
from heapq import heappop, heappush

from kbpf.errors import BpfError


class BuddyAllocator:
    """Free lists per order over ``nframes`` frames; blocks up to ``2**max_order`` frames.

    ``free_frames`` counts free frames; :meth:`free_blocks` gives the free blocks per order (as
    ``/proc/buddyinfo`` shows them).  Exhaustion is ``BpfError(ENOMEM)``; freeing something not
    allocated, or with another order than it was allocated with, is a ``RuntimeError`` (a bug in
    the caller, never a condition a program can cause).
    """

    def __init__(self, nframes: int, max_order: int = 10, reserved: int = 1):
        if nframes <= 0:
            raise ValueError(f"buddy allocator needs at least one frame, got {nframes}")
        if not 0 <= max_order <= 20:
            raise ValueError(f"max_order {max_order} out of range 0..20")
        if not 0 <= reserved <= nframes:
            raise ValueError(f"reserved frames {reserved} out of range 0..{nframes}")
        self.nframes = nframes
        self.max_order = max_order
        self.reserved = reserved
        # Per order: the set of free block pfns (membership, for merging) and a min-heap of them
        # (lowest address first).  The heap may hold stale pfns — a block removed from the set by
        # a merge is left in its heap and skipped when popped — and is rebuilt from the set when
        # stale entries outnumber live ones, so it stays O(free blocks).
        self._free: list[set[int]] = [set() for _ in range(max_order + 1)]
        self._heap: list[list[int]] = [[] for _ in range(max_order + 1)]
        self._allocated: dict[int, int] = {}  # head pfn -> order
        self._contig: dict[int, int] = {}  # head pfn -> frames, for alloc_contig
        self.free_frames = nframes - reserved
        self._release_range(reserved, nframes)

    # -- allocation ---------------------------------------------------------------------------

    def alloc(self, order: int = 0) -> int:
        """Allocate ``2**order`` contiguous frames; return the first pfn.  Data is not zeroed."""
        if not 0 <= order <= self.max_order:
            if order < 0:
                raise ValueError(f"negative order {order}")
            raise BpfError(
                errno.ENOMEM, f"buddy allocator: order {order} exceeds max_order {self.max_order}"
            )
        free = self._free
        for o in range(order, self.max_order + 1):
            fs = free[o]
            if fs:
                heap = self._heap[o]
                pfn = heappop(heap)
                while pfn not in fs:  # stale entry left by a merge
                    pfn = heappop(heap)
                fs.remove(pfn)
                while o > order:  # split: keep the lower half, free the upper
                    o -= 1
                    self._push(pfn + (1 << o), o)
                self._allocated[pfn] = order
                self.free_frames -= 1 << order
                return pfn
        raise BpfError(
            errno.ENOMEM,
            f"buddy allocator: no free block of order {order} ({4 << order} KiB); "
            f"{self.free_frames} frames free, free blocks per order {self.free_blocks()}",
        )

    def free(self, pfn: int, order: int = 0) -> None:
        """Return a block :meth:`alloc` gave out, with the same order; it merges with its buddy."""
        got = self._allocated.get(pfn)
        if got is None:
            raise RuntimeError(
                f"buddy allocator: free of pfn {pfn:#x} (order {order}), which is not an "
                "allocated block (double free, or not the pfn alloc returned)"
            )
        if got != order:
            raise RuntimeError(
                f"buddy allocator: pfn {pfn:#x} was allocated with order {got} "
                f"but freed with order {order}"
            )
        del self._allocated[pfn]
        self.free_frames += 1 << order
        self._free_block(pfn, order)

    def alloc_contig(self, nframes: int) -> int:
        """Allocate exactly ``nframes`` physically contiguous frames, beyond ``max_order`` too.

        Like Linux's ``alloc_contig_pages``: find the lowest run of free max-order blocks that
        covers the request, take it, and give the unused tail back.  Free with
        :meth:`free_contig`.  This is how a large map gets one contiguous area where Linux would
        vmalloc it (the host protocol's ``kmalloc`` promises physical contiguity).
        """
        if nframes <= 0:
            raise ValueError(f"alloc_contig of {nframes} frames")
        top = self.max_order
        block = 1 << top
        nblocks = -(-nframes // block)
        run_start, run_len = -1, 0
        prev = None
        for pfn in sorted(self._free[top]):
            if prev is not None and pfn == prev + block:
                run_len += 1
            else:
                run_start, run_len = pfn, 1
            prev = pfn
            if run_len == nblocks:
                break
        else:
            raise BpfError(
                errno.ENOMEM,
                f"buddy allocator: no {nframes} contiguous free frames "
                f"({nblocks} adjacent free order-{top} blocks); {self.free_frames} frames free, "
                f"free blocks per order {self.free_blocks()}",
            )
        fs = self._free[top]
        for i in range(nblocks):
            fs.remove(run_start + i * block)  # their heap entries go stale
        self._contig[run_start] = nframes
        self.free_frames -= nframes
        self._release_range(run_start + nframes, run_start + nblocks * block)
        return run_start

    def free_contig(self, pfn: int, nframes: int) -> None:
        """Return frames from :meth:`alloc_contig` (same pfn and count)."""
        got = self._contig.get(pfn)
        if got != nframes:
            what = "is not a contiguous allocation" if got is None else f"holds {got} frames"
            raise RuntimeError(
                f"buddy allocator: free_contig of pfn {pfn:#x} ({nframes} frames), which {what}"
            )
        del self._contig[pfn]
        self.free_frames += nframes
        self._release_range(pfn, pfn + nframes)

    # -- inspection ---------------------------------------------------------------------------

    def free_blocks(self) -> list[int]:
        """Free blocks per order, index = order (``/proc/buddyinfo``)."""
        return [len(s) for s in self._free]

    @property
    def allocated_frames(self) -> int:
        return self.nframes - self.reserved - self.free_frames

    def is_allocated(self, pfn: int) -> bool:
        """Whether ``pfn`` heads a live allocation (from :meth:`alloc` or :meth:`alloc_contig`)."""
        return pfn in self._allocated or pfn in self._contig

    def order_of(self, pfn: int) -> int | None:
        """The order ``pfn`` was allocated with, or None."""
        return self._allocated.get(pfn)

    # -- internals ----------------------------------------------------------------------------

    def _push(self, pfn: int, order: int) -> None:
        fs = self._free[order]
        fs.add(pfn)
        heap = self._heap[order]
        if len(heap) > 2 * len(fs) + 16:
            heap[:] = sorted(fs)  # a sorted list is a heap; drops every stale entry
        else:
            heappush(heap, pfn)

    def _free_block(self, pfn: int, order: int) -> None:
        free = self._free
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            fs = free[order]
            if buddy not in fs:
                break
            fs.remove(buddy)  # its heap entry goes stale
            pfn &= buddy
            order += 1
        self._push(pfn, order)

    def _release_range(self, start: int, end: int) -> None:
        """Free ``[start, end)`` as the largest aligned blocks that fit, merging as they go."""
        pfn = start
        top = self.max_order
        while pfn < end:
            order = top if pfn == 0 else min(top, (pfn & -pfn).bit_length() - 1)
            while pfn + (1 << order) > end:
                order -= 1
            self._free_block(pfn, order)
            pfn += 1 << order

    def __repr__(self) -> str:
        return (
            f"BuddyAllocator({self.nframes} frames, {self.free_frames} free, "
            f"blocks per order {self.free_blocks()})"
        )
