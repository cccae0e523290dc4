"""TestHost: a small, honest host for kbpf tests, implementing both protocols of kbpf.host.

It has its own memory, laid out like x86-64 Linux so kbpf's user/kernel address rules hold:

* physical memory: 4 KiB frames in a dict, zeroed when first handed out;
* the direct map at ``DIRECT_BASE + phys`` (``kmalloc`` and per-CPU areas live there);
* a vmap range at ``VMAP_BASE`` whose page table may map one frame at several pages;
* per-CPU areas: one ``PERCPU_UNIT`` of contiguous frames per CPU; ``alloc_percpu`` returns the
  same offset in every unit, one address per CPU, as Linux's first chunk does;
* a user address space for the current task (pages with a writable bit) for ``copy_*_user``;
  the idle task has none.

Everything else a test needs to set is an attribute: ``cpu`` (the current CPU), ``now_ns``,
``tasks`` (per CPU), ``trace`` (trace_printk output), ``programs`` (Python functions standing
for program code at an address, called by :meth:`call_program`).  Reads and writes of memory
nobody allocated raise ``BpfError(EFAULT)``, so kbpf cannot touch what it did not get.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable, Sequence
from typing import Any

from kbpf.errors import BpfError
from kbpf.host import TaskInfo

PAGE = 4096
DIRECT_BASE = 0xFFFF_8880_0000_0000
VMAP_BASE = 0xFFFF_C900_0000_0000
USER_BASE = 0x0000_0000_1000_0000
PERCPU_UNIT = 64 * 1024
#: Physical memory the host offers (frames beyond it: ENOMEM).
PHYS_LIMIT = 512 * 1024 * 1024


class _PerCpu:
    """``PerCpuVariants``: one object per CPU, the current one found through the host."""

    def __init__(self, host: TestHost, objs: list[Any]):
        self._host = host
        self._objs = objs

    def get(self):
        return self._objs[self._host.cpu]

    def force_get(self, cpu: int):
        return self._objs[cpu]


class TestHost:
    """Both host protocols over a private memory model (see the module docstring)."""

    __test__ = False  # not a pytest test class

    def __init__(self, ncpus: int = 4, seed: int = 0):
        self.ncpus = ncpus
        self.cpu = 0
        self.now_ns = 1_000
        self.trace: list[str] = []
        self.perf_outputs: list[tuple[int, int, int, bytes]] = []
        self.programs: dict[int, Callable[..., int]] = {}
        self.calls: list[tuple[int, tuple[int, ...]]] = []
        self.tasks: dict[int, TaskInfo] = {}
        self._rng = random.Random(seed)
        # physical memory
        self._frames: dict[int, bytearray] = {}
        self._next_pfn = 16  # leave low memory unused, as a kernel would
        self._free_pfns: list[int] = []
        # kmalloc: a bump allocator over runs of contiguous frames
        self._slab_cur = 0
        self._slab_end = 0
        self._kmalloc_live: dict[int, int] = {}
        # vmap page table: virtual page number -> pfn; areas: start -> number of pages
        self._vmap_pt: dict[int, int] = {}
        self._vmap_areas: dict[int, int] = {}
        self._vmap_next = VMAP_BASE
        # per-CPU units
        self._pcpu_unit_pfn = [self._alloc_run(PERCPU_UNIT // PAGE) for _ in range(ncpus)]
        self._pcpu_off = 0
        self._pcpu_live: set[int] = set()
        # user memory of the current task: page number -> (bytearray, writable)
        self.user_pages: dict[int, tuple[bytearray, bool]] = {}
        self._user_next = USER_BASE
        # maps and fds
        self._fds: dict[int, Any] = {}
        self._maps_by_addr: dict[int, Any] = {}
        self._next_fd = 3

    # -- physical memory ----------------------------------------------------------------------
    def _alloc_run(self, npages: int) -> int:
        pfn = self._next_pfn
        if (pfn + npages) * PAGE > PHYS_LIMIT:
            raise BpfError(errno.ENOMEM, f"no {npages} contiguous free frames")
        self._next_pfn += npages
        for p in range(pfn, pfn + npages):
            self._frames[p] = bytearray(PAGE)
        return pfn

    def alloc_page(self) -> int:
        if self._free_pfns:
            pfn = self._free_pfns.pop()
            self._frames[pfn] = bytearray(PAGE)
            return pfn * PAGE
        return self._alloc_run(1) * PAGE

    def free_page(self, phys_addr: int) -> None:
        pfn = phys_addr // PAGE
        if pfn not in self._frames:
            raise RuntimeError(f"free_page({phys_addr:#x}): not allocated")
        del self._frames[pfn]
        self._free_pfns.append(pfn)

    # -- kernel virtual memory ----------------------------------------------------------------
    def _frame_of(self, addr: int) -> tuple[bytearray, int]:
        if DIRECT_BASE <= addr < DIRECT_BASE + PHYS_LIMIT:
            phys = addr - DIRECT_BASE
            frame = self._frames.get(phys // PAGE)
        elif VMAP_BASE <= addr < VMAP_BASE + (1 << 40):
            pfn = self._vmap_pt.get(addr // PAGE)
            frame = None if pfn is None else self._frames.get(pfn)
        else:
            frame = None
        if frame is None:
            raise BpfError(errno.EFAULT, f"kernel address {addr:#x} is not mapped")
        return frame, addr % PAGE

    def read(self, addr: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            frame, off = self._frame_of(addr)
            n = min(size, PAGE - off)
            out += frame[off : off + n]
            addr += n
            size -= n
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        data = bytes(data)
        # check the whole range first so a failing write changes nothing
        a, left = addr, len(data)
        while left > 0:
            _, off = self._frame_of(a)
            n = min(left, PAGE - off)
            a += n
            left -= n
        pos = 0
        while pos < len(data):
            frame, off = self._frame_of(addr + pos)
            n = min(len(data) - pos, PAGE - off)
            frame[off : off + n] = data[pos : pos + n]
            pos += n

    def kmalloc(self, size: int, align: int = 8) -> int:
        size = max(size, 1)
        start = (self._slab_cur + align - 1) // align * align
        if not self._slab_cur or start + size > self._slab_end:
            npages = max(1, -(-(size + align) // PAGE))
            pfn = self._alloc_run(npages)
            self._slab_cur = DIRECT_BASE + pfn * PAGE
            self._slab_end = self._slab_cur + npages * PAGE
            start = (self._slab_cur + align - 1) // align * align
        self._slab_cur = start + size
        self._kmalloc_live[start] = size
        return start

    def kfree(self, addr: int) -> None:
        if self._kmalloc_live.pop(addr, None) is None:
            raise RuntimeError(f"kfree({addr:#x}): not a live kmalloc allocation")

    def kmalloc_live(self) -> int:
        """Number of kmalloc allocations not freed (for leak checks)."""
        return len(self._kmalloc_live)

    def vmap(self, phys_addrs: Sequence[int]) -> int:
        start = self._vmap_next
        for i, phys in enumerate(phys_addrs):
            if phys // PAGE not in self._frames:
                raise BpfError(errno.EINVAL, f"vmap of unallocated frame {phys:#x}")
            self._vmap_pt[start // PAGE + i] = phys // PAGE
        self._vmap_areas[start] = len(phys_addrs)
        self._vmap_next = start + (len(phys_addrs) + 1) * PAGE  # a guard page between areas
        return start

    def unmap(self, vaddr: int) -> None:
        npages = self._vmap_areas.pop(vaddr)
        for i in range(npages):
            del self._vmap_pt[vaddr // PAGE + i]

    def phys_of(self, addr: int) -> int:
        """The physical address behind kernel address ``addr`` (direct map or vmap), as the page
        tables resolve it; EFAULT when unmapped.  Lets tests see that two virtual addresses of
        a double mapping reach one frame."""
        self._frame_of(addr)  # EFAULT when unmapped
        if DIRECT_BASE <= addr < DIRECT_BASE + PHYS_LIMIT:
            return addr - DIRECT_BASE
        return self._vmap_pt[addr // PAGE] * PAGE + addr % PAGE

    # -- per-CPU ------------------------------------------------------------------------------
    def num_cpus(self) -> int:
        return self.ncpus

    def create(self, factory):
        return _PerCpu(self, [factory(cpu) for cpu in range(self.ncpus)])

    def alloc_percpu(self, size: int, align: int = 8) -> list[int]:
        off = (self._pcpu_off + align - 1) // align * align
        if off + size > PERCPU_UNIT:
            raise BpfError(errno.ENOMEM, f"per-CPU areas full ({PERCPU_UNIT} bytes per CPU)")
        self._pcpu_off = off + size
        self._pcpu_live.add(off)
        return [DIRECT_BASE + pfn * PAGE + off for pfn in self._pcpu_unit_pfn]

    def free_percpu(self, addrs: Sequence[int]) -> None:
        off = addrs[0] - (DIRECT_BASE + self._pcpu_unit_pfn[0] * PAGE)
        self._pcpu_live.remove(off)

    def percpu_unit(self, cpu: int) -> tuple[int, int]:
        """``[start, end)`` of CPU ``cpu``'s per-CPU area."""
        start = DIRECT_BASE + self._pcpu_unit_pfn[cpu] * PAGE
        return start, start + PERCPU_UNIT

    # -- user memory of the current task ------------------------------------------------------
    def map_user(self, data: bytes, writable: bool = True, addr: int | None = None) -> int:
        """Map ``data`` (page-rounded) into the current task's user memory; returns its address."""
        if addr is None:
            addr = self._user_next
        npages = max(1, -(-(addr % PAGE + len(data)) // PAGE))
        first = addr // PAGE
        for p in range(first, first + npages):
            self.user_pages.setdefault(p, (bytearray(PAGE), writable))
            self.user_pages[p] = (self.user_pages[p][0], writable)
        self._user_next = max(self._user_next, (first + npages + 1) * PAGE)
        self._user_rw(addr, len(data), bytes(data), force=True)
        return addr

    def _user_rw(self, addr: int, size: int, data: bytes | None, force: bool = False) -> bytes:
        if not force and self.current_task().pid == 0:
            raise BpfError(errno.EFAULT, "the idle task has no user memory")
        out = bytearray()
        pos = 0
        # check first, then act: a failing copy changes nothing
        for phase in ("check", "do"):
            a, left, pos = addr, size, 0
            while left > 0:
                page = self.user_pages.get(a // PAGE)
                if page is None or (data is not None and not page[1] and not force):
                    raise BpfError(errno.EFAULT, f"user address {a:#x} not mapped for this access")
                off = a % PAGE
                n = min(left, PAGE - off)
                if phase == "do":
                    if data is None:
                        out += page[0][off : off + n]
                    else:
                        page[0][off : off + n] = data[pos : pos + n]
                a += n
                left -= n
                pos += n
        return bytes(out)

    def copy_from_user(self, src: int, size: int) -> bytes:
        return self._user_rw(src, size, None)

    def copy_to_user(self, dest: int, data: bytes) -> None:
        self._user_rw(dest, len(data), bytes(data))

    def string_from_user_cstr(self, ptr: int) -> str:
        out = bytearray()
        while True:
            b = self.copy_from_user(ptr + len(out), 1)
            if b == b"\0":
                return out.decode("utf-8", "replace")
            out += b

    # -- maps and fds -------------------------------------------------------------------------
    def install_map(self, umap) -> int:
        fd = self._next_fd
        self._next_fd += 1
        self._fds[fd] = umap
        self._maps_by_addr[umap.addr] = umap
        return fd

    def install_other_fd(self, obj: object) -> int:
        """An fd to something that is not a map (EINVAL where a map fd is expected)."""
        fd = self._next_fd
        self._next_fd += 1
        self._fds[fd] = obj
        return fd

    def install_perf_event(self, event) -> int:
        """Give a ``kbpf.perf.BpfPerfEvent`` an fd (the fd holds the event's first reference)."""
        return self.install_other_fd(event)

    def get_perf_event_from_fd(self, fd: int):
        from kbpf.perf.event import BpfPerfEvent

        obj = self._fds.get(fd)
        if not isinstance(obj, BpfPerfEvent):
            why = "is not open" if obj is None else "is not a perf event"
            raise BpfError(errno.EBADF, f"fd {fd} {why}")
        return obj

    def get_map_file_from_fd(self, map_fd: int):
        """Each fd is its own file here: the (fd, map) pair stands for it."""
        self.get_unified_map_from_fd(map_fd)
        return ("file", map_fd)

    def get_unified_map_from_fd(self, map_fd: int):
        obj = self._fds.get(map_fd)
        if obj is None:
            raise BpfError(errno.EBADF, f"fd {map_fd} is not open")
        if obj.__class__.__name__ != "UnifiedMap":
            raise BpfError(errno.EINVAL, f"fd {map_fd} is not a BPF map")
        return obj

    def get_unified_map_ptr_from_fd(self, map_fd: int) -> int:
        return self.get_unified_map_from_fd(map_fd).addr

    def get_unified_map_from_ptr(self, ptr: int):
        umap = self._maps_by_addr.get(ptr)
        if umap is None:
            raise BpfError(errno.EINVAL, f"{ptr:#x} is not a map")
        return umap

    # -- the world ----------------------------------------------------------------------------
    def current_cpu_id(self) -> int:
        return self.cpu

    def current_task(self) -> TaskInfo:
        return self.tasks.get(self.cpu) or TaskInfo(0, 0, f"swapper/{self.cpu}")

    def ebpf_time_ns(self) -> int:
        return self.now_ns

    def random_u32(self) -> int:
        return self._rng.getrandbits(32)

    def ebpf_write_str(self, text: str) -> None:
        self.trace.append(text)

    def perf_event_output(self, ctx: int, fd: int, flags: int, data: bytes) -> None:
        self.perf_outputs.append((ctx, fd, flags, bytes(data)))

    def call_program(self, func: int, args: tuple[int, ...]) -> int:
        self.calls.append((func, tuple(args)))
        try:
            fn = self.programs[func]
        except KeyError:
            raise BpfError(errno.EFAULT, f"no program code at {func:#x}") from None
        return fn(*args)


# ---------------------------------------------------------------------------------------------
# Conveniences for tests
# ---------------------------------------------------------------------------------------------


def create_map(
    host: TestHost,
    map_type,
    key_size: int = 4,
    value_size: int = 8,
    max_entries: int = 4,
    map_flags: int = 0,
    name: str = "",
    poll_waker=None,
):
    """Create a map the way BPF_MAP_CREATE does (a packed attribute through
    ``BpfMapMeta.from_attr`` and ``bpf_map_create``) and give it an fd: ``(umap, fd)``.
    ``poll_waker`` is handed to ``bpf_map_create`` (a ring buffer needs one)."""
    from kbpf.linux_bpf import BpfMapCreateAttr, BpfMapType
    from kbpf.map import BpfMapMeta, bpf_map_create, check_obj_name

    attr = BpfMapCreateAttr(
        map_type=int(BpfMapType.parse(map_type)),
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=map_flags,
        map_name=check_obj_name(name),
    )
    umap = bpf_map_create(BpfMapMeta.from_attr(attr.pack()), host, host, poll_waker)
    return umap, host.install_map(umap)


def scratch(host: TestHost, data: bytes = b"", size: int = 0) -> int:
    """Kernel memory standing for a program's stack: ``max(size, len(data))`` bytes holding
    ``data``."""
    addr = host.kmalloc(max(size, len(data), 1), 8)
    if data:
        host.write(addr, data)
    return addr


def u32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def u64(v: int) -> bytes:
    return (v & (1 << 64) - 1).to_bytes(8, "little")
