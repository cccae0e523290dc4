"""A ring-buffer consumer that reads the real pages through its own mmap, as libbpf does.

libbpf's ``ring_buffer__add`` maps the consumer page read-write and the producer page plus the
double-mapped data area read-only, then ``ring_buffer__consume`` walks records from the consumer
position: a record whose header still has the busy bit stops the walk; a discarded one is
skipped; every other one is handed to the callback; the consumer position is stored back after
each record.  This module does exactly that on the simulated process's memory.

Passive by default (records wait for :meth:`RingBufferConsumer.consume`); with ``task_cpu`` it is
also a simulated task that sleeps in poll on the map and is woken by the kernel.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from kbpf.errors import BpfError
from kbpf.linux_bpf import (
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
    BpfMapType,
)
from sim.cpu.task import Run, Sleep, Wait
from sim.user.pricing import PricedUserMemory

if TYPE_CHECKING:  # pragma: no cover
    from sim.machine import Machine
    from sim.user.maps import MapHandle

PAGE = 4096
PROT_READ, PROT_WRITE = 1, 2
_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<II")


class RingBufferConsumer:
    """``m.ring_buffer(map, callback)``: ``callback(data: bytes) -> int | None``."""

    def __init__(
        self,
        machine: Machine,
        map_handle: MapHandle,
        callback: Callable[[bytes], int | None],
        task_cpu: int | None = None,
        per_record_ns: int = 100,
        poll_ns: int = 200,
        batch: int | None = None,
        interval_ns: int = 0,
    ):
        if map_handle.map_type != BpfMapType.BPF_MAP_TYPE_RINGBUF:
            raise BpfError(
                errno.EINVAL,
                f"map {map_handle.name!r} is {map_handle.map_type.name}, not a ring buffer",
            )
        self.m = machine
        self.map = map_handle
        self.callback = callback
        kernel = machine.kernel
        self.process = kernel.facade if task_cpu is None else kernel.new_process("rb-consumer")
        if task_cpu is not None:
            # The consumer process needs its own fd for the map, as a real reader would have.
            self.fd = kernel.dup_fd(kernel.facade, map_handle.fd, self.process)
        else:
            self.fd = map_handle.fd
        self.size = map_handle.max_entries
        self.mask = self.size - 1
        mm = self.process.mm
        self.cons_addr = kernel.sys_mmap(self.process, self.fd, PAGE, PROT_READ | PROT_WRITE, 0)
        self.prod_addr = kernel.sys_mmap(
            self.process, self.fd, PAGE + 2 * self.size, PROT_READ, PAGE
        )
        self.data_addr = self.prod_addr + PAGE
        self.mm = mm
        self.mem = PricedUserMemory(machine, mm)
        self.consumed = 0  # records handed to the callback
        self.discarded = 0  # discarded records skipped
        self.polls = 0
        self.per_record_ps = per_record_ns * 1000
        self.poll_ps = poll_ns * 1000
        self.batch = batch
        self.interval_ns = interval_ns
        self.occupancy: list[tuple[int, int]] = []  # (time ns, bytes waiting) at each read
        self.task = None
        self.waitq = kernel.map_from_fd(self.process, self.fd).waitq
        if task_cpu is not None:
            self.task = machine.spawn(
                self._task_body, cpu=task_cpu, comm="rb-consumer", process=self.process
            )

    # -- reading the pages ---------------------------------------------------------------------
    def _u64(self, addr: int) -> int:
        return _U64.unpack(self.mem.read(addr, 8))[0]

    def _next(self) -> tuple[int, bytes | None] | None:
        """The record at the consumer position: ``(advance, data or None if discarded)``, or
        None when there is none ready (empty, or the next one is still busy)."""
        cons = self._u64(self.cons_addr)
        prod = self._u64(self.prod_addr)
        if cons >= prod:
            return None
        off = cons & self.mask
        length, _pg_off = _HDR.unpack(self.mem.read(self.data_addr + off, BPF_RINGBUF_HDR_SZ))
        if length & BPF_RINGBUF_BUSY_BIT:
            return None
        size = length & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
        advance = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if length & BPF_RINGBUF_DISCARD_BIT:
            return advance, None
        # The data area is mapped twice, so a record that wraps reads contiguously.
        return advance, self.mem.read(self.data_addr + off + BPF_RINGBUF_HDR_SZ, size)

    def consume(self, limit: int | None = None) -> int:
        """Hand every ready record to the callback; returns how many were handed over.  A
        callback returning a negative value stops consumption after that record."""
        n = 0
        while limit is None or n < limit:
            rec = self._next()
            if rec is None:
                break
            advance, data = rec
            cons = self._u64(self.cons_addr) + advance
            if data is None:
                self.discarded += 1
                self.mem.write(self.cons_addr, _U64.pack(cons))
                continue
            ret = self.callback(data)
            self.mem.write(self.cons_addr, _U64.pack(cons))
            n += 1
            self.consumed += 1
            if ret is not None and ret < 0:
                break
        return n

    def available(self) -> bool:
        """What poll reports: data between the consumer and producer positions."""
        return self._u64(self.cons_addr) < self._u64(self.prod_addr)

    # -- the simulated consumer task ------------------------------------------------------------
    def pending_bytes(self) -> int:
        return self._u64(self.prod_addr) - self._u64(self.cons_addr)

    def _task_body(self, task):
        env = self.m.env
        while True:
            if self.interval_ns:
                yield Sleep(self.interval_ns)  # read on a timer, never woken by the kernel
            elif not self.available():
                yield Wait(self.waitq)
            self.polls += 1
            self.mem.cpu = task.cpu  # the reads below move lines from the producers' caches
            self.occupancy.append((env.now // 1000, self.pending_bytes()))
            n = self.consume(self.batch)
            self.mem.cpu = None
            cost = n * self.per_record_ps + self.poll_ps
            yield Run(max(1, cost // 1000 + self.mem.take_debt_ns()))
