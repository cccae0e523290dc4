"""A perf event as BPF sees it (kbpf-basic's ``BpfPerfEvent``; ``struct perf_event`` of
kernel/events/core.c at v6.6, the parts a BPF output event uses).

A host creates one per successful ``perf_event_open`` (after
:meth:`~kbpf.perf.attr.PerfProbeArgs.try_from_perf_attr`), gives it an id (``event->id``, a
counter from 1 in a fresh kernel), hands it to ``KernelAuxiliaryOps.get_perf_event_from_fd``,
and forwards the fd's ``mmap``, ``munmap``, ``ioctl``, ``poll`` and ``close`` to it.

What matters to ``bpf_perf_event_output``:

* **oncpu**: the CPU the event is running on, -1 when it is not running.  An enabled CPU-bound
  event (``pid == -1, cpu == N``) runs on N; a task-bound one runs where its task runs (the host
  says so with :meth:`BpfPerfEvent.set_task_cpu`); a disabled event runs nowhere.  So output to
  a disabled event fails with EOPNOTSUPP, not silently: Linux's helper refuses an event whose
  ``oncpu`` is not the current CPU before it looks at the ring.
* **ring**: the :class:`~kbpf.perf.ring_page.RingPage` created by the first ``mmap`` and freed
  with the last ``munmap``; without one, output returns -ENOSPC and counts nothing.
* **the sample**: ``PERF_RECORD_SAMPLE`` laid out by ``perf_output_sample``: the header, the
  fixed fields ``sample_type`` asks for (IDENTIFIER, TID, TIME, ADDR, ID, STREAM_ID, CPU, PERIOD
  — kbpf writes these), then ``PERF_SAMPLE_RAW``: a u32 size and the data, padded to 8 bytes
  (``raw size = round_up(len + 4, 8) - 4``; the padding is *skipped*, not zeroed).  v6.6
  reserves the raw part even when ``sample_type`` lacks ``PERF_SAMPLE_RAW`` and then writes
  nothing there (fixed in v6.13): kbpf does the same.
"""

from __future__ import annotations

import errno
import struct

from kbpf.errors import BpfError
from kbpf.host import KernelAuxiliaryOps, Op, PollWaker, Touch
from kbpf.linux_bpf import (
    PAGE_SIZE,
    PERF_RECORD_LOST,
    PERF_RECORD_SAMPLE,
    PERF_SAMPLE_ADDR,
    PERF_SAMPLE_CPU,
    PERF_SAMPLE_ID,
    PERF_SAMPLE_PERIOD,
    PERF_SAMPLE_RAW,
    PERF_SAMPLE_STREAM_ID,
    PERF_SAMPLE_TID,
    PERF_SAMPLE_TIME,
)
from kbpf.perf.attr import (
    BIT_SAMPLE_ID_ALL,
    BIT_WRITE_BACKWARD,
    PERF_SAMPLE_IDENTIFIER,
    PerfEventIoc,
    PerfProbeArgs,
)
from kbpf.perf.ring_page import (
    EPOLLHUP,
    PERF_EVENT_HEADER_SIZE,
    PERF_RECORD_MISC_KERNEL,
    RingPage,
)

#: ``sizeof(struct perf_event)`` as kbpf lays it out [chosen: the v6.6 structure is about
#: 1.1 KiB; kbpf keeps the fields the BPF output path reads in four lines at these offsets].
PERF_EVENT_STRUCT_SIZE = 256
EV_ATTR = 0  # attr.type, attr.config, attr.sample_type, attr.flags, wakeup_events
EV_STATE = 64  # state, oncpu, cpu
EV_OUTPUT = 128  # rb, id, header_size, id_header_size
EV_LOST = 192  # lost_samples

