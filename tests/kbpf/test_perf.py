"""Perf events and their rings as kernel/events/{core,ring_buffer}.c (v6.6) define them: the
sample layout ``bpf_perf_event_output`` produces, the ring's space/loss/wakeup rules, mmap,
ioctls, and ``perf_event_open``'s attribute checks (``PerfProbeArgs.try_from_perf_attr``)."""

import errno
import struct

import pytest

from kbpf.errors import BpfError
from kbpf.host import TaskInfo, Touch, Work, drive
from kbpf.linux_bpf import (
    PAGE_SIZE,
    PERF_ATTR_SIZE_VER0,
    PERF_ATTR_SIZE_VER8,
    PERF_COUNT_SW_BPF_OUTPUT,
    PERF_COUNT_SW_DUMMY,
    PERF_RECORD_LOST,
    PERF_RECORD_SAMPLE,
    PERF_SAMPLE_ADDR,
    PERF_SAMPLE_CPU,
    PERF_SAMPLE_ID,
    PERF_SAMPLE_IP,
    PERF_SAMPLE_PERIOD,
    PERF_SAMPLE_RAW,
    PERF_SAMPLE_STREAM_ID,
    PERF_SAMPLE_TID,
    PERF_SAMPLE_TIME,
    PERF_TYPE_HARDWARE,
    PERF_TYPE_SOFTWARE,
    PERF_TYPE_TRACEPOINT,
    PerfEventAttr,
)
from kbpf.perf import (
    EPOLLHUP,
    EPOLLIN,
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_PAUSE_OUTPUT,
    PERF_EVENT_IOC_RESET,
    PERF_EVENT_IOC_SET_BPF,
    BpfPerfEvent,
    PerfEventOpenFlags,
    PerfProbeArgs,
    PerfSwIds,
    RingPage,
)
from kbpf.perf.attr import (
    BIT_ENABLE_ON_EXEC,
    BIT_INHERIT_THREAD,
    BIT_REMOVE_ON_EXEC,
    BIT_SAMPLE_ID_ALL,
    BIT_SIGTRAP,
    BIT_WRITE_BACKWARD,
    PERF_SAMPLE_BRANCH_STACK,
    PERF_SAMPLE_IDENTIFIER,
    PERF_SAMPLE_REGS_INTR,
    PERF_SAMPLE_REGS_USER,
    PERF_SAMPLE_STACK_USER,
    PERF_SAMPLE_WEIGHT,
    PERF_SAMPLE_WEIGHT_STRUCT,
    PERF_TYPE_MAX,
    check_attr,
)
from kbpf.perf.ring_page import circ_space
from tests.kbpf.perf_consumer import PerfConsumer
from tests.kbpf.testhost import TestHost

SW = PERF_TYPE_SOFTWARE
DISABLED, INHERIT, WATERMARK = 1 << 0, 1 << 1, 1 << 14


class Waker:
    """A PollWaker that counts its wake-ups."""

    def __init__(self):
        self.count = 0

    def wake_up(self):
        self.count += 1


def bpf_output_attr(**kw) -> PerfEventAttr:
    """What libbpf's perf_buffer__new opens: a software BPF_OUTPUT event sampling RAW, one
    sample per wakeup."""
    fields = dict(
        type=SW,
        size=PERF_ATTR_SIZE_VER8,
        config=PERF_COUNT_SW_BPF_OUTPUT,
        sample_type=PERF_SAMPLE_RAW,
        sample_period=1,
        wakeup_events=1,
    )
    fields.update(kw)
    return PerfEventAttr(**fields)


def open_event(host, cpu=0, pages=1, write=True, event_id=7, pid=-1, **attr_kw):
    """perf_event_open + mmap of ``1 + pages`` pages; returns (event, consumer, waker)."""
    args = PerfProbeArgs.try_from_perf_attr(
        host, bpf_output_attr(**attr_kw), pid, cpu, -1, 0, ncpus=host.ncpus
    )
    waker = Waker()
    ev = BpfPerfEvent(host, args, event_id, waker)
    consumer = None
    if pages is not None:
        consumer = PerfConsumer(host, ev.do_mmap(0, (1 + pages) * PAGE_SIZE, write))
    return ev, consumer, waker


def output(host, ev, data: bytes) -> int:
    """The event half of bpf_perf_event_output on the event's CPU: 0 or the errno."""
    host.cpu = max(ev.cpu, 0)
    try:
        return drive(ev.write_event(data), host)
    except BpfError as e:
        return e.errno


