"""The Memory facade: the memory half of kbpf's host protocol, under the protocol's names."""

import errno
import inspect

import pytest

from kbpf.errors import BpfError
from kbpf.host import KernelAuxiliaryOps, PerCpuVariantsOps
from sim.mem import PAGE_OFFSET, PAGE_SIZE, Memory


@pytest.fixture
def mem():
    m = Memory(8, ncpus=2)
    yield m
    m.close()


def test_memory_methods_match_the_host_protocol_signatures(mem):
    names = ["alloc_page", "free_page", "vmap", "unmap", "kmalloc", "kfree", "read", "write"]
    for name in names:
        want = inspect.signature(getattr(KernelAuxiliaryOps, name))
        got = inspect.signature(getattr(mem, name))
        assert list(got.parameters) == list(want.parameters)[1:], name  # minus self
    for name in ("alloc_percpu", "free_percpu"):
        want = inspect.signature(getattr(PerCpuVariantsOps, name))
        assert list(inspect.signature(getattr(mem, name)).parameters) == list(want.parameters)[1:]


def test_alloc_page_gives_a_zeroed_frame_by_physical_address(mem):
    p = mem.alloc_page()
    assert p % PAGE_SIZE == 0 and p != 0
    mem.write(PAGE_OFFSET + p, b"dirty")
    mem.free_page(p)
    q = mem.alloc_page()
    assert q == p and mem.read(PAGE_OFFSET + q, 5) == bytes(5)
    with pytest.raises(RuntimeError, match="not page-aligned"):
        mem.free_page(q + 1)


def test_pages_run_out_with_enomem(mem):
    pages = []
    with pytest.raises(BpfError) as info:
        while True:
            pages.append(mem.alloc_page())
    assert info.value.errno == errno.ENOMEM
    assert len(pages) == mem.buddy.nframes - 1  # all but the reserved frame 0
    for p in pages:
        mem.free_page(p)


def test_stats_describe_the_whole_memory(mem):
    p = mem.alloc_page()
    v = mem.vmap([p, p])
    mem.kmalloc(100)
    mem.alloc_percpu(16)
    s = mem.stats()
    assert s["frames"] == 2048 and s["free_frames"] + s["allocated_frames"] == 2047
    assert s["vmap"] == {"areas": 1, "pages": 2}
    assert s["kmalloc"]["classes"]["kmalloc-128"]["objects"] == 1
    assert s["percpu"]["allocations"] == 1
    mem.unmap(v)
    assert mem.stats()["vmap"] == {"areas": 0, "pages": 0}


def test_identical_histories_give_identical_addresses():
    def history():
        m = Memory(8, ncpus=2)
        out = [m.kmalloc(40), m.alloc_page(), m.kmalloc(9000), *m.alloc_percpu(8)]
        out.append(m.vmap([out[1], out[1]]))
        out.append(m.new_user_space().mmap_anon(3 * PAGE_SIZE))
        m.close()
        return out

    assert history() == history()
