"""The BPF ring buffer written from a clang-compiled program (tests/progs/ringbuf.bpf.c) and read
by the libbpf-like consumer through its mmap of the real pages.

Linux v6.6 semantics checked here: every record is an 8-byte header plus the sample, rounded up
to 8 bytes; a reservation that would put the producer a whole ring ahead of the consumer gives
NULL (``bpf_ringbuf_output`` gives -EAGAIN); discarded records stay in the ring until the
consumer skips them; the data pages are mapped twice back to back, in the kernel's vmap and in
the consumer's mmap, so a record that wraps past the end is contiguous; user space may write
only the consumer position page.  The dynptr helpers (197–203) are declared by Debian's
libbpf-dev 1.1 headers, so the dynptr interface is exercised too.
"""

from __future__ import annotations

import errno
import struct

import pytest

from kbpf.linux_bpf import BpfMapType
from kbpf.map.ringbuf import RINGBUF_NR_META_PAGES
from sim import Machine
from sim.mem import MemoryFault

from .conftest import obj_path

PAGE = 4096
RB_AVAIL_DATA, RB_RING_SIZE, RB_CONS_POS, RB_PROD_POS = range(4)


def signed(r0: int) -> int:
    return r0 - (1 << 64) if r0 >= 1 << 63 else r0


@pytest.fixture
def rig():
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("ringbuf"))
    got: list[bytes] = []
    cons = m.ring_buffer(obj.maps["rb"], got.append)
    return m, obj, cons, got


def reserve(m, obj, tag: int, discard: bool = False, cpu: int = 0) -> int:
    ctx = struct.pack("<QI", tag, int(discard))
    return m.run_program(obj.programs["reserve"], cpu=cpu, ctx=ctx)


def query(m, obj, flag: int) -> int:
    return m.run_program(obj.programs["query"], ctx=struct.pack("<Q", flag))


def output(m, obj, length: int) -> int:
    return signed(m.run_program(obj.programs["output"], ctx=struct.pack("<I", length)))


def test_reserve_submit_and_discard_with_query(rig):
    m, obj, cons, got = rig
    assert obj.maps["rb"].map_type == BpfMapType.BPF_MAP_TYPE_RINGBUF
    assert reserve(m, obj, 7) == 1
    assert reserve(m, obj, 8, discard=True) == 1
    assert reserve(m, obj, 9, cpu=1) == 1
    # Three 16-byte records of 24 bytes each, the discarded one included, until consumed.
    assert [query(m, obj, f) for f in range(4)] == [72, 4096, 0, 72]
    assert cons.consume() == 2
    assert [struct.unpack("<QII", g) for g in got] == [(7, 0, 16), (9, 1, 16)]
    assert cons.discarded == 1
    assert [query(m, obj, f) for f in range(4)] == [0, 4096, 72, 72]


def test_a_full_ring_gives_null_until_the_consumer_catches_up(rig):
    m, obj, cons, got = rig
    # 24 bytes a record; the producer may be at most size - 8 bytes ahead: 170 records fit.
    results = [reserve(m, obj, i) for i in range(175)]
    assert results == [1] * 170 + [0] * 5
    assert cons.consume() == 170
    assert [struct.unpack("<Q", g[:8])[0] for g in got] == list(range(170))
    assert reserve(m, obj, 999) == 1


def test_ringbuf_output_copies_and_says_eagain_when_full(rig):
    m, obj, cons, got = rig
    obj.maps["payload"].update(bytes(4), bytes(i * 7 % 251 for i in range(2048)))
    # 1000 bytes + 8-byte header: four records take 4032 bytes; a fifth does not fit.
    assert [output(m, obj, 1000) for _ in range(5)] == [0, 0, 0, 0, -errno.EAGAIN]
    assert output(m, obj, 5000) == -errno.EAGAIN  # larger than the ring itself
    assert cons.consume() == 4


def test_a_record_wrapping_the_end_is_read_intact_through_the_second_mapping(rig):
    m, obj, cons, got = rig
    pattern = bytes(i * 7 % 251 for i in range(2048))
    obj.maps["payload"].update(bytes(4), pattern)
    for _ in range(4):
        output(m, obj, 1000)
    assert cons.consume() == 4
    # The producer is at 4032: the next header fits before the end, its 1000 bytes do not.
    assert output(m, obj, 1000) == 0
    assert query(m, obj, RB_PROD_POS) == 4032 + 1008
    assert cons.consume() == 1
    assert got[-1] == pattern[:1000]
    head_in_first, rest = PAGE - 4032 - 8, 1000 - (PAGE - 4032 - 8)
    assert (head_in_first, rest) == (56, 944)
    # The 944 bytes past the end are physically at the start of the ring: read them there too.
    assert cons.mm.read(cons.data_addr, rest) == pattern[head_in_first:1000]


def test_the_consumer_may_not_write_the_data_pages(rig):
    m, obj, cons, got = rig
    with pytest.raises(MemoryFault):
        cons.mm.write(cons.data_addr, b"x")
    with pytest.raises(MemoryFault):
        cons.mm.write(cons.prod_addr, b"x")  # the producer position page is read-only too
    cons.mm.write(cons.cons_addr, bytes(8))  # only the consumer position is writable


def test_each_data_page_is_one_frame_at_two_addresses_in_kernel_and_user_space(rig):
    m, obj, cons, got = rig
    ring = m.kernel.map_from_fd(m.kernel.facade, obj.maps["rb"].fd).umap.ops
    size = obj.maps["rb"].max_entries
    kdata = ring.rb + RINGBUF_NR_META_PAGES * PAGE
    for off in range(0, size, PAGE):
        frame = m.mem.kernel.translate(kdata + off)
        assert m.mem.kernel.translate(kdata + size + off) == frame
        assert cons.mm.translate(cons.data_addr + off) == frame
        assert cons.mm.translate(cons.data_addr + size + off) == frame


def test_dynptr_records_are_written_read_back_submitted_and_discarded(rig):
    m, obj, cons, got = rig
    run = obj.programs["dynptr"]
    assert m.run_program(run, cpu=1, ctx=struct.pack("<QI", 10, 0)) == 1
    assert m.run_program(run, cpu=0, ctx=struct.pack("<QI", 11, 1)) == 1
    assert cons.consume() == 1
    assert struct.unpack("<QII", got[0]) == (10, 1, 0xD9)
    assert cons.discarded == 1


def test_dynptr_reserve_on_a_full_ring_fails_with_einval(rig):
    m, obj, cons, got = rig
    while reserve(m, obj, 0):
        pass
    # Unlike bpf_ringbuf_output's -EAGAIN, v6.6's bpf_ringbuf_reserve_dynptr reports no room as
    # -EINVAL, and sets the dynptr NULL (discarding it is then a no-op).
    ctx = struct.pack("<QI", 1, 0)
    assert signed(m.run_program(obj.programs["dynptr"], ctx=ctx)) == -errno.EINVAL
    assert query(m, obj, RB_PROD_POS) == 170 * 24


def test_a_dynptr_over_local_memory_is_bounds_checked():
    m = Machine(cpus=1)
    obj = m.load_object(obj_path("ringbuf"))
    # Writing 2 bytes at offset 7 of 8 is -E2BIG; at offset 0 the bytes land in the buffer.
    assert m.run_program(obj.programs["local_dynptr"]) == 0x1234