@pytest.fixture
def host():
    return TestHost(ncpus=4, seed=1)


# ---------------------------------------------------------------------------------------------
# The sample as perf_output_sample lays it out
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, raw_size, record",
    [
        (0, 4, 16),  # an empty output still carries a u32 size and 4 bytes of padding
        (1, 4, 16),
        (4, 4, 16),  # 4 + 4 is already 8-aligned: no padding
        (5, 12, 24),
        (12, 12, 24),
        (13, 20, 32),
        (88, 92, 104),  # the 88-byte payload example: raw size 92, 4 bytes of padding
    ],
)
def test_sample_layout(host, length, raw_size, record):
    """PERF_RECORD_SAMPLE {header type 9, misc KERNEL, size}, u32 raw size, the data; the raw
    size is round_up(len + 4, 8) - 4, so it includes the padding and the record stays 8-aligned."""
    ev, cons, _ = open_event(host)
    payload = bytes(range(1, length + 1))
    assert output(host, ev, payload) == 0
    (rec,) = cons.raw_records()
    assert len(rec) == record
    assert struct.unpack_from("<IHHI", rec) == (PERF_RECORD_SAMPLE, 1, record, raw_size)
    assert rec[12 : 12 + length] == payload
    assert rec[12 + length :] == bytes(raw_size - length)  # a fresh ring: zeros
    assert cons.head == record


def test_padding_is_skipped_not_zeroed(host):
    """perf_output_sample skips the padding (__output_skip writes nothing): once the ring has
    gone round, padding shows what an earlier record left there."""
    ev, cons, _ = open_event(host)
    assert output(host, ev, b"\xaa" * 12) == 0  # bytes 0..23, payload at 12..23
    cons.raw_records()
    assert output(host, ev, bytes(4060)) == 0  # a 4072-byte record: 24..4095
    cons.raw_records()
    assert output(host, ev, b"\x11" * 5) == 0  # back at offset 0: data 12..16, padding 17..19
    (rec,) = cons.raw_records()
    assert rec[12:17] == b"\x11" * 5
    assert rec[17:24] == b"\xaa" * 7  # 3 bytes of padding, then the old payload continues


def test_fixed_sample_fields(host):
    """sample_type fields come in perf_output_sample's order before RAW: IDENTIFIER, TID
    (pid = tgid, then tid), TIME, ADDR (0), ID, STREAM_ID, CPU (cpu, 0), PERIOD (0: the helper
    inits the sample with period 0); the header's size counts them."""
    st = (
        PERF_SAMPLE_IDENTIFIER
        | PERF_SAMPLE_TID
        | PERF_SAMPLE_TIME
        | PERF_SAMPLE_ADDR
        | PERF_SAMPLE_ID
        | PERF_SAMPLE_STREAM_ID
        | PERF_SAMPLE_CPU
        | PERF_SAMPLE_PERIOD
        | PERF_SAMPLE_RAW
    )
    ev, cons, _ = open_event(host, cpu=2, sample_type=st, event_id=42)
    host.tasks[2] = TaskInfo(pid=1234, tgid=1200, comm="worker")
    host.now_ns = 555_000
    assert output(host, ev, b"abc") == 0
    (rec,) = cons.raw_records()
    assert struct.unpack_from("<IHH", rec) == (PERF_RECORD_SAMPLE, 1, 8 + 8 * 8 + 8)
    fields = struct.unpack_from("<QIIQQQQII Q", rec, 8)
    assert fields == (42, 1200, 1234, 555_000, 0, 42, 42, 2, 0, 0)
    assert struct.unpack_from("<I", rec, 72)[0] == 4
    assert rec[76:79] == b"abc"


def test_sample_without_raw_reserves_but_does_not_write_it(host):
    """v6.6 adds the raw record's size to every BPF sample, but perf_output_sample writes it only
    for PERF_SAMPLE_RAW: the record is header + fields + untouched bytes (fixed in v6.13)."""
    ev, cons, _ = open_event(host, sample_type=PERF_SAMPLE_CPU)
    assert output(host, ev, b"zzzzz") == 0
    (rec,) = cons.raw_records()
    assert struct.unpack_from("<IHH", rec) == (PERF_RECORD_SAMPLE, 1, 8 + 8 + 12 + 4)
    assert rec[16:] == bytes(16)  # nothing written where the raw data would be


