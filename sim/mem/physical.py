"""Simulated physical memory: one anonymous mmap cut into 4 KiB frames.

The whole of physical memory is a single ``mmap.mmap(-1, size)``: the host OS hands out its
pages only when they are first written, so a 256 MiB machine costs a few hundred kilobytes of
bookkeeping until it is used (test suites build hundreds of machines).  The engine slices the
mmap directly — the byte at physical address ``p`` is ``buf[p]`` — so nothing here may copy or
replace it.

Every access through this module is *data movement only*: timing belongs to the cache model,
which sees the physical addresses (:meth:`sim.mem.kernel_vm.KernelVM.phys_ranges`) and never
the bytes.

:class:`MemoryFault` lives here because every layer above raises it.
"""

from __future__ import annotations

import errno
import mmap

from kbpf.errors import BpfError

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
#: ``addr & PAGE_MASK`` is the start of ``addr``'s page (a negative int masks any width).
PAGE_MASK = -PAGE_SIZE

# Zeroing: slices of one shared zero buffer (a memoryview slice copies nothing).  Ranges of at
# least _MADVISE_MIN bytes are handed back to the OS instead (MADV_DONTNEED on a private
# anonymous mapping reads back as zeros): cheaper than writing zeros past a few dozen KiB, and it
# returns the memory, so a big allocation costs nothing until it is touched.
_ZERO_CHUNK = 64 * 1024
_ZEROS = memoryview(bytes(_ZERO_CHUNK))
_MADVISE_MIN = 256 * 1024
_HOST_PAGE = mmap.PAGESIZE
_CAN_MADVISE = hasattr(mmap.mmap, "madvise") and hasattr(mmap, "MADV_DONTNEED")


class MemoryFault(BpfError):
    """An access to an address that is not mapped, or not mapped for that access.

    ``errno`` is EFAULT.  ``addr`` is the first byte that faulted; ``access`` is what was being
    done (``"read"``, ``"write"``); ``reason`` says why (``"unmapped"``, ``"write to read-only
    page"``).  The message names all three in hex, and the whole access when it started earlier.
    The engine turns this into a program fault; host operations that Linux fails with -EFAULT
    (``copy_from_user``) raise a plain :class:`BpfError` instead, so a helper's -EFAULT is never
    mistaken for a fault of the program.
    """

    def __init__(
        self, addr: int, access: str, reason: str, start: int | None = None, size: int = 0
    ):
        self.addr = addr
        self.access = access
        self.reason = reason
        self.start = addr if start is None else start
        self.size = size
        where = f"{access} of {size} bytes at {self.start:#x}" if size else f"{access} at {addr:#x}"
        if self.start != addr:
            where += f" faulted at {addr:#x}"
        super().__init__(errno.EFAULT, f"{where}: {reason}")

    def __reduce__(self):
        # OSError pickles as (errno, strerror), which is not this __init__'s signature; results
        # of parallel sweeps carry faults across processes.
        return (type(self), (self.addr, self.access, self.reason, self.start, self.size))


class PhysicalMemory:
    """``size_bytes`` of physical memory in 4 KiB frames, backed lazily by the host OS.

    ``buf`` is the mmap itself; ``nframes`` the frame count.  :meth:`read`, :meth:`write` and
    :meth:`zero` check bounds (a physical address past the end is a :class:`MemoryFault`); code
    on a hot path that has already translated an address slices ``buf`` directly.
    """

    __slots__ = ("buf", "size", "nframes")

    def __init__(self, size_bytes: int):
        if size_bytes <= 0 or size_bytes % PAGE_SIZE:
            raise ValueError(
                f"physical memory size {size_bytes} must be a positive multiple of {PAGE_SIZE}"
            )
        self.size = size_bytes
        self.nframes = size_bytes >> PAGE_SHIFT
        # MAP_PRIVATE (Python's default is MAP_SHARED): private anonymous pages are not shmem,
        # count in RSS only once written, and MADV_DONTNEED turns them back into zero pages.
        self.buf = mmap.mmap(-1, size_bytes, flags=mmap.MAP_PRIVATE)

    def read(self, phys: int, size: int) -> bytes:
        end = phys + size
        if 0 <= phys <= end <= self.size:
            return self.buf[phys:end]
        raise self._out_of_range(phys, size, "read")

    def write(self, phys: int, data) -> None:
        end = phys + len(data)
        if 0 <= phys <= end <= self.size:
            self.buf[phys:end] = data
            return
        raise self._out_of_range(phys, len(data), "write")

    def zero(self, phys: int, size: int) -> None:
        """Fill ``[phys, phys+size)`` with zeros (allocators zero what they hand out)."""
        end = phys + size
        if not 0 <= phys <= end <= self.size:
            raise self._out_of_range(phys, size, "zero")
        buf = self.buf
        if size <= _ZERO_CHUNK:
            buf[phys:end] = _ZEROS[:size]
            return
        if _CAN_MADVISE and size >= _MADVISE_MIN:
            # Give the host-page-aligned middle back to the OS; write zeros over the edges.
            lo = -(-phys // _HOST_PAGE) * _HOST_PAGE
            hi = end // _HOST_PAGE * _HOST_PAGE
            if hi > lo:
                buf.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
                self._fill_zero(phys, lo)
                self._fill_zero(hi, end)
                return
        self._fill_zero(phys, end)

    def _fill_zero(self, start: int, end: int) -> None:
        buf = self.buf
        while start < end:
            n = min(_ZERO_CHUNK, end - start)
            buf[start : start + n] = _ZEROS[:n]
            start += n

    def close(self) -> None:
        """Give the mapping back to the OS now rather than when garbage-collected."""
        self.buf.close()

    def _out_of_range(self, phys: int, size: int, access: str) -> Exception:
        if size < 0:
            return ValueError(f"{access} of negative size {size} at physical {phys:#x}")
        bad = phys if not 0 <= phys < self.size else self.size
        return MemoryFault(
            bad, f"physical {access}", f"beyond physical memory ({self.size:#x} bytes)", phys, size
        )

    def __repr__(self) -> str:
        return f"PhysicalMemory({self.size >> 20} MiB, {self.nframes} frames)"
