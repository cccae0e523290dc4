"""The caches and the coherence directory: what an access costs depends on where its line is.

Every expected figure below is read from the preset the model was built from, never written
here: a private line hits in the L1, a line another core wrote costs a transfer priced by how
far that core is, a write invalidates every other copy, transfers of one line happen one at a
time, and a working set that outgrows a level is served by the next one.
"""

import pytest

from sim.cpu.preset import Preset
from sim.mem import Memory
from sim.mem.cache import LINE_SIZE, CacheModel


def build(preset="default", cpus=4, **overrides):
    p = Preset.resolve({"preset": preset, **overrides})
    mem = Memory(memory_mib=16, ncpus=cpus)
    return CacheModel(p, p.topology, cpus, mem.kernel), mem, p


def lines(mem, n):
    """Kernel addresses of ``n`` distinct, consecutive 64-byte lines."""
    base = mem.kmalloc(n * LINE_SIZE, 4096) if n * LINE_SIZE <= 8192 else None
    if base is None:
        pages = -(-n * LINE_SIZE // 4096)
        base = mem.kernel.phys_to_virt(mem.buddy.alloc((pages - 1).bit_length()) << 12)
    return [base + i * LINE_SIZE for i in range(n)]


def test_a_private_line_misses_once_then_hits_in_the_l1():
    cache, mem, p = build()
    (a,) = lines(mem, 1)
    assert cache.access(0, a, 8, False, 0) == p.get_ps("mem", "dram_ns")
    l1 = p.get_ps("mem", "l1_hit_cycles")
    assert cache.access(0, a, 8, False, 1000) == l1
    # A read miss got the line exclusively (E): the same CPU's write is silent.
    assert cache.access(0, a, 8, True, 2000) == l1
    s = cache.cpu_stats(0)
    assert (s["accesses"], s["l1_hits"], s["dram"], s["upgrades"]) == (3, 2, 1, 0)
    assert cache.line_stats(a)["transfers"] == 0


@pytest.mark.parametrize(
    ("preset", "cpus", "other", "pair_class"),
    [
        ("xeon_e5_2680v4", 56, 1, "same_l3"),
        ("xeon_e5_2680v4", 56, 14, "other_socket"),
        ("ryzen9_3950x", 32, 3, "same_l3"),
        ("ryzen9_3950x", 32, 4, "other_l3"),
    ],
)
def test_a_line_written_by_one_core_costs_another_a_transfer_priced_by_pair_class(
    preset, cpus, other, pair_class
):
    cache, mem, p = build(preset, cpus)
    (a,) = lines(mem, 1)
    t = cache.access(0, a, 8, True, 0)  # CPU 0 owns it, modified
    lat = cache.access(other, a, 8, False, t)
    assert lat == p.get_ps("coherence", f"{pair_class}_transfer_ns")
    assert cache.line_stats(a)["transfers"] == 1
    assert cache.line_stats(a)["sharers"] == sorted([0, cache.topology.core_of[other]])
    # Both now hold it shared: reading again is a hit for each.
    l1 = p.get_ps("mem", "l1_hit_cycles")
    assert cache.access(0, a, 8, False, t + lat) == l1
    assert cache.access(other, a, 8, False, t + lat) == l1


def test_smt_siblings_share_their_core_cache_but_hand_a_modified_line_over():
    cache, mem, p = build("xeon_e5_2680v4", 56)
    (a,) = lines(mem, 1)
    t = cache.access(0, a, 8, True, 0)
    l1 = p.get_ps("mem", "l1_hit_cycles")
    assert cache.access(28, a, 8, False, t) == l1 + p.get_ps("coherence", "smt_transfer_ns")
    assert cache.holders(a)["cores"] == {0: {"l1": True, "exclusive_cpu": None}}
    assert cache.access(28, a, 8, False, t + 10_000) == l1


def test_a_write_invalidates_every_other_copy():
    cache, mem, p = build(cpus=5)
    (a,) = lines(mem, 1)
    t = cache.access(0, a, 8, True, 0)
    for cpu in (1, 2, 3):
        t += cache.access(cpu, a, 8, False, t)
    assert cache.line_stats(a)["sharers"] == [0, 1, 2, 3]
    # CPU 0 holds it shared: its write pays the invalidation round trip to the farthest sharer.
    inval = p.get_ps("coherence", "same_l3_invalidate_ns")
    assert cache.access(0, a, 8, True, t) == p.get_ps("mem", "l1_hit_cycles") + inval
    t += inval + 10_000
    assert cache.invalidations == 3 and cache.line_stats(a)["invalidations"] == 3
    assert cache.line_stats(a)["sharers"] == [0] and cache.line_stats(a)["owner"] == 0
    assert cache.cpu_stats(0)["upgrades"] == 1
    # The readers lost their copies: reading again is a transfer.
    xfer = p.get_ps("coherence", "same_l3_transfer_ns")
    assert cache.access(1, a, 8, False, t) == xfer
    # A CPU without a copy writing a shared line: the data and the invalidations overlap.
    t += xfer
    assert cache.access(4, a, 8, True, t) == max(xfer, inval)
    assert cache.line_stats(a)["sharers"] == [4]


def test_transfers_of_one_line_happen_one_at_a_time():
    cache, mem, p = build()
    (a,) = lines(mem, 1)
    dram = p.get_ps("mem", "dram_ns")
    xfer = p.get_ps("coherence", "same_l3_transfer_ns")
    assert cache.access(0, a, 8, True, 0) == dram  # the line is busy until dram
    # Two writers arrive while the memory fetch is still in flight: each waits for the one
    # before it, then pays its own transfer.
    assert cache.access(1, a, 8, True, 10) == dram + xfer - 10
    assert cache.access(2, a, 8, True, 10) == dram + 2 * xfer - 10
    stats = cache.line_stats(a)
    assert stats["waits"] == 2 and stats["wait_ps"] == (dram - 10) + (dram + xfer - 10)
    assert stats["busy_until_ps"] == dram + 2 * xfer
    # A private hit does not queue behind the directory.
    assert cache.access(2, a, 8, False, 20) == p.get_ps("mem", "l1_hit_cycles")


def test_vmap_aliases_of_one_frame_are_one_line():
    cache, mem, p = build()
    frame = mem.alloc_page()
    va = mem.vmap([frame, frame])
    t = cache.access(0, va + 128, 8, True, 0)
    assert cache.access(1, va + 4096 + 128, 8, False, t) == p.get_ps(
        "coherence", "same_l3_transfer_ns"
    )
    first, second, phys = (cache.line_stats(x) for x in (va + 128, va + 4096 + 128, frame + 128))
    assert first == second == phys and first["transfers"] == 1
    direct = mem.kernel.phys_to_virt(frame + 128)
    assert cache.access(1, direct, 8, False, t + 10_000) == p.get_ps("mem", "l1_hit_cycles")


def test_an_access_spanning_two_lines_costs_both():
    cache, mem, p = build()
    a, _b = lines(mem, 2)
    assert cache.access(0, a + 60, 8, False, 0) == 2 * p.get_ps("mem", "dram_ns")
    assert cache.access(0, a + 60, 8, False, 10**6) == 2 * p.get_ps("mem", "l1_hit_cycles")
    assert cache.cpu_stats(0)["accesses"] == 4
    assert cache.touch(0, a, 128, True, 2 * 10**6) == 2 * p.get_ps("mem", "l1_hit_cycles")


SMALL = {"mem.l1d_kib": 1, "mem.l2_kib": 4, "mem.llc_kib": 16}  # 16, 64 and 256 lines


@pytest.mark.parametrize("preset", ["default", "xeon_e5_2680v4"])
@pytest.mark.parametrize(
    ("working_set", "level"),
    [(8, "l1_hit_cycles"), (32, "l2_hit_cycles"), (128, "llc_hit_cycles"), (512, "dram_ns")],
)
def test_a_working_set_is_served_by_the_first_level_that_holds_it(preset, working_set, level):
    cache, mem, p = build(preset, **SMALL)
    assert (cache.l1_lines, cache.l2_lines, cache.llc_lines) == (16, 64, 256)
    addrs = lines(mem, working_set)
    t = 0
    for a in addrs:  # first pass: fill
        t += cache.access(0, a, 8, False, t)
    start = t
    for a in addrs:  # second pass: what each level holds
        t += cache.access(0, a, 8, False, t)
    assert (t - start) / working_set == p.get_ps("mem", level)


def test_an_inclusive_llc_takes_back_from_the_cores_what_it_evicts():
    cache, mem, p = build("xeon_e5_2680v4", 4, **SMALL)
    mine = lines(mem, 64)
    t = 0
    for a in mine:  # CPU 1 fills its L2 with 64 lines
        t += cache.access(1, a, 8, False, t)
    for a in lines(mem, 1024):  # CPU 0 streams four LLCs' worth through the shared LLC
        t += cache.access(0, a, 8, False, t)
    assert cache.back_invalidations > 0
    lost = [a for a in mine if 1 not in cache.holders(a)["cores"]]
    assert lost
    assert cache.access(1, lost[0], 8, False, t) == p.get_ps("mem", "dram_ns")


def test_a_victim_llc_leaves_the_cores_alone():
    cache, mem, p = build("default", 4, **SMALL)
    mine = lines(mem, 64)
    t = 0
    for a in mine:
        t += cache.access(1, a, 8, False, t)
    for a in lines(mem, 1024):
        t += cache.access(0, a, 8, False, t)
    assert cache.back_invalidations == 0
    start = t
    for a in mine:
        t += cache.access(1, a, 8, False, t)
    assert (t - start) / len(mine) == p.get_ps("mem", "l2_hit_cycles")


def test_per_cpu_counters_partition_the_accesses():
    cache, mem, p = build(**SMALL)
    addrs = lines(mem, 100)
    t = 0
    for i in range(1000):
        cpu = i % 3
        t += cache.access(cpu, addrs[(i * 7) % 100], 8, i % 5 == 0, t)
    total = cache.stats()["total"]
    assert total["accesses"] == 1000
    assert total["accesses"] == (
        total["l1_hits"] + total["l2_hits"] + total["llc_hits"] + total["remote"] + total["dram"]
    )
    assert total["transfers"] >= total["remote"] > 0 and total["invalidations"] > 0
    assert cache.hottest_lines(1)[0]["transfers"] == max(
        cache.line_stats(a)["transfers"] for a in addrs
    )


def test_the_l1_must_fit_in_the_l2():
    with pytest.raises(ValueError, match="l1d_kib must not exceed"):
        build(**{"mem.l1d_kib": 64, "mem.l2_kib": 32})
