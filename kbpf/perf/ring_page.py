"""The perf ring buffer behind an mmap'd perf event: ``struct perf_buffer`` and its pages
(kernel/events/ring_buffer.c and the output half of kernel/events/core.c at v6.6; kbpf-basic's
``RingPage``).

Layout, as ``rb_alloc`` and ``perf_mmap`` make it: one metadata page (``struct
perf_event_mmap_page``: ``data_head`` at 1024, ``data_tail`` at 1032, ``data_offset`` at 1040,
``data_size`` at 1048) followed by ``nr_pages`` data pages, ``nr_pages`` 0 or a power of two.
kbpf allocates them with ``host.alloc_page`` and ``vmap``s them once, in order, so the kernel
writes the data area at consecutive addresses; user space maps the same frames.  Perf records
are *not* double-mapped (unlike the BPF ring buffer): a record that runs past the end of the
data area continues at its start, and a consumer copies the two parts together, as libbpf's
``perf_event_read_simple`` does.

Positions are free-running byte counts (``head`` in the kernel, ``data_head``/``data_tail`` in
the metadata page); a position's place in the data area is ``pos & (data_size - 1)``.

The kernel side, following ``__perf_output_begin`` / ``perf_output_put_handle``:

* **space**: a record of ``size`` bytes is written only if ``CIRC_SPACE(head, tail, data_size)
  >= size``, where ``CIRC_SPACE = (tail - head - 1) & (data_size - 1)``: one byte always stays
  free, and since records are multiples of 8 bytes the ring holds at most ``data_size - 8``
  unread bytes.  ``tail`` is the ``data_tail`` user space stores.  A ring mapped read-only runs
  in *overwrite* mode: no space check, old records are overwritten.
* **loss**: a record that does not fit is dropped and ``lost`` counts it (-ENOSPC for the
  writer).  The next record that is written is preceded by a ``PERF_RECORD_LOST {header, id,
  lost}`` carrying the count, and the space check covers both records together.
* **publishing**: ``data_head`` in the metadata page is written at the end of each output, after
  the record's bytes.
* **wakeups**: ``rb->wakeup`` is bumped by the watermark rule (``head - wakeup > watermark``,
  checked when space is reserved; the watermark is ``wakeup_watermark`` or half the data area)
  and by the sample-count rule (every ``wakeup_events`` samples, counted by the event); when the
  output ends and ``rb->wakeup`` changed during it, pollers are woken (``PollWaker``) and the
  next ``poll`` reports EPOLLIN.

Locks: none.  Linux reserves space with a per-CPU ``local_cmpxchg`` (the buffer belongs to one
CPU's event), so the output path only yields ``Touch`` for the lines it reads and writes and
``Work`` for the bytes it copies and the events it counts (``"perf_lost"``, ``"perf_wakeup"``).
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from kbpf.errors import BpfError
from kbpf.host import KernelAuxiliaryOps, Op, PollWaker, Touch, Work
from kbpf.linux_bpf import (
    PAGE_SIZE,
    PERF_MMAP_PAGE_DATA_HEAD,
    PERF_MMAP_PAGE_DATA_OFFSET,
    PERF_MMAP_PAGE_DATA_SIZE,
    PERF_MMAP_PAGE_DATA_TAIL,
)

U64 = (1 << 64) - 1

PERF_RECORD_MISC_KERNEL = 1 << 0
PERF_RECORD_MISC_USER = 2 << 0
#: ``sizeof(struct perf_event_header)``.
PERF_EVENT_HEADER_SIZE = 8
#: ``sizeof(lost_event)`` in ``__perf_output_begin``: header, id, lost.
PERF_LOST_RECORD_SIZE = 24

EPOLLIN = 0x001
EPOLLHUP = 0x010

#: ``struct perf_event_mmap_page`` fields ``perf_event_init_userpage`` sets besides the data
#: area's place: ``capabilities`` (its ``cap_bit0_is_deprecated`` bit) and ``size``.
PERF_MMAP_PAGE_CAPABILITIES = 40
PERF_MMAP_PAGE_SIZE_FIELD = 72
CAP_BIT0_IS_DEPRECATED = 1 << 1
#: ``offsetof(struct perf_event_mmap_page, __reserved)``: what the page's ``size`` says.
PERF_MMAP_PAGE_HEADER_SIZE = 96

#: ``sizeof(struct perf_buffer)`` as kbpf lays it out [chosen: the v6.6 structure is about 300
#: bytes plus the page pointers; the fields the output path uses (head, nest, events, wakeup,
#: lost, watermark, overwrite, paused, user_page, data_pages) are kept in its first line].
RB_STRUCT_SIZE = 256
#: The line of ``struct perf_buffer`` the output path reads and writes.
RB_HOT_BYTES = 64


def circ_space(head: int, tail: int, size: int) -> int:
    """``CIRC_SPACE(head, tail, size)`` (include/linux/circ_buf.h) on unsigned longs: the bytes
    that can be written without reaching ``tail`` and without filling the ring completely."""
    return (tail - (head + 1)) & (size - 1) if size else 0


class PerfOutputHandle:
    """``struct perf_output_handle``: where an output writes (``pos``, a free-running position)
    and the ``rb->wakeup`` it saw when it began."""

    __slots__ = ("pos", "wakeup")

    def __init__(self, pos: int, wakeup: int):
        self.pos = pos
        self.wakeup = wakeup


class RingPage:
    """One ``struct perf_buffer`` with its metadata page and ``nr_pages`` data pages.

    ``watermark`` is the attribute's ``wakeup_watermark`` when ``attr.watermark`` is set (0:
    half the data area); ``writable`` is whether user space mapped it writable (a read-only
    mapping makes an overwriting ring); ``poll_waker`` wakes the event's pollers.
    """

    def __init__(
        self,
        host: KernelAuxiliaryOps,
        nr_pages: int,
        watermark: int = 0,
        writable: bool = True,
        poll_waker: PollWaker | None = None,
    ):
        if nr_pages < 0 or nr_pages & (nr_pages - 1):
            raise BpfError(errno.EINVAL, f"{nr_pages} data pages: must be 0 or a power of two")
        self.host = host
        self.nr_pages = nr_pages
        self.data_size = nr_pages * PAGE_SIZE
        self.poll_waker = poll_waker
        # struct perf_buffer's state (kernel-private: it lives in Python, its line is touched)
        self.head = 0
        self.lost = 0
        self.wakeup = 0
        self.events = 0
        self.poll = 0
        # ring_buffer_init
        max_size = self.data_size
        self.watermark = min(max_size, watermark) if watermark else 0
        if not self.watermark:
            self.watermark = max_size // 2
        self.overwrite = not writable
        self.paused = nr_pages == 0
        self.pages: list[int] = []
        self.rb_addr = host.kmalloc(RB_STRUCT_SIZE, 64)
        try:
            for _ in range(1 + nr_pages):
                self.pages.append(host.alloc_page())
            self.base = host.vmap(self.pages)
        except BpfError:
            for phys in self.pages:
                host.free_page(phys)
            host.kfree(self.rb_addr)
            raise
        #: Kernel address of the data area (the page after the metadata page).
        self.data = self.base + PAGE_SIZE
        self._init_userpage()

    def _init_userpage(self) -> None:
        """``perf_event_init_userpage``: the page says where the data is and how big it is.
        (The self-monitoring fields ``perf_event_update_userpage`` fills, such as ``index``,
        ``offset`` and the times, describe a hardware counter; a software event has none and
        kbpf leaves them zero.)"""
        w = self.host.write
        w(self.base + PERF_MMAP_PAGE_CAPABILITIES, CAP_BIT0_IS_DEPRECATED.to_bytes(8, "little"))
        w(self.base + PERF_MMAP_PAGE_SIZE_FIELD, PERF_MMAP_PAGE_HEADER_SIZE.to_bytes(4, "little"))
        w(self.base + PERF_MMAP_PAGE_DATA_OFFSET, PAGE_SIZE.to_bytes(8, "little"))
        w(self.base + PERF_MMAP_PAGE_DATA_SIZE, self.data_size.to_bytes(8, "little"))

    # -- kbpf-basic's queries -----------------------------------------------------------------
    @property
    def start(self) -> int:
        """Kernel address of the metadata page (kbpf-basic's ``RingPage::start``)."""
        return self.base

    @property
    def data_head(self) -> int:
        """``data_head`` as published in the metadata page."""
        return int.from_bytes(self.host.read(self.base + PERF_MMAP_PAGE_DATA_HEAD, 8), "little")

    @property
    def data_tail(self) -> int:
        """``data_tail`` as user space last stored it."""
        return int.from_bytes(self.host.read(self.base + PERF_MMAP_PAGE_DATA_TAIL, 8), "little")

    def readable(self) -> bool:
        """Unread records are waiting (``data_tail != data_head``)."""
        return self.data_tail != self.data_head

    def space(self) -> int:
        """Bytes a record may take right now (``CIRC_SPACE`` against the user's tail)."""
        return circ_space(self.head, self.data_tail, self.data_size)

    def user_pages(self, write: bool) -> list[tuple[int, bool]]:
        """The frames a user mapping of the whole buffer gets, in order, each with whether user
        space may write it: only the metadata page, and only in a writable mapping (that is how
        the consumer stores ``data_tail``); a write to a data page is a fault
        (``perf_mmap_fault`` answers SIGBUS)."""
        return [(phys, write and i == 0) for i, phys in enumerate(self.pages)]

    # -- the output path ------------------------------------------------------------------------
    def output_begin(self, event, size: int, lost_record: Callable[[int], bytes]) -> Op:
        """``__perf_output_begin`` for a record of ``size`` bytes (``event`` is the
        :class:`~kbpf.perf.event.BpfPerfEvent`, whose ``lost_samples`` counts every loss;
        ``lost_record(n)`` builds the PERF_RECORD_LOST for ``n`` lost records).

        Returns a :class:`PerfOutputHandle` positioned after the LOST record it may have
        written, or None when the record is dropped (the caller answers -ENOSPC)."""
        rb = self.rb_addr
        if self.paused:
            yield Touch(rb, RB_HOT_BYTES)
            if self.nr_pages:
                self.lost += 1
                event.lost_samples += 1
                yield Work("perf_lost")
            return None
        # perf_output_get_handle: rb->nest++, remember rb->wakeup
        yield Touch(rb, RB_HOT_BYTES, True)
        have_lost = self.lost
        if have_lost:
            size += len(lost_record(0))
        handle = PerfOutputHandle(self.head, self.wakeup)
        yield Touch(self.base + PERF_MMAP_PAGE_DATA_TAIL, 8)
        tail = self.data_tail
        head = self.head
        if not self.overwrite and circ_space(head, tail, self.data_size) < size:
            self.lost += 1
            event.lost_samples += 1
            yield Work("perf_lost")
            yield from self.output_end(handle)
            return None
        self.head = head = (head + size) & U64
        if (head - self.wakeup) & U64 > self.watermark:
            self.wakeup = (self.wakeup + self.watermark) & U64
        if have_lost:
            count, self.lost = self.lost, 0
            yield from self.output_copy(handle, lost_record(count))
        return handle

    def output_copy(self, handle: PerfOutputHandle, data: bytes) -> Op:
        """``__output_copy``: write ``data`` at the handle's position, continuing at the start
        of the data area when it runs past the end; advance the handle."""
        if not data:
            return
        size = self.data_size
        off = handle.pos & (size - 1)
        first = min(len(data), size - off)
        yield Touch(self.data + off, first, True)
        self.host.write(self.data + off, data[:first])
        if first < len(data):
            rest = data[first:]
            yield Touch(self.data, len(rest), True)
            self.host.write(self.data, rest)
        yield Work("copy_bytes", len(data))
        handle.pos = (handle.pos + len(data)) & U64

    @staticmethod
    def output_skip(handle: PerfOutputHandle, n: int) -> None:
        """``__output_skip`` (``perf_output_skip``): advance over ``n`` bytes *without writing
        them*: padding keeps whatever an earlier lap of the ring left there."""
        handle.pos = (handle.pos + n) & U64

    def count_sample(self, wakeup_events: int) -> None:
        """The end of ``perf_output_sample``: every ``wakeup_events`` samples bump
        ``rb->wakeup`` (events with ``attr.watermark`` or ``wakeup_events`` 0 skip this)."""
        if wakeup_events:
            self.events += 1
            if self.events >= wakeup_events:
                self.events -= wakeup_events
                self.wakeup = (self.wakeup + 1) & U64

    def output_end(self, handle: PerfOutputHandle) -> Op:
        """``perf_output_put_handle``: publish ``data_head`` (after the record's bytes) and wake
        pollers if ``rb->wakeup`` moved since the output began."""
        yield Touch(self.base + PERF_MMAP_PAGE_DATA_HEAD, 8, True)
        self.host.write(self.base + PERF_MMAP_PAGE_DATA_HEAD, self.head.to_bytes(8, "little"))
        yield Touch(self.rb_addr, RB_HOT_BYTES, True)  # rb->nest = 0, re-read head and wakeup
        if handle.wakeup != self.wakeup:
            self.poll = EPOLLIN
            yield Work("perf_wakeup")
            if self.poll_waker is not None:
                self.poll_waker.wake_up()

    # -- teardown -------------------------------------------------------------------------------
    def free(self) -> None:
        """``rb_free``: the pages and the structure go back to the host."""
        if self.pages:
            self.host.unmap(self.base)
            for phys in self.pages:
                self.host.free_page(phys)
            self.pages = []
            self.host.kfree(self.rb_addr)