def test_unmodelled_layouts_are_refused(host):
    """kbpf writes only what it can lay out truthfully: no IP (no registers), no backward ring."""
    ev, cons, _ = open_event(host, sample_type=PERF_SAMPLE_IP | PERF_SAMPLE_RAW)
    assert output(host, ev, b"x") == errno.EOPNOTSUPP
    ev, cons, _ = open_event(host, flags=1 << BIT_WRITE_BACKWARD)
    assert output(host, ev, b"x") == errno.EOPNOTSUPP
    assert cons.head == 0 and ev.lost_samples == 0


# ---------------------------------------------------------------------------------------------
# Space, loss and the LOST record
# ---------------------------------------------------------------------------------------------


def test_circ_space():
    """CIRC_SPACE keeps one byte free: an empty ring of 4096 bytes takes 4095."""
    assert circ_space(0, 0, 4096) == 4095
    assert circ_space(4072, 0, 4096) == 23
    assert circ_space(5000, 4096, 4096) == 4095 - 904
    assert circ_space(0, 0, 0) == 0


def test_one_byte_always_stays_free(host):
    """With 24 bytes unused, a 24-byte record does not fit (CIRC_SPACE is 23); a 16-byte one
    does.  The ring never holds more than data_size - 8 bytes of records."""
    full, _, _ = open_event(host)
    assert output(host, full, bytes(4060)) == 0  # 4072 bytes used, 24 unused
    assert full.ring.space() == 23
    assert output(host, full, bytes(12)) == errno.ENOSPC  # a 24-byte record
    assert (full.ring.lost, full.lost_samples) == (1, 1)
    fits, cons, _ = open_event(host)
    assert output(host, fits, bytes(4060)) == 0
    assert output(host, fits, bytes(4)) == 0  # a 16-byte record fits in 23
    assert cons.head == 4088 and fits.ring.space() == 7


def test_lost_records_then_samples_again(host):
    """Records that do not fit are counted; the next record written is preceded by
    PERF_RECORD_LOST {header (2, 0, 24), id, lost}."""
    ev, cons, waker = open_event(host, event_id=9)
    for _ in range(3):
        assert output(host, ev, bytes(1012)) == 0  # 1024-byte records
    for _ in range(3):
        assert output(host, ev, bytes(1012)) == errno.ENOSPC  # 1024 > 1023 free
    assert ev.ring.lost == 3 and ev.lost_samples == 3
    cons.set_tail(1024)  # one record consumed: 2047 free, a 24-byte LOST + a 16-byte sample fit
    assert output(host, ev, b"\x01" * 5) == 0
    recs = cons.raw_records()
    assert [struct.unpack_from("<I", r)[0] for r in recs] == [PERF_RECORD_SAMPLE] * 2 + [
        PERF_RECORD_LOST,
        PERF_RECORD_SAMPLE,
    ]
    assert struct.unpack("<IHHQQ", recs[2]) == (PERF_RECORD_LOST, 0, 24, 9, 3)
    assert recs[3][12:17] == b"\x01" * 5
    assert ev.ring.lost == 0 and ev.lost_samples == 3
    assert output(host, ev, b"\x02" * 4) == 0  # and later samples need no LOST
    assert cons.consume() == [("sample", b"\x02" * 4)]


def test_lost_record_must_fit_with_the_sample(host):
    ev, cons, _ = open_event(host)
    assert output(host, ev, bytes(4060)) == 0  # 23 bytes of space left
    assert output(host, ev, bytes(12)) == errno.ENOSPC  # lost: 1
    assert output(host, ev, bytes(4)) == errno.ENOSPC  # 16 alone would fit, 24 + 16 does not
    assert ev.ring.lost == 2
    cons.raw_records()
    assert output(host, ev, bytes(4)) == 0
    assert cons.consume() == [("lost", 2), ("sample", bytes(4))]


def test_lost_record_with_sample_id_all(host):
    """With sample_id_all, the LOST record carries the sample's id fields (TID … IDENTIFIER)
    and its size counts them."""
    st = PERF_SAMPLE_TID | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW
    ev, cons, _ = open_event(host, cpu=1, sample_type=st, flags=1 << BIT_SAMPLE_ID_ALL)
    host.tasks[1] = TaskInfo(pid=77, tgid=70, comm="t")
    assert output(host, ev, bytes(4052)) == 0  # 8 + 16 + 4056 = 4080 bytes
    assert output(host, ev, bytes(4)) == errno.ENOSPC
    cons.raw_records()
    assert output(host, ev, bytes(4)) == 0
    lost, sample = cons.raw_records()
    assert struct.unpack("<IHHQQIIII", lost) == (PERF_RECORD_LOST, 0, 40, 7, 1, 70, 77, 1, 0)
    assert len(sample) == 8 + 16 + 8


