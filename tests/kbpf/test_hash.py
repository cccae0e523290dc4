"""BPF_MAP_TYPE_HASH and BPF_MAP_TYPE_PERCPU_HASH, as kernel/bpf/hashtab.c (v6.6) defines them:
creation checks, the table's layout in memory, update/lookup/delete semantics and errnos, the
preallocated pool and its per-CPU extra elements, BPF_F_NO_PREALLOC, per-CPU values, iteration
order, and the locks and memory traffic an update reports."""

import errno
import struct

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.host import SYNC_OWNER, Acquire, Release, TaskInfo, Touch, Work, drive
from kbpf.host import recorded as recording
from kbpf.linux_bpf import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_MMAPABLE,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY_PROG,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    BpfMapElemAttr,
    BpfMapType,
)
from kbpf.map import (
    BpfMapMeta,
    bpf_map_delete_elem,
    bpf_map_get_next_key,
    bpf_map_lookup_and_delete_elem,
    bpf_map_lookup_elem,
    bpf_map_update_elem,
)
from kbpf.map.hash import (
    BUCKET_LOCK_OFFSET,
    BUCKET_SIZE,
    FNODE_OFFSET,
    HASH_OFFSET,
    HTAB_STRUCT_SIZE,
    KEY_OFFSET,
    LLIST_NODE_SZ,
    WALK_TOUCH,
    HashMap,
)
from kbpf.map.jhash import htab_map_hash
from tests.kbpf.test_jhash import ZERO_SEED_U32
from tests.kbpf.testhost import TestHost, create_map, u32, u64

HASH, PERCPU = "hash", "percpu_hash"
ZERO = BPF_F_ZERO_SEED


def fails(code, op, host):
    with pytest.raises(BpfError) as e:
        drive(op, host)
    assert e.value.errno == code, str(e.value)
    return e.value


def bucket_of(k, n_buckets):
    """Where a u32 key lands in a BPF_F_ZERO_SEED map (the hashes test_jhash pins)."""
    return ZERO_SEED_U32[k] & (n_buckets - 1)


def keys_in_order(m, host):
    out, key = [], None
    while True:
        try:
            key = drive(m.get_next_key(key), host)
        except BpfError as e:
            assert e.errno == errno.ENOENT
            return out
        out.append(key)


@pytest.fixture
def host():
    return TestHost(ncpus=4, seed=1)


class UserSpace:
    """A process on CPU 0 calling bpf(2) on one map: keys and values in its memory."""

    def __init__(self, host, fd, key_size=4):
        self.host, self.fd, self.key_size = host, fd, key_size
        host.tasks[0] = TaskInfo(1000, 1000, "tester")

    def _call(self, fn, key=None, value=b"", flags=0, out=0):
        h = self.host
        kp = h.map_user(key) if key is not None else 0
        vp = h.map_user(value or bytes(max(out, 8)))
        saved, h.cpu = h.cpu, 0
        try:
            drive(fn(h, BpfMapElemAttr(self.fd, kp, vp, flags)), h)
            return h.copy_from_user(vp, out) if out else None
        finally:
            h.cpu = saved

    def update(self, key, value, flags=BPF_ANY):
        self._call(bpf_map_update_elem, key, value, flags)

    def lookup(self, key, size):
        return self._call(bpf_map_lookup_elem, key, out=size)

    def delete(self, key):
        self._call(bpf_map_delete_elem, key)

    def next_key(self, key):
        return self._call(bpf_map_get_next_key, key, out=self.key_size)

    def lookup_and_delete(self, key, size):
        return self._call(bpf_map_lookup_and_delete_elem, key, out=size)


def sys_fails(code, fn, *args):
    with pytest.raises(BpfError) as e:
        fn(*args)
    assert e.value.errno == code, str(e.value)


# ---------------------------------------------------------------------------------------------
# Creation: htab_map_alloc_check and htab_map_alloc
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, kw, code, why",
    [
        (HASH, dict(max_entries=0), errno.EINVAL, "a hash map needs room for an element"),
        (HASH, dict(key_size=0), errno.EINVAL, "keys have a size"),
        (HASH, dict(value_size=0), errno.EINVAL, "values have a size (no sets in v6.6)"),
        (HASH, dict(map_flags=BPF_F_NO_COMMON_LRU), errno.EINVAL, "per-CPU LRU lists: LRU only"),
        (HASH, dict(map_flags=BPF_F_MMAPABLE), errno.EINVAL, "not in HTAB_CREATE_FLAG_MASK"),
        (HASH, dict(map_flags=BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG), errno.EINVAL, "access"),
        (PERCPU, dict(map_flags=BPF_F_NUMA_NODE), errno.EINVAL, "per-CPU has no NUMA node"),
        (HASH, dict(key_size=4, value_size=(1 << 22) - 52), errno.E2BIG, "key + value too big"),
        (PERCPU, dict(value_size=32 * 1024 + 1), errno.E2BIG, "above PCPU_MIN_UNIT_SIZE"),
        (HASH, dict(max_entries=(1 << 31) + 1), errno.E2BIG, "max_entries above 2^31"),
        (HASH, dict(max_entries=(1 << 28) + 1), errno.E2BIG, "2^29 buckets overflow u32 bytes"),
    ],
)
def test_alloc_check_errors(host, kind, kw, code, why):
    with pytest.raises(BpfError) as e:
        create_map(host, kind, **kw)
    assert e.value.errno == code, why


