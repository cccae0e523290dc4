"""kmalloc: size classes carved from slab pages, large sizes from the buddy, always zeroed."""

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbpf.errors import BpfError
from sim.mem import KMALLOC_SIZES, PAGE_OFFSET, PAGE_SIZE, Memory


@pytest.fixture
def mem():
    m = Memory(64)
    yield m
    m.close()


def test_requests_round_up_to_the_linux_size_classes(mem):
    sizes = (0, 8, 9, 33, 65, 96, 97, 129, 193, 300, 513, 1500, 3000, 4097, 8192)
    classes = (8, 8, 16, 64, 96, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 8192)
    for size, cls in zip(sizes, classes, strict=True):
        assert mem.kmalloc.ksize(mem.kmalloc(size)) == cls, size


def test_allocations_are_direct_map_addresses_of_zeroed_memory(mem):
    a = mem.kmalloc(64)
    assert PAGE_OFFSET < a < PAGE_OFFSET + (64 << 20)
    assert mem.kernel.translate(a) == a - PAGE_OFFSET
    assert mem.read(a, 64) == bytes(64)


def test_a_freed_object_is_reused_and_comes_back_zeroed(mem):
    a = mem.kmalloc(100)
    mem.write(a, b"\xaa" * 128)  # the whole 128-byte object
    mem.kfree(a)
    b = mem.kmalloc(120)  # same class: the lowest free object, which is a again
    assert b == a
    assert mem.read(b, 128) == bytes(128)


def test_objects_of_a_class_are_packed_lowest_address_first(mem):
    addrs = [mem.kmalloc(32) for _ in range(4)]
    assert [x - addrs[0] for x in addrs] == [0, 32, 64, 96]
    mem.kfree(addrs[1])
    assert mem.kmalloc(20) == addrs[1]


def test_power_of_two_classes_are_naturally_aligned(mem):
    for size in KMALLOC_SIZES:
        addrs = [mem.kmalloc(size) for _ in range(5)]
        align = size & -size  # 96 -> 32, 192 -> 64, powers of two -> themselves
        assert all(a % align == 0 for a in addrs), size


def test_a_larger_alignment_moves_the_request_to_a_class_that_guarantees_it(mem):
    a = mem.kmalloc(65, align=64)  # kmalloc-96 is only 32-byte aligned
    assert a % 64 == 0 and mem.kmalloc.ksize(a) == 128
    b = mem.kmalloc(8, align=4096)
    assert b % 4096 == 0 and mem.kmalloc.ksize(b) == 4096
    c = mem.kmalloc(100, align=16384)  # beyond any class: a 4-page buddy block
    assert c % 16384 == 0 and mem.kmalloc.ksize(c) == 16384
    with pytest.raises(BpfError, match="align 24 is not a power of two") as info:
        mem.kmalloc(8, align=24)
    assert info.value.errno == errno.EINVAL


def test_sizes_above_8k_come_from_the_buddy_in_whole_power_of_two_blocks(mem):
    free = mem.buddy.free_frames
    a = mem.kmalloc(8193)  # 3 pages -> order 2
    assert mem.kmalloc.ksize(a) == 4 * PAGE_SIZE
    assert (a - PAGE_OFFSET) % (4 * PAGE_SIZE) == 0
    assert mem.buddy.free_frames == free - 4
    assert mem.read(a, 4 * PAGE_SIZE) == bytes(4 * PAGE_SIZE)
    mem.kfree(a)
    assert mem.buddy.free_frames == free


def test_sizes_beyond_the_largest_buddy_block_get_an_exact_contiguous_run(mem):
    free = mem.buddy.free_frames
    size = 6 << 20  # 6 MiB > 4 MiB (order 10)
    a = mem.kmalloc(size)
    assert mem.kmalloc.ksize(a) == size
    assert mem.buddy.free_frames == free - size // PAGE_SIZE
    mem.write(a + size - 4, b"tail")  # physically contiguous: one direct-map slice
    assert mem.kernel.contiguous(a, size) == (mem.phys.buf, a - PAGE_OFFSET)
    mem.kfree(a)
    assert mem.buddy.free_frames == free


def test_statistics_count_bytes_in_use_per_class(mem):
    addrs = [mem.kmalloc(50) for _ in range(3)] + [mem.kmalloc(20000)]
    stats = mem.kmalloc.stats()
    assert stats["classes"]["kmalloc-64"] == {"objects": 3, "bytes": 192, "slabs": 1}
    assert stats["large"] == {"allocations": 1, "bytes": 8 * PAGE_SIZE}
    assert stats["bytes_in_use"] == 192 + 8 * PAGE_SIZE
    for a in addrs:
        mem.kfree(a)
    assert mem.kmalloc.stats()["bytes_in_use"] == 0


def test_empty_slabs_go_back_to_the_buddy_except_one_per_class(mem):
    free = mem.buddy.free_frames
    per_slab = PAGE_SIZE // 512
    addrs = [mem.kmalloc(512) for _ in range(3 * per_slab)]  # three full one-page slabs
    assert mem.buddy.free_frames == free - 3
    for a in addrs:
        mem.kfree(a)
    assert mem.buddy.free_frames == free - 1  # one empty slab kept for the next request
    assert mem.kmalloc.stats()["classes"]["kmalloc-512"]["slabs"] == 1


def test_kfree_of_anything_kmalloc_did_not_return_names_the_address(mem):
    a = mem.kmalloc(64)
    with pytest.raises(RuntimeError, match=f"{a + 8:#x}.*not the start of an object"):
        mem.kfree(a + 8)
    mem.kfree(a)
    with pytest.raises(RuntimeError, match=f"{a:#x}.*already free"):
        mem.kfree(a)
    with pytest.raises(RuntimeError, match="0xffffc90000000000"):
        mem.kfree(0xFFFFC90000000000)
    with pytest.raises(RuntimeError, match="not a live kmalloc allocation"):
        mem.kmalloc.ksize(a)


def test_exhaustion_is_enomem():
    m = Memory(1)  # 256 frames, one reserved
    with pytest.raises(BpfError) as info:
        m.kmalloc(2 << 20)
    assert info.value.errno == errno.ENOMEM
    m.close()


@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([1, 24, 96, 130, 700, 4000, 9000, 20000])),
        max_size=80,
    ),
    st.randoms(use_true_random=False),
)
def test_live_allocations_never_overlap_and_freeing_all_returns_the_pages(steps, rnd):
    m = Memory(4)
    free = m.buddy.free_frames
    live: dict[int, int] = {}  # address -> usable size
    for do_alloc, size in steps:
        if do_alloc or not live:
            a = m.kmalloc(size)
            assert m.read(a, size) == bytes(size)
            m.write(a, b"\xee" * size)  # dirty it: the next user must still see zeros
            live[a] = m.kmalloc.ksize(a)
        else:
            a = rnd.choice(sorted(live))
            del live[a]
            m.kfree(a)
        spans = sorted(live.items())
        assert all(a + n <= b for (a, n), (b, _) in zip(spans, spans[1:], strict=False))
    for a in list(live):
        m.kfree(a)
    # Every slab is empty; at most one is kept per class, and only those pages are still out.
    caches = m.kmalloc.caches
    assert all(len(c.slabs) <= 1 for c in caches)
    assert free - m.buddy.free_frames == sum(len(c.slabs) << c.order for c in caches)
    assert m.kmalloc.stats()["bytes_in_use"] == 0
    m.close()