def test_record_wrapping_the_end_is_read_back(host):
    """Perf rings are not double-mapped: a record crossing the end of the data area continues
    at its start, and the consumer joins the two parts."""
    ev, cons, _ = open_event(host)
    assert output(host, ev, bytes(4052)) == 0  # 4064 bytes
    cons.raw_records()
    payload = bytes(range(100))  # 8 + 4 + 100 = 112 bytes from offset 4064: 32 + 80
    assert output(host, ev, payload) == 0
    assert host.read(ev.ring.data + 4064, 4) == struct.pack("<I", PERF_RECORD_SAMPLE)
    assert host.read(ev.ring.data, 4) == payload[20:24]  # 4064 + 12 + 20 = 4096
    assert cons.consume() == [("sample", payload)]
    assert cons.wrapped == 1
    assert cons.tail == 4064 + 112


def test_overwrite_mode_when_mapped_read_only(host):
    """A read-only mapping makes an overwriting ring: no space check, nothing lost."""
    ev, cons, _ = open_event(host, write=False)
    for i in range(3):
        assert output(host, ev, bytes([i]) * 2036) == 0  # 2048-byte records
    assert ev.ring.lost == 0
    assert cons.head == 3 * 2048
    assert host.read(ev.ring.data + 12, 1) == b"\x02"  # the third overwrote the first


# ---------------------------------------------------------------------------------------------
# Wakeups and poll
# ---------------------------------------------------------------------------------------------


def test_wakeup_every_sample_by_default_for_bpf_output(host):
    ev, cons, waker = open_event(host)
    assert ev.poll() == 0
    output(host, ev, b"a")
    assert waker.count == 1
    assert ev.poll() == EPOLLIN
    assert ev.poll() == 0  # perf_poll consumes the flag
    output(host, ev, b"b")
    assert waker.count == 2


def test_wakeup_events_counts_samples(host):
    """wakeup_events = 3: pollers wake on every third sample; records waiting in between do
    not make the fd ready."""
    ev, cons, waker = open_event(host, wakeup_events=3)
    output(host, ev, b"a")
    output(host, ev, b"b")
    assert waker.count == 0 and ev.readable() and ev.poll() == 0
    output(host, ev, b"c")
    assert waker.count == 1 and ev.poll() == EPOLLIN
    for _ in range(3):
        output(host, ev, b"d")
    assert waker.count == 2


def test_watermark_in_bytes(host):
    """attr.watermark: wake when more than wakeup_watermark bytes were written since the last
    watermark wakeup (head - rb->wakeup > watermark); sample counting is off."""
    ev, cons, waker = open_event(host, flags=WATERMARK, wakeup_events=100)
    assert ev.ring.watermark == 100
    for _ in range(4):
        output(host, ev, bytes(12))  # 24-byte records: 96 bytes
    assert waker.count == 0
    output(host, ev, bytes(12))  # 120 > 100
    assert waker.count == 1


def test_default_watermark_is_half_the_ring(host):
    """wakeup_events 0 and no watermark bit: only the byte watermark of data_size / 2 wakes."""
    ev, cons, waker = open_event(host, wakeup_events=0)
    assert ev.ring.watermark == 2048
    for _ in range(85):
        output(host, ev, bytes(12))  # 85 * 24 = 2040
    assert waker.count == 0
    output(host, ev, bytes(12))  # 2064 > 2048
    assert waker.count == 1


def test_lost_output_does_not_wake(host):
    ev, cons, waker = open_event(host)
    output(host, ev, bytes(4060))
    assert output(host, ev, bytes(12)) == errno.ENOSPC
    assert waker.count == 1


# ---------------------------------------------------------------------------------------------
# mmap, munmap, the metadata page
# ---------------------------------------------------------------------------------------------


def test_metadata_page(host):
    """perf_event_init_userpage: data at offset 4096, its size, the header size (96) and
    cap_bit0_is_deprecated; version fields stay 0."""
    ev, cons, _ = open_event(host, pages=4)
    meta = cons.meta
    assert struct.unpack("<II", host.read(meta, 8)) == (0, 0)
    assert struct.unpack("<Q", host.read(meta + 40, 8))[0] == 2
    assert struct.unpack("<I", host.read(meta + 72, 4))[0] == 96
    assert struct.unpack("<QQQQ", host.read(meta + 1024, 32)) == (0, 0, 4096, 4 * 4096)