def test_lru_rules_of_the_shared_alloc_check():
    """htab_map_alloc_check serves the LRU types too: they must be preallocated (ENOTSUPP),
    and a per-CPU LRU list cannot be placed on a NUMA node."""
    meta = BpfMapMeta(BpfMapType.BPF_MAP_TYPE_LRU_HASH, 4, 8, 8, BPF_F_NO_PREALLOC)
    with pytest.raises(BpfError) as e:
        HashMap.alloc_check(meta, None)
    assert e.value.errno == ENOTSUPP
    meta = BpfMapMeta(BpfMapType.BPF_MAP_TYPE_LRU_HASH, 4, 8, 8, BPF_F_NO_COMMON_LRU)
    HashMap.alloc_check(meta, None)
    meta.map_flags |= BPF_F_NUMA_NODE
    with pytest.raises(BpfError) as e:
        HashMap.alloc_check(meta, None)
    assert e.value.errno == errno.EINVAL


def test_key_plus_value_just_below_the_kmalloc_limit_passes_the_check():
    meta = BpfMapMeta(BpfMapType.BPF_MAP_TYPE_HASH, 4, (1 << 22) - 53, 1)
    HashMap.alloc_check(meta, None)


def test_buckets_are_a_power_of_two_and_elements_are_laid_out_like_struct_htab_elem(host):
    m, _ = create_map(host, HASH, key_size=5, value_size=12, max_entries=5, map_flags=ZERO)
    ops = m.ops
    assert ops.n_buckets == 8
    assert ops.elem_size == 48 + 8 + 16  # header, round_up(5, 8), round_up(12, 8)
    drive(m.update_elem(b"abcde", b"v" * 12, BPF_ANY), host)
    value = drive(m.lookup_elem(b"abcde"), host)
    elem = value - (KEY_OFFSET + 8)
    assert host.read(elem + KEY_OFFSET, 5) == b"abcde"
    assert host.read(elem + HASH_OFFSET, 4) == struct.pack("<I", htab_map_hash(b"abcde", 0))
    # the bucket head in simulated memory points at the element
    bucket = ops.bucket_addr(htab_map_hash(b"abcde", 0) & 7)
    assert host.read(bucket, 8) == struct.pack("<Q", elem)


def test_empty_buckets_hold_their_nulls_marker_and_a_zero_lock_word(host):
    m, _ = create_map(host, HASH, max_entries=4)
    ops = m.ops
    for i in range(4):
        head, lock = struct.unpack("<QQ", host.read(ops.bucket_addr(i), BUCKET_SIZE))
        assert head == (i << 1) | 1 and lock == 0
        assert ops.bucket_lock(i).addr == ops.bucket_addr(i) + BUCKET_LOCK_OFFSET


def test_hashrnd_comes_from_the_hosts_random_source_unless_zero_seed():
    m, _ = create_map(TestHost(seed=5), HASH)
    assert m.ops.hashrnd == TestHost(seed=5).random_u32()
    z, _ = create_map(TestHost(seed=5), HASH, map_flags=ZERO)
    assert z.ops.hashrnd == 0


def test_mem_usage_follows_htab_map_mem_usage(host):
    m, _ = create_map(host, HASH, key_size=4, value_size=8, max_entries=10)
    # struct + 16 buckets + map_locked ints + (10 + 4 extra) elements + extra_elems pointers
    assert m.map_mem_usage() == HTAB_STRUCT_SIZE + 16 * 16 + 4 * 4 * 8 + 14 * 64 + 8 * 4
    p, _ = create_map(host, PERCPU, key_size=4, value_size=12, max_entries=10)
    assert p.map_mem_usage() == HTAB_STRUCT_SIZE + 16 * 16 + 4 * 4 * 8 + 10 * 64 + 16 * 4 * 10
    n, _ = create_map(host, HASH, value_size=8, max_entries=10, map_flags=BPF_F_NO_PREALLOC)
    base = HTAB_STRUCT_SIZE + 16 * 16 + 4 * 4 * 8
    assert n.map_mem_usage() == base
    for k in range(3):
        drive(n.update_elem(u32(k), u64(k), BPF_ANY), host)
    assert n.map_mem_usage() == base + 3 * (64 + LLIST_NODE_SZ)
    np_, _ = create_map(host, PERCPU, value_size=8, max_entries=10, map_flags=BPF_F_NO_PREALLOC)
    drive(np_.update_elem(u32(1), u64(1), BPF_ANY), host)
    assert np_.map_mem_usage() == base + (64 + 8) + (8 + 8) + 8 * 4


# ---------------------------------------------------------------------------------------------
# Bucket order: get_next_key and for_each with BPF_F_ZERO_SEED
# ---------------------------------------------------------------------------------------------