#: Sample fields kbpf writes, in ``perf_output_sample``'s order, before PERF_SAMPLE_RAW.
FIXED_SAMPLE_FIELDS = (
    PERF_SAMPLE_IDENTIFIER,
    PERF_SAMPLE_TID,
    PERF_SAMPLE_TIME,
    PERF_SAMPLE_ADDR,
    PERF_SAMPLE_ID,
    PERF_SAMPLE_STREAM_ID,
    PERF_SAMPLE_CPU,
    PERF_SAMPLE_PERIOD,
)
#: Sample bits kbpf can lay out; the others (IP, READ, CALLCHAIN, registers, stacks, branch
#: stacks…) need machine state a BPF output has no model of.
SUPPORTED_SAMPLE_TYPE = sum(FIXED_SAMPLE_FIELDS) | PERF_SAMPLE_RAW
#: ``sample_id_all`` fields appended to non-sample records, in
#: ``__perf_event__output_id_sample``'s order.
ID_SAMPLE_FIELDS = (
    PERF_SAMPLE_TID,
    PERF_SAMPLE_TIME,
    PERF_SAMPLE_ID,
    PERF_SAMPLE_STREAM_ID,
    PERF_SAMPLE_CPU,
    PERF_SAMPLE_IDENTIFIER,
)


def raw_sizes(length: int) -> tuple[int, int]:
    """``perf_sample_save_raw_data`` for ``length`` bytes: ``(raw size, padding)``; the record
    carries ``4 + raw size`` bytes, a multiple of 8."""
    raw = (length + 4 + 7) // 8 * 8 - 4
    return raw, raw - length