def test_user_mapping_writes_only_the_metadata_page(host):
    ev, _, _ = open_event(host, pages=None)
    pages = ev.do_mmap(0, 3 * PAGE_SIZE, True)
    assert [w for _, w in pages] == [True, False, False]
    again = ev.do_mmap(0, 3 * PAGE_SIZE, False)  # a second mapping shares the ring
    assert [p for p, _ in again] == [p for p, _ in pages]
    assert [w for _, w in again] == [False, False, False]
    assert ev.mmap_count == 2


@pytest.mark.parametrize(
    "offset, size, why",
    [
        (PAGE_SIZE, 2 * PAGE_SIZE, "only offset 0 (no AUX area)"),
        (0, 4 * PAGE_SIZE, "3 data pages: not a power of two"),
        (0, 0, "nothing"),
    ],
)
def test_mmap_errors(host, offset, size, why):
    ev, _, _ = open_event(host, pages=None)
    with pytest.raises(BpfError) as e:
        ev.do_mmap(offset, size, True)
    assert e.value.errno == errno.EINVAL, why


def test_mmap_size_must_match_existing_ring_and_rounds_up(host):
    ev, _, _ = open_event(host, pages=None)
    ev.do_mmap(0, PAGE_SIZE + 1, True)  # rounded up to 2 pages: 1 data page
    assert ev.ring.nr_pages == 1
    with pytest.raises(BpfError) as e:
        ev.do_mmap(0, 3 * PAGE_SIZE, True)
    assert e.value.errno == errno.EINVAL


def test_inherited_task_event_cannot_be_mapped(host):
    args = PerfProbeArgs.try_from_perf_attr(host, bpf_output_attr(flags=INHERIT), 100, -1, ncpus=4)
    ev = BpfPerfEvent(host, args, 1)
    with pytest.raises(BpfError) as e:
        ev.do_mmap(0, 2 * PAGE_SIZE, True)
    assert e.value.errno == errno.EINVAL


def test_no_ring_and_empty_ring(host):
    """Without a ring, output is -ENOSPC and nothing counts as lost; a ring of only the metadata
    page is paused: also -ENOSPC, also not counted (it has no data pages)."""
    ev, _, _ = open_event(host, pages=None)
    assert ev.poll() == EPOLLHUP
    assert output(host, ev, b"x") == errno.ENOSPC
    assert ev.lost_samples == 0
    ev.do_mmap(0, PAGE_SIZE, True)
    assert ev.ring.paused
    assert output(host, ev, b"x") == errno.ENOSPC
    assert ev.lost_samples == 0 and ev.ring.lost == 0


def test_munmap_frees_the_ring(host):
    ev, _, _ = open_event(host)
    frames = set(ev.ring.pages)
    ev.do_mmap(0, 2 * PAGE_SIZE, True)
    ev.munmap()
    assert ev.ring is not None
    ev.munmap()
    assert ev.ring is None
    assert not frames & set(host._frames)  # the pages went back to the host
    assert output(host, ev, b"x") == errno.ENOSPC
    with pytest.raises(RuntimeError):
        ev.munmap()


def test_references(host):
    ev, _, _ = open_event(host)
    live = host.kmalloc_live()
    ev.get()
    ev.put()
    assert ev.ring is not None
    ev.put()  # the last reference frees the event and its ring
    assert ev.ring is None and host.kmalloc_live() == live - 2
    with pytest.raises(RuntimeError):
        ev.put()


def test_ring_rejects_a_non_power_of_two(host):
    with pytest.raises(BpfError) as e:
        RingPage(host, 3)
    assert e.value.errno == errno.EINVAL


# ---------------------------------------------------------------------------------------------
# ioctls and where the event runs
# ---------------------------------------------------------------------------------------------


def test_enable_disable_and_oncpu(host):
    """oncpu is the bound CPU while enabled, -1 while disabled; attr.disabled starts it off."""
    ev, _, _ = open_event(host, cpu=3, flags=DISABLED)
    assert not ev.enabled and ev.oncpu == -1
    assert ev.ioctl(PERF_EVENT_IOC_ENABLE) == 0
    assert ev.oncpu == 3
    assert ev.ioctl(PERF_EVENT_IOC_DISABLE, 1) == 0  # PERF_IOC_FLAG_GROUP: a group of one
    assert ev.oncpu == -1
    assert ev.ioctl(PERF_EVENT_IOC_RESET) == 0