def test_get_next_key_walks_buckets_in_order_newest_first_within_a_bucket(host):
    m, _ = create_map(host, HASH, max_entries=8, map_flags=ZERO)
    for k in range(8):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    # Each key's bucket from its pinned hash; a later key goes to the head of its chain.
    buckets = {}
    for k in range(8):
        buckets.setdefault(bucket_of(k, 8), []).insert(0, k)
    expected = [k for b in sorted(buckets) for k in buckets[b]]
    assert expected == [0, 4, 7, 2, 1, 6, 5, 3]  # what those hashes imply
    assert keys_in_order(m, host) == [u32(k) for k in expected]


def test_get_next_key_of_a_missing_key_restarts_at_the_first_key(host):
    m, _ = create_map(host, HASH, max_entries=8, map_flags=ZERO)
    for k in (3, 5):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    assert drive(m.get_next_key(None), host) == u32(5)  # bucket 6 before bucket 7
    assert drive(m.get_next_key(u32(9)), host) == u32(5)
    assert drive(m.get_next_key(u32(5)), host) == u32(3)
    fails(errno.ENOENT, m.get_next_key(u32(3)), host)


def test_get_next_key_on_an_empty_map_is_enoent(host):
    m, _ = create_map(host, HASH)
    fails(errno.ENOENT, m.get_next_key(None), host)


def test_for_each_visits_in_bucket_order_with_key_and_value_pointers(host):
    m, _ = create_map(host, HASH, max_entries=8, map_flags=ZERO)
    for k in range(8):
        drive(m.update_elem(u32(k), u64(100 + k), BPF_ANY), host)
    seen = []

    def callback(map_ptr, key_ptr, value_ptr, ctx, zero):
        k = int.from_bytes(host.read(key_ptr, 4), "little")
        seen.append((map_ptr, k, host.read(value_ptr, 8), ctx, zero))
        return 1 if k == 1 else 0

    host.programs[0x1000] = callback
    assert drive(m.for_each_elem(0x1000, 0xC7, 0), host) == 5  # 0, 4, 7, 2 and 1 stopped it
    assert [s[1] for s in seen] == [0, 4, 7, 2, 1]
    assert all(s[0] == m.addr and s[2] == u64(100 + s[1]) and s[3:] == (0xC7, 0) for s in seen)


def test_for_each_flags_must_be_zero(host):
    m, _ = create_map(host, HASH)
    fails(errno.EINVAL, m.for_each_elem(0x1000, 0, 1), host)


def test_for_each_callback_may_delete_the_element_it_was_given(host):
    m, _ = create_map(host, HASH, max_entries=8, map_flags=ZERO)
    for k in range(8):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    seen = []

    def callback(map_ptr, key_ptr, value_ptr, ctx, zero):
        key = host.read(key_ptr, 4)
        seen.append(key)
        drive(m.delete_elem(key), host)
        return 0

    host.programs[0x1000] = callback
    assert drive(m.for_each_elem(0x1000, 0, 0), host) == 8
    assert sorted(seen) == [u32(k) for k in range(8)]
    assert m.ops.element_count() == 0


# ---------------------------------------------------------------------------------------------
# Update, lookup, delete
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, present, code",
    [
        (BPF_NOEXIST | BPF_EXIST, False, errno.EINVAL),  # above BPF_EXIST
        (8, False, errno.EINVAL),
        (BPF_NOEXIST, True, errno.EEXIST),
        (BPF_EXIST, False, errno.ENOENT),
        (BPF_F_LOCK, False, errno.EINVAL),  # no bpf_spin_lock in the value
        (BPF_F_LOCK | BPF_EXIST, True, errno.EINVAL),
    ],
)
def test_update_errors(host, flags, present, code):
    m, _ = create_map(host, HASH)
    if present:
        drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    fails(code, m.update_elem(u32(1), u64(2), flags), host)
    if present:
        assert host.read(drive(m.lookup_elem(u32(1)), host), 8) == u64(1)


def test_update_flags_that_apply(host):
    m, _ = create_map(host, HASH)
    drive(m.update_elem(u32(1), u64(1), BPF_NOEXIST), host)
    drive(m.update_elem(u32(1), u64(2), BPF_EXIST), host)
    drive(m.update_elem(u32(1), u64(3), BPF_ANY), host)
    assert host.read(drive(m.lookup_elem(u32(1)), host), 8) == u64(3)


def test_lookup_of_a_missing_key_is_null_and_delete_is_enoent(host):
    m, _ = create_map(host, HASH)
    assert drive(m.lookup_elem(u32(7)), host) == 0
    fails(errno.ENOENT, m.delete_elem(u32(7)), host)
    drive(m.update_elem(u32(7), u64(7), BPF_ANY), host)
    drive(m.delete_elem(u32(7)), host)
    assert drive(m.lookup_elem(u32(7)), host) == 0


def test_replacing_a_key_links_a_new_element_and_the_old_value_stays_readable(host):
    """A program that looked the value up before the update keeps a valid pointer to the old
    value (RCU): a preallocated update writes a *new* element and unlinks the old one."""
    m, _ = create_map(host, HASH)
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    before = drive(m.lookup_elem(u32(1)), host)
    drive(m.update_elem(u32(1), u64(2), BPF_ANY), host)
    after = drive(m.lookup_elem(u32(1)), host)
    assert after != before
    assert host.read(before, 8) == u64(1) and host.read(after, 8) == u64(2)