class BpfPerfEvent:
    """A perf event (see the module docstring).

    ``args`` is what ``perf_event_open`` parsed; ``event_id`` the event's id; ``poll_waker``
    wakes the tasks polling the event's fd.  ``refs`` counts the references (the host's fd: 1
    at creation; each PERF_EVENT_ARRAY slot holding it); :meth:`put` of the last frees it.
    """

    def __init__(
        self,
        host: KernelAuxiliaryOps,
        args: PerfProbeArgs,
        event_id: int,
        poll_waker: PollWaker | None = None,
    ):
        self.host = host
        self.args = args
        self.attr = args.attr
        self.id = event_id
        self.cpu = args.cpu
        self.pid = args.pid
        self.poll_waker = poll_waker
        self.enabled = not self.attr.disabled
        self.ring: RingPage | None = None
        self.mmap_count = 0
        #: ``event->lost_samples``: every record this event could not write.
        self.lost_samples = 0
        self.refs = 1
        self._task_cpu = -1
        self.addr = host.kmalloc(PERF_EVENT_STRUCT_SIZE, 64)

    def __repr__(self) -> str:
        return f"BpfPerfEvent(id={self.id}, cpu={self.cpu}, pid={self.pid}, type={self.attr.type})"

    # -- what it is -----------------------------------------------------------------------------
    @property
    def is_bpf_output(self) -> bool:
        """A ``PERF_TYPE_SOFTWARE`` / ``PERF_COUNT_SW_BPF_OUTPUT`` event."""
        return self.args.is_bpf_output

    @property
    def sample_id_all(self) -> bool:
        return bool(self.attr.flags >> BIT_SAMPLE_ID_ALL & 1)

    @property
    def oncpu(self) -> int:
        """``event->oncpu``: where the event runs now, -1 when it does not."""
        if not self.enabled:
            return -1
        if self.pid == -1:
            return self.cpu
        if self._task_cpu >= 0 and self.cpu in (-1, self._task_cpu):
            return self._task_cpu
        return -1

    def set_task_cpu(self, cpu: int) -> None:
        """For a task-bound event: the host's scheduler says its task now runs on ``cpu`` (-1:
        it was switched out).  The event is scheduled in and out with it."""
        self._task_cpu = cpu

    # -- kbpf-basic's switches ------------------------------------------------------------------
    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def readable(self) -> bool:
        """Unread records wait in the ring."""
        return self.ring is not None and self.ring.readable()

    def writeable(self) -> bool:
        """Perf fds never poll writable."""
        return False

    # -- the fd's operations ----------------------------------------------------------------------
    def ioctl(self, cmd: int, arg: int = 0) -> int:
        """``perf_ioctl`` for what a BPF output event uses: ENABLE and DISABLE (the argument's
        ``PERF_IOC_FLAG_GROUP`` bit extends them to a group; an event without siblings is its
        own group), RESET (no counter to clear: nothing changes), PAUSE_OUTPUT (``arg`` non-zero
        pauses the ring: every output is then lost; EINVAL without a ring with data pages).
        SET_BPF attaches a program, which is the host's business; anything else is ENOTTY."""
        if cmd == PerfEventIoc.ENABLE:
            self.enable()
        elif cmd == PerfEventIoc.DISABLE:
            self.disable()
        elif cmd == PerfEventIoc.RESET:
            pass
        elif cmd == PerfEventIoc.PAUSE_OUTPUT:
            if self.ring is None or not self.ring.nr_pages:
                raise BpfError(errno.EINVAL, "PAUSE_OUTPUT needs a mapped ring with data pages")
            self.ring.paused = bool(arg)
        else:
            raise BpfError(errno.ENOTTY, f"perf ioctl {cmd:#x} is not handled by the event")
        return 0

    def do_mmap(self, offset: int, size: int, write: bool) -> list[tuple[int, bool]]:
        """``perf_mmap`` of ``size`` bytes (rounded up to pages, as mmap rounds a length) at
        page ``offset`` 0: one metadata page plus 0 or 2^n data pages.  The first mapping
        creates the ring (writable or, for a read-only mapping, overwriting); later ones must
        ask for the same number of pages and share it.  Returns the frames in order with
        whether user space may write each (see :meth:`RingPage.user_pages`).

        EINVAL: an offset other than 0 (AUX areas are not modelled), a size that is not one
        page plus a power of two of pages, a size different from the existing ring's, or an
        inheriting task event (``cpu == -1`` with ``inherit``)."""
        if self.cpu == -1 and self.attr._bit(self.attr.BIT_INHERIT):
            raise BpfError(errno.EINVAL, "cannot mmap an inherited per-task event")
        if offset:
            raise BpfError(errno.EINVAL, f"perf mmap at offset {offset}: only 0 (no AUX area)")
        if size <= 0:
            raise BpfError(errno.EINVAL, "perf mmap of nothing")
        nr_pages = -(-size // PAGE_SIZE) - 1
        if nr_pages and nr_pages & (nr_pages - 1):
            raise BpfError(
                errno.EINVAL, f"perf mmap of 1 + {nr_pages} pages: data pages must be 2^n"
            )
        if self.ring is not None:
            if self.ring.nr_pages != nr_pages:
                raise BpfError(
                    errno.EINVAL,
                    f"ring already mapped with {self.ring.nr_pages} data pages, not {nr_pages}",
                )
        else:
            watermark = self.attr.wakeup_watermark if self.attr.watermark else 0
            self.ring = RingPage(self.host, nr_pages, watermark, write, self.poll_waker)
        self.mmap_count += 1
        return self.ring.user_pages(write)

    def munmap(self) -> None:
        """``perf_mmap_close``: the last mapping detaches and frees the ring; later output
        finds no ring."""
        if self.mmap_count <= 0:
            raise RuntimeError(f"{self!r}: munmap without a mapping")
        self.mmap_count -= 1
        if not self.mmap_count and self.ring is not None:
            self.ring.free()
            self.ring = None

    def poll(self) -> int:
        """``perf_poll``: EPOLLHUP without a ring; otherwise EPOLLIN if a wakeup happened since
        the last poll (the flag is consumed), else 0.  Records waiting without a wakeup (fewer
        than ``wakeup_events`` samples) do not make the fd ready."""
        if self.ring is None:
            return EPOLLHUP
        events, self.ring.poll = self.ring.poll, 0
        return events

    def check_read_local(self) -> None:
        """What ``perf_event_fd_array_get_ptr`` asks of ``perf_event_read_local``: only an
        inheriting event answers EOPNOTSUPP (its children's counts cannot be read from atomic
        context); other refusals of that function do not stop a map update."""
        if self.attr._bit(self.attr.BIT_INHERIT):
            raise BpfError(errno.EOPNOTSUPP, "an inheriting perf event cannot go in a map")

    # -- references --------------------------------------------------------------------------------
    def get(self) -> BpfPerfEvent:
        self.refs += 1
        return self

    def put(self) -> None:
        """Drop a reference; the last one frees the event (and a ring still attached)."""
        if self.refs <= 0:
            raise RuntimeError(f"{self!r}: put without a reference")
        self.refs -= 1
        if not self.refs:
            if self.ring is not None:
                self.ring.free()
                self.ring = None
            self.host.kfree(self.addr)
            self.addr = 0

    # -- output ------------------------------------------------------------------------------------
    def _fields(self, which: tuple[int, ...], sample_type: int, cpu: int) -> bytes:
        """The u64 fields ``which`` selects that ``sample_type`` asks for, in that order."""
        out = []
        for bit in which:
            if not sample_type & bit:
                continue
            if bit == PERF_SAMPLE_TID:
                task = self.host.current_task()
                out.append(struct.pack("<II", task.tgid, task.pid))
            elif bit == PERF_SAMPLE_TIME:
                out.append(struct.pack("<Q", self.host.ebpf_time_ns()))
            elif bit in (PERF_SAMPLE_ID, PERF_SAMPLE_IDENTIFIER, PERF_SAMPLE_STREAM_ID):
                out.append(struct.pack("<Q", self.id))
            elif bit == PERF_SAMPLE_CPU:
                out.append(struct.pack("<II", cpu, 0))
            else:  # ADDR and PERIOD: perf_sample_data_init(sd, 0, 0) leaves both 0
                out.append(bytes(8))
        return b"".join(out)

    def lost_record(self, count: int, cpu: int) -> bytes:
        """``PERF_RECORD_LOST {header, id, lost}`` followed by the ``sample_id_all`` fields
        when the event asks for them."""
        extra = self._fields(ID_SAMPLE_FIELDS, self.attr.sample_type, cpu)
        if not self.sample_id_all:
            extra = b""
        size = 24 + len(extra)
        return struct.pack("<IHHQQ", PERF_RECORD_LOST, 0, size, self.id, count) + extra

    def write_event(self, data: bytes, misc: int = PERF_RECORD_MISC_KERNEL) -> Op:
        """``perf_event_output`` of ``data`` as the raw part of one sample (what
        ``bpf_perf_event_output`` hands it): 0, or -ENOSPC as a ``BpfError`` when the record was
        dropped (counted as lost) or the event has no ring.  ``misc`` is the header's
        ``PERF_RECORD_MISC_*`` (``perf_misc_flags(regs)``: kernel for the tracepoints kbpf-sim
        fires).

        Sample bits kbpf cannot lay out (see ``SUPPORTED_SAMPLE_TYPE``) and backward rings
        (``write_backward``) are EOPNOTSUPP, and a record whose size does not fit the header's
        16-bit ``size`` is E2BIG; Linux v6.6 writes all three (docs/deviations.md)."""
        attr = self.attr
        if attr._bit(BIT_WRITE_BACKWARD):
            raise BpfError(
                errno.EOPNOTSUPP, "backward perf rings (write_backward) are not modelled"
            )
        sample_type = attr.sample_type
        unsupported = sample_type & ~SUPPORTED_SAMPLE_TYPE
        if unsupported:
            raise BpfError(
                errno.EOPNOTSUPP, f"sample_type bits {unsupported:#x} are not modelled by kbpf"
            )
        cpu = self.host.current_cpu_id()
        yield Touch(self.addr + EV_ATTR, 64)  # sample_type, flags, wakeup_events
        yield Touch(self.addr + EV_OUTPUT, 32)  # rb, id, header sizes
        raw_size, pad = raw_sizes(len(data))
        fields = self._fields(FIXED_SAMPLE_FIELDS, sample_type, cpu)
        size = PERF_EVENT_HEADER_SIZE + len(fields) + 4 + raw_size
        if size > 0xFFFF:
            raise BpfError(
                errno.E2BIG, f"a {size}-byte sample does not fit perf_event_header.size (u16)"
            )
        ring = self.ring
        if ring is None:
            raise BpfError(errno.ENOSPC, "perf event has no ring buffer (not mmap'd)")
        handle = yield from ring.output_begin(
            self, size, lambda count: self.lost_record(count, cpu)
        )
        if handle is None:
            raise BpfError(errno.ENOSPC, "perf ring full: sample lost")
        header = struct.pack("<IHH", PERF_RECORD_SAMPLE, misc, size)
        yield from ring.output_copy(handle, header + fields)
        if sample_type & PERF_SAMPLE_RAW:
            yield from ring.output_copy(handle, struct.pack("<I", raw_size) + bytes(data))
            ring.output_skip(handle, pad)
        if not attr.watermark:
            ring.count_sample(attr.wakeup_events)
        yield from ring.output_end(handle)
        return 0
