"""kbpf's host contract, run on both hosts: the small test host and the simulated machine.

Whatever kbpf asks of a host (docs/host-protocol.md) must hold the same way on ``SimHost`` as on
``tests/kbpf/testhost.py``: memory by address, pages mapped twice, per-CPU allocation, user
copies, the current task, randomness, and kbpf's maps and helpers driven synchronously on top.
"""

from __future__ import annotations

import errno

import pytest

from kbpf.errors import BpfError
from kbpf.helper import init_helper_functions
from kbpf.host import KernelAuxiliaryOps, PerCpuVariantsOps, PollWaker, TaskInfo, drive
from kbpf.linux_bpf import BPF_ANY, BpfMapCreateAttr, BpfMapType
from kbpf.map import BpfMapMeta, bpf_map_create
from sim import Machine
from tests.kbpf.testhost import TestHost

U64 = (1 << 64) - 1


class Harness:
    """One host and the few things a test needs that the protocol leaves to the host."""

    def __init__(self, kind: str):
        self.kind = kind
        if kind == "test":
            self.host = TestHost(ncpus=4, seed=0)
        else:
            self.m = Machine(cpus=4, seed=0)
            self.host = self.m.host
            self.host.process = self.m.kernel.facade

    def set_cpu(self, cpu: int) -> None:
        self.host.cpu = cpu

    def user_buffer(self, data: bytes) -> int:
        if self.kind == "test":
            return self.host.map_user(data)
        calls = self.m.kernel.facade_calls
        return calls.put(data)

    def create_map(self, map_type, key_size=4, value_size=8, max_entries=4, flags=0, waker=None):
        attr = BpfMapCreateAttr(
            map_type=int(BpfMapType.parse(map_type)),
            key_size=key_size,
            value_size=value_size,
            max_entries=max_entries,
            map_flags=flags,
        )
        umap = bpf_map_create(BpfMapMeta.from_attr(attr.pack()), self.host, self.host, waker)
        if self.kind == "test":
            self.host.install_map(umap)
        else:
            self.m.kernel.maps_by_addr[umap.addr] = umap
        return umap


@pytest.fixture(params=["test", "sim"])
def h(request):
    return Harness(request.param)


class Waker:
    def __init__(self):
        self.calls = 0

    def wake_up(self):
        self.calls += 1


def test_both_hosts_implement_both_protocols(h):
    assert isinstance(h.host, KernelAuxiliaryOps) and isinstance(h.host, PerCpuVariantsOps)
    assert isinstance(Waker(), PollWaker)
    assert h.host.num_cpus() == 4


def test_kmalloc_gives_zeroed_kernel_memory_read_and_written_by_address(h):
    a = h.host.kmalloc(100, 8)
    assert h.host.read(a, 100) == bytes(100)
    h.host.write(a + 3, b"abc")
    assert h.host.read(a, 8) == b"\0\0\0abc\0\0"
    h.host.kfree(a)


def test_a_frame_mapped_twice_reads_back_through_either_address(h):
    frames = [h.host.alloc_page(), h.host.alloc_page()]
    va = h.host.vmap([frames[0], frames[1], frames[0]])
    h.host.write(va + 10, b"hello")
    assert h.host.read(va + 2 * 4096 + 10, 5) == b"hello"
    h.host.write(va + 4096 - 2, b"wxyz")  # crosses into the second frame
    assert h.host.read(va + 4096 - 2, 4) == b"wxyz"
    h.host.unmap(va)
    with pytest.raises(BpfError) as exc:
        h.host.read(va, 1)
    assert exc.value.errno == errno.EFAULT