@pytest.mark.parametrize("flags", [0, BPF_F_NO_PREALLOC])
def test_a_full_map_refuses_new_keys_with_e2big(host, flags):
    m, _ = create_map(host, HASH, max_entries=4, map_flags=flags)
    for k in range(4):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    fails(errno.E2BIG, m.update_elem(u32(9), u64(9), BPF_ANY), host)
    drive(m.delete_elem(u32(0)), host)
    drive(m.update_elem(u32(9), u64(9), BPF_ANY), host)
    fails(errno.E2BIG, m.update_elem(u32(10), u64(9), BPF_ANY), host)


@pytest.mark.parametrize("flags", [0, BPF_F_NO_PREALLOC])
def test_replacing_an_existing_key_in_a_full_map_succeeds_on_every_cpu(host, flags):
    m, _ = create_map(host, HASH, max_entries=4, map_flags=flags)
    for k in range(4):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    for round_ in range(3):
        for cpu in range(4):
            host.cpu = cpu
            drive(m.update_elem(u32(cpu), u64(10 * round_ + cpu), BPF_ANY), host)
            drive(m.update_elem(u32(cpu), u64(10 * round_ + cpu), BPF_EXIST), host)
    assert m.ops.element_count() == 4
    for k in range(4):
        assert host.read(drive(m.lookup_elem(u32(k)), host), 8) == u64(20 + k)


def test_prealloc_extra_elements_are_swapped_not_taken_from_the_free_list(host):
    m, _ = create_map(host, HASH, max_entries=8)
    fl = m.ops.freelist
    # 8 + 4 extra elements, 3 per CPU; creation (on CPU 0) took the 4 extras from CPU 0's list,
    # then stole one from CPU 1's: pop starts at the current CPU and walks the others.
    assert fl.counts() == [0, 2, 3, 3]
    host.cpu = 2
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    assert fl.counts() == [0, 2, 2, 3]  # a new key pops this CPU's list
    extra = m.ops._extra[2]
    drive(m.update_elem(u32(1), u64(2), BPF_ANY), host)
    assert fl.counts() == [0, 2, 2, 3]  # a replacement does not touch the lists
    assert drive(m.lookup_elem(u32(1)), host) == extra.addr + m.ops.value_off
    host.cpu = 3
    drive(m.delete_elem(u32(1)), host)
    assert fl.counts() == [0, 2, 2, 4]  # a delete pushes to the deleting CPU's list


def test_updates_steal_from_other_cpus_lists_when_their_own_is_empty(host):
    m, _ = create_map(host, HASH, max_entries=8)
    host.cpu = 1
    for k in range(4):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    assert m.ops.freelist.counts() == [0, 0, 1, 3]  # CPU 1's two, then CPU 2's


def test_no_prealloc_enomem_leaves_the_count_unchanged(host):
    m, _ = create_map(host, HASH, max_entries=64, map_flags=BPF_F_NO_PREALLOC)
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)

    def no_memory(size, align=8):
        raise BpfError(errno.ENOMEM, "out of memory")

    cache = m.ops.cache
    cache.spare.clear()  # the chunk's unused elements are gone: the next insert needs memory
    host.kmalloc = no_memory
    fails(errno.ENOMEM, m.update_elem(u32(2), u64(2), BPF_ANY), host)
    assert m.ops.element_count() == 1
    assert drive(m.lookup_elem(u32(2)), host) == 0


def test_no_prealloc_counts_with_a_percpu_counter_in_large_maps():
    host = TestHost(ncpus=2)
    # max_entries / 2 > ncpus * PERCPU_COUNTER_BATCH (32): a percpu_counter
    m, _ = create_map(host, HASH, max_entries=130, map_flags=BPF_F_NO_PREALLOC)
    assert m.ops.pcount is not None
    for k in range(130):
        host.cpu = k % 2
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    assert m.ops.element_count() == 130 and m.ops.pcount.count == 128  # batches of 32 folded
    fails(errno.E2BIG, m.update_elem(u32(999), u64(0), BPF_ANY), host)
    log = []
    with pytest.raises(BpfError):
        drive(recording(m.update_elem(u32(998), u64(0), BPF_ANY), log), host)
    assert Acquire(m.ops.pcount.lock) in log  # near the limit the exact sum is taken
    drive(m.delete_elem(u32(0)), host)
    drive(m.update_elem(u32(999), u64(0), BPF_ANY), host)


# ---------------------------------------------------------------------------------------------
# Locks and traffic
# ---------------------------------------------------------------------------------------------


