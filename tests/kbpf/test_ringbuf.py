"""BPF_MAP_TYPE_RINGBUF and its helpers, as kernel/bpf/ringbuf.c (v6.6) and
Documentation/bpf/ringbuf.rst define them: reservation and commit, the record header's busy
and discard bits, the double-mapped data pages, the self-pacing wakeups, the query values, the
user mmap layout, and the dynptr helpers (kernel/bpf/helpers.c).

The consumer here is written as libbpf's ``ringbuf_process_ring`` reads a ring: through its own
mappings of the pages (the consumer page read-write, the producer page and twice the data pages
read-only), loading ``producer_pos``, reading each header at ``consumer_pos``, stopping at a busy
record, skipping discarded ones, and storing the new ``consumer_pos``."""

import errno

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.helper import init_helper_functions, request_helpers
from kbpf.host import Acquire, Release, TaskInfo, Touch, Work, drive, recorded
from kbpf.linux_bpf import (
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_RB_AVAIL_DATA,
    BPF_RB_CONS_POS,
    BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP,
    BPF_RB_PROD_POS,
    BPF_RB_RING_SIZE,
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BpfMapElemAttr,
)
from kbpf.map import bpf_map_lookup_elem
from kbpf.map.ringbuf import (
    DYNPTR_RDONLY_BIT,
    RB_MAP_OFF,
    RB_MASK_OFF,
    RINGBUF_MAP_STRUCT_SIZE,
    RINGBUF_NR_META_PAGES,
    BpfDynPtr,
    BpfDynptrType,
    RingBufMap,
    record_len,
)
from tests.kbpf.testhost import DIRECT_BASE, PAGE, TestHost, create_map, scratch

U64 = (1 << 64) - 1
HDR = 8


def neg(code: int) -> int:
    return -code & U64


class RecordingWaker:
    """A PollWaker that counts its wakeups."""

    def __init__(self):
        self.wakeups = 0

    def wake_up(self) -> None:
        self.wakeups += 1


class Ring:
    """A ring buffer on a test host with the helper table a program would call."""

    def __init__(self, size: int = PAGE, host: TestHost | None = None):
        self.host = host or TestHost(ncpus=2, seed=5)
        self.waker = RecordingWaker()
        self.umap, self.fd = create_map(
            self.host, "ringbuf", key_size=0, value_size=0, max_entries=size, poll_waker=self.waker
        )
        self.ops: RingBufMap = self.umap.ops
        self.size = size
        self.h = init_helper_functions(self.host)

    def reserve(self, size: int, flags: int = 0) -> int:
        return self.h[131](self.umap.addr, size, flags, 0, 0)

    def submit(self, sample: int, flags: int = 0) -> None:
        assert self.h[132](sample, flags, 0, 0, 0) == 0

    def discard(self, sample: int, flags: int = 0) -> None:
        assert self.h[133](sample, flags, 0, 0, 0) == 0

    def query(self, flags: int) -> int:
        return self.h[134](self.umap.addr, flags, 0, 0, 0)

    def header(self, sample: int) -> tuple[int, int]:
        raw = self.host.read(sample - HDR, HDR)
        return int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")


