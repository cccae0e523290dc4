"""LRU hash maps filled from a clang-compiled program (tests/progs/lru.bpf.c).

Linux v6.6 preallocates every element of an LRU hash and never fails an update for lack of
room: when no free node is left, the LRU list is shrunk, evicting elements that were not
referenced (looked up) since they last rotated, in batches, from the inactive end.  With the
common LRU, all CPUs share one list; ``BPF_F_NO_COMMON_LRU`` gives each CPU its own list and its
own share of the nodes (``max_entries`` rounded up to a multiple of the CPU count), so a CPU
evicts from its own elements even while other CPUs' shares are unused.
"""

from __future__ import annotations

import struct

from kbpf.linux_bpf import BPF_F_NO_COMMON_LRU, BpfMapType
from sim import Machine

from .conftest import obj_path

LRU, OWN_LISTS, PERCPU = 0, 1, 2


def insert(m: Machine, obj, which: int, key: int, cpu: int = 0) -> int:
    return m.run_program(obj.programs["insert"], cpu=cpu, ctx=struct.pack("<II", which, key))


def keys(handle) -> list[int]:
    return sorted(struct.unpack("<I", k)[0] for k in handle.keys())


def test_declared_types_and_flags():
    m = Machine(cpus=3)
    obj = m.load_object(obj_path("lru"))
    lru, own, pcpu = obj.maps["lru"], obj.maps["lru_own_lists"], obj.maps["lru_percpu"]
    assert (lru.map_type, lru.map_flags, lru.max_entries) == (
        BpfMapType.BPF_MAP_TYPE_LRU_HASH,
        0,
        8,
    )
    assert own.map_type == BpfMapType.BPF_MAP_TYPE_LRU_HASH
    assert pcpu.map_type == BpfMapType.BPF_MAP_TYPE_LRU_PERCPU_HASH
    # BPF_F_NO_COMMON_LRU: 8 entries become 9 on 3 CPUs, three nodes per CPU's list.
    assert own.map_flags == pcpu.map_flags == BPF_F_NO_COMMON_LRU
    assert own.max_entries == pcpu.max_entries == 9


def test_an_update_beyond_max_entries_succeeds_by_evicting_unreferenced_elements():
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("lru"))
    assert [insert(m, obj, LRU, k) for k in range(8)] == [0] * 8
    assert keys(obj.maps["lru"]) == list(range(8))
    assert insert(m, obj, LRU, 8) == 0  # no -E2BIG, unlike a HASH
    remaining = keys(obj.maps["lru"])
    # The shrink takes a batch of unreferenced elements (here every one of them), oldest first,
    # and the new element is in.
    assert remaining == [8]
    assert obj.maps["lru"].lookup(struct.pack("<I", 8)) == struct.pack("<Q", 81)


def test_an_element_looked_up_by_a_program_survives_the_shrink():
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("lru"))
    for k in range(8):
        insert(m, obj, LRU, k)
    # bpf_map_lookup_elem from a program sets the element's reference bit; the shrink moves a
    # referenced element to the active list instead of evicting it.
    assert m.run_program(obj.programs["touch"], ctx=struct.pack("<II", LRU, 0)) == 1
    insert(m, obj, LRU, 8)
    assert keys(obj.maps["lru"]) == [0, 8]


def test_no_common_lru_evicts_from_the_inserting_cpus_share_only():
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("lru"))
    for which, name in ((OWN_LISTS, "lru_own_lists"), (PERCPU, "lru_percpu")):
        # 8 entries on 2 CPUs: CPU 0 owns 4 nodes; its 5th insert evicts although the map holds
        # only 4 elements and CPU 1's 4 nodes are free.
        assert [insert(m, obj, which, k, cpu=0) for k in range(6)] == [0] * 6
        assert keys(obj.maps[name]) == [4, 5]
        # CPU 1 still has its whole share.
        assert [insert(m, obj, which, k, cpu=1) for k in range(10, 14)] == [0] * 4
        assert keys(obj.maps[name]) == [4, 5, 10, 11, 12, 13]


def test_lru_percpu_hash_update_from_a_program_writes_only_this_cpus_copy():
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("lru"))
    insert(m, obj, PERCPU, 5, cpu=1)
    values = obj.maps["lru_percpu"].lookup_percpu(struct.pack("<I", 5))
    # A new element starts zeroed on every CPU but the one that wrote it.
    assert [struct.unpack("<Q", v)[0] for v in values] == [0, 51]