def test_an_update_reports_its_bucket_lock_walk_pop_copies_and_link(host):
    m, _ = create_map(host, HASH, key_size=4, value_size=8, max_entries=4, map_flags=ZERO)
    ops = m.ops
    # keys 1 and 3 share bucket 3 of 4 (hashes 0x...9b and 0x...4f)
    assert bucket_of(1, 4) == bucket_of(3, 4) == 3
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    first = drive(m.lookup_elem(u32(1)), host) - ops.value_off
    host.cpu = 3  # creation took the extra elements from CPUs 0 and 1; CPU 3's list has 2
    log = []
    drive(recording(m.update_elem(u32(3), u64(3), BPF_ANY), log), host)
    new = drive(m.lookup_elem(u32(3)), host) - ops.value_off
    bucket, lock = ops.bucket_addr(3), ops.bucket_lock(3)
    fl = ops.freelist
    map_locked = ops._map_locked_addrs[3][3]  # lock class hash & min(7, n_buckets - 1) = 3
    assert log == [
        Work("hash_bytes", 4),
        Touch(map_locked, 4, True),
        Acquire(lock),
        Touch(bucket, 8),  # the chain's head
        Touch(first, WALK_TOUCH),  # key 1: next .. hash read, hash differs, no key compare
        Work("elem_walk", 1),
        Touch(fl.heads[3], 8),  # this CPU's free list
        Acquire(fl.locks[3]),
        Touch(new + FNODE_OFFSET, 8),
        Touch(fl.heads[3], 8, True),
        Release(fl.locks[3]),
        Touch(ops._elem_count_addrs[3], 8, True),
        Touch(new + KEY_OFFSET, 4, True),
        Work("copy_bytes", 4),
        Touch(new + ops.value_off, 8, True),
        Work("copy_bytes", 8),
        Touch(new + HASH_OFFSET, 4, True),
        Touch(new, 16, True),  # next, pprev
        Touch(bucket, 8, True),  # published
        Touch(first + 8, 8, True),  # the old first's pprev
        Release(lock),
        Touch(map_locked, 4, True),
    ]
    # and the chain in memory: bucket -> new -> first -> nulls(3)
    assert host.read(bucket, 8) == u64(new)
    assert host.read(new, 16) == u64(first) + u64(bucket)
    assert host.read(first, 16) == u64((3 << 1) | 1) + u64(new)


def test_a_lookup_takes_no_lock_and_compares_the_key_only_on_a_hash_match(host):
    m, _ = create_map(host, HASH, max_entries=4, map_flags=ZERO)
    for k in (1, 3):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    log = []
    addr = drive(recording(m.lookup_elem(u32(1)), log), host)
    elem1 = addr - m.ops.value_off
    elem3 = drive(m.lookup_elem(u32(3)), host) - m.ops.value_off
    assert log == [
        Work("hash_bytes", 4),
        Touch(m.ops.bucket_addr(3), 8),
        Touch(elem3, WALK_TOUCH),
        Work("elem_walk", 1),
        Touch(elem1, KEY_OFFSET + 4),
        Work("elem_walk", 1),
    ]


def test_delete_frees_to_the_free_list_inside_the_bucket_lock(host):
    m, _ = create_map(host, HASH, max_entries=4)
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    log = []
    drive(recording(m.delete_elem(u32(1)), log), host)
    locks = [r.lock.name for r in log if isinstance(r, Acquire | Release)]
    assert locks[0].startswith("hash bucket") and locks[-1] == locks[0]
    assert locks[1:3] == ["hash freelist/0", "hash freelist/0"]


def test_reentering_a_held_bucket_lock_class_on_the_same_cpu_is_ebusy(host):
    """htab_lock_bucket's map_locked counter: a program that runs on a CPU while that CPU is
    inside a locked section of the same lock class gets EBUSY instead of deadlocking."""
    m, _ = create_map(host, HASH, max_entries=4)
    held = m.update_elem(u32(1), u64(1), BPF_ANY)
    req = next(held)
    while not isinstance(req, Acquire):
        req = held.send(None)
    req.lock.owner = SYNC_OWNER  # granted, as the driver would
    fails(errno.EBUSY, m.update_elem(u32(1), u64(2), BPF_ANY), host)
    fails(errno.EBUSY, m.delete_elem(u32(1)), host)
    assert drive(m.lookup_elem(u32(1)), host) == 0  # lookups take no lock
    host.cpu = 1  # another CPU gets past the counter and would wait for the lock itself
    other = m.update_elem(u32(1), u64(3), BPF_ANY)
    reqs = [next(other)]
    while not isinstance(reqs[-1], Acquire):
        reqs.append(other.send(None))
    assert reqs[-1] == req
    other.close()
    host.cpu = 0
    drive(held, host)  # the first update completes
    assert host.read(drive(m.lookup_elem(u32(1)), host), 8) == u64(1)


def test_a_lock_free_walk_that_ends_in_another_bucket_restarts(host):
    """hlist_nulls: an element deleted and reused in another bucket while a lookup stands on
    it leads the walk into that bucket; its nulls marker says so, and the lookup restarts."""
    m, _ = create_map(host, HASH, max_entries=4, map_flags=ZERO)
    ops = m.ops
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    drive(m.update_elem(u32(3), u64(3), BPF_ANY), host)  # bucket 3: 3 -> 1
    elem3 = drive(m.lookup_elem(u32(3)), host) - ops.value_off
    walk = m.lookup_elem(u32(1))
    req = next(walk)
    while req != Touch(elem3, WALK_TOUCH):
        req = walk.send(None)
    drive(m.delete_elem(u32(3)), host)  # element 3 goes to the top of CPU 0's free list...
    drive(m.update_elem(u32(0), u64(0), BPF_ANY), host)  # ...and comes back in bucket 0
    assert drive(m.lookup_elem(u32(0)), host) == elem3 + ops.value_off
    rest = []
    found = drive(recording(walk, rest), host)
    assert found == drive(m.lookup_elem(u32(1)), host) != 0
    assert rest.count(Touch(ops.bucket_addr(3), 8)) == 1  # the restart re-read bucket 3


