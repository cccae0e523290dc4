"""User address spaces: mmap, permissions per page, munmap, mprotect, copy_*_user."""

import errno

import pytest

from kbpf.errors import BpfError
from sim.mem import (
    MMAP_BASE,
    PAGE_OFFSET,
    PAGE_SIZE,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    USER_START,
    Mapping,
    Memory,
    MemoryFault,
)

RW = PROT_READ | PROT_WRITE


@pytest.fixture
def mem():
    m = Memory(16)
    yield m
    m.close()


@pytest.fixture
def user(mem):
    return mem.new_user_space()


def test_anonymous_memory_is_zeroed_placed_top_down_and_private_to_the_process(mem, user):
    a = user.mmap_anon(10000)  # rounded up to three pages
    assert a == MMAP_BASE - 3 * PAGE_SIZE
    assert user.read(a, 3 * PAGE_SIZE) == bytes(3 * PAGE_SIZE)
    b = user.mmap_anon(PAGE_SIZE)
    assert b == a - PAGE_SIZE
    user.write(a + PAGE_SIZE - 2, b"span")  # crosses a page boundary
    assert user.read(a + PAGE_SIZE - 2, 4) == b"span"
    other = mem.new_user_space()
    assert other.mmap_anon(10000) == a  # same layout, different frames
    assert other.read(a + PAGE_SIZE - 2, 2) == b"\0\0"


def test_translate_gives_the_frame_behind_a_user_address(mem, user):
    a = user.mmap_anon(PAGE_SIZE)
    user.write(a + 12, b"!")
    phys = user.translate(a + 12, write=True)
    assert mem.phys.buf[phys] == ord("!")


