"""Processes and tasks: who owns fds and user memory, and what helpers 14 and 16 report."""

from __future__ import annotations

from dataclasses import dataclass, field

from kbpf.host import TaskInfo
from sim.kernel.fdtable import FdTable


@dataclass(eq=False)
class Process:
    """A user process: a thread-group id, a name, an address space and an fd table.

    The tasks of a process share its ``mm`` and ``fds``; ``main`` is its first task.
    """

    pid: int
    comm: str
    mm: object  # sim.mem.UserAddressSpace
    fds: FdTable = field(default_factory=FdTable)

    @property
    def main(self) -> TaskInfo:
        return TaskInfo(pid=self.pid, tgid=self.pid, comm=self.comm[:15])


def idle_task(cpu: int) -> TaskInfo:
    """The idle task of ``cpu``: pid 0, tgid 0, ``swapper/N`` (what Linux shows)."""
    return TaskInfo(pid=0, tgid=0, comm=f"swapper/{cpu}")
