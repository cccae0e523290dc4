"""Per-CPU memory: one copy per CPU, each in that CPU's own area, at the same offset."""

import errno

import pytest

from kbpf.errors import BpfError
from sim.mem import PAGE_SIZE, PCPU_MIN_UNIT_SIZE, Memory


@pytest.fixture
def mem():
    m = Memory(32, ncpus=4)
    yield m
    m.close()


def _spans(addrs, size):
    return [range(a, a + size) for a in addrs]


def test_an_allocation_gives_one_zeroed_address_per_cpu(mem):
    addrs = mem.alloc_percpu(24)
    assert len(addrs) == 4 and len(set(addrs)) == 4
    for a in addrs:
        assert mem.read(a, 24) == bytes(24)


def test_each_cpu_copy_lives_in_that_cpus_own_area_at_the_same_offset(mem):
    first = mem.alloc_percpu(16)
    second = mem.alloc_percpu(40)
    # Same offset from each CPU's unit start; consecutive allocations pack in every unit.
    assert [b - a for a, b in zip(first, second, strict=True)] == [16] * 4
    # Units are whole, distinct page ranges: no CPU's copy overlaps another's.
    units = sorted(first)
    assert all(b - a >= PCPU_MIN_UNIT_SIZE for a, b in zip(units, units[1:], strict=False))
    assert all(a % PAGE_SIZE == 0 for a in first)


def test_copies_of_different_cpus_never_overlap_and_writes_stay_per_cpu(mem):
    allocs = [mem.alloc_percpu(size) for size in (8, 100, 3000, 8, 64)]
    for addrs, size in zip(allocs, (8, 100, 3000, 8, 64), strict=True):
        for cpu, a in enumerate(addrs):
            mem.write(a, bytes([cpu + 1]) * size)
    for addrs, size in zip(allocs, (8, 100, 3000, 8, 64), strict=True):
        assert [mem.read(a, size) for a in addrs] == [bytes([c + 1]) * size for c in range(4)]


def test_alignment_is_honoured_in_every_cpu(mem):
    mem.alloc_percpu(3)
    addrs = mem.alloc_percpu(8, align=64)
    assert all(a % 64 == 0 for a in addrs)


def test_freed_space_is_reused_and_comes_back_zeroed(mem):
    addrs = mem.alloc_percpu(32)
    for a in addrs:
        mem.write(a, b"\xff" * 32)
    mem.free_percpu(addrs)
    again = mem.alloc_percpu(32)
    assert again == addrs
    assert all(mem.read(a, 32) == bytes(32) for a in again)


def test_a_full_unit_opens_a_new_chunk_and_an_empty_one_is_given_back(mem):
    free = mem.buddy.free_frames
    big = mem.alloc_percpu(PCPU_MIN_UNIT_SIZE)  # fills the first chunk
    extra = mem.alloc_percpu(8)  # needs a second chunk: one more unit per CPU
    assert mem.percpu.stats()["chunks"] == 2
    unit_frames = PCPU_MIN_UNIT_SIZE // PAGE_SIZE
    assert mem.buddy.free_frames == free - 2 * 4 * unit_frames
    mem.free_percpu(extra)
    assert mem.percpu.stats()["chunks"] == 1
    mem.free_percpu(big)
    assert mem.percpu.stats() == {"chunks": 1, "allocations": 0, "bytes_per_cpu": 0}


def test_an_allocation_larger_than_a_unit_gets_a_chunk_of_its_own(mem):
    size = 3 * PCPU_MIN_UNIT_SIZE + 8
    addrs = mem.alloc_percpu(size)
    for cpu, a in enumerate(addrs):
        mem.write(a + size - 1, bytes([cpu]))
    assert [mem.read(a + size - 1, 1)[0] for a in addrs] == [0, 1, 2, 3]
    spans = sorted(_spans(addrs, size), key=lambda r: r.start)
    assert all(a.stop <= b.start for a, b in zip(spans, spans[1:], strict=False))


def test_freeing_what_was_not_allocated_is_a_bug_naming_the_address(mem):
    addrs = mem.alloc_percpu(8)
    with pytest.raises(RuntimeError, match=f"{addrs[1]:#x}"):
        mem.free_percpu(addrs[1:])
    with pytest.raises(RuntimeError, match="not the ones alloc returned"):
        mem.free_percpu([addrs[0], addrs[2], addrs[1], addrs[3]])
    mem.free_percpu(addrs)
    with pytest.raises(RuntimeError, match=f"{addrs[0]:#x}"):
        mem.free_percpu(addrs)


def test_bad_sizes_and_alignments_are_einval(mem):
    for size, align in ((0, 8), (8, 3), (8, 2 * PAGE_SIZE)):
        with pytest.raises(BpfError) as info:
            mem.alloc_percpu(size, align)
        assert info.value.errno == errno.EINVAL