def test_task_event_runs_where_its_task_runs(host):
    args = PerfProbeArgs.try_from_perf_attr(host, bpf_output_attr(), 100, -1, ncpus=4)
    ev = BpfPerfEvent(host, args, 1)
    assert ev.oncpu == -1
    ev.set_task_cpu(2)
    assert ev.oncpu == 2
    ev.set_task_cpu(-1)
    assert ev.oncpu == -1
    bound = BpfPerfEvent(
        host, PerfProbeArgs.try_from_perf_attr(host, bpf_output_attr(), 100, 1, ncpus=4), 2
    )
    bound.set_task_cpu(2)
    assert bound.oncpu == -1  # its task runs on CPU 2, the event counts only on CPU 1
    bound.set_task_cpu(1)
    assert bound.oncpu == 1


def test_pause_output(host):
    """PAUSE_OUTPUT: every output is lost while paused; the next one after resuming carries
    the LOST record."""
    ev, cons, _ = open_event(host)
    assert ev.ioctl(PERF_EVENT_IOC_PAUSE_OUTPUT, 1) == 0
    assert output(host, ev, b"a") == errno.ENOSPC
    assert ev.lost_samples == 1
    ev.ioctl(PERF_EVENT_IOC_PAUSE_OUTPUT, 0)
    assert output(host, ev, b"b") == 0
    assert cons.consume() == [("lost", 1), ("sample", b"b" + bytes(3))]


def test_ioctl_errors(host):
    ev, _, _ = open_event(host, pages=None)
    for cmd in (PERF_EVENT_IOC_SET_BPF, 0x1234):
        with pytest.raises(BpfError) as e:
            ev.ioctl(cmd, 0)
        assert e.value.errno == errno.ENOTTY
    with pytest.raises(BpfError) as e:
        ev.ioctl(PERF_EVENT_IOC_PAUSE_OUTPUT, 1)
    assert e.value.errno == errno.EINVAL


def test_output_touches_and_work(host):
    """One sample: the event's lines, the buffer's line, data_tail read, the record written,
    data_head published, a wakeup; no lock."""
    ev, _, _ = open_event(host)
    gen = ev.write_event(b"hello")
    reqs = []
    try:
        req = next(gen)
        while True:
            reqs.append(req)
            req = gen.send(None)
    except StopIteration:
        pass
    ring = ev.ring
    assert reqs == [
        Touch(ev.addr, 64),
        Touch(ev.addr + 128, 32),
        Touch(ring.rb_addr, 64, True),
        Touch(ring.base + 1032, 8),
        Touch(ring.data, 8, True),  # the header
        Work("copy_bytes", 8),
        Touch(ring.data + 8, 9, True),  # raw size and data; the 3 bytes of padding are skipped
        Work("copy_bytes", 9),
        Touch(ring.base + 1024, 8, True),
        Touch(ring.rb_addr, 64, True),
        Work("perf_wakeup"),
    ]


# ---------------------------------------------------------------------------------------------
# perf_event_open's arguments
# ---------------------------------------------------------------------------------------------


def parse(host, attr=None, pid=-1, cpu=0, group_fd=-1, flags=0):
    return PerfProbeArgs.try_from_perf_attr(
        host, attr if attr is not None else bpf_output_attr(), pid, cpu, group_fd, flags, ncpus=4
    )


def parse_fails(code, host, *args, **kw):
    with pytest.raises(BpfError) as e:
        parse(host, *args, **kw)
    assert e.value.errno == code, str(e.value)


def user_attr(host, data: bytes) -> int:
    host.tasks[0] = TaskInfo(500, 500, "perf")
    return host.map_user(data)


def test_parse_bpf_output_event(host):
    args = parse(host, cpu=2, flags=PerfEventOpenFlags.PERF_FLAG_FD_CLOEXEC)
    assert args.config == PerfSwIds.PERF_COUNT_SW_BPF_OUTPUT
    assert args.is_bpf_output and args.wakeup_events == 1
    assert (args.pid, args.cpu, args.group_fd, args.type) == (-1, 2, -1, SW)
    assert args.flags == PerfEventOpenFlags.PERF_FLAG_FD_CLOEXEC
    assert args.sample_type == PERF_SAMPLE_RAW and args.size == PERF_ATTR_SIZE_VER8
    assert args.attr.sample_max_stack == 127  # 0 means the sysctl's default
    # pid/cpu arrive as C ints: 0xffffffff is -1
    assert parse(host, pid=0xFFFFFFFF, cpu=1).pid == -1