# ---------------------------------------------------------------------------------------------
# Per-CPU values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [0, BPF_F_NO_PREALLOC])
def test_percpu_values_live_at_each_cpus_per_cpu_address(host, flags):
    m, _ = create_map(host, PERCPU, value_size=8, max_entries=4, map_flags=flags)
    host.cpu = 2
    drive(m.update_elem(u32(5), u64(42), BPF_ANY), host)
    mine = drive(m.lookup_elem(u32(5)), host)
    assert mine == drive(m.lookup_percpu_elem(u32(5), 2), host)
    lo, hi = host.percpu_unit(2)
    assert lo <= mine < hi
    assert host.read(mine, 8) == u64(42)  # read through the host's memory at CPU 2's address
    for cpu in (0, 1, 3):
        addr = drive(m.lookup_percpu_elem(u32(5), cpu), host)
        assert host.percpu_unit(cpu)[0] <= addr < host.percpu_unit(cpu)[1]
        assert host.read(addr, 8) == bytes(8)
    assert drive(m.lookup_percpu_elem(u32(5), 4), host) == 0  # cpu >= nr_cpu_ids
    assert drive(m.lookup_percpu_elem(u32(6), 0), host) == 0


def test_percpu_update_of_an_existing_key_is_in_place_and_touches_only_this_cpu(host):
    m, fd = create_map(host, PERCPU, value_size=8, max_entries=4)
    us = UserSpace(host, fd)
    us.update(u32(1), b"".join(u64(c + 1) for c in range(4)))
    host.cpu = 3
    before = [drive(m.lookup_percpu_elem(u32(1), c), host) for c in range(4)]
    drive(m.update_elem(u32(1), u64(99), BPF_EXIST), host)
    assert [drive(m.lookup_percpu_elem(u32(1), c), host) for c in range(4)] == before
    assert us.lookup(u32(1), 32) == u64(1) + u64(2) + u64(3) + u64(99)


def test_percpu_insert_from_a_program_zeroes_the_other_cpus_copies(host):
    m, fd = create_map(host, PERCPU, value_size=8, max_entries=4)
    us = UserSpace(host, fd)
    host.cpu = 2
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    us.update(u32(1), b"".join(u64(0xAA) for _ in range(4)))  # every copy non-zero
    drive(m.delete_elem(u32(1)), host)  # the element goes back on CPU 2's list...
    drive(m.update_elem(u32(1), u64(7), BPF_ANY), host)  # ...and is reused here
    assert us.lookup(u32(1), 32) == u64(0) + u64(0) + u64(7) + u64(0)


def test_percpu_syscall_layout_and_flags(host):
    m, fd = create_map(host, PERCPU, value_size=4, max_entries=2)
    us = UserSpace(host, fd)
    values = b"".join(bytes([c + 1] * 4) + bytes(4) for c in range(4))
    us.update(u32(1), values)
    assert us.lookup(u32(1), 32) == values
    sys_fails(errno.ENOENT, us.lookup, u32(2), 32)
    sys_fails(errno.EEXIST, us.update, u32(1), values, BPF_NOEXIST)
    sys_fails(errno.EINVAL, us.update, u32(1), values, BPF_F_LOCK)
    fails(errno.EINVAL, m.ops.sys_update_elem(u32(1), values, BPF_F_LOCK), host)
    fails(errno.EINVAL, m.update_elem(u32(1), bytes(4), BPF_F_LOCK), host)
    us.update(u32(2), values)
    sys_fails(errno.E2BIG, us.update, u32(3), values)
    assert us.lookup_and_delete(u32(1), 32) == values
    sys_fails(errno.ENOENT, us.lookup, u32(1), 32)


def test_percpu_for_each_passes_this_cpus_values(host):
    m, _ = create_map(host, PERCPU, max_entries=4)
    for k in range(3):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    host.cpu = 3
    got = []
    host.programs[0x1000] = lambda mp, kp, vp, ctx, z: got.append(vp) or 0
    assert drive(m.for_each_elem(0x1000, 0, 0), host) == 3
    assert all(host.percpu_unit(3)[0] <= a < host.percpu_unit(3)[1] for a in got)


def test_hash_has_no_lookup_percpu_elem(host):
    m, _ = create_map(host, HASH)
    fails(errno.EINVAL, m.lookup_percpu_elem(u32(0), 0), host)


# ---------------------------------------------------------------------------------------------
# Syscall side
# ---------------------------------------------------------------------------------------------


