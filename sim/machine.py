"""Machine: the user-facing facade over the simulated hardware, kernel and user space.

Everything a Machine does to maps and programs goes through the simulated ``bpf(2)`` with a
``bpf_attr`` in the facade process's user memory, as libbpf would.  Calls made from Python
between runs take no simulated time.  ``submit``/``run`` drive the cores in simulated time.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import Any

import numpy as np
import simpy

from kbpf import linux_bpf as uapi
from kbpf.errors import BpfError
from kbpf.linux_bpf import BpfCmd, BpfMapType, BpfProgType
from sim.cpu.core import Core, Invocation
from sim.cpu.preset import Preset, check_cpus
from sim.cpu.spinlock import SpinLocks
from sim.cpu.task import Scheduler, Task
from sim.kernel.kernel import Kernel
from sim.mem import Memory
from sim.mem.cache import CacheModel
from sim.user.maps import MapHandle, map_type_from
from sim.user.programs import ProgramHandle

PS_PER_NS = 1000


def _check_tracepoint(name: str) -> None:
    if not isinstance(name, str) or name.count("/") != 1 or not all(name.split("/")):
        raise ValueError(f"tracepoint must be 'category/name', got {name!r}")


class Stats:
    """What the cores count as they run, for scenario metrics: helper calls per map by outcome,
    work per map by kind, and (when ``timeline`` is a list) lock waits as
    ``(cpu, "lock", start_ps, end_ps, lock name)``."""

    def __init__(self) -> None:
        self.ops: dict[tuple[int, int, str], int] = {}
        self.work: dict[tuple[int, str], int] = {}
        self.timeline: list | None = None


class Machine:
    """A simulated machine with ``cpus`` CPUs.  See API.md §3 for the contract."""

    def __init__(
        self,
        cpus: int = 1,
        seed: int = 0,
        *,
        memory_mib: int = 256,
        freq_ghz: float | None = None,
        cost_model: str | Mapping[str, Any] = "default",
        locking: str = "linux",
        lru: str = "linux",
        insn_budget: int = 1_000_000,
    ):
        self.preset = Preset.resolve(cost_model, freq_ghz)
        check_cpus(self.preset, cpus)
        if locking not in ("linux", "kbpf"):
            raise ValueError(f"locking must be 'linux' or 'kbpf', got {locking!r}")
        if lru not in ("linux", "exact"):
            raise ValueError(f"lru must be 'linux' or 'exact', got {lru!r}")
        if not isinstance(insn_budget, int) or insn_budget < 1:
            raise ValueError(f"insn_budget must be a positive integer, got {insn_budget!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.ncpus = cpus
        self.seed = seed
        self.locking = locking
        self.lru = lru
        self.insn_budget = insn_budget
        self.freq_ghz = self.preset.freq_ghz
        # All randomness descends from one SeedSequence: independent of PYTHONHASHSEED.
        self.seed_seq = np.random.SeedSequence(seed)
        self.env = simpy.Environment()
        p = self.preset
        self.work_ps = {k[: -len("_ps")]: v for k, v in p.data["work"].items()}
        self.mem = Memory(memory_mib=memory_mib, ncpus=cpus)
        # Finite caches and the coherence directory price every shared access (sim/mem/cache.py).
        self.cache = CacheModel(p, p.topology, cpus, self.mem.kernel)
        self.access = self.cache.access  # shadows the method below: one call less per access
        self.kernel = Kernel(self)
        # Spinlocks move their lock word's line (and, queued, per-CPU MCS nodes) through the caches.
        self.spinlocks = SpinLocks(
            self.env,
            self.cache.access,
            p.get("lock", "kind"),
            p.get_ps("mem", "atomic_rmw_ns"),
            self.mem.alloc_percpu(64, 64),
            seed,
        )
        self.host = self.kernel.host
        self.scheduler = Scheduler(self)
        self.task_errors: list = []
        self._active_tasks = 0
        self.cores = [Core(self, cpu) for cpu in range(cpus)]
        self.faults: list[BpfError] = []
        self.stats = Stats()
        self._seq = 0
        self._pending = 0
        self.ncompleted = 0
        self._idle: simpy.Event | None = None
        self._running = False

    # -- time -------------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return int(self.env.now) // PS_PER_NS

    def access(self, cpu: int, addr: int, size: int, write: bool, t: int) -> int:
        """Price one shared memory access by ``cpu`` at its local time ``t`` (ps) through the
        caches and the coherence directory (:class:`sim.mem.cache.CacheModel`), which it
        updates.  Only cores call it, in simulated time; ``__init__`` binds the cache model's
        method over this one."""
        return self.cache.access(cpu, addr, size, write, t)

    # -- maps -------------------------------------------------------------------------------
    def create_map(
        self,
        map_type: BpfMapType | str | int,
        key_size: int = 0,
        value_size: int = 0,
        max_entries: int = 0,
        map_flags: int = 0,
        name: str = "",
    ) -> MapHandle:
        mtype = map_type_from(map_type)
        return MapHandle.create(self, mtype, key_size, value_size, max_entries, map_flags, name)

    # -- programs ---------------------------------------------------------------------------
    def load_program(
        self, insns: bytes, prog_type: BpfProgType | str | int = "tracepoint", name: str = ""
    ) -> ProgramHandle:
        return ProgramHandle.load(self, insns, prog_type, name)

    def open_object(self, path):
        """Read a clang-built eBPF object (``bpf_object__open_file``); maps may still be
        changed before ``.load()``.  See sim/user/loader.py."""
        from sim.user.loader import open_object

        return open_object(self, path)

    def load_object(self, path):
        """``open_object(path).load()``: maps created, global data written, programs loaded."""
        from sim.user.loader import load_object

        return load_object(self, path)

    def attach(self, prog: ProgramHandle, tracepoint: str) -> int:
        """Attach ``prog`` to tracepoint ``"category/name"`` (created on first use) through
        BPF_RAW_TRACEPOINT_OPEN; returns the link fd (closing it detaches)."""
        if not isinstance(prog, ProgramHandle) or prog.machine is not self:
            raise ValueError("attach needs a program loaded on this machine")
        _check_tracepoint(tracepoint)
        calls = self.kernel.facade_calls
        calls.begin()
        attr = uapi.BpfRawTracepointOpenAttr(
            name=calls.put(tracepoint.encode() + b"\0"), prog_fd=prog.fd
        )
        return calls.bpf(BpfCmd.BPF_RAW_TRACEPOINT_OPEN, attr.pack())

    def fire(
        self, tracepoint: str, cpu: int = 0, ctx: bytes = b"", at_ns: int | None = None
    ) -> list[Invocation]:
        """Fire a tracepoint: schedule every program attached there on ``cpu``, like submit."""
        _check_tracepoint(tracepoint)
        return [
            self._submit_kprog(kprog, cpu, ctx, at_ns)
            for kprog in self.kernel.tracepoint_programs(tracepoint)
        ]

    def submit(
        self, prog: ProgramHandle, cpu: int = 0, ctx: bytes = b"", at_ns: int | None = None
    ) -> Invocation:
        """Schedule one invocation of ``prog`` on ``cpu``; it runs after that CPU's earlier ones."""
        if not isinstance(prog, ProgramHandle) or prog.machine is not self:
            raise ValueError("submit needs a program loaded on this machine")
        return self._submit_kprog(
            self.kernel.prog_from_fd(self.kernel.facade, prog.fd), cpu, ctx, at_ns
        )

    def _submit_kprog(self, kprog, cpu: int, ctx: bytes, at_ns: int | None) -> Invocation:
        if not isinstance(cpu, int) or not 0 <= cpu < self.ncpus:
            raise ValueError(f"cpu must be between 0 and {self.ncpus - 1}, got {cpu!r}")
        if not isinstance(ctx, bytes | bytearray):
            raise TypeError(f"ctx must be bytes, got {type(ctx).__name__}")
        at_ps = self.env.now if at_ns is None else int(at_ns) * PS_PER_NS
        if at_ps < self.env.now:
            raise ValueError(f"at_ns={at_ns} is in the past (now_ns={self.now_ns})")
        if len(ctx) > self.kernel.ctx_max:
            raise BpfError(
                errno.E2BIG,
                f"ctx of {len(ctx)} bytes exceeds the {self.kernel.ctx_max}-byte context area",
            )
        inv = Invocation(kprog, cpu, bytes(ctx), at_ps, self._seq)
        self._seq += 1
        inv.done = self.env.event()
        inv.done.callbacks.append(self._finished)
        self._pending += 1
        self.cores[cpu].enqueue(inv)
        return inv

    def _finished(self, _event) -> None:
        self._pending -= 1
        self.ncompleted += 1
        self._check_idle()

    def task_activity(self, delta: int) -> None:
        """A task gained (+1) or lost (-1) work; called by the scheduler."""
        self._active_tasks += delta
        self._check_idle()

    def _check_idle(self) -> None:
        if (
            self._pending == 0
            and self._active_tasks == 0
            and self._idle is not None
            and not self._idle.triggered
        ):
            self._idle.succeed()

    # -- tasks ------------------------------------------------------------------------------
    def spawn(self, body, cpu: int = 0, comm: str = "task", process=None) -> Task:
        """Start a user task running ``body(task)`` on ``cpu`` (see :mod:`sim.cpu.task`).

        ``process`` is a kernel process to join (a new one named ``comm`` by default): its pid
        is the task's tgid, and the first task of a process has pid == tgid.
        """
        if not isinstance(cpu, int) or not 0 <= cpu < self.ncpus:
            raise ValueError(f"cpu must be between 0 and {self.ncpus - 1}, got {cpu!r}")
        if process is None:
            process = self.kernel.new_process(comm)
            pid = process.pid
        else:
            pid = self.kernel.new_pid()
        task = Task(pid=pid, tgid=process.pid, comm=comm, process=process, cpu=cpu)
        task.body = body(task)
        self.scheduler.add(task)
        return task

    def record_fault(self, inv: Invocation, err: BpfError) -> None:
        self.faults.append(err)

    # -- running ----------------------------------------------------------------------------
    def _guard(self) -> None:
        if self._running:
            raise RuntimeError("run()/run_program() called from inside a running simulation")

    def run(self, until_ns: int | None = None) -> None:
        """Process events until no work is left, or until ``until_ns``."""
        self._guard()
        self._running = True
        try:
            if until_ns is not None:
                until_ps = int(until_ns) * PS_PER_NS
                if until_ps < self.env.now:
                    raise ValueError(f"until_ns={until_ns} is in the past (now_ns={self.now_ns})")
                if until_ps > self.env.now:
                    self.env.run(until=until_ps)
                return
            if self._pending or self._active_tasks:
                self._idle = self.env.event()
                self.env.run(until=self._idle)
                self._idle = None
        finally:
            self._running = False

    def run_program(self, prog: ProgramHandle, cpu: int = 0, ctx: bytes = b"") -> int:
        """Submit one invocation, run until it completes, and return its r0 (unsigned 64-bit)."""
        self._guard()
        inv = self.submit(prog, cpu, ctx)
        self._running = True
        try:
            self.env.run(until=inv.done)
        finally:
            self._running = False
        if inv.fault is not None:
            raise inv.fault
        return inv.r0

    @property
    def busy(self) -> bool:
        return self._pending > 0 or self._active_tasks > 0

    def value_address(self, map_handle, key: int) -> int:
        """The kernel address of ``key``'s value in a map (this CPU 0's copy for per-CPU maps):
        what a program's lookup returns.  For naming cache lines; takes no simulated time."""
        from kbpf.host import drive

        umap = self.kernel.map_from_fd(self.kernel.facade, map_handle.fd).umap
        self.host.cpu = 0
        raw = key.to_bytes(map_handle.key_size, "little")
        addr = drive(umap.ops.lookup_elem(raw), self.host)
        if not addr:
            raise BpfError(errno.ENOENT, f"map {map_handle.name!r} has no key {key}")
        return addr

    def record_timeline(self) -> list:
        """Start recording lock waits and cache-line transfers per CPU into
        ``self.stats.timeline`` (for timeline plots): each core's access goes through a wrapper
        that notes the accesses that moved a line.  Costs time only when asked for."""
        timeline = self.stats.timeline = []
        cache = self.cache
        for core in self.cores:
            raw = core.access

            def access(addr, size, write, t, raw=raw, cpu=core.id):
                before = cache.transfers
                lat = raw(addr, size, write, t)
                if cache.transfers != before:
                    timeline.append((cpu, "transfer", t, t + lat, addr))
                return lat

            core.access = access
        return timeline

    # -- consumers --------------------------------------------------------------------------
    def ring_buffer(self, map_handle, callback, task_cpu: int | None = None, **options):
        """A libbpf-like ring-buffer consumer on ``map_handle`` (see :mod:`sim.user.ringbuf`)."""
        from sim.user.ringbuf import RingBufferConsumer

        return RingBufferConsumer(self, map_handle, callback, task_cpu=task_cpu, **options)

    def perf_buffer(
        self,
        map_handle,
        on_sample,
        on_lost=None,
        page_cnt: int = 8,
        task_cpu: int | None = None,
        **options,
    ):
        """A libbpf-like perf-buffer consumer on a PERF_EVENT_ARRAY (see :mod:`sim.user.perfbuf`)."""
        from sim.user.perfbuf import PerfBufferConsumer

        return PerfBufferConsumer(
            self, map_handle, on_sample, on_lost, page_cnt, task_cpu=task_cpu, **options
        )

    # -- output -----------------------------------------------------------------------------
    def trace_lines(self) -> list[str]:
        return self.kernel.trace.lines()