def test_attr_from_user_memory_sizes(host):
    """perf_copy_attr: size 0 is VER0; a short struct is zero-extended (bytes after it in
    memory are not read); a longer one must be zero past 136 bytes."""
    full = bpf_output_attr().pack()
    short = bytearray(full[:PERF_ATTR_SIZE_VER0] + b"\xff" * 64)
    short[4:8] = (0).to_bytes(4, "little")
    args = parse(host, user_attr(host, bytes(short)))
    assert args.size == PERF_ATTR_SIZE_VER0
    assert args.attr.wakeup_events == 1  # at offset 48, inside VER0
    assert args.attr.sample_regs_user == 0  # past VER0: not read
    long = bytearray(full + bytes(8))
    long[4:8] = (144).to_bytes(4, "little")
    assert parse(host, user_attr(host, bytes(long))).size == 144


@pytest.mark.parametrize("size, tail", [(63, b""), (4097, b""), (144, b"\x01")])
def test_attr_size_errors_report_the_known_size(host, size, tail):
    """E2BIG for a size below VER0, above a page, or with non-zero bytes past what v6.6 knows;
    the kernel writes 136 into the user's size field."""
    data = bytearray(bpf_output_attr().pack() + bytes(8))
    data[4:8] = size.to_bytes(4, "little")
    if tail:
        data[140] = 1
    ptr = user_attr(host, bytes(data) + bytes(4096))
    parse_fails(errno.E2BIG, host, ptr)
    assert host.copy_from_user(ptr + 4, 4) == PERF_ATTR_SIZE_VER8.to_bytes(4, "little")


def test_attr_size_of_an_attr_object(host):
    parse_fails(errno.E2BIG, host, bpf_output_attr(size=40))
    assert parse(host, bpf_output_attr(size=0)).size == PERF_ATTR_SIZE_VER0


def test_attr_unreadable(host):
    host.tasks[0] = TaskInfo(500, 500, "perf")
    parse_fails(errno.EFAULT, host, 0xDEAD000)


@pytest.mark.parametrize(
    "offset, value",
    [(40 + 4, 1 << 6), (110, 1), (116, 1)],  # __reserved_1 (bit 38), __reserved_2, __reserved_3
)
def test_reserved_fields(host, offset, value):
    data = bytearray(bpf_output_attr().pack())
    data[offset] |= value
    parse_fails(errno.EINVAL, host, user_attr(host, bytes(data)))


@pytest.mark.parametrize(
    "kw, why",
    [
        (dict(sample_type=1 << 25), "PERF_SAMPLE_MAX and above"),
        (dict(read_format=1 << 5), "PERF_FORMAT_MAX and above"),
        (dict(sample_type=PERF_SAMPLE_BRANCH_STACK, branch_sample_type=1 << 19), "branch bits"),
        (dict(sample_type=PERF_SAMPLE_BRANCH_STACK, branch_sample_type=0x7), "only levels"),
        (dict(sample_type=PERF_SAMPLE_REGS_USER, sample_regs_user=0), "no registers"),
        (dict(sample_type=PERF_SAMPLE_REGS_USER, sample_regs_user=1 << 12), "DS"),
        (dict(sample_type=PERF_SAMPLE_REGS_USER, sample_regs_user=1 << 24), "reserved regs"),
        (dict(sample_type=PERF_SAMPLE_REGS_INTR, sample_regs_intr=1 << 15), "GS"),
        (dict(sample_type=PERF_SAMPLE_STACK_USER, sample_stack_user=65535), "u16 limit"),
        (dict(sample_type=PERF_SAMPLE_STACK_USER, sample_stack_user=12), "8-aligned"),
        (dict(sample_type=PERF_SAMPLE_WEIGHT | PERF_SAMPLE_WEIGHT_STRUCT), "both weights"),
        (dict(flags=1 << BIT_INHERIT_THREAD), "inherit_thread without inherit"),
        (dict(flags=1 << BIT_REMOVE_ON_EXEC | 1 << BIT_ENABLE_ON_EXEC), "exec both ways"),
        (dict(flags=1 << BIT_SIGTRAP), "sigtrap without remove_on_exec"),
        (dict(flags=1 << 10, sample_period=100_001), "freq above the max rate"),
        (dict(sample_period=1 << 63), "period bit 63"),
    ],
)
def test_attr_checks(host, kw, why):
    parse_fails(errno.EINVAL, host, bpf_output_attr(**kw))