def test_syscall_round_trip(host):
    m, fd = create_map(host, HASH, key_size=3, value_size=6, max_entries=2, map_flags=ZERO)
    us = UserSpace(host, fd, key_size=3)
    us.update(b"abc", b"value1")
    us.update(b"xyz", b"value2")
    assert us.lookup(b"abc", 6) == b"value1"
    sys_fails(errno.E2BIG, us.update, b"new", b"value3")
    sys_fails(errno.EINVAL, us.update, b"abc", b"value3", BPF_F_LOCK)
    assert sorted([us.next_key(None), us.next_key(us.next_key(None))]) == [b"abc", b"xyz"]
    assert us.lookup_and_delete(b"abc", 6) == b"value1"
    sys_fails(errno.ENOENT, us.lookup_and_delete, b"abc", 6)
    sys_fails(errno.ENOENT, us.delete, b"abc")
    us.delete(b"xyz")
    sys_fails(errno.ENOENT, us.next_key, None)


def test_lookup_and_delete_flags(host):
    m, _ = create_map(host, HASH)
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    fails(errno.EINVAL, m.lookup_and_delete_elem(u32(1), BPF_F_LOCK), host)
    fails(errno.EINVAL, m.lookup_and_delete_elem(u32(1), 1), host)
    assert drive(m.lookup_and_delete_elem(u32(1), 0), host) == u64(1)


# ---------------------------------------------------------------------------------------------
# Regions programs may touch, and freeing
# ---------------------------------------------------------------------------------------------


def covered(regions, addr, size, write):
    return any(s <= addr and addr + size <= e and (w or not write) for s, e, w in regions)


def test_prealloc_regions_cover_every_value_and_never_change(host):
    m, _ = create_map(host, HASH, value_size=8, max_entries=4)
    regions = m.program_regions()
    for k in range(4):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
        assert covered(regions, drive(m.lookup_elem(u32(k)), host), 8, True)
    assert m.program_regions() == regions and m.ops.regions_version == 0
    ro, _ = create_map(host, HASH, max_entries=4, map_flags=BPF_F_RDONLY_PROG)
    assert not ro.program_regions()[0][2]


def test_percpu_regions_cover_every_cpus_copy_and_keys_read_only(host):
    m, _ = create_map(host, PERCPU, value_size=8, max_entries=4)
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    regions = m.program_regions()
    for cpu in range(4):
        assert covered(regions, drive(m.lookup_percpu_elem(u32(1), cpu), host), 8, True)
    key_ptr = []
    host.programs[0x1000] = lambda mp, kp, vp, ctx, z: key_ptr.append(kp) or 0
    drive(m.for_each_elem(0x1000, 0, 0), host)
    assert covered(regions, key_ptr[0], 4, False) and not covered(regions, key_ptr[0], 4, True)


@pytest.mark.parametrize("kind", [HASH, PERCPU])
def test_no_prealloc_regions_grow_by_chunks_and_bump_regions_version(host, kind):
    m, _ = create_map(host, kind, key_size=4, value_size=8, max_entries=1000,
                      map_flags=BPF_F_NO_PREALLOC)  # fmt: skip
    ops = m.ops
    assert m.program_regions() == [] and ops.regions_version == 0
    drive(m.update_elem(u32(0), u64(0), BPF_ANY), host)
    assert ops.regions_version == 1
    per_chunk = ops.cache.per_chunk
    for k in range(1, per_chunk):
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    assert ops.regions_version == 1  # one chunk holds them all
    drive(m.update_elem(u32(per_chunk), u64(0), BPF_ANY), host)
    assert ops.regions_version == 2
    regions = m.program_regions()
    for k in range(per_chunk + 1):
        assert covered(regions, drive(m.lookup_elem(u32(k)), host), 8, True)


def test_no_prealloc_deleted_elements_are_reused_by_this_cpu(host):
    m, _ = create_map(host, HASH, max_entries=100, map_flags=BPF_F_NO_PREALLOC)
    drive(m.update_elem(u32(1), u64(1), BPF_ANY), host)
    addr = drive(m.lookup_elem(u32(1)), host)
    drive(m.delete_elem(u32(1)), host)
    drive(m.update_elem(u32(2), u64(2), BPF_ANY), host)
    assert drive(m.lookup_elem(u32(2)), host) == addr
    assert m.ops.regions_version == 1


@pytest.mark.parametrize("kind", [HASH, PERCPU])
@pytest.mark.parametrize("flags", [0, BPF_F_NO_PREALLOC])
def test_free_returns_all_memory(host, kind, flags):
    before = host.kmalloc_live()
    m, _ = create_map(host, kind, max_entries=300, map_flags=flags)
    for k in range(200):
        host.cpu = k % 4
        drive(m.update_elem(u32(k), u64(k), BPF_ANY), host)
    for k in range(0, 200, 3):
        drive(m.delete_elem(u32(k)), host)
    m.free()
    assert host.kmalloc_live() == before
    assert not host._pcpu_live


# ---------------------------------------------------------------------------------------------
# A random walk against a model of Linux's semantics
# ---------------------------------------------------------------------------------------------


