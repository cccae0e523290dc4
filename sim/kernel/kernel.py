"""The simulated kernel: processes and fd tables, ``bpf(2)``, program contexts, the trace pipe.

Everything reaches maps and programs through :meth:`Kernel.sys_bpf`, which copies the
``bpf_attr`` from the calling process's user memory and applies Linux's size rules before kbpf
parses it.  Syscalls made from Python between runs execute at once through kbpf's synchronous
driver (they take no simulated time); programs run on the cores in simulated time.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kbpf import linux_bpf as uapi
from kbpf.checks import check_program
from kbpf.errors import BpfError
from kbpf.helper import all_helper_specs, init_helper_functions, request_helpers
from kbpf.host import TaskInfo, drive
from kbpf.insn import MAX_BPF_STACK, MAX_CALL_FRAMES
from kbpf.linux_bpf import BpfCmd, BpfProgType
from kbpf.map import BpfMapMeta, bpf_map_create
from kbpf.map import syscall as map_syscall
from kbpf.perf import BpfPerfEvent, PerfProbeArgs
from kbpf.preprocessor import EbpfPreProcessor
from kbpf.prog import BpfProgMeta
from sim.cpu.engine import Costs, compile_program
from sim.cpu.regions import Region, RegionSet
from sim.cpu.task import WaitQueue
from sim.kernel.process import Process
from sim.kernel.simhost import SimHost
from sim.kernel.tracepipe import TracePipe
from sim.user.syscall import UserCalls

if TYPE_CHECKING:  # pragma: no cover
    from sim.machine import Machine

#: Bytes of context a CPU can stage for one invocation (one page of its per-CPU area).
CTX_MAX = 4096
#: Program stack per CPU: one 512-byte frame per call level.
STACK_BYTES = MAX_BPF_STACK * MAX_CALL_FRAMES

#: Program types whose context a program may write (the others get a read-only context).
WRITABLE_CTX_TYPES = frozenset(
    {
        BpfProgType.BPF_PROG_TYPE_XDP,
        BpfProgType.BPF_PROG_TYPE_SCHED_CLS,
        BpfProgType.BPF_PROG_TYPE_SCHED_ACT,
        BpfProgType.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
    }
)

#: Helper ids whose first argument is a map (under locking="kbpf" the host locks that map).
#: For helpers whose map is the second argument (perf_event_output, tail_call), see kbpf_lock_for.


#: Helper id -> the argument (0-based) that is a map (Linux's ``ARG_CONST_MAP_PTR``).
MAP_ARG = {
    1: 0,
    2: 0,
    3: 0,
    25: 1,
    87: 0,
    88: 0,
    89: 0,
    130: 0,
    131: 0,
    134: 0,
    164: 0,
    195: 0,
    198: 0,
}
#: Ring-buffer helpers handed a record (ringbuf submit/discard) rather than the map.
RECORD_ARG = frozenset({132, 133})


@dataclass(eq=False)
class MapFile:
    """The kernel object behind a map fd: the kbpf map and who holds it."""

    umap: Any
    name: str
    id: int = 0
    regions: list[Region] = field(default_factory=list)
    refs: int = 0  # fds, plus programs holding the map
    fd_refs: int = 0  # fds only: when the last closes, the file is released (map_release)
    waitq: WaitQueue | None = None  # poll waiters (ring buffers)
    dynamic: bool = False  # regions follow the map's reservations (ring buffers)
    version: int = -1  # the reservation version the regions were built for


class MapPollWaker:
    """kbpf's ``PollWaker`` for one map: wakes the tasks polling it, at the waking CPU's time."""

    def __init__(self, kernel: Kernel, waitq: WaitQueue):
        self.kernel = kernel
        self.waitq = waitq

    def wake_up(self) -> None:
        # The producer pays for the notification through the Work kbpf reports with it
        # ("ringbuf_wakeup", "perf_wakeup"), priced by the preset.
        k = self.kernel
        self.waitq.wake_up(k.m.scheduler, k.cpu_time_ps(k.host.cpu))


@dataclass(eq=False)
class PerfEventFile:
    """An fd from ``perf_event_open``: the kbpf perf event and its poll waiters."""

    event: Any
    waitq: WaitQueue
    refs: int = 0
    mapped: int = 0  # user mappings of its ring


@dataclass(eq=False)
class TracepointLink:
    """What an attach returns: closing its fd detaches the program."""

    tracepoint: str
    prog: ProgFile


#: Longest tracepoint name accepted (Linux copies at most 128 bytes of it).
TP_NAME_MAX = 128


@dataclass(eq=False)
class ProgFile:
    """A loaded program: its metadata, compiled form and the maps it holds."""

    name: str
    prog_type: BpfProgType
    compiled: Any
    maps: list[MapFile]
    insn_cnt: int
    ctx_writable: bool
    id: int = 0
    refs: int = 0
    run_cnt: int = 0
    run_time_ns: int = 0


class Kernel:
    def __init__(self, machine: Machine):
        self.m = machine
        self.mem = machine.mem
        self.ncpus = machine.ncpus
        self.rng = np.random.default_rng(machine.seed_seq.spawn(1)[0])
        self.trace = TracePipe()
        self.host = SimHost(self)
        self.maps_by_addr: dict[int, Any] = {}
        self.dynamic_maps: list[MapFile] = []
        self._map_files: dict[int, MapFile] = {}  # map addr -> file
        self._next_pid = 100
        self._next_id = 1  # map and program ids (Linux's idr), shared here for simplicity
        self.processes: dict[int, Process] = {}
        self.costs = _engine_costs(machine.preset)
        self.request_helpers = request_helpers(self.host)
        self.sync_helpers = init_helper_functions(self.host)
        #: helper id -> its return convention ("errno", "pointer", "void", "value")
        self.helper_ret = {int(spec.func_id): spec.ret.name.lower() for spec in all_helper_specs()}
        # Per-CPU program stacks and context areas, in each CPU's per-CPU memory.
        self.stack_base = self.mem.percpu.alloc(STACK_BYTES, 4096)
        self.stack_top = [a + STACK_BYTES for a in self.stack_base]
        self.ctx_base = self.mem.percpu.alloc(CTX_MAX, 64)
        self.ctx_max = CTX_MAX
        self.cpu_regions = [
            RegionSet([self._region(a, STACK_BYTES, True, f"stack/{c}", shared=False)])
            for c, a in enumerate(self.stack_base)
        ]
        self._ctx_region: list[Region | None] = [None] * self.ncpus
        self._uattr = 0
        self.tracepoints: dict[str, list[ProgFile]] = {}  # created on first use, attach order
        self.facade = self.new_process("kbpf-sim")
        self.facade_calls = UserCalls(self, self.facade)

    # -- processes ------------------------------------------------------------------------
    def new_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def new_process(self, comm: str) -> Process:
        pid = self.new_pid()
        proc = Process(pid=pid, comm=comm, mm=self.mem.new_user_space())
        self.processes[pid] = proc
        return proc

    def running_task(self, cpu: int) -> TaskInfo | None:
        """The user task on ``cpu`` — the one a program invocation interrupted, if any (None:
        the idle task)."""
        cores = getattr(self.m, "cores", None)
        task = cores[cpu].current if cores else None
        return None if task is None else task.info

    def cpu_time_ps(self, cpu: int) -> int:
        core = self.m.cores[cpu] if hasattr(self.m, "cores") else None
        if core is not None and core.running is not None:
            return max(core.t, int(self.m.env.now))
        return int(self.m.env.now)

    # -- memory regions programs may touch --------------------------------------------------
    def _region(
        self, start: int, size: int, writable: bool, name: str, shared: bool = True
    ) -> Region:
        fast = self.mem.kernel.contiguous(start, size)
        if fast is not None:
            buf, off = fast
            return Region(
                start, start + size, writable=writable, buf=buf, base=off, name=name, shared=shared
            )
        return Region(
            start,
            start + size,
            writable=writable,
            name=name,
            shared=shared,
            reader=self.mem.read,
            writer=self.mem.write,
        )

    def _add_map_regions(self, mf: MapFile) -> None:
        ops = mf.umap.ops
        # Ring buffers (live reservations) and hash maps without preallocation (elements come and
        # go) change what programs may touch as they run: the kernel follows their version.
        mf.dynamic = hasattr(ops, "reservations") or hasattr(ops, "regions_version")
        if mf.dynamic:
            self.dynamic_maps.append(mf)
        self._sync_regions(mf)

    @staticmethod
    def _regions_version(ops) -> int:
        return (
            ops.reservation_version
            if hasattr(ops, "reservations")
            else getattr(ops, "regions_version", 0)
        )

    def _sync_regions(self, mf: MapFile) -> None:
        ops = mf.umap.ops
        for rs in self.cpu_regions:
            for region in mf.regions:
                rs.remove(region)
        if hasattr(ops, "reservations"):
            ranges = [(start, end, True) for start, end in ops.reservations()]
        else:
            ranges = ops.program_regions()
        mf.regions = [
            self._region(start, end - start, writable, f"map:{mf.name}@{start:#x}")
            for start, end, writable in ranges
            if end > start
        ]
        for rs in self.cpu_regions:
            for region in mf.regions:
                rs.add(region)
        mf.version = self._regions_version(ops)

    def after_helper(self) -> None:
        """Bring dynamic maps' regions up to date after a helper or syscall changed them."""
        for mf in self.dynamic_maps:
            if self._regions_version(mf.umap.ops) != mf.version:
                self._sync_regions(mf)

    def stage_context(self, cpu: int, ctx: bytes, writable: bool) -> int:
        """Copy ``ctx`` into ``cpu``'s context area and let the program read (or write) exactly it."""
        base = self.ctx_base[cpu]
        rs = self.cpu_regions[cpu]
        old = self._ctx_region[cpu]
        if old is not None:
            rs.remove(old)
            self._ctx_region[cpu] = None
        if ctx:
            self.mem.write(base, ctx)
            region = self._region(base, len(ctx), writable, f"ctx/{cpu}")
            rs.add(region)
            self._ctx_region[cpu] = region
        return base

    # -- fd lookups ------------------------------------------------------------------------
    def map_from_fd(self, proc: Process, fd: int) -> MapFile:
        obj = proc.fds.get(fd)
        if not isinstance(obj, MapFile):
            raise BpfError(errno.EINVAL, f"fd {fd} is not a map")
        return obj

    def prog_from_fd(self, proc: Process, fd: int) -> ProgFile:
        obj = proc.fds.get(fd)
        if not isinstance(obj, ProgFile):
            raise BpfError(errno.EINVAL, f"fd {fd} is not a program")
        return obj

    def dup_fd(self, src: Process, fd: int, dst: Process) -> int:
        """Give ``dst`` its own fd for the object behind ``src``'s ``fd`` (like passing it over a
        socket or inheriting it): the object gains a reference."""
        obj = src.fds.get(fd)
        obj.refs += 1
        if isinstance(obj, MapFile):
            obj.fd_refs += 1
        return dst.fds.install(obj)

    def close(self, proc: Process, fd: int) -> None:
        obj = proc.fds.close(fd)
        self._put(obj, fd_ref=True)

    def _put(self, obj: Any, fd_ref: bool = False) -> None:
        if isinstance(obj, PerfEventFile):
            obj.refs -= 1
            if obj.refs == 0:
                obj.event.put()
            return
        if fd_ref and isinstance(obj, MapFile):
            obj.fd_refs -= 1
            if obj.fd_refs == 0 and hasattr(obj.umap.ops, "map_release"):
                # The file is released: fd maps drop what was inserted through it
                # (perf_event_fd_array_release), unless BPF_F_PRESERVE_ELEMS.
                drive(obj.umap.ops.map_release(obj), self.host)
        if isinstance(obj, TracepointLink):
            self.tracepoints[obj.tracepoint].remove(obj.prog)
            self._put(obj.prog)
        elif isinstance(obj, MapFile):
            obj.refs -= 1
            if obj.refs == 0:
                self._free_map(obj)
        elif isinstance(obj, ProgFile):
            obj.refs -= 1
            if obj.refs == 0:
                for mf in obj.maps:
                    self._put(mf)

    def _free_map(self, mf: MapFile) -> None:
        if mf.dynamic:
            self.dynamic_maps.remove(mf)
        for rs in self.cpu_regions:
            for region in mf.regions:
                rs.remove(region)
        self.maps_by_addr.pop(mf.umap.addr, None)
        self._map_files.pop(mf.umap.addr, None)
        free = getattr(mf.umap, "free", None)
        if free is not None:
            free()  # UnifiedMap.free is synchronous (returns None, not a request generator)

    def perf_event_from_fd(self, proc: Process, fd: int):
        obj = proc.fds.get(fd) if proc is not None else None
        if not isinstance(obj, PerfEventFile):
            raise BpfError(errno.EBADF, f"fd {fd} is not a perf event")
        return obj

    def sys_perf_event_open(
        self,
        proc: Process,
        uattr: int,
        pid: int = -1,
        cpu: int = -1,
        group_fd: int = -1,
        flags: int = 0,
    ) -> int:
        """``perf_event_open(&attr, pid, cpu, group_fd, flags)`` with ``attr`` in user memory."""
        saved = self.host.process
        self.host.process = proc
        try:
            args = PerfProbeArgs.try_from_perf_attr(
                self.host, uattr, pid, cpu, group_fd, flags, ncpus=self.ncpus
            )
            waitq = WaitQueue(f"perf event {self._next_id}")
            event = BpfPerfEvent(self.host, args, self._new_id(), MapPollWaker(self, waitq))
        finally:
            self.host.process = saved
        pf = PerfEventFile(event, waitq, refs=1)
        return proc.fds.install(pf)

    def sys_ioctl(self, proc: Process, fd: int, cmd: int, arg: int = 0) -> int:
        return self.perf_event_from_fd(proc, fd).event.ioctl(cmd, arg)

    # -- mmap ------------------------------------------------------------------------------
    def sys_mmap(self, proc: Process, fd: int, length: int, prot: int, offset: int = 0) -> int:
        """``mmap(NULL, length, prot, MAP_SHARED, fd, offset)`` of a map or a perf event: its own
        pages mapped into ``proc`` (read-only pages can never become writable)."""
        obj = proc.fds.get(fd)
        if isinstance(obj, PerfEventFile):
            pages = obj.event.do_mmap(offset, length, bool(prot & 2))
            obj.mapped += 1
            prots = [prot if user_writable else prot & ~2 for _phys, user_writable in pages]
            return proc.mm.mmap_frames([phys >> 12 for phys, _w in pages], prots)
        mf = self.map_from_fd(proc, fd)
        write = bool(prot & 2)
        saved = self.host.process
        self.host.process = proc
        try:
            phys = mf.umap.map_mmap(offset, length, write)
        finally:
            self.host.process = saved
        return proc.mm.mmap_frames([p >> 12 for p in phys], prot)

    # -- helpers ---------------------------------------------------------------------------
    def helper_map(self, hid: int, args: tuple[int, ...]) -> int:
        """The address of the map a helper call works on (0: none): the argument Linux types
        ``ARG_CONST_MAP_PTR`` (``MAP_ARG``), or for ring-buffer submit/discard the ring whose
        live reservation holds the record."""
        index = MAP_ARG.get(hid)
        if index is not None:
            addr = args[index]
            return addr if addr in self.maps_by_addr else 0
        if hid in RECORD_ARG:
            sample = args[0]
            for mf in self.dynamic_maps:
                if any(r.start <= sample < r.end for r in mf.regions):
                    return mf.umap.addr
        return 0

    def kbpf_lock_for(self, hid: int, args: tuple[int, ...]):
        """Under ``locking = "kbpf"``: the lock of the map a helper call works on, if any.

        A kernel built on kbpf-basic as written takes one lock per map around every helper that
        is handed a map (:meth:`helper_map`).
        """
        addr = self.helper_map(hid, args)
        return self.maps_by_addr[addr].lock if addr else None

    def call_functional(self, prog: ProgFile, cpu: int, func: int, args: tuple[int, ...]) -> int:
        return prog.compiled.call(
            func,
            args,
            regions=self.cpu_regions[cpu],
            stack_top=self.stack_top[cpu],
            helpers=self.sync_helpers,
            budget=self.m.insn_budget,
        )

    # -- bpf(2) ------------------------------------------------------------------------------
    def sys_bpf(self, proc: Process, cmd: int, uattr: int, size: int) -> int:
        """``bpf(cmd, uattr, size)`` for ``proc``: returns the syscall's value or raises BpfError."""
        if size < 0:
            raise BpfError(errno.EINVAL, f"attribute size {size} is negative")
        raw = proc.mm.copy_from_user(uattr, min(size, uapi.PAGE_SIZE)) if size else b""
        if size > uapi.PAGE_SIZE:
            raise BpfError(errno.E2BIG, f"attribute of {size} bytes exceeds a page")
        attr = uapi.bpf_attr_from_user(raw)
        try:
            command = BpfCmd(cmd)
        except ValueError:
            raise BpfError(errno.EINVAL, f"unknown bpf command {cmd}") from None
        handler = self._COMMANDS.get(command)
        if handler is None:
            raise BpfError(errno.EINVAL, f"bpf command {command.name} is not supported")
        host = self.host
        saved = (host.process, host.cpu, self._uattr)
        host.process, host.cpu, self._uattr = proc, 0, uattr
        try:
            return handler(self, proc, attr)
        finally:
            host.process, host.cpu, self._uattr = saved
            if self.dynamic_maps:
                self.after_helper()

    def _map_create(self, proc: Process, attr: bytes) -> int:
        uapi.check_attr_tail(attr, uapi.BpfMapCreateAttr.END, "BPF_MAP_CREATE")
        meta = BpfMapMeta.from_attr(attr)
        waitq = WaitQueue(f"map {meta.name or meta.map_type.name}")
        umap = bpf_map_create(meta, self.host, self.host, MapPollWaker(self, waitq))
        mf = MapFile(umap, meta.name, id=self._new_id(), waitq=waitq)
        self.maps_by_addr[umap.addr] = umap
        self._map_files[umap.addr] = mf
        self._add_map_regions(mf)
        mf.refs += 1
        mf.fd_refs += 1
        return proc.fds.install(mf)

    def _elem(self, proc: Process, attr: bytes, what: str):
        uapi.check_attr_tail(attr, uapi.BpfMapElemAttr.end_for(BpfCmd[what]), what)
        a = uapi.BpfMapElemAttr.unpack(attr)
        return self.map_from_fd(proc, a.map_fd).umap, a

    def _map_lookup(self, proc: Process, attr: bytes) -> int:
        umap, a = self._elem(proc, attr, "BPF_MAP_LOOKUP_ELEM")
        drive(map_syscall.bpf_map_lookup_elem(self.host, a), self.host)
        return 0

    def _map_update(self, proc: Process, attr: bytes) -> int:
        umap, a = self._elem(proc, attr, "BPF_MAP_UPDATE_ELEM")
        drive(map_syscall.bpf_map_update_elem(self.host, a), self.host)
        return 0

    def _map_delete(self, proc: Process, attr: bytes) -> int:
        umap, a = self._elem(proc, attr, "BPF_MAP_DELETE_ELEM")
        drive(map_syscall.bpf_map_delete_elem(self.host, a), self.host)
        return 0

    def _map_get_next_key(self, proc: Process, attr: bytes) -> int:
        umap, a = self._elem(proc, attr, "BPF_MAP_GET_NEXT_KEY")
        drive(map_syscall.bpf_map_get_next_key(self.host, a), self.host)
        return 0

    def _map_lookup_and_delete(self, proc: Process, attr: bytes) -> int:
        umap, a = self._elem(proc, attr, "BPF_MAP_LOOKUP_AND_DELETE_ELEM")
        drive(map_syscall.bpf_map_lookup_and_delete_elem(self.host, a), self.host)
        return 0

    def _map_freeze(self, proc: Process, attr: bytes) -> int:
        uapi.check_attr_tail(
            attr, uapi.BpfMapElemAttr.end_for(BpfCmd.BPF_MAP_FREEZE), "BPF_MAP_FREEZE"
        )
        a = uapi.BpfMapElemAttr.unpack(attr)
        self.map_from_fd(proc, a.map_fd)
        drive(map_syscall.bpf_map_freeze(self.host, a), self.host)
        return 0

    def _prog_load(self, proc: Process, attr: bytes) -> int:
        uapi.check_attr_tail(attr, uapi.BpfProgLoadAttr.END, "BPF_PROG_LOAD")
        a = uapi.BpfProgLoadAttr.unpack(attr)
        try:
            return self._prog_load_checked(proc, attr)
        except BpfError as e:
            # Like the verifier: the reason goes to the user's log buffer (NUL-terminated,
            # truncated to fit) as well as into the error.
            if a.log_level and a.log_buf and a.log_size >= 2:
                msg = (e.strerror or "").encode()[: a.log_size - 1] + b"\0"
                try:
                    proc.mm.copy_to_user(a.log_buf, msg)
                except BpfError:
                    pass  # an unwritable log buffer does not hide the load error
            raise

    def _prog_load_checked(self, proc: Process, attr: bytes) -> int:
        meta = BpfProgMeta.from_attr(self.host, attr)
        name = meta.name or "prog"
        check_program(meta.insns, self.request_helpers.keys(), name=name)
        pre = EbpfPreProcessor.preprocess(self.host, meta.insns)
        compiled = compile_program(pre.new_insn, name=name, costs=self.costs)
        maps = []
        for ptr in pre.raw_file_ptr:
            mf = self._map_files[ptr]
            mf.refs += 1
            maps.append(mf)
        pf = ProgFile(
            name,
            meta.prog_type,
            compiled,
            maps,
            len(meta.insns) // 8,
            ctx_writable=meta.prog_type in WRITABLE_CTX_TYPES,
            id=self._new_id(),
        )
        pf.refs += 1
        return proc.fds.install(pf)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _obj_get_info(self, proc: Process, attr: bytes) -> int:
        uapi.check_attr_tail(attr, uapi.BpfObjGetInfoByFdAttr.END, "BPF_OBJ_GET_INFO_BY_FD")
        a = uapi.BpfObjGetInfoByFdAttr.unpack(attr)
        obj = proc.fds.get(a.bpf_fd)
        if isinstance(obj, MapFile):
            meta = obj.umap.meta
            info = uapi.BpfMapInfo(
                type=int(meta.map_type),
                id=obj.id,
                key_size=meta.key_size,
                value_size=meta.value_size,
                max_entries=meta.max_entries,
                map_flags=meta.map_flags,
                name=obj.name.encode()[:15],
            )
        elif isinstance(obj, ProgFile):
            info = uapi.BpfProgInfo(
                type=int(obj.prog_type),
                id=obj.id,
                name=obj.name.encode()[:15],
                xlated_prog_len=obj.insn_cnt * 8,
                nr_map_ids=len(obj.maps),
                run_cnt=obj.run_cnt,
                run_time_ns=obj.run_time_ns,
                verified_insns=obj.insn_cnt,
            )
        else:
            raise BpfError(errno.EINVAL, f"fd {a.bpf_fd} is neither a map nor a program")
        packed = info.pack()
        # Like bpf_check_uarg_tail_zero: a larger user struct must be zero past what we know.
        if a.info_len > len(packed):
            extra = proc.mm.copy_from_user(a.info + len(packed), a.info_len - len(packed))
            if extra.strip(b"\0"):
                raise BpfError(
                    errno.E2BIG, "info buffer has non-zero bytes past the kernel's struct"
                )
        n = min(a.info_len, len(packed))
        proc.mm.copy_to_user(a.info, packed[:n])
        proc.mm.copy_to_user(
            self._uattr + uapi.BpfObjGetInfoByFdAttr.offset_of("info_len"), n.to_bytes(4, "little")
        )
        return 0

    def _raw_tracepoint_open(self, proc: Process, attr: bytes) -> int:
        uapi.check_attr_tail(attr, uapi.BpfRawTracepointOpenAttr.END, "BPF_RAW_TRACEPOINT_OPEN")
        a = uapi.BpfRawTracepointOpenAttr.unpack(attr)
        prog = self.prog_from_fd(proc, a.prog_fd)
        name = self.host.string_from_user_cstr(a.name) if a.name else ""
        if not name or len(name) >= TP_NAME_MAX:
            raise BpfError(
                errno.EINVAL, f"tracepoint name {name!r}: empty or {TP_NAME_MAX} bytes or longer"
            )
        self.tracepoints.setdefault(name, []).append(prog)
        prog.refs += 1
        return proc.fds.install(TracepointLink(name, prog))

    def tracepoint_programs(self, name: str) -> list[ProgFile]:
        """The programs attached to ``name`` (creating the tracepoint on first use)."""
        return self.tracepoints.setdefault(name, [])

    _COMMANDS = {
        BpfCmd.BPF_RAW_TRACEPOINT_OPEN: _raw_tracepoint_open,
        BpfCmd.BPF_OBJ_GET_INFO_BY_FD: _obj_get_info,
        BpfCmd.BPF_MAP_CREATE: _map_create,
        BpfCmd.BPF_MAP_LOOKUP_ELEM: _map_lookup,
        BpfCmd.BPF_MAP_UPDATE_ELEM: _map_update,
        BpfCmd.BPF_MAP_DELETE_ELEM: _map_delete,
        BpfCmd.BPF_MAP_GET_NEXT_KEY: _map_get_next_key,
        BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM: _map_lookup_and_delete,
        BpfCmd.BPF_MAP_FREEZE: _map_freeze,
        BpfCmd.BPF_PROG_LOAD: _prog_load,
    }


def _engine_costs(preset) -> Costs:
    """The engine's per-instruction-class costs (ps) from the preset."""
    g = preset.get_ps
    return Costs(
        alu=g("insn", "alu_cycles"),
        mul=g("insn", "mul_cycles"),
        div=g("insn", "div_cycles"),
        branch=g("insn", "branch_cycles"),
        ld_imm64=g("insn", "ld_imm64_cycles"),
        load=g("insn", "stack_load_cycles"),
        store=g("insn", "stack_store_cycles"),
        atomic=g("mem", "atomic_rmw_ns"),
        call=g("insn", "helper_entry_cycles"),
        exit=g("insn", "exit_cycles"),
        local_call=g("insn", "local_call_cycles"),
    )
