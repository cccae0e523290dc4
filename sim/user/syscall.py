"""How the simulated user process calls the kernel: arguments in its own memory, like libbpf.

Each call packs its ``bpf_attr`` and buffers into the process's anonymous memory, then enters
``bpf(2)`` with the user address; results come back through the same memory.
"""

from __future__ import annotations

from sim.kernel.process import Process

#: Size of the first scratch mapping; it grows (a fresh mapping) when a call needs more.
SCRATCH_BYTES = 64 * 1024


class UserCalls:
    """A process's view of system calls, with a bump-allocated scratch area per call."""

    def __init__(self, kernel, process: Process):
        self.kernel = kernel
        self.process = process
        self._size = SCRATCH_BYTES
        self._base = process.mm.mmap_anon(self._size, prot=3)
        self._used = 0
        self._retired: list[tuple[int, int]] = []

    def _reserve(self, size: int) -> int:
        size = (size + 7) & ~7
        if self._used + size > self._size:
            # Earlier buffers of this call stay valid: retire the area, unmap it at the next call.
            self._retired.append((self._base, self._size))
            self._size = max(self._size * 2, size * 2)
            self._base = self.process.mm.mmap_anon(self._size, prot=3)
            self._used = 0
        addr = self._base + self._used
        self._used += size
        return addr

    def begin(self) -> None:
        """Start a call: earlier scratch contents are dead."""
        for base, size in self._retired:
            self.process.mm.munmap(base, size)
        self._retired.clear()
        self._used = 0

    def put(self, data: bytes) -> int:
        addr = self._reserve(max(1, len(data)))
        if data:
            self.process.mm.write(addr, bytes(data))
        return addr

    def buffer(self, size: int) -> int:
        """A zeroed output buffer of ``size`` bytes."""
        addr = self._reserve(max(1, size))
        self.process.mm.write(addr, bytes(max(1, size)))
        return addr

    def get(self, addr: int, size: int) -> bytes:
        return self.process.mm.read(addr, size)

    def bpf(self, cmd: int, attr: bytes) -> int:
        """Enter ``bpf(cmd, &attr, sizeof(attr))`` with ``attr`` placed in user memory."""
        uattr = self.put(attr)
        return self.kernel.sys_bpf(self.process, cmd, uattr, len(attr))