class HashModel(RuleBasedStateMachine):
    """A hash map (HASH or PERCPU_HASH, preallocated or not, key sizes 3/4/8) driven by random
    updates, lookups, deletes, lookup-and-deletes and walks from both sides and several CPUs,
    compared with a dict of key -> per-CPU values."""

    NCPUS = 3

    @initialize(
        percpu=st.booleans(),
        prealloc=st.booleans(),
        key_size=st.sampled_from([3, 4, 8]),
        value_size=st.integers(1, 12),
        entries=st.integers(1, 6),
    )
    def make(self, percpu, prealloc, key_size, value_size, entries):
        self.host = TestHost(ncpus=self.NCPUS, seed=7)
        self.map, fd = create_map(
            self.host,
            PERCPU if percpu else HASH,
            key_size=key_size,
            value_size=value_size,
            max_entries=entries,
            map_flags=0 if prealloc else BPF_F_NO_PREALLOC,
        )
        self.us = UserSpace(self.host, fd, key_size)
        self.percpu, self.ks, self.vs, self.entries = percpu, key_size, value_size, entries
        self.rounded = (value_size + 7) // 8 * 8
        self.model: dict[bytes, list[bytes]] = {}

    def key(self, k):
        return bytes([k]) * self.ks

    def expected_update_errno(self, key, flags, prog):
        if not prog and flags & BPF_F_LOCK:
            return errno.EINVAL  # map_update_elem, before the map sees it
        if self.percpu and flags > BPF_EXIST:
            return errno.EINVAL
        if (flags & ~BPF_F_LOCK) > BPF_EXIST or flags & BPF_F_LOCK:
            return errno.EINVAL
        exists = key in self.model
        if exists and flags == BPF_NOEXIST:
            return errno.EEXIST
        if not exists and flags == BPF_EXIST:
            return errno.ENOENT
        if not exists and len(self.model) >= self.entries:
            return errno.E2BIG
        return 0

    @rule(
        k=st.integers(0, 8),
        data=st.binary(min_size=48, max_size=48),
        flags=st.sampled_from([BPF_ANY, BPF_NOEXIST, BPF_EXIST, 3, BPF_F_LOCK]),
        prog=st.booleans(),
        cpu=st.integers(0, NCPUS - 1),
    )
    def update(self, k, data, flags, prog, cpu):
        key = self.key(k)
        expect = self.expected_update_errno(key, flags, prog)
        self.host.cpu = cpu
        try:
            if prog:
                drive(self.map.update_elem(key, data[: self.vs], flags), self.host)
            elif self.percpu:
                self.us.update(key, data[: self.rounded * self.NCPUS], flags)
            else:
                self.us.update(key, data[: self.vs], flags)
        except BpfError as e:
            assert e.errno == expect, str(e)
            return
        assert expect == 0
        if not self.percpu:
            self.model[key] = [data[: self.vs]]
        elif not prog:
            self.model[key] = [
                data[c * self.rounded : c * self.rounded + self.vs] for c in range(self.NCPUS)
            ]
        else:
            values = self.model.get(key) or [bytes(self.vs)] * self.NCPUS
            values = list(values)
            values[cpu] = data[: self.vs]
            self.model[key] = values

    @rule(k=st.integers(0, 8), cpu=st.integers(0, NCPUS - 1))
    def lookup(self, k, cpu):
        key = self.key(k)
        self.host.cpu = cpu
        addr = drive(self.map.lookup_elem(key), self.host)
        if key not in self.model:
            assert addr == 0
            sys_fails(errno.ENOENT, self.us.lookup, key, self.vs)
            return
        expect = self.model[key]
        assert self.host.read(addr, self.vs) == expect[cpu if self.percpu else 0]
        if self.percpu:
            got = self.us.lookup(key, self.rounded * self.NCPUS)
            slices = [got[c * self.rounded : c * self.rounded + self.vs] for c in range(3)]
            assert slices == expect
        else:
            assert self.us.lookup(key, self.vs) == expect[0]

    @rule(k=st.integers(0, 8), prog=st.booleans(), cpu=st.integers(0, NCPUS - 1))
    def delete(self, k, prog, cpu):
        key = self.key(k)
        self.host.cpu = cpu
        try:
            if prog:
                drive(self.map.delete_elem(key), self.host)
            else:
                self.us.delete(key)
        except BpfError as e:
            assert e.errno == errno.ENOENT and key not in self.model
        else:
            del self.model[key]

    @precondition(lambda self: hasattr(self, "model"))
    @rule(k=st.integers(0, 8))
    def lookup_and_delete(self, k):
        key = self.key(k)
        size = self.rounded * self.NCPUS if self.percpu else self.vs
        if key not in self.model:
            sys_fails(errno.ENOENT, self.us.lookup_and_delete, key, size)
            return
        got = self.us.lookup_and_delete(key, size)
        values = self.model.pop(key)
        if self.percpu:
            got = [got[c * self.rounded : c * self.rounded + self.vs] for c in range(3)]
        else:
            got = [got]
        assert got == values

    @invariant()
    def walks_see_exactly_the_model(self):
        if not hasattr(self, "model"):
            return
        keys = keys_in_order(self.map, self.host)
        assert len(keys) == len(set(keys)) and set(keys) == set(self.model)
        seen = []
        self.host.programs[0x40] = lambda m, kp, vp, c, z: seen.append(
            self.host.read(kp, self.ks)
        ) or 0  # fmt: skip
        assert drive(self.map.for_each_elem(0x40, 0, 0), self.host) == len(self.model)
        assert seen == keys  # for_each and get_next_key agree on the bucket order
        assert self.map.ops.element_count() == len(self.model)


TestHashModel = HashModel.TestCase