def test_a_ring_buffer_style_mapping_has_a_protection_per_page(mem, user):
    # How a user maps a BPF ring buffer: the consumer page writable, the rest read-only.
    consumer, producer, data = (mem.alloc_page() for _ in range(3))
    mem.write(PAGE_OFFSET + producer, b"\x10\0\0\0\0\0\0\0")
    pfns = [p // PAGE_SIZE for p in (consumer, producer, data, data)]
    u = user.mmap_frames(pfns, [RW, PROT_READ, PROT_READ, PROT_READ])

    user.write(u, b"\x08\0\0\0\0\0\0\0")  # the consumer position: allowed
    assert mem.read(PAGE_OFFSET + consumer, 8) == b"\x08\0\0\0\0\0\0\0"
    assert user.read(u + PAGE_SIZE, 8) == b"\x10\0\0\0\0\0\0\0"  # reading the producer works

    with pytest.raises(MemoryFault) as info:
        user.write(u + PAGE_SIZE + 8, b"x")  # writing it does not
    fault = info.value
    assert fault.errno == errno.EFAULT and fault.addr == u + PAGE_SIZE + 8
    assert f"{u + PAGE_SIZE + 8:#x}" in str(fault) and "write to read-only page" in str(fault)

    # The data page is mapped twice: what the kernel writes shows at both places.
    mem.write(PAGE_OFFSET + data, b"record")
    assert user.read(u + 2 * PAGE_SIZE, 6) == user.read(u + 3 * PAGE_SIZE, 6) == b"record"


def test_copy_to_user_into_a_read_only_page_fails_with_efault_and_writes_nothing(mem, user):
    rw = user.mmap_anon(PAGE_SIZE)
    ro = user.mmap_frames([mem.alloc_page() // PAGE_SIZE], PROT_READ)
    assert ro == rw - PAGE_SIZE
    # The destination starts in the read-only page and ends in the writable one.
    with pytest.raises(BpfError) as info:
        user.copy_to_user(rw - 4, b"12345678")
    assert type(info.value) is BpfError  # not a MemoryFault: the caller returns -EFAULT
    assert info.value.errno == errno.EFAULT
    assert f"{rw - 4:#x}" in str(info.value) and "write to read-only page" in str(info.value)
    assert user.read(rw - 4, 8) == bytes(8)  # all or nothing: not even the writable half

    user.copy_to_user(rw, b"12345678")
    assert user.copy_from_user(rw, 8) == b"12345678"


def test_copy_from_unmapped_memory_is_efault(user):
    with pytest.raises(BpfError) as info:
        user.copy_from_user(0x400000, 4)
    assert info.value.errno == errno.EFAULT and "0x400000" in str(info.value)
    assert "unmapped" in str(info.value)


def test_reads_and_writes_of_unmapped_memory_fault_naming_the_address(user):
    a = user.mmap_anon(PAGE_SIZE)
    end = a + PAGE_SIZE
    with pytest.raises(MemoryFault, match=f"read of 8 bytes at {end - 4:#x} faulted at {end:#x}"):
        user.read(end - 4, 8)
    with pytest.raises(MemoryFault, match=f"read of 8 bytes at {a - 4:#x}: unmapped"):
        user.read(a - 4, 8)  # the first byte already faults
    with pytest.raises(MemoryFault, match=f"write of 8 bytes at {a + PAGE_SIZE - 4:#x}.*unmapped"):
        user.write(a + PAGE_SIZE - 4, b"12345678")
    with pytest.raises(MemoryFault, match="0xffff888000001000"):
        user.read(PAGE_OFFSET + PAGE_SIZE, 1)  # kernel addresses are not user memory


def test_munmap_frees_anonymous_frames_but_not_kernel_frames(mem, user):
    free = mem.buddy.free_frames
    a = user.mmap_anon(4 * PAGE_SIZE)
    assert mem.buddy.free_frames == free - 4
    user.munmap(a + PAGE_SIZE, 2 * PAGE_SIZE)  # a hole in the middle
    assert mem.buddy.free_frames == free - 2
    assert [(m.start, m.end) for m in user.mappings()] == [
        (a, a + PAGE_SIZE),
        (a + 3 * PAGE_SIZE, a + 4 * PAGE_SIZE),
    ]
    with pytest.raises(MemoryFault):
        user.read(a + PAGE_SIZE, 1)
    assert user.mmap_anon(2 * PAGE_SIZE) == a + PAGE_SIZE  # the hole is the highest fit

    frame = mem.alloc_page()
    k = user.mmap_frames([frame // PAGE_SIZE], RW)
    user.munmap(k, PAGE_SIZE)
    assert mem.buddy.is_allocated(frame // PAGE_SIZE)  # still the kernel's
    user.destroy()
    assert mem.buddy.free_frames == free - 1 and user.mappings() == []


def test_mprotect_changes_permissions_but_never_makes_a_kernel_read_only_page_writable(mem, user):
    a = user.mmap_anon(2 * PAGE_SIZE)
    user.mprotect(a, PAGE_SIZE, PROT_READ)
    with pytest.raises(MemoryFault, match="write to read-only page"):
        user.write(a, b"x")
    user.mprotect(a, PAGE_SIZE, PROT_NONE)
    with pytest.raises(MemoryFault, match="PROT_NONE"):
        user.read(a, 1)
    user.mprotect(a, PAGE_SIZE, RW)
    user.write(a, b"x")

    k = user.mmap_frames([mem.alloc_page() // PAGE_SIZE], PROT_READ)
    with pytest.raises(BpfError) as info:
        user.mprotect(k, PAGE_SIZE, RW)
    assert info.value.errno == errno.EACCES
    with pytest.raises(BpfError) as info:
        user.mprotect(a, 3 * PAGE_SIZE, PROT_READ)  # the third page is not mapped
    assert info.value.errno == errno.ENOMEM
    user.write(a + PAGE_SIZE, b"y")  # all or nothing: the failed mprotect changed nothing


def test_mappings_list_runs_of_one_protection(mem, user):
    frames = [mem.alloc_page() // PAGE_SIZE for _ in range(3)]
    k = user.mmap_frames(frames, [RW, PROT_READ, PROT_READ])
    assert user.mappings() == [
        Mapping(k, k + PAGE_SIZE, RW, False),
        Mapping(k + PAGE_SIZE, k + 3 * PAGE_SIZE, PROT_READ, False),
    ]
    assert (
        str(user.mappings()[1])
        == f"{k + PAGE_SIZE:012x}-{k + 3 * PAGE_SIZE:012x} r--p [kernel frames]"
    )


def test_strncpy_from_user_stops_at_the_nul_or_the_limit(user):
    a = user.mmap_anon(2 * PAGE_SIZE)
    user.write(a + PAGE_SIZE - 3, b"comm\0junk")  # crosses a page
    assert user.strncpy_from_user(a + PAGE_SIZE - 3, 16) == b"comm"
    assert user.strncpy_from_user(a + PAGE_SIZE - 3, 2) == b"co"
    user.write(a + 2 * PAGE_SIZE - 2, b"ab")
    with pytest.raises(BpfError) as info:
        user.strncpy_from_user(a + 2 * PAGE_SIZE - 2, 16)  # no NUL before the unmapped page
    assert info.value.errno == errno.EFAULT


def test_bad_arguments_are_einval_and_exhaustion_is_enomem(mem, user):
    for call in (
        lambda: user.mmap_anon(0),
        lambda: user.mmap_anon(PAGE_SIZE, prot=8),
        lambda: user.munmap(USER_START + 1, PAGE_SIZE),
        lambda: user.mmap_frames([1, 2], [PROT_READ]),
    ):
        with pytest.raises(BpfError) as info:
            call()
        assert info.value.errno == errno.EINVAL
    free = mem.buddy.free_frames
    with pytest.raises(BpfError) as info:
        user.mmap_anon((free + 1) * PAGE_SIZE)
    assert info.value.errno == errno.ENOMEM
    assert mem.buddy.free_frames == free and user.mappings() == []  # nothing leaked
