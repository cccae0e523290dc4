"""The kernel address space: the direct map, and vmap page tables that may alias frames."""

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbpf.errors import BpfError
from sim.mem import PAGE_OFFSET, PAGE_SIZE, VMALLOC_START, Memory, MemoryFault


@pytest.fixture
def mem():
    m = Memory(16)
    yield m
    m.close()


def test_the_direct_map_is_page_offset_plus_physical_address(mem):
    kvm = mem.kernel
    assert kvm.phys_to_virt(0x5000) == 0xFFFF888000005000
    assert kvm.virt_to_phys(0xFFFF888000005123) == 0x5123
    assert kvm.translate(PAGE_OFFSET + 0x5123) == 0x5123


def test_a_direct_map_write_lands_at_the_physical_address_and_reads_back(mem):
    phys = mem.alloc_page()
    addr = PAGE_OFFSET + phys + PAGE_SIZE - 3  # crosses into the next frame: still contiguous
    mem.write(addr, b"abcdef")
    assert mem.read(addr, 6) == b"abcdef"
    assert mem.phys.buf[phys + PAGE_SIZE - 3 : phys + PAGE_SIZE + 3] == b"abcdef"
    assert mem.kernel.contiguous(addr, 6) == (mem.phys.buf, phys + PAGE_SIZE - 3)


def test_vmap_maps_frames_in_order_and_one_frame_may_appear_twice(mem):
    # The ring buffer's trick: data pages mapped twice, so a record that wraps reads straight.
    a, b = mem.alloc_page(), mem.alloc_page()
    v = mem.vmap([a, b, a])
    assert v == VMALLOC_START
    assert mem.translate(v) == a
    assert mem.translate(v + PAGE_SIZE + 5) == b + 5
    assert mem.translate(v + 2 * PAGE_SIZE + 5) == a + 5  # both pages 0 and 2 are frame a

    mem.write(v + 16, b"through page 0")
    assert mem.read(v + 2 * PAGE_SIZE + 16, 14) == b"through page 0"
    assert mem.read(PAGE_OFFSET + a + 16, 14) == b"through page 0"  # and via the direct map

    # A write across the page 1 -> page 2 boundary ends up in frame b's tail and frame a's head.
    mem.write(v + 2 * PAGE_SIZE - 2, b"WXYZ")
    assert mem.read(PAGE_OFFSET + b + PAGE_SIZE - 2, 2) == b"WX"
    assert mem.read(v, 2) == b"YZ"
    assert mem.read(v + 2 * PAGE_SIZE - 2, 4) == b"WXYZ"


def test_vmapped_ranges_are_contiguous_only_within_a_page(mem):
    a, b = mem.alloc_page(), mem.alloc_page()
    v = mem.vmap([b, a])
    assert mem.kernel.contiguous(v + 8, 16) == (mem.phys.buf, b + 8)
    assert mem.kernel.contiguous(v + PAGE_SIZE - 8, 16) is None
    assert mem.kernel.phys_ranges(v + PAGE_SIZE - 8, 16) == [(b + PAGE_SIZE - 8, 8), (a, 8)]


def test_phys_ranges_merge_physically_consecutive_pages(mem):
    p = mem.kmalloc(2 * PAGE_SIZE, align=PAGE_SIZE) - PAGE_OFFSET
    v = mem.vmap([p, p + PAGE_SIZE])
    assert mem.kernel.phys_ranges(v + 100, PAGE_SIZE) == [(p + 100, PAGE_SIZE)]


def test_areas_are_separated_by_a_guard_page(mem):
    p = mem.alloc_page()
    first = mem.vmap([p, p])
    second = mem.vmap([p])
    assert second == first + 3 * PAGE_SIZE  # two pages, then the unmapped guard
    with pytest.raises(MemoryFault) as info:
        mem.read(first + 2 * PAGE_SIZE - 4, 8)  # runs off the end of the first area
    assert info.value.addr == first + 2 * PAGE_SIZE
    assert f"read of 8 bytes at {first + 2 * PAGE_SIZE - 4:#x}" in str(info.value)
    assert f"faulted at {first + 2 * PAGE_SIZE:#x}: unmapped kernel address" in str(info.value)


def test_after_unmap_the_range_faults_and_its_address_is_reused(mem):
    p = mem.alloc_page()
    v = mem.vmap([p, p, p])
    mem.write(v, b"x")
    mem.unmap(v)
    with pytest.raises(MemoryFault) as info:
        mem.read(v, 1)
    assert info.value.errno == errno.EFAULT and info.value.addr == v
    with pytest.raises(MemoryFault, match=f"write of 1 bytes at {v + 8:#x}"):
        mem.write(v + 8, b"y")
    with pytest.raises(MemoryFault):
        mem.translate(v)
    assert mem.kernel.contiguous(v, 1) is None
    assert mem.vmap([p]) == v  # first fit: the freed range is the lowest free one
    with pytest.raises(RuntimeError, match=f"unmap of {v + PAGE_SIZE:#x}"):
        mem.unmap(v + PAGE_SIZE)


def test_a_faulting_write_writes_nothing(mem):
    p = mem.alloc_page()
    v = mem.vmap([p])
    with pytest.raises(MemoryFault):
        mem.write(v + PAGE_SIZE - 2, b"abcd")  # last two bytes fall on the guard page
    assert mem.read(v + PAGE_SIZE - 2, 2) == b"\0\0"


def test_addresses_outside_both_ranges_fault(mem):
    for addr in (0, 0x1000, PAGE_OFFSET - 8, PAGE_OFFSET + (16 << 20), VMALLOC_START - 1):
        with pytest.raises(MemoryFault, match=f"{addr:#x}"):
            mem.read(addr, 1)
    with pytest.raises(MemoryFault) as info:
        mem.read(PAGE_OFFSET + (16 << 20) - 4, 8)  # runs off the end of the direct map
    assert info.value.addr == PAGE_OFFSET + (16 << 20)


def test_vmap_rejects_what_is_not_a_frame(mem):
    with pytest.raises(BpfError, match="zero pages"):
        mem.vmap([])
    with pytest.raises(BpfError, match="not page-aligned"):
        mem.vmap([0x1001])
    with pytest.raises(BpfError, match="not a frame") as info:
        mem.kernel.vmap([1 << 30])
    assert info.value.errno == errno.EINVAL


@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 6 * 4096), st.binary(min_size=1, max_size=600)), max_size=8),
)
def test_vmapped_memory_behaves_like_its_frames(layout, writes):
    # Model: four frames as bytearrays; the vmap'd area shows frame layout[i] at page i.  Any
    # write through the area changes exactly the frames' bytes it covers, or faults entirely.
    m = Memory(1)
    frames = [m.alloc_page() for _ in range(4)]
    model = [bytearray(PAGE_SIZE) for _ in range(4)]
    v = m.vmap([frames[i] for i in layout])
    size = len(layout) * PAGE_SIZE
    for off, data in writes:
        if off + len(data) > size:
            with pytest.raises(MemoryFault):
                m.write(v + off, data)
            continue
        m.write(v + off, data)
        for k, byte in enumerate(data):
            page, within = divmod(off + k, PAGE_SIZE)
            model[layout[page]][within] = byte
    for i, frame in enumerate(frames):
        assert m.read(PAGE_OFFSET + frame, PAGE_SIZE) == model[i]
    assert m.read(v, size) == b"".join(bytes(model[i]) for i in layout)
    m.close()
