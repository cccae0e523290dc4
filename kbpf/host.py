"""The host protocols, the requests map operations yield, and the synchronous driver.

kbpf decides *what* happens; its host decides *how long it takes*.  A map operation or helper is
written once, as a generator that yields a request wherever the kernel would meet the hardware:

* :class:`Acquire` / :class:`Release` — a spinlock the kernel takes at that point;
* :class:`Touch` — memory it reads or writes (address, size, write?), for the caches to price;
* :class:`Callback` — a call back into the running program (``bpf_loop``, ``for_each_map_elem``);
  the answer sent back is the callback's r0;
* :class:`Work` — work proportional to a count (bytes hashed, elements walked) and events the
  host may count (evictions, steals).  It is how operations report what they did.

:func:`drive` answers every request at once: it is the driver for tests, for any host without a
clock, and for the plain five-integer helper table.  The simulated machine drives the same
generators in simulated time instead.

The host itself is described by :class:`KernelAuxiliaryOps` and :class:`PerCpuVariantsOps`, the
two traits of kbpf-basic, turned into ``typing.Protocol``s with instance methods and widened with
what Rust got from native memory: allocation, access by address, per-CPU allocation by address,
randomness, the current task and callbacks.  ``docs/host-protocol.md`` lists every method.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

# --------------------------------------------------------------------------------------------
# Locks and requests
# --------------------------------------------------------------------------------------------


class Lock:
    """A kernel spinlock as kbpf sees it: a lock word at a kernel address, and a name.

    kbpf creates one wherever Linux has a ``raw_spinlock_t`` (a hash bucket, the LRU's global
    list, the ring buffer's producer lock).  ``owner`` is set while held by the synchronous
    driver; ``host_state`` belongs to the host (the simulated machine keeps its waiter queue and
    statistics there).
    """

    __slots__ = ("addr", "name", "owner", "host_state")

    def __init__(self, addr: int, name: str):
        self.addr = addr
        self.name = name
        self.owner: object | None = None
        self.host_state: Any = None

    def __repr__(self) -> str:
        return f"Lock({self.name!r} @ {self.addr:#x})"


@dataclass(frozen=True, slots=True)
class Acquire:
    """Take ``lock``; the operation resumes once it is held.  Answer: None."""

    lock: Lock


@dataclass(frozen=True, slots=True)
class Release:
    """Release ``lock``.  Answer: None."""

    lock: Lock


@dataclass(frozen=True, slots=True)
class Touch:
    """The operation reads (``write=False``) or writes ``size`` bytes at kernel address ``addr``.

    Touches report traffic; they do not move data (kbpf reads and writes through the host's
    ``read``/``write``).  Answer: None.
    """

    addr: int
    size: int
    write: bool = False


@dataclass(frozen=True, slots=True)
class Callback:
    """Call the program's function at ``func`` (an address from ``BPF_PSEUDO_FUNC``) with up to
    five argument registers.  Answer: the callback's r0 as an unsigned 64-bit int."""

    func: int
    args: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Work:
    """``units`` of work of a named kind (``"hash_bytes"``, ``"copy_bytes"``, ``"elem_walk"``)
    or an event to count (``"lru_evict"``, ``"lru_steal"``).  Answer: None.

    A host prices a kind only through its cost preset (per byte, per element), never by which
    map or operation reported it.
    """

    kind: str
    units: int = 1


Request = Acquire | Release | Touch | Callback | Work
#: A map operation or helper: a generator yielding requests, returning its result.
Op = Generator[Request, Any, Any]

# --------------------------------------------------------------------------------------------
# The host protocols
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """The task a CPU is running: what ``get_current_pid_tgid``/``get_current_comm`` see."""

    pid: int
    tgid: int
    comm: str


@runtime_checkable
class PollWaker(Protocol):
    """Wakes whoever waits on a map (the ring buffer's poll waiters)."""

    def wake_up(self) -> None: ...


@runtime_checkable
class KernelAuxiliaryOps(Protocol):
    """What kbpf needs from the kernel hosting it.

    The first group are kbpf-basic's ``KernelAuxiliaryOps``; the rest are what a Python port
    needs because it has no native memory.  Every address is a kernel virtual address unless
    said otherwise; every failure raises :class:`kbpf.BpfError`.
    """

    # -- kbpf-basic's operations ---------------------------------------------------------------
    def get_unified_map_from_ptr(self, ptr: int) -> Any:
        """The map whose kernel address (``struct bpf_map *``) is ``ptr``; EINVAL otherwise."""
        ...

    def get_unified_map_from_fd(self, map_fd: int) -> Any:
        """The map an fd of the current process refers to; EBADF otherwise."""
        ...

    def get_map_file_from_fd(self, map_fd: int) -> Any:
        """The open file behind ``map_fd`` (an opaque object, the same for every fd that shares
        it): fd maps remember which file inserted an entry, to drop it when that file is
        released (``map_release``).  EBADF/EINVAL as above."""
        ...

    def get_unified_map_ptr_from_fd(self, map_fd: int) -> int:
        """The kernel address of the map behind ``map_fd`` (what ``LD_DW_IMM`` src=1 loads)."""
        ...

    def copy_from_user(self, src: int, size: int) -> bytes:
        """Read ``size`` bytes at user address ``src`` of the current process; EFAULT if unmapped."""
        ...

    def copy_to_user(self, dest: int, data: bytes) -> None:
        """Write ``data`` at user address ``dest`` of the current process; EFAULT if not writable."""
        ...

    def current_cpu_id(self) -> int: ...

    def perf_event_output(self, ctx: int, fd: int, flags: int, data: bytes) -> None:
        """Write a sample to the perf event behind ``fd`` (the seed's entry; the PERF_EVENT_ARRAY
        map goes through :mod:`kbpf.perf` instead)."""
        ...

    def string_from_user_cstr(self, ptr: int) -> str: ...

    def ebpf_write_str(self, text: str) -> None:
        """Append ``text`` to the trace pipe (bpf_trace_printk output)."""
        ...

    def ebpf_time_ns(self) -> int:
        """The calling CPU's monotonic clock in nanoseconds."""
        ...

    def alloc_page(self) -> int:
        """Allocate one zeroed 4 KiB frame; returns its *physical* address.  ENOMEM when none."""
        ...

    def free_page(self, phys_addr: int) -> None: ...

    def vmap(self, phys_addrs: Sequence[int]) -> int:
        """Map the frames, in order, at consecutive pages of a new kernel virtual range.  One frame
        may appear more than once (the ring buffer maps its data pages twice)."""
        ...

    def unmap(self, vaddr: int) -> None: ...

    # -- memory, for a port without native pointers ----------------------------------------------
    def kmalloc(self, size: int, align: int = 8) -> int:
        """Zeroed, physically contiguous kernel memory in the direct map.  ENOMEM when none."""
        ...

    def kfree(self, addr: int) -> None: ...

    def read(self, addr: int, size: int) -> bytes:
        """Read kernel memory by address, walking page tables for vmap'd ranges; EFAULT if unmapped."""
        ...

    def write(self, addr: int, data: bytes) -> None:
        """Write kernel memory by address, walking page tables for vmap'd ranges; EFAULT if unmapped."""
        ...

    # -- the world around the operation ----------------------------------------------------------
    def random_u32(self) -> int:
        """A pseudo-random 32-bit value from the host's seeded stream (``get_prandom_u32``, hashrnd)."""
        ...

    def current_task(self) -> TaskInfo:
        """The task running on the current CPU (the idle task ``swapper/N`` when none)."""
        ...

    def call_program(self, func: int, args: tuple[int, ...]) -> int:
        """Synchronously run the current program's function at ``func`` with ``args`` in r1..r5;
        the answer to a :class:`Callback` under :func:`drive`."""
        ...

    def get_perf_event_from_fd(self, fd: int) -> Any:
        """The ``kbpf.perf.BpfPerfEvent`` behind a perf event fd of the current process
        (``perf_event_get``), for a PERF_EVENT_ARRAY update; EBADF when the fd is not open or
        is not a perf event.  The host keeps one reference for the fd; a map slot takes its
        own with ``event.get()``."""
        ...


T = TypeVar("T")


@runtime_checkable
class PerCpuVariants(Protocol[T]):
    """Python-side per-CPU bookkeeping (kbpf-basic's ``PerCpuVariants<T>``): one object per CPU.

    Bytes a program or user can see never live here: they live at per-CPU *addresses*
    (:meth:`PerCpuVariantsOps.alloc_percpu`).  This holds the kernel's private per-CPU state,
    such as the LRU's local lists.
    """

    def get(self) -> T:
        """The current CPU's object."""
        ...

    def force_get(self, cpu: int) -> T:
        """CPU ``cpu``'s object."""
        ...


@runtime_checkable
class PerCpuVariantsOps(Protocol):
    """Per-CPU allocation and the CPU count (kbpf-basic's ``PerCpuVariantsOps``)."""

    def num_cpus(self) -> int:
        """Possible CPUs (== online CPUs here)."""
        ...

    def create(self, factory: Callable[[int], T]) -> PerCpuVariants[T]:
        """One object per CPU, ``factory(cpu)`` each."""
        ...

    def alloc_percpu(self, size: int, align: int = 8) -> list[int]:
        """``size`` zeroed bytes in each CPU's per-CPU area: one kernel address per CPU."""
        ...

    def free_percpu(self, addrs: Sequence[int]) -> None: ...


# --------------------------------------------------------------------------------------------
# The synchronous driver
# --------------------------------------------------------------------------------------------

#: The owner the synchronous driver records on a lock it holds.
SYNC_OWNER = "sync-driver"


class LockOrderError(RuntimeError):
    """An operation driven synchronously acquired a lock it (or its caller) already holds: under
    a real kernel that is a self-deadlock, so it is a bug, never a wait."""


def recorded(op: Op, log: list) -> Op:
    """The trace hook: pass ``op``'s requests through to whatever drives it, appending each to
    ``log`` — which locks it took, which lines it touched, what work it reported.

    ``drive(recorded(map.update_elem(k, v, 0), log), host)`` runs the update and leaves its
    requests in ``log``.
    """
    answer = None
    while True:
        try:
            req = op.send(answer)
        except StopIteration as done:
            return done.value
        log.append(req)
        answer = yield req


def drive(op: Op, host: KernelAuxiliaryOps) -> Any:
    """Run a request generator to completion, answering every request at once; return its value.

    Locks are checked (acquiring a held lock is a :class:`LockOrderError`, releasing one not
    held a ``RuntimeError``); touches and work are accepted; a callback runs
    ``host.call_program``.  Exceptions the operation raises (``BpfError``) pass through.
    """
    send = op.send
    answer: Any = None
    try:
        while True:
            req = send(answer)
            answer = None
            kind = type(req)
            if kind is Touch or kind is Work:
                continue
            if kind is Acquire:
                lock = req.lock
                if lock.owner is not None:
                    raise LockOrderError(f"{lock!r} acquired while already held")
                lock.owner = SYNC_OWNER
            elif kind is Release:
                lock = req.lock
                if lock.owner is None:
                    raise RuntimeError(f"{lock!r} released while not held")
                lock.owner = None
            elif kind is Callback:
                answer = host.call_program(req.func, req.args) & 0xFFFFFFFFFFFFFFFF
            else:
                raise TypeError(f"unknown request {req!r}")
    except StopIteration as done:
        return done.value
