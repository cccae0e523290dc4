"""The buddy allocator: blocks of 2**order frames, split on allocation, merged on free.

Counts are per order, as ``/proc/buddyinfo`` prints them: index k is the number of free blocks
of 2**k frames.
"""

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbpf.errors import BpfError
from sim.mem import BuddyAllocator


def test_an_order_0_allocation_splits_the_order_10_block_and_freeing_merges_it_back():
    # A bare allocator over exactly one order-10 block (nothing reserved, to see the whole block).
    b = BuddyAllocator(1024, max_order=10, reserved=0)
    assert b.free_blocks() == [0] * 10 + [1]

    pfn = b.alloc(0)
    # 1024 = 1 + 1 + 2 + 4 + ... + 512: the block split ten times, the upper half of each split
    # stayed free at its order, the lowest frame was handed out.
    assert pfn == 0
    assert b.free_blocks() == [1] * 10 + [0]
    assert b.free_frames == 1023

    second = b.alloc(0)  # the free order-0 buddy of the first frame
    assert second == 1
    assert b.free_blocks() == [0] + [1] * 9 + [0]

    b.free(pfn, 0)  # its buddy (frame 1) is in use: no merge
    assert b.free_blocks() == [1] + [1] * 9 + [0]
    b.free(second, 0)  # frames 0-1 merge, then with 2-3, 4-7, ... back to one block
    assert b.free_blocks() == [0] * 10 + [1]
    assert b.free_frames == 1024


def test_frame_0_is_reserved_so_physical_address_0_is_never_handed_out():
    b = BuddyAllocator(2048)
    # Frame 0's block is split around it: frames 1, 2-3, 4-7, ..., 512-1023 are free, plus the
    # whole order-10 block at 1024.
    assert b.free_blocks() == [1] * 10 + [1]
    assert b.free_frames == 2047
    got = [b.alloc(0) for _ in range(2047)]
    assert 0 not in got and sorted(got) == list(range(1, 2048))


def test_allocation_takes_the_lowest_address_of_the_smallest_order_that_fits():
    b = BuddyAllocator(4096, reserved=0)
    blocks = [b.alloc(10) for _ in range(4)]
    assert blocks == [0, 1024, 2048, 3072]
    b.free(2048, 10)
    b.free(1024, 10)  # 1024 and 2048 are not buddies (1024 ^ 1024 = 0): no merge
    assert b.free_blocks()[10] == 2
    assert b.alloc(3) == 1024  # the lower of the two free blocks is split
    assert b.alloc(3) == 1032


def test_blocks_are_aligned_to_their_size():
    b = BuddyAllocator(8192)
    for order in (3, 0, 5, 1, 7, 2):
        pfn = b.alloc(order)
        assert pfn % (1 << order) == 0


def test_exhaustion_is_enomem_naming_the_order_and_what_is_free():
    b = BuddyAllocator(1024)  # 1023 usable frames: no order-10 block exists
    with pytest.raises(BpfError) as info:
        b.alloc(10)
    assert info.value.errno == errno.ENOMEM
    assert "order 10" in str(info.value) and "1023 frames free" in str(info.value)
    for _ in range(1023):
        b.alloc(0)
    with pytest.raises(BpfError, match="order 0.*0 frames free"):
        b.alloc(0)


def test_an_order_above_max_order_is_enomem():
    b = BuddyAllocator(4096)
    with pytest.raises(BpfError, match="order 11 exceeds max_order 10") as info:
        b.alloc(11)
    assert info.value.errno == errno.ENOMEM


def test_double_free_and_wrong_order_are_bugs_naming_the_pfn():
    b = BuddyAllocator(1024)
    pfn = b.alloc(2)
    with pytest.raises(
        RuntimeError, match=r"pfn 0x4 was allocated with order 2 but freed with order 0"
    ):
        b.free(pfn, 0)
    b.free(pfn, 2)
    with pytest.raises(RuntimeError, match=r"pfn 0x4 .*not an allocated block"):
        b.free(pfn, 2)
    with pytest.raises(RuntimeError, match="0x5"):
        b.free(5, 0)


def test_the_allocator_need_not_be_a_power_of_two():
    b = BuddyAllocator(1000 + 3, reserved=1)
    assert b.free_frames == 1002
    assert sum(n << k for k, n in enumerate(b.free_blocks())) == 1002
    assert sorted(b.alloc(0) for _ in range(1002)) == list(range(1, 1003))


def test_contiguous_runs_beyond_max_order_take_exactly_the_frames_asked():
    b = BuddyAllocator(8192, max_order=10)
    before = b.free_frames
    pfn = b.alloc_contig(2500)  # more than two order-10 blocks, less than three
    assert pfn == 1024  # the first three adjacent free order-10 blocks start there
    assert b.free_frames == before - 2500
    assert b.alloc(0) == 1  # the reserved frame's leftovers are still first
    b.free_contig(pfn, 2500)
    assert b.free_frames == before - 1
    with pytest.raises(RuntimeError, match="not a contiguous allocation"):
        b.free_contig(pfn, 2500)
    with pytest.raises(BpfError) as info:
        b.alloc_contig(8192)
    assert info.value.errno == errno.ENOMEM


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4), st.integers(0, 1000)), max_size=60))
def test_any_sequence_of_allocs_and_frees_keeps_the_books_and_merges_fully(steps):
    # Invariants: live blocks never overlap; free frames = total - live; freeing everything
    # merges back to the initial free lists.
    b = BuddyAllocator(1024, max_order=6)
    initial = b.free_blocks()
    live: list[tuple[int, int]] = []
    for do_alloc, order, pick in steps:
        if do_alloc or not live:
            try:
                live.append((b.alloc(order), order))
            except BpfError:
                continue
        else:
            pfn, o = live.pop(pick % len(live))
            b.free(pfn, o)
        frames = sorted(f for pfn, o in live for f in range(pfn, pfn + (1 << o)))
        assert len(frames) == len(set(frames)) and (not frames or frames[0] >= 1)
        assert b.free_frames == 1023 - len(frames)
    for pfn, o in live:
        b.free(pfn, o)
    assert b.free_blocks() == initial
