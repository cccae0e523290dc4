"""SimHost: kbpf's host protocols implemented on the simulated machine.

kbpf asks its host for memory, time, the current CPU and task, user copies, randomness and
callbacks (``docs/host-protocol.md``).  SimHost answers from the machine's simulated memory, its
cores' local clocks, its processes and its seeded random stream.  Which CPU is "current" is set
by whoever runs kbpf code: a core while it drives a helper, CPU 0's facade task for syscalls
made from Python.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kbpf.errors import BpfError
from kbpf.host import TaskInfo, drive
from sim.kernel.process import Process, idle_task
from sim.kernel.tracepipe import TraceRecord

if TYPE_CHECKING:  # pragma: no cover
    from sim.kernel.kernel import Kernel

T = TypeVar("T")

#: Longest string ``string_from_user_cstr`` reads, like Linux's strncpy_from_user limits.
MAX_USER_STRING = 4096


class PerCpuList:
    """``PerCpuVariants``: one Python object per CPU, the current one chosen by the host."""

    __slots__ = ("_host", "_items")

    def __init__(self, host: SimHost, items: list[Any]):
        self._host = host
        self._items = items

    def get(self) -> Any:
        return self._items[self._host.cpu]

    def force_get(self, cpu: int) -> Any:
        return self._items[cpu]


class SimHost:
    """Implements :class:`kbpf.host.KernelAuxiliaryOps` and :class:`kbpf.host.PerCpuVariantsOps`."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.mem = kernel.mem
        self.cpu = 0  # the CPU running kbpf code right now
        self.process: Process | None = None  # the process whose syscall is being served
        self.program = None  # the program whose helper is running (for synchronous callbacks)
        self._rng = kernel.rng
        #: LRU policy of new LRU maps (kbpf reads ``host.lru_policy`` at map creation).
        self.lru_policy = kernel.m.lru

    # -- maps ---------------------------------------------------------------------------------
    def get_unified_map_from_ptr(self, ptr: int):
        umap = self.kernel.maps_by_addr.get(ptr)
        if umap is None:
            raise BpfError(errno.EINVAL, f"{ptr:#x} is not a map")
        return umap

    def get_unified_map_from_fd(self, map_fd: int):
        return self.kernel.map_from_fd(self._proc(), map_fd).umap

    def get_map_file_from_fd(self, map_fd: int):
        return self.kernel.map_from_fd(self._proc(), map_fd)

    def get_perf_event_from_fd(self, fd: int):
        return self.kernel.perf_event_from_fd(self.process, fd).event

    def get_unified_map_ptr_from_fd(self, map_fd: int) -> int:
        return self.get_unified_map_from_fd(map_fd).addr

    # -- user memory --------------------------------------------------------------------------
    def _proc(self) -> Process:
        if self.process is None:
            raise BpfError(errno.EFAULT, "no user process is making a system call")
        return self.process

    def copy_from_user(self, src: int, size: int) -> bytes:
        return self._proc().mm.copy_from_user(src, size)

    def copy_to_user(self, dest: int, data: bytes) -> None:
        self._proc().mm.copy_to_user(dest, data)

    def string_from_user_cstr(self, ptr: int) -> str:
        mm = self._proc().mm
        out = bytearray()
        while len(out) < MAX_USER_STRING:
            chunk = mm.copy_from_user(ptr + len(out), 1)
            if chunk == b"\0":
                return out.decode("utf-8", "replace")
            out += chunk
        raise BpfError(
            errno.E2BIG, f"user string at {ptr:#x} is longer than {MAX_USER_STRING} bytes"
        )

    # -- output and time ----------------------------------------------------------------------
    def current_cpu_id(self) -> int:
        return self.cpu

    def perf_event_output(self, ctx: int, fd: int, flags: int, data: bytes) -> None:
        drive(self.get_perf_event_from_fd(fd).write_event(data), self)

    def ebpf_write_str(self, text: str) -> None:
        task = self.current_task()
        self.kernel.trace.write(
            TraceRecord(self.cpu, self.ebpf_time_ns(), task.pid, task.comm, text)
        )

    def ebpf_time_ns(self) -> int:
        """The current CPU's clock: a core's local time runs ahead of the event clock."""
        return self.kernel.cpu_time_ps(self.cpu) // 1000

    # -- pages and mappings -------------------------------------------------------------------
    def alloc_page(self) -> int:
        return self.mem.alloc_page()

    def free_page(self, phys_addr: int) -> None:
        self.mem.free_page(phys_addr)

    def vmap(self, phys_addrs: Sequence[int]) -> int:
        return self.mem.vmap(phys_addrs)

    def unmap(self, vaddr: int) -> None:
        self.mem.unmap(vaddr)

    def kmalloc(self, size: int, align: int = 8) -> int:
        return self.mem.kmalloc(size, align)

    def kfree(self, addr: int) -> None:
        self.mem.kfree(addr)

    def read(self, addr: int, size: int) -> bytes:
        return self.mem.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self.mem.write(addr, data)

    # -- the world around ---------------------------------------------------------------------
    def random_u32(self) -> int:
        return int(self._rng.integers(0, 1 << 32))

    def current_task(self) -> TaskInfo:
        task = self.kernel.running_task(self.cpu)
        return task if task is not None else idle_task(self.cpu)

    def call_program(self, func: int, args: tuple[int, ...]) -> int:
        prog = self.program
        if prog is None:
            raise BpfError(errno.EINVAL, f"callback to {func:#x} with no program running")
        return self.kernel.call_functional(prog, self.cpu, func, args)

    # -- PerCpuVariantsOps --------------------------------------------------------------------
    def num_cpus(self) -> int:
        return self.kernel.ncpus

    def create(self, factory: Callable[[int], T]) -> PerCpuList:
        return PerCpuList(self, [factory(cpu) for cpu in range(self.kernel.ncpus)])

    def alloc_percpu(self, size: int, align: int = 8) -> list[int]:
        return self.mem.percpu.alloc(size, align)

    def free_percpu(self, addrs: Sequence[int]) -> None:
        self.mem.percpu.free(list(addrs))
