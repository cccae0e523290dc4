"""A perf-buffer consumer: one BPF-output perf event per CPU, read as libbpf's perf_buffer does.

``perf_buffer__new`` opens a ``PERF_COUNT_SW_BPF_OUTPUT`` software event on every CPU with
``sample_type = PERF_SAMPLE_RAW`` and ``wakeup_events = 1``, mmaps ``1 + page_cnt`` pages of it
(the metadata page and the data ring), enables it and stores its fd in the PERF_EVENT_ARRAY at
the CPU's index.  Reading (``perf_event_read_simple``): load ``data_head``, walk records from
``data_tail`` by their header's size — a record running past the end of the data area is copied
in two parts, since perf rings are not double-mapped — hand SAMPLE payloads to ``on_sample``
and LOST counts to ``on_lost``, then store the new ``data_tail``.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from kbpf import linux_bpf as uapi
from kbpf.errors import BpfError
from kbpf.linux_bpf import BpfCmd, BpfMapType
from sim.cpu.task import Run, Sleep, Wait
from sim.user.pricing import PricedUserMemory

if TYPE_CHECKING:  # pragma: no cover
    from sim.machine import Machine
    from sim.user.maps import MapHandle

PAGE = 4096
_HDR = struct.Struct("<IHH")
_U64 = struct.Struct("<Q")


class _CpuRing:
    def __init__(self, cpu: int, fd: int, base: int, data_pages: int, waitq):
        self.cpu = cpu
        self.fd = fd
        self.meta = base
        self.data = base + PAGE
        self.size = data_pages * PAGE
        self.waitq = waitq


class PerfBufferConsumer:
    """``m.perf_buffer(map, on_sample, on_lost=None, page_cnt=8)``."""

    def __init__(
        self,
        machine: Machine,
        map_handle: MapHandle,
        on_sample: Callable[[int, bytes], None],
        on_lost: Callable[[int, int], None] | None = None,
        page_cnt: int = 8,
        task_cpu: int | None = None,
        per_record_ns: int = 100,
        poll_ns: int = 200,
        batch: int | None = None,
        interval_ns: int = 0,
        wakeup_events: int = 1,
    ):
        if map_handle.map_type != BpfMapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
            raise BpfError(
                errno.EINVAL,
                f"map {map_handle.name!r} is {map_handle.map_type.name}, not a PERF_EVENT_ARRAY",
            )
        if page_cnt <= 0 or page_cnt & (page_cnt - 1):
            raise BpfError(errno.EINVAL, f"page_cnt must be a power of two, got {page_cnt}")
        self.m = machine
        self.map = map_handle
        self.on_sample = on_sample
        self.on_lost = on_lost
        kernel = machine.kernel
        self.process = kernel.facade if task_cpu is None else kernel.new_process("pb-consumer")
        map_fd = (
            map_handle.fd
            if task_cpu is None
            else kernel.dup_fd(kernel.facade, map_handle.fd, self.process)
        )
        from sim.user.syscall import UserCalls

        calls = kernel.facade_calls if task_cpu is None else UserCalls(kernel, self.process)
        self.rings: list[_CpuRing] = []
        ncpus = min(machine.ncpus, map_handle.max_entries)
        for cpu in range(ncpus):
            calls.begin()
            attr = uapi.PerfEventAttr(
                type=uapi.PERF_TYPE_SOFTWARE,
                size=uapi.PERF_ATTR_SIZE_VER8,
                config=uapi.PERF_COUNT_SW_BPF_OUTPUT,
                sample_period=1,
                sample_type=uapi.PERF_SAMPLE_RAW,
                wakeup_events=wakeup_events,
            )
            fd = kernel.sys_perf_event_open(self.process, calls.put(attr.pack()), -1, cpu, -1, 0)
            base = kernel.sys_mmap(self.process, fd, (1 + page_cnt) * PAGE, 3, 0)
            kernel.sys_ioctl(self.process, fd, uapi.PERF_EVENT_IOC_ENABLE, 0)
            calls.begin()
            elem = uapi.BpfMapElemAttr(
                map_fd=map_fd,
                key=calls.put(cpu.to_bytes(4, "little")),
                value=calls.put(fd.to_bytes(4, "little")),
            )
            calls.bpf(BpfCmd.BPF_MAP_UPDATE_ELEM, elem.pack())
            self.rings.append(
                _CpuRing(cpu, fd, base, page_cnt, kernel.perf_event_from_fd(self.process, fd).waitq)
            )
        self.mm = self.process.mm
        self.mem = PricedUserMemory(machine, self.mm)
        self.samples = 0
        self.lost = 0
        self.polls = 0
        self.per_record_ps = per_record_ns * 1000
        self.poll_ps = poll_ns * 1000
        self.batch = batch
        self.interval_ns = interval_ns
        self.occupancy: list[tuple[int, int]] = []  # (time ns, bytes waiting over all CPUs)
        self.task = None
        if task_cpu is not None:
            self.task = machine.spawn(
                self._task_body, cpu=task_cpu, comm="pb-consumer", process=self.process
            )

    def _u64(self, addr: int) -> int:
        return _U64.unpack(self.mem.read(addr, 8))[0]

    def _copy(self, ring: _CpuRing, pos: int, n: int) -> bytes:
        off = pos % ring.size
        first = min(n, ring.size - off)
        out = self.mem.read(ring.data + off, first)
        if first < n:  # the record wraps: its tail is at the start of the data area
            out += self.mem.read(ring.data, n - first)
        return out

    def _consume_ring(self, ring: _CpuRing, limit: int | None) -> int:
        head = self._u64(ring.meta + uapi.PERF_MMAP_PAGE_DATA_HEAD)
        tail = self._u64(ring.meta + uapi.PERF_MMAP_PAGE_DATA_TAIL)
        n = 0
        while tail < head and (limit is None or n < limit):
            rtype, _misc, size = _HDR.unpack(self._copy(ring, tail, 8))
            if size < 8:
                raise BpfError(
                    errno.EINVAL, f"perf ring of CPU {ring.cpu}: record of size {size} at {tail}"
                )
            body = self._copy(ring, tail + 8, size - 8)
            if rtype == uapi.PERF_RECORD_SAMPLE:
                raw_size = int.from_bytes(body[:4], "little")
                self.on_sample(ring.cpu, body[4 : 4 + raw_size])
                self.samples += 1
                n += 1
            elif rtype == uapi.PERF_RECORD_LOST:
                _id, lost = struct.unpack_from("<QQ", body)
                self.lost += lost
                if self.on_lost is not None:
                    self.on_lost(ring.cpu, lost)
            tail += size
            self.mem.write(ring.meta + uapi.PERF_MMAP_PAGE_DATA_TAIL, _U64.pack(tail))
        return n

    def consume(self, limit: int | None = None) -> int:
        """Read every CPU's ring; returns the samples handed to ``on_sample``."""
        return sum(self._consume_ring(ring, limit) for ring in self.rings)

    def pending_bytes(self) -> int:
        return sum(
            self._u64(r.meta + uapi.PERF_MMAP_PAGE_DATA_HEAD)
            - self._u64(r.meta + uapi.PERF_MMAP_PAGE_DATA_TAIL)
            for r in self.rings
        )

    def available(self) -> bool:
        return any(
            self._u64(r.meta + uapi.PERF_MMAP_PAGE_DATA_TAIL)
            < self._u64(r.meta + uapi.PERF_MMAP_PAGE_DATA_HEAD)
            for r in self.rings
        )

    def _task_body(self, task):
        # epoll over every CPU's event: woken by any of them.
        from sim.cpu.task import WaitQueue

        merged = WaitQueue("perf_buffer epoll")
        for ring in self.rings:
            ring.waitq.forward_to = merged
        env = self.m.env
        while True:
            if self.interval_ns:
                yield Sleep(self.interval_ns)
            elif not self.available():
                yield Wait(merged)
            self.polls += 1
            self.mem.cpu = task.cpu  # the reads below move lines from the producers' caches
            self.occupancy.append((env.now // 1000, self.pending_bytes()))
            n = self.consume(self.batch)
            self.mem.cpu = None
            yield Run(
                max(1, (n * self.per_record_ps + self.poll_ps) // 1000 + self.mem.take_debt_ns())
            )