def test_per_cpu_allocation_gives_one_zeroed_address_per_cpu(h):
    addrs = h.host.alloc_percpu(24, 8)
    assert len(addrs) == 4 and len(set(addrs)) == 4
    for i, a in enumerate(addrs):
        assert h.host.read(a, 24) == bytes(24)
        h.host.write(a, bytes([i]) * 24)
    assert [h.host.read(a, 1)[0] for a in addrs] == [0, 1, 2, 3]
    objs = h.host.create(lambda cpu: {"cpu": cpu})
    h.set_cpu(2)
    assert objs.get() == {"cpu": 2} and objs.force_get(3) == {"cpu": 3}


def test_user_copies_and_their_faults(h):
    """Copies go to the memory of the process making the system call (on CPU 0)."""
    h.set_cpu(0)
    if h.kind == "test":
        h.host.tasks[0] = TaskInfo(1000, 1000, "tester")
    u = h.user_buffer(b"0123456789")
    assert h.host.copy_from_user(u + 2, 3) == b"234"
    h.host.copy_to_user(u, b"ab")
    assert h.host.copy_from_user(u, 4) == b"ab23"
    with pytest.raises(BpfError) as exc:
        h.host.copy_from_user(0x10, 4)  # nothing is mapped at the bottom of user space
    assert exc.value.errno == errno.EFAULT


def test_the_idle_task_and_the_seeded_random_stream(h):
    h.set_cpu(3)
    task = h.host.current_task()
    assert (task.pid, task.tgid, task.comm) == (0, 0, "swapper/3")
    draws = [h.host.random_u32() for _ in range(5)]
    assert all(0 <= d < 1 << 32 for d in draws) and len(set(draws)) == 5
    again = Harness(h.kind)
    assert [again.host.random_u32() for _ in range(5)] == draws  # same seed, same stream


@pytest.mark.parametrize(
    "map_type", ["array", "hash", "lru_hash", "percpu_array", "percpu_hash", "lru_percpu_hash"]
)
def test_every_keyed_family_updates_and_looks_up_through_the_host(h, map_type):
    umap = h.create_map(map_type, max_entries=8)
    for k in range(4):
        h.set_cpu(k % 4)
        drive(
            umap.ops.update_elem(k.to_bytes(4, "little"), (100 + k).to_bytes(8, "little"), BPF_ANY),
            h.host,
        )
    for k in range(4):
        h.set_cpu(k % 4)
        addr = drive(umap.ops.lookup_elem(k.to_bytes(4, "little")), h.host)
        assert addr and h.host.read(addr, 8) == (100 + k).to_bytes(8, "little")


def test_cpu_2s_per_cpu_value_is_at_the_address_the_host_gave_cpu_2(h):
    umap = h.create_map("percpu_array", max_entries=2)
    h.set_cpu(2)
    addr = drive(umap.ops.lookup_elem((1).to_bytes(4, "little")), h.host)
    h.host.write(addr, (77).to_bytes(8, "little"))
    values = drive(umap.ops.sys_lookup_elem((1).to_bytes(4, "little"), 0), h.host)
    assert [int.from_bytes(values[8 * c : 8 * c + 8], "little") for c in range(4)] == [0, 0, 77, 0]


def test_the_helper_table_and_a_ring_buffer_on_the_host(h):
    waker = Waker()
    rb = h.create_map("ringbuf", key_size=0, value_size=0, max_entries=4096, waker=waker)
    helpers = init_helper_functions(h.host)
    sample = helpers[131](rb.addr, 16, 0, 0, 0)  # bpf_ringbuf_reserve
    assert sample
    h.host.write(sample, b"x" * 16)
    assert helpers[132](sample, 0, 0, 0, 0) == 0  # submit: the consumer had caught up, so wake
    assert waker.calls == 1
    arr = h.create_map("array", max_entries=2)
    key = h.host.kmalloc(4, 8)
    h.host.write(key, (5).to_bytes(4, "little"))
    assert helpers[1](arr.addr, key, 0, 0, 0) == 0  # past the end: NULL
    assert helpers[2](arr.addr, key, key, BPF_ANY, 0) == (-errno.E2BIG) & U64