class Consumer:
    """User space reading the ring through its own mmaps, as libbpf does."""

    def __init__(self, ring: Ring):
        self.host, self.size, self.mask = ring.host, ring.size, ring.size - 1
        umap = ring.umap
        (self.cons_page,) = umap.map_mmap(0, PAGE, write=True)
        ro = umap.map_mmap(PAGE, PAGE + 2 * ring.size, write=False)
        self.prod_page, self.data_pages = ro[0], ro[1:]

    def _load(self, phys: int) -> int:
        return int.from_bytes(self.host.read(DIRECT_BASE + phys, 8), "little")

    @property
    def consumer_pos(self) -> int:
        return self._load(self.cons_page)

    @property
    def producer_pos(self) -> int:
        return self._load(self.prod_page)

    def read_data(self, off: int, n: int) -> bytes:
        """``n`` bytes at offset ``off`` of the user's data mapping (twice the ring long), page
        by page through the frames it maps."""
        assert off + n <= 2 * self.size
        out = b""
        while n:
            k = min(n, PAGE - off % PAGE)
            out += self.host.read(DIRECT_BASE + self.data_pages[off // PAGE] + off % PAGE, k)
            off, n = off + k, n - k
        return out

    def consume(self) -> list[bytes]:
        """``ringbuf_process_ring``: every committed sample up to the first busy record."""
        got = []
        cons = self.consumer_pos
        while True:
            progressed = False
            prod = self.producer_pos
            while cons < prod:
                off = cons & self.mask
                length = int.from_bytes(self.read_data(off, 4), "little")
                if length & BPF_RINGBUF_BUSY_BIT:
                    return got
                progressed = True
                sample_len = length & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
                cons += (sample_len + HDR + 7) // 8 * 8
                if not length & BPF_RINGBUF_DISCARD_BIT:
                    got.append(self.read_data(off + HDR, sample_len))
                self.host.write(DIRECT_BASE + self.cons_page, cons.to_bytes(8, "little"))
            if not progressed:
                return got


def trace(op, host):
    """Run ``op`` through :func:`drive`, returning (result, the requests it made)."""
    seen: list = []
    return drive(recorded(op, seen), host), seen


@pytest.fixture
def ring():
    return Ring()


# ---------------------------------------------------------------------------------------------
# Creation (ringbuf_map_alloc)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, code, why",
    [
        (dict(map_flags=BPF_F_RDONLY), errno.EINVAL, "only BPF_F_NUMA_NODE"),
        (dict(map_flags=BPF_F_NO_PREALLOC), errno.EINVAL, "only BPF_F_NUMA_NODE"),
        (dict(key_size=4), errno.EINVAL, "no keys"),
        (dict(value_size=8), errno.EINVAL, "no values"),
        (dict(max_entries=0), errno.EINVAL, "not a power of 2"),
        (dict(max_entries=3 * PAGE), errno.EINVAL, "not a power of 2"),
        (dict(max_entries=PAGE // 2), errno.EINVAL, "a power of 2 but not page-aligned"),
    ],
)
def test_create_errors(kw, code, why):
    host = TestHost(ncpus=1)
    args = dict(key_size=0, value_size=0, max_entries=PAGE, poll_waker=RecordingWaker()) | kw
    with pytest.raises(BpfError) as e:
        create_map(host, "ringbuf", **args)
    assert e.value.errno == code, why


def test_a_ring_without_a_poll_waker_is_einval():
    """kbpf-basic's bpf_map_create refuses it: nobody could be woken."""
    with pytest.raises(BpfError, match="poll waker") as e:
        create_map(TestHost(ncpus=1), "ringbuf", key_size=0, value_size=0, max_entries=PAGE)
    assert e.value.errno == errno.EINVAL


def test_numa_node_flag_is_accepted():
    host = TestHost(ncpus=1)
    umap, _ = create_map(
        host, "ringbuf", 0, 0, 2 * PAGE, map_flags=BPF_F_NUMA_NODE, poll_waker=RecordingWaker()
    )
    assert umap.ops.total_data_size() == 2 * PAGE


def test_layout_positions_on_their_own_pages_and_data_mapped_twice():
    r = Ring(size=2 * PAGE)
    ops, host = r.ops, r.host
    assert ops.consumer_pos_addr == ops.rb + PAGE and ops.producer_pos_addr == ops.rb + 2 * PAGE
    assert ops.data == ops.rb + 3 * PAGE
    frames = {host.phys_of(a) for a in (ops.rb, ops.consumer_pos_addr, ops.producer_pos_addr)}
    assert len(frames) == 3
    for off in (0, 100, PAGE, 2 * PAGE - 8):
        assert host.phys_of(ops.data + off) == host.phys_of(ops.data + 2 * PAGE + off)
    assert host.phys_of(ops.data) != host.phys_of(ops.data + PAGE)
    # the ring's first page holds the mask and the map's address; the map points at the ring
    assert int.from_bytes(host.read(ops.rb + RB_MASK_OFF, 8), "little") == 2 * PAGE - 1
    assert int.from_bytes(host.read(ops.rb + RB_MAP_OFF, 8), "little") == r.umap.addr
    assert int.from_bytes(host.read(r.umap.addr + 256, 8), "little") == ops.rb


def test_mem_usage_counts_the_map_pages_and_the_double_page_array():
    r = Ring(size=4 * PAGE)
    assert r.umap.map_mem_usage() == (
        RINGBUF_MAP_STRUCT_SIZE + (RINGBUF_NR_META_PAGES + 4) * PAGE + (3 + 2 * 4) * 8
    )


def test_free_gives_back_pages_mapping_and_memory():
    host = TestHost(ncpus=1)
    live = host.kmalloc_live()
    r = Ring(size=2 * PAGE, host=host)
    pages = list(r.ops.pages)
    assert len(pages) == RINGBUF_NR_META_PAGES + 2 and all(p // PAGE in host._frames for p in pages)
    r.umap.free()
    assert not any(p // PAGE in host._frames for p in pages)
    assert host.kmalloc_live() == live and not host._vmap_areas


def test_element_operations_are_enotsupp(ring):
    for op in (
        ring.umap.lookup_elem(b""),
        ring.umap.update_elem(b"", b"", 0),
        ring.umap.delete_elem(b""),
        ring.umap.get_next_key(None),
    ):
        with pytest.raises(BpfError) as e:
            drive(op, ring.host)
        assert e.value.errno == ENOTSUPP
    ring.host.tasks[0] = TaskInfo(1, 1, "u")
    vp = ring.host.map_user(bytes(8))
    with pytest.raises(BpfError) as e:
        drive(bpf_map_lookup_elem(ring.host, BpfMapElemAttr(ring.fd, 0, vp, 0)), ring.host)
    assert e.value.errno == ENOTSUPP


# ---------------------------------------------------------------------------------------------
# Reserve, submit, discard
# ---------------------------------------------------------------------------------------------


def test_reserve_writes_a_busy_header_and_advances_the_producer(ring):
    sample = ring.reserve(10)
    assert sample == ring.ops.data + HDR
    length, pg_off = ring.header(sample)
    assert length == 10 | BPF_RINGBUF_BUSY_BIT
    assert pg_off == RINGBUF_NR_META_PAGES  # header page's offset from the ring, in pages
    assert ring.ops.producer_pos() == 24  # round_up(10 + 8, 8)
    assert ring.ops.reservations() == [(sample, sample + 10)]


def test_records_are_8_byte_aligned():
    r = Ring()
    pos = 0
    for size in range(0, 18):
        sample = r.reserve(size)
        assert sample == r.ops.data + pos + HDR and sample % 8 == 0
        pos += record_len(size)
        assert r.ops.producer_pos() == pos and pos % 8 == 0
        r.submit(sample)
    assert [record_len(s) for s in (0, 1, 8, 9)] == [8, 16, 16, 24]


def test_submit_clears_busy_and_the_consumer_reads_the_sample(ring):
    sample = ring.reserve(5)
    ring.host.write(sample, b"hello")
    ring.submit(sample)
    assert ring.header(sample)[0] == 5
    assert ring.ops.reservations() == []
    c = Consumer(ring)
    assert c.consume() == [b"hello"]
    assert c.consumer_pos == 16 == ring.ops.producer_pos()


def test_the_consumer_stops_at_a_busy_record_and_skips_discarded_ones(ring):
    c = Consumer(ring)
    a, b = ring.reserve(4), ring.reserve(4)
    ring.host.write(b, b"BBBB")
    ring.submit(b)
    assert c.consume() == [] and c.consumer_pos == 0  # a is still busy
    ring.discard(a)
    assert ring.header(a)[0] == 4 | BPF_RINGBUF_DISCARD_BIT
    assert c.consume() == [b"BBBB"]
    assert c.consumer_pos == 32


def test_reserve_flags_must_be_zero(ring):
    assert ring.reserve(8, flags=1) == 0
    assert ring.ops.producer_pos() == 0


# ---------------------------------------------------------------------------------------------
# Room: new_prod_pos - cons_pos > mask -> NULL
# ---------------------------------------------------------------------------------------------


def test_the_ring_never_fills_completely():
    """The producer may be at most ``size - 1`` bytes ahead, and records are multiples of 8, so
    a record leaving 8 bytes free is the last that fits and one that would leave zero bytes free
    is refused."""
    r = Ring()
    assert r.reserve(PAGE - 16)  # 4088 bytes used, 8 free
    assert r.reserve(0) == 0  # an empty record would use the last 8 bytes: refused
    r2 = Ring()
    assert r2.reserve(PAGE - 8) == 0  # a record of exactly the ring's size
    assert r2.reserve(PAGE - 9) == 0  # rounds up to the ring's size too
    assert r2.reserve(PAGE) == 0  # larger than the ring
    assert r2.reserve(PAGE - 16)


def test_drops_are_reported_and_room_returns_after_consumption():
    r = Ring()
    c = Consumer(r)
    first = r.reserve(2040)
    assert r.reserve(2040) == 0  # 2048 + 2048 > 4095
    _, reqs = trace(r.ops.reserve(2040), r.host)
    assert reqs[-1] == Work("ringbuf_drop")
    assert r.reserve(2032)  # 2048 + 2040 <= 4095
    r.submit(first)
    assert r.reserve(2040) == 0  # submitted, not consumed: still no room
    assert len(c.consume()) == 1
    assert r.reserve(2040)


def test_oversized_requests_are_dropped_before_the_lock(ring):
    _, reqs = trace(ring.ops.reserve(PAGE), ring.host)
    assert not any(isinstance(q, Acquire) for q in reqs) and reqs[-1] == Work("ringbuf_drop")
    _, reqs = trace(ring.ops.reserve(1 << 30), ring.host)  # above RINGBUF_MAX_RECORD_SZ
    assert reqs == [Work("ringbuf_drop")]


# ---------------------------------------------------------------------------------------------
# Wrapping: the second mapping
# ---------------------------------------------------------------------------------------------


def test_a_record_wrapping_the_end_is_contiguous_through_the_second_mapping():
    r = Ring()
    c = Consumer(r)
    first = r.reserve(4000)
    r.submit(first)
    c.consume()  # consumer at 4008
    sample = r.reserve(200)
    assert sample == r.ops.data + 4008 + HDR
    payload = bytes(range(200))
    r.host.write(sample, payload)  # one write through the kernel's contiguous mapping
    r.submit(sample)
    # the bytes past the end landed at the start of the same frames
    tail = sample + 200 - (r.ops.data + PAGE)
    assert r.host.read(r.ops.data, tail) == payload[-tail:]
    assert r.host.phys_of(r.ops.data + PAGE) == r.host.phys_of(r.ops.data)
    assert c.consume() == [payload]
    assert c.consumer_pos == 4008 + 208 and c.consumer_pos & (PAGE - 1) == 120


# ---------------------------------------------------------------------------------------------
# Wakeups
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, caught_up, woken",
    [
        (0, True, 1),
        (0, False, 0),
        (BPF_RB_NO_WAKEUP, True, 0),
        (BPF_RB_NO_WAKEUP, False, 0),
        (BPF_RB_FORCE_WAKEUP, True, 1),
        (BPF_RB_FORCE_WAKEUP, False, 1),
        (BPF_RB_FORCE_WAKEUP | BPF_RB_NO_WAKEUP, False, 1),
        (0x10, True, 1),  # unknown bits are ignored
    ],
)
@pytest.mark.parametrize("discard", [False, True])
def test_wakeup_decisions(flags, caught_up, woken, discard):
    r = Ring()
    older = r.reserve(8)  # the consumer waits at this record
    sample = older if caught_up else r.reserve(8)
    (r.discard if discard else r.submit)(sample, flags)
    assert r.waker.wakeups == woken


def test_self_pacing_only_the_record_the_consumer_waits_at_wakes_it():
    r = Ring()
    c = Consumer(r)
    a, b, d = r.reserve(8), r.reserve(8), r.reserve(8)
    r.submit(b)
    r.submit(d)
    assert r.waker.wakeups == 0  # the consumer waits at a
    r.submit(a)
    assert r.waker.wakeups == 1
    c.consume()
    r.submit(r.reserve(4040))  # 48 + 4048: the ring's end
    assert r.waker.wakeups == 2
    c.consume()
    # the consumer is at 4096, the next record at offset 0: compared as consumer_pos & mask
    assert c.consumer_pos == PAGE
    sample = r.reserve(16)
    assert sample == r.ops.data + HDR
    r.submit(sample)
    assert r.waker.wakeups == 3


# ---------------------------------------------------------------------------------------------
# Query, poll, reservations
# ---------------------------------------------------------------------------------------------


def test_query_values(ring):
    c = Consumer(ring)
    ring.submit(ring.reserve(20))
    busy = ring.reserve(1)
    assert ring.query(BPF_RB_AVAIL_DATA) == 32 + 16  # busy records count as available data
    assert ring.query(BPF_RB_RING_SIZE) == PAGE
    assert ring.query(BPF_RB_PROD_POS) == 48
    assert ring.query(BPF_RB_CONS_POS) == 0
    c.consume()
    assert ring.query(BPF_RB_CONS_POS) == 32 and ring.query(BPF_RB_AVAIL_DATA) == 16
    assert ring.query(4) == 0 and ring.query(1 << 40) == 0
    ring.submit(busy)


def test_readable_while_data_is_available(ring):
    c = Consumer(ring)
    assert not ring.umap.readable()
    s = ring.reserve(3)
    assert ring.umap.readable()  # even a busy record makes the ring pollable
    ring.submit(s)
    c.consume()
    assert not ring.umap.readable() and not ring.umap.writable()


def test_reservations_and_their_version(ring):
    v0 = ring.ops.reservation_version
    a = ring.reserve(8)
    b = ring.reserve(0)
    assert ring.ops.reservations() == [(a, a + 8), (b, b)]
    v1 = ring.ops.reservation_version
    ring.submit(a)
    assert ring.ops.reservations() == [(b, b)] and v0 != v1 != ring.ops.reservation_version
    ring.discard(b)
    assert ring.ops.reservations() == []


def test_program_regions_are_the_double_mapped_data_area(ring):
    ops = ring.ops
    assert ring.umap.program_regions() == [(ops.data, ops.data + 2 * PAGE, True)]


def test_committing_what_is_not_a_live_reservation_faults(ring):
    """The verifier rejects such programs; at run time it is a fault (EFAULT out of the
    void helper)."""
    sample = ring.reserve(8)
    ring.submit(sample)
    for bad in (sample, sample + 8, scratch(ring.host, bytes(16)) + 8):
        with pytest.raises(BpfError) as e:
            ring.h[132](bad, 0, 0, 0, 0)
        assert e.value.errno == errno.EFAULT
    assert ring.header(sample)[0] == 8  # the committed header is left alone


def test_ring_helpers_on_another_map_type(ring):
    other, _ = create_map(ring.host, "queue", key_size=0, value_size=8, max_entries=2)
    src = scratch(ring.host, bytes(8))
    assert ring.h[131](other.addr, 8, 0, 0, 0) == 0
    assert ring.h[130](other.addr, src, 8, 0, 0) == neg(errno.EINVAL)


# ---------------------------------------------------------------------------------------------
# Locks and memory traffic
# ---------------------------------------------------------------------------------------------


def test_reserve_takes_the_producer_lock_around_the_position_update(ring):
    ops = ring.ops
    sample, reqs = trace(ops.reserve(16), ring.host)
    assert reqs == [
        Touch(ops.rb + RB_MASK_OFF, 8),
        Touch(ops.consumer_pos_addr, 8),  # read before the lock
        Acquire(ops.spinlock),
        Touch(ops.producer_pos_addr, 8),
        Touch(ops.data, HDR, True),  # the busy header
        Touch(ops.producer_pos_addr, 8, True),
        Release(ops.spinlock),
    ]
    _, reqs = trace(request_helpers(ring.host)[132](sample, 0, 0, 0, 0), ring.host)
    assert not any(isinstance(q, Acquire) for q in reqs)  # commit is lockless
    # the consumer had caught up: the commit reads its position, then pays for the wake-up
    assert Touch(ops.data, 4, True) in reqs
    assert reqs[-2:] == [Touch(ops.consumer_pos_addr, 8), Work("ringbuf_wakeup")]


def test_a_failed_reserve_releases_the_lock_then_reports_the_drop():
    r = Ring()
    r.reserve(PAGE - 16)
    _, reqs = trace(r.ops.reserve(8), r.host)
    assert reqs[-3:] == [
        Touch(r.ops.producer_pos_addr, 8),
        Release(r.ops.spinlock),
        Work("ringbuf_drop"),
    ]


# ---------------------------------------------------------------------------------------------
# ringbuf_output
# ---------------------------------------------------------------------------------------------


def test_output_copies_and_submits(ring):
    c = Consumer(ring)
    src = scratch(ring.host, b"payload!")
    assert ring.h[130](ring.umap.addr, src, 8, 0, 0) == 0
    assert ring.waker.wakeups == 1
    assert ring.h[130](ring.umap.addr, src, 3, BPF_RB_NO_WAKEUP, 0) == 0
    assert ring.waker.wakeups == 1
    assert c.consume() == [b"payload!", b"pay"]
    assert ring.ops.reservations() == []


def test_output_errors():
    r = Ring()
    src = scratch(r.host, bytes(64))
    assert r.h[130](r.umap.addr, src, 8, 4, 0) == neg(errno.EINVAL)
    assert r.ops.producer_pos() == 0
    assert r.h[130](r.umap.addr, src, PAGE, 0, 0) == neg(errno.EAGAIN)
    r.reserve(PAGE - 16)
    assert r.h[130](r.umap.addr, src, 0, 0, 0) == neg(errno.EAGAIN)


# ---------------------------------------------------------------------------------------------
# mmap
# ---------------------------------------------------------------------------------------------


def test_mmap_layout_consumer_page_writable_the_rest_read_only():
    r = Ring(size=2 * PAGE)
    umap, ops = r.umap, r.ops
    (cons,) = umap.map_mmap(0, PAGE, write=True)
    assert cons == ops.pages[1] and umap.write_active == 1
    ro = umap.map_mmap(PAGE, 5 * PAGE, write=False)
    data = ops.pages[RINGBUF_NR_META_PAGES:]
    assert ro == [ops.pages[2]] + data + data  # producer page, then the data pages twice
    assert umap.map_mmap(0, 6 * PAGE, write=False)[0] == cons  # read-only all at once
    for offset, size, code in [
        (PAGE, PAGE, errno.EPERM),  # producer page writable
        (0, 2 * PAGE, errno.EPERM),  # more than the consumer page writable
        (3 * PAGE, PAGE, errno.EPERM),  # data writable
        (PAGE, 6 * PAGE, errno.EINVAL),  # past the double-mapped data
        (100, PAGE, errno.EINVAL),  # not page-aligned
    ]:
        with pytest.raises(BpfError) as e:
            umap.map_mmap(offset, size, write=code == errno.EPERM)
        assert e.value.errno == code, (offset, size)


# ---------------------------------------------------------------------------------------------
# Dynptrs
# ---------------------------------------------------------------------------------------------

RINGBUF_TYPE = int(BpfDynptrType.BPF_DYNPTR_TYPE_RINGBUF) << 28
LOCAL_TYPE = int(BpfDynptrType.BPF_DYNPTR_TYPE_LOCAL) << 28


def dynptr_at(host, addr):
    raw = host.read(addr, 16)
    return (
        int.from_bytes(raw[:8], "little"),
        int.from_bytes(raw[8:12], "little"),
        int.from_bytes(raw[12:], "little"),
    )


def test_reserve_dynptr_describes_the_record_and_submit_nulls_it(ring):
    ptr = scratch(ring.host, b"\xff" * 16)
    assert ring.h[198](ring.umap.addr, 24, 0, ptr, 0) == 0
    data, size, offset = dynptr_at(ring.host, ptr)
    assert (data, size, offset) == (ring.ops.data + HDR, 24 | RINGBUF_TYPE, 0)
    assert ring.header(data)[0] == 24 | BPF_RINGBUF_BUSY_BIT
    assert ring.h[199](ptr, 0, 0, 0, 0) == 0
    assert ring.header(data)[0] == 24 and dynptr_at(ring.host, ptr) == (0, 0, 0)
    assert ring.waker.wakeups == 1
    assert ring.h[199](ptr, 0, 0, 0, 0) == 0  # a NULL dynptr: nothing happens
    assert ring.waker.wakeups == 1


def test_discard_dynptr(ring):
    ptr = scratch(ring.host, size=16)
    ring.h[198](ring.umap.addr, 8, 0, ptr, 0)
    data = dynptr_at(ring.host, ptr)[0]
    assert ring.h[200](ptr, BPF_RB_NO_WAKEUP, 0, 0, 0) == 0
    assert ring.header(data)[0] == 8 | BPF_RINGBUF_DISCARD_BIT
    assert dynptr_at(ring.host, ptr) == (0, 0, 0) and ring.waker.wakeups == 0


@pytest.mark.parametrize(
    "size, flags, code",
    [
        (8, 1, errno.EINVAL),  # flags
        (1 << 24, 0, errno.E2BIG),  # above DYNPTR_MAX_SIZE
        (PAGE, 0, errno.EINVAL),  # no room
    ],
)
def test_reserve_dynptr_failures_set_the_dynptr_null(ring, size, flags, code):
    ptr = scratch(ring.host, b"\xff" * 16)
    assert ring.h[198](ring.umap.addr, size, flags, ptr, 0) == neg(code)
    assert dynptr_at(ring.host, ptr) == (0, 0, 0)
    assert ring.h[200](ptr, 0, 0, 0, 0) == 0  # discarding the NULL dynptr is allowed


def test_dynptr_read_write_and_bounds(ring):
    host, h = ring.host, ring.h
    ptr = scratch(host, size=16)
    h[198](ring.umap.addr, 16, 0, ptr, 0)
    sample = dynptr_at(host, ptr)[0]
    src, dst = scratch(host, b"0123456789abcdef"), scratch(host, size=16)
    assert h[202](ptr, 4, src, 12, 0) == 0  # write 12 bytes at offset 4: exactly to the end
    assert host.read(sample + 4, 12) == b"0123456789ab"
    assert h[202](ptr, 5, src, 12, 0) == neg(errno.E2BIG)  # one past the end
    assert h[202](ptr, 0, src, 17, 0) == neg(errno.E2BIG)  # longer than the dynptr
    assert h[202](ptr, 16, src, 0, 0) == 0  # empty, at the end
    assert h[202](ptr, 0, src, 4, 1) == neg(errno.EINVAL)  # flags
    assert h[201](dst, 8, ptr, 4, 0) == 0 and host.read(dst, 8) == b"01234567"
    assert h[201](dst, 8, ptr, 9, 0) == neg(errno.E2BIG)
    assert h[201](dst, 0xFFFFFFFF, ptr, 0, 0) == neg(errno.E2BIG)
    assert h[201](dst, 4, ptr, 0, 1) == neg(errno.EINVAL)  # flags
    assert h[203](ptr, 4, 12, 0, 0) == sample + 4
    assert h[203](ptr, 4, 13, 0, 0) == 0
    h[199](ptr, 0, 0, 0, 0)
    assert h[201](dst, 4, ptr, 0, 0) == neg(errno.EINVAL)  # NULL after submit
    assert h[202](ptr, 0, src, 4, 0) == neg(errno.EINVAL)
    assert h[203](ptr, 0, 4, 0, 0) == 0


def test_a_stale_copy_of_a_submitted_ringbuf_dynptr_is_invalid(ring):
    host, h = ring.host, ring.h
    ptr, copy = scratch(host, size=16), scratch(host, size=16)
    h[198](ring.umap.addr, 8, 0, ptr, 0)
    host.write(copy, host.read(ptr, 16))
    h[199](ptr, 0, 0, 0, 0)
    dst = scratch(host, size=8)
    assert h[201](dst, 8, copy, 0, 0) == neg(errno.EINVAL)
    assert h[203](copy, 0, 8, 0, 0) == 0
    with pytest.raises(BpfError) as e:  # committing it again: a fault
        h[199](copy, 0, 0, 0, 0)
    assert e.value.errno == errno.EFAULT


def test_dynptr_from_mem_and_read_only_and_unknown_types(ring):
    host, h = ring.host, ring.h
    mem, ptr = scratch(host, b"abcdefgh"), scratch(host, b"\xff" * 16)
    assert h[197](mem, 8, 0, ptr, 0) == 0
    assert dynptr_at(host, ptr) == (mem, 8 | LOCAL_TYPE, 0)
    dst = scratch(host, size=8)
    assert h[201](dst, 3, ptr, 5, 0) == 0 and host.read(dst, 3) == b"fgh"
    assert h[203](ptr, 2, 2, 0, 0) == mem + 2
    # the read-only bit: no writes, no data slices; reads still work
    host.write(ptr + 8, (8 | LOCAL_TYPE | DYNPTR_RDONLY_BIT).to_bytes(4, "little"))
    assert h[202](ptr, 0, dst, 1, 0) == neg(errno.EINVAL)
    assert h[203](ptr, 0, 1, 0, 0) == 0
    assert h[201](dst, 1, ptr, 0, 0) == 0
    # a type kbpf cannot make (SKB): the kernel's unknown-type path
    host.write(ptr + 8, (8 | 3 << 28).to_bytes(4, "little"))
    assert h[201](dst, 1, ptr, 0, 0) == neg(errno.EFAULT)
    assert h[203](ptr, 0, 1, 0, 0) == 0
    # failures set the dynptr NULL
    assert h[197](mem, 1 << 24, 0, ptr, 0) == neg(errno.E2BIG)
    assert dynptr_at(host, ptr) == (0, 0, 0)
    host.write(ptr, b"\xff" * 16)
    assert h[197](mem, 8, 2, ptr, 0) == neg(errno.EINVAL)
    assert dynptr_at(host, ptr) == (0, 0, 0)


def test_dynptr_struct_layout_round_trips():
    d = BpfDynPtr.init(0xFFFF_C900_0000_3008, BpfDynptrType.BPF_DYNPTR_TYPE_RINGBUF, 4, 100)
    raw = d.pack()
    assert len(raw) == 16 and raw[:8] == (0xFFFF_C900_0000_3008).to_bytes(8, "little")
    back = BpfDynPtr.unpack(raw)
    assert (back.usable_size, back.dynptr_type, back.offset, back.rdonly) == (100, 2, 4, False)


# ---------------------------------------------------------------------------------------------
# A model of the ring's positions
# ---------------------------------------------------------------------------------------------


class RingMachine(RuleBasedStateMachine):
    """Random reserves, submits, discards and consumptions against a model holding the
    producer and consumer positions and the records between them."""

    @initialize(size=st.sampled_from([PAGE, 2 * PAGE]))
    def setup(self, size):
        self.r = Ring(size=size)
        self.c = Consumer(self.r)
        self.prod = self.cons = 0
        self.records: list[list] = []  # [pos, length, state, payload], state busy/done/dropped
        self.serial = 0

    @rule(size=st.one_of(st.integers(0, 700), st.integers(2 * PAGE - 40, 2 * PAGE + 8)))
    def reserve(self, size):
        length = record_len(size)
        fits = length <= self.r.size and self.prod + length - self.cons <= self.r.size - 1
        sample = self.r.reserve(size)
        assert bool(sample) == fits
        if sample:
            assert sample == self.r.ops.data + (self.prod & (self.r.size - 1)) + HDR
            self.serial += 1
            payload = bytes((self.serial + i) & 0xFF for i in range(size))
            self.r.host.write(sample, payload)
            self.records.append([self.prod, length, "busy", payload, sample])
            self.prod += length

    def _busy(self):
        return [rec for rec in self.records if rec[2] == "busy"]

    @precondition(lambda self: any(rec[2] == "busy" for rec in self.records))
    @rule(pick=st.integers(0, 100), discard=st.booleans(), flags=st.sampled_from([0, 1, 2]))
    def commit(self, pick, discard, flags):
        busy = self._busy()
        rec = busy[pick % len(busy)]
        before = self.r.waker.wakeups
        (self.r.discard if discard else self.r.submit)(rec[4], flags)
        rec[2] = "dropped" if discard else "done"
        caught_up = (self.cons & (self.r.size - 1)) == (rec[0] & (self.r.size - 1))
        expect = flags == BPF_RB_FORCE_WAKEUP or (caught_up and flags != BPF_RB_NO_WAKEUP)
        assert self.r.waker.wakeups - before == int(expect)

    @rule()
    def consume(self):
        want = []
        while self.records and self.records[0][2] != "busy":
            pos, length, state, payload, _ = self.records.pop(0)
            assert pos == self.cons
            self.cons += length
            if state == "done":
                want.append(payload)
        assert self.c.consume() == want
        assert self.c.consumer_pos == self.cons

    @invariant()
    def positions_agree(self):
        if not hasattr(self, "r"):
            return
        assert self.r.query(BPF_RB_PROD_POS) == self.prod
        assert self.r.query(BPF_RB_CONS_POS) == self.cons
        assert self.r.query(BPF_RB_AVAIL_DATA) == self.prod - self.cons
        assert self.r.umap.readable() == (self.prod != self.cons)
        assert [s for s, _ in self.r.ops.reservations()] == [rec[4] for rec in self._busy()]
        assert self.r.ops.spinlock.owner is None


RingMachine.TestCase.settings = settings(stateful_step_count=40)
test_ring_against_a_model_of_its_positions = RingMachine.TestCase
