"""User-memory accesses of a simulated reader task, priced by the caches.

A consumer task reads records from pages the producers' CPUs wrote and writes the consumer
position they read: that traffic moves cache lines between cores, as it does on real hardware.
Reads and writes go through the process's page tables to the physical line, which the cache model
prices at the task's time; the cost accumulates as ``debt_ps`` for the task to run off.  Outside a
task (a passive ``consume()`` from Python) nothing is priced, as API.md §3 asks of calls made
between runs.
"""

from __future__ import annotations

from sim.mem import PAGE_OFFSET, PAGE_SIZE


class PricedUserMemory:
    def __init__(self, machine, mm):
        self.m = machine
        self.mm = mm
        self.cpu: int | None = None  # set while a task on that CPU is reading
        self.debt_ps = 0

    def _price(self, addr: int, size: int, write: bool) -> None:
        cache = self.m.cache
        now = self.m.env.now
        end = addr + size
        while addr < end:
            chunk = min(end, (addr // PAGE_SIZE + 1) * PAGE_SIZE) - addr
            phys = self.mm.translate(addr, write)
            self.debt_ps += cache.access(
                self.cpu, PAGE_OFFSET + phys, chunk, write, now + self.debt_ps
            )
            addr += chunk

    def read(self, addr: int, size: int) -> bytes:
        if self.cpu is not None:
            self._price(addr, size, False)
        return self.mm.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        if self.cpu is not None:
            self._price(addr, len(data), True)
        self.mm.write(addr, data)

    def take_debt_ns(self) -> int:
        """The priced time so far, in whole ns (the remainder carries over), and clear it."""
        ns, self.debt_ps = divmod(self.debt_ps, 1000)
        return ns
