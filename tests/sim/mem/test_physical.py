"""Physical memory: one lazily allocated mmap, addressed by physical byte."""

import errno
import os
import pickle
import time

import pytest

from kbpf.errors import BpfError
from sim.mem import PAGE_SIZE, Memory, MemoryFault, PhysicalMemory


def test_the_engine_slices_buf_directly_and_read_write_see_the_same_bytes():
    pm = PhysicalMemory(16 * PAGE_SIZE)
    assert pm.nframes == 16
    pm.write(0x1234, b"\xde\xad\xbe\xef")
    assert pm.buf[0x1234:0x1238] == b"\xde\xad\xbe\xef"
    pm.buf[0x2000] = 0x7F
    assert pm.read(0x2000, 1) == b"\x7f"


def test_fresh_memory_reads_as_zero():
    pm = PhysicalMemory(16 * PAGE_SIZE)
    assert pm.read(0, 16 * PAGE_SIZE) == bytes(16 * PAGE_SIZE)


def test_zero_clears_small_and_large_ranges_exactly():
    # Large ranges go back to the OS (madvise), small ones are overwritten: either way exactly
    # [start, end) becomes zero and the bytes around it survive.
    pm = PhysicalMemory(256 * PAGE_SIZE)
    pm.write(0, b"\xff" * pm.size)
    pm.zero(100, 50)
    pm.zero(PAGE_SIZE + 7, 200 * PAGE_SIZE)
    data = pm.read(0, pm.size)
    assert data[:100] == b"\xff" * 100 and data[100:150] == bytes(50)
    assert data[150 : PAGE_SIZE + 7] == b"\xff" * (PAGE_SIZE + 7 - 150)
    assert data[PAGE_SIZE + 7 : 201 * PAGE_SIZE + 7] == bytes(200 * PAGE_SIZE)
    assert data[201 * PAGE_SIZE + 7 :] == b"\xff" * (55 * PAGE_SIZE - 7)


def test_access_beyond_the_end_faults_naming_the_address():
    pm = PhysicalMemory(4 * PAGE_SIZE)
    with pytest.raises(MemoryFault) as info:
        pm.read(4 * PAGE_SIZE - 4, 8)
    assert info.value.errno == errno.EFAULT
    assert info.value.addr == 4 * PAGE_SIZE
    assert "0x4000" in str(info.value) and "0x3ffc" in str(info.value)
    with pytest.raises(MemoryFault):
        pm.write(-1, b"x")


def test_size_must_be_whole_frames():
    with pytest.raises(ValueError, match="multiple of 4096"):
        PhysicalMemory(5000)


def test_memory_fault_is_a_bpf_error_and_survives_pickling():
    # Sweeps run machines in worker processes and send faults back.
    fault = MemoryFault(
        0xFFFFC90000003000, "write", "unmapped kernel address", 0xFFFFC90000002FFC, 8
    )
    assert isinstance(fault, BpfError)
    copy = pickle.loads(pickle.dumps(fault))
    assert (copy.addr, copy.access, copy.reason, copy.errno) == (
        fault.addr,
        "write",
        "unmapped kernel address",
        errno.EFAULT,
    )
    assert str(copy) == str(fault)
    assert "write of 8 bytes at 0xffffc90000002ffc faulted at 0xffffc90000003000" in str(fault)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_a_machine_costs_little_until_it_is_used():
    # 100 machines of 256 MiB would be 25 GiB if memory were allocated up front.
    before = _rss()
    start = time.perf_counter()
    machines = [Memory(256, ncpus=4) for _ in range(100)]
    elapsed = time.perf_counter() - start
    grown = _rss() - before
    assert elapsed < 2.0
    assert grown < 32 << 20, f"RSS grew by {grown >> 20} MiB"
    # Using one costs what it touches: a 4 MiB kmalloc touched in full.
    m = machines[0]
    addr = m.kmalloc(4 << 20)
    m.write(addr, b"\x01" * (4 << 20))
    assert _rss() - before > grown + (3 << 20)
    for mem in machines:
        mem.close()