def test_attr_checks_that_pass(host):
    assert parse(host, bpf_output_attr(flags=1 << 10, sample_period=100_000)).attr.freq
    ok = bpf_output_attr(sample_type=PERF_SAMPLE_REGS_USER, sample_regs_user=0xFF)
    assert parse(host, ok).attr.sample_regs_user == 0xFF
    ok = bpf_output_attr(sample_type=PERF_SAMPLE_STACK_USER, sample_stack_user=16)
    assert parse(host, ok).attr.sample_stack_user == 16
    sig = bpf_output_attr(flags=1 << BIT_SIGTRAP | 1 << BIT_REMOVE_ON_EXEC)
    assert parse(host, sig, pid=100, cpu=-1).pid == 100
    parse_fails(errno.EINVAL, host, sig)  # sigtrap needs a task: pid -1 has none


def test_branch_levels_default_to_the_event_levels():
    """No privilege level in branch_sample_type: those the event counts (exclude_kernel off
    user and hv on here) are added."""
    attr = bpf_output_attr(
        sample_type=PERF_SAMPLE_BRANCH_STACK, branch_sample_type=1 << 3, flags=1 << 5
    )
    assert check_attr(attr.pack()).branch_sample_type == (1 << 3) | 0b101


@pytest.mark.parametrize(
    "kw, code",
    [
        (dict(flags=0x10), errno.EINVAL),  # beyond PERF_FLAG_ALL
        (dict(flags=PerfEventOpenFlags.PERF_FLAG_PID_CGROUP, pid=-1), errno.EINVAL),
        (dict(cpu=-1), errno.EINVAL),  # no task and no CPU
        (dict(cpu=4), errno.EINVAL),
        (dict(cpu=-2, pid=100), errno.EINVAL),
    ],
)
def test_open_arguments(host, kw, code):
    parse_fails(code, host, **kw)


def test_task_event_on_any_cpu(host):
    assert parse(host, pid=100, cpu=-1).cpu == -1


@pytest.mark.parametrize(
    "attr, code",
    [
        (bpf_output_attr(config=12), errno.ENOENT),  # beyond PERF_COUNT_SW_CGROUP_SWITCHES
        (
            bpf_output_attr(sample_type=PERF_SAMPLE_BRANCH_STACK, branch_sample_type=1 << 3 | 1),
            errno.EOPNOTSUPP,  # no branch sampling for software events
        ),
        (bpf_output_attr(type=PERF_TYPE_HARDWARE, config=0), errno.ENOENT),  # no hardware PMU
        (bpf_output_attr(type=9, config=0), errno.ENOENT),
    ],
)
def test_pmu_lookup(host, attr, code):
    parse_fails(code, host, attr)


def test_other_types(host):
    dummy = parse(host, bpf_output_attr(config=PERF_COUNT_SW_DUMMY))
    assert dummy.config == PerfSwIds.PERF_COUNT_SW_DUMMY and not dummy.is_bpf_output
    tp = parse(host, bpf_output_attr(type=PERF_TYPE_TRACEPOINT, config=0x1234))
    assert tp.config == 0x1234 and not tp.is_bpf_output


def test_probe_event_reads_its_name(host):
    """kbpf-basic's probe events (type PERF_TYPE_MAX): the function name at config1, read with
    strncpy_from_user up to KSYM_NAME_LEN (512): a name filling it is E2BIG."""
    host.tasks[0] = TaskInfo(500, 500, "perf")
    name = host.map_user(b"do_sys_open\0")
    args = parse(host, bpf_output_attr(type=PERF_TYPE_MAX, config=0, bp_addr=name, bp_len=8))
    assert (args.name, args.offset) == ("do_sys_open", 8)
    assert parse(host, bpf_output_attr(type=PERF_TYPE_MAX)).name == ""
    long = host.map_user(b"f" * 512)
    parse_fails(errno.E2BIG, host, bpf_output_attr(type=PERF_TYPE_MAX, bp_addr=long))
    parse_fails(errno.EFAULT, host, bpf_output_attr(type=PERF_TYPE_MAX, bp_addr=0xBAD0000))


def test_inheriting_event_cannot_be_read_locally(host):
    ev = BpfPerfEvent(host, parse(host, bpf_output_attr(flags=INHERIT)), 1)
    with pytest.raises(BpfError) as e:
        ev.check_read_local()
    assert e.value.errno == errno.EOPNOTSUPP
    BpfPerfEvent(host, parse(host), 2).check_read_local()
