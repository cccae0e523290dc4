"""The memory a running program may touch: regions, the set of them, and the fault.

Linux proves at load time that a program only dereferences pointers it was given (its stack,
its context, map values, ring-buffer reservations, global data).  kbpf-sim has no verifier, so
it checks at run time instead: every load and store of a program goes to an address inside one
of the :class:`Region` s of the invocation's :class:`RegionSet`, or the program stops with a
:class:`ProgramFault` (EFAULT) naming the program, the instruction and the address.

A region is backed either by a flat writable buffer (the direct map, the stack: byte ``a`` is
``buf[base + a - start]``) or, for memory that is only reachable by walking page tables (vmap'd
ring-buffer pages, which map one frame at two addresses), by ``reader``/``writer`` callables.
"""

from __future__ import annotations

import errno
from bisect import bisect_right
from collections.abc import Callable

from kbpf.errors import BpfError


class ProgramFault(BpfError):
    """A program touched memory it may not: EFAULT, naming program, instruction and address.

    ``str(fault)`` reads like ``[EFAULT] prog 'p': insn 7: read of 4 bytes at
    0xffff888000123000 outside any region it may touch``.
    """

    def __init__(self, prog_name: str, pc: int, addr: int, message: str):
        super().__init__(errno.EFAULT, f"prog '{prog_name}': insn {pc}: {message}")
        self.prog_name = prog_name
        self.pc = pc
        self.addr = addr


class Region:
    """An address range ``[start, end)`` a program may touch.

    ``buf``/``base``: a writable buffer (``bytearray``, ``mmap.mmap`` or ``memoryview``) where the
    byte at address ``a`` is ``buf[base + (a - start)]``; or ``buf`` is None and ``reader(addr,
    size) -> bytes`` / ``writer(addr, data)`` reach the memory (vmap'd pages).  ``writable``
    False makes stores fault (``.rodata``, a tracepoint's context).  ``shared`` is False only for
    the program's own stack: accesses to it never meet the simulated clock.
    """

    __slots__ = ("start", "end", "writable", "buf", "base", "name", "shared", "reader", "writer")

    def __init__(
        self,
        start: int,
        end: int,
        *,
        writable: bool = True,
        buf=None,
        base: int = 0,
        name: str = "",
        shared: bool = True,
        reader: Callable[[int, int], bytes] | None = None,
        writer: Callable[[int, bytes], None] | None = None,
    ):
        if end <= start:
            raise ValueError(f"region {name!r}: empty range [{start:#x}, {end:#x})")
        if buf is None and reader is None:
            raise ValueError(f"region {name!r}: needs a buffer or a reader")
        if buf is not None and base + (end - start) > len(buf):
            raise ValueError(
                f"region {name!r}: buffer of {len(buf)} bytes is shorter than base {base} + "
                f"size {end - start}"
            )
        self.start = start
        self.end = end
        self.writable = writable
        self.buf = buf
        self.base = base
        self.name = name
        self.shared = shared
        self.reader = reader
        self.writer = writer

    def read(self, addr: int, size: int) -> bytes:
        """The ``size`` bytes at ``addr`` (which must lie inside the region)."""
        if self.buf is not None:
            o = self.base + addr - self.start
            return bytes(self.buf[o : o + size])
        return self.reader(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr`` (inside the region; permission is the caller's check)."""
        if self.buf is not None:
            o = self.base + addr - self.start
            self.buf[o : o + len(data)] = data
        elif self.writer is not None:
            self.writer(addr, bytes(data))
        else:
            raise BpfError(errno.EFAULT, f"region {self.name!r} has no writer")

    def __repr__(self) -> str:
        mode = "rw" if self.writable else "ro"
        return f"Region({self.name!r} [{self.start:#x}, {self.end:#x}) {mode})"


class RegionSet:
    """The regions one running invocation may touch, sorted by start, non-overlapping.

    :meth:`find` is a bisection over the starts.  The compiled program caches the last region
    each access site found (see :mod:`sim.cpu.codegen`), so ``find`` runs only when an access
    leaves the region its site used last; :attr:`version` changes whenever a region is removed,
    which is how those caches learn that a region they hold is gone (a ring-buffer reservation
    that was submitted).
    """

    __slots__ = ("_starts", "_regions", "version")

    def __init__(self, regions=()):
        self._starts: list[int] = []
        self._regions: list[Region] = []
        self.version = 0
        for r in regions:
            self.add(r)

    def add(self, region: Region) -> None:
        """Add ``region``; ``ValueError`` if it overlaps one already present."""
        i = bisect_right(self._starts, region.start)
        if i > 0 and self._regions[i - 1].end > region.start:
            raise ValueError(f"{region!r} overlaps {self._regions[i - 1]!r}")
        if i < len(self._regions) and self._regions[i].start < region.end:
            raise ValueError(f"{region!r} overlaps {self._regions[i]!r}")
        self._starts.insert(i, region.start)
        self._regions.insert(i, region)

    def remove(self, region: Region) -> None:
        """Remove ``region`` (the same object that was added); ``KeyError`` if absent."""
        i = bisect_right(self._starts, region.start) - 1
        if i < 0 or self._regions[i] is not region:
            raise KeyError(f"{region!r} is not in this region set")
        del self._starts[i]
        del self._regions[i]
        self.version += 1

    def find(self, addr: int, size: int, write: bool) -> Region | None:
        """The region holding all of ``[addr, addr + size)``, writable if ``write``; else None."""
        i = bisect_right(self._starts, addr) - 1
        if i >= 0:
            r = self._regions[i]
            if addr + size <= r.end and (r.writable or not write):
                return r
        return None

    def containing(self, addr: int) -> Region | None:
        """The region holding byte ``addr``, whatever its permissions."""
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._regions[i].end:
            return self._regions[i]
        return None

    def __iter__(self):
        return iter(list(self._regions))

    def __len__(self) -> int:
        return len(self._regions)

    def __repr__(self) -> str:
        return f"RegionSet({self._regions!r})"
