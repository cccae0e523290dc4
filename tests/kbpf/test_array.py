"""BPF_MAP_TYPE_ARRAY and BPF_MAP_TYPE_PERCPU_ARRAY, as kernel/bpf/arraymap.c (v6.6) defines
them, through the program-side operations and the syscall side."""

import errno

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.host import TaskInfo, drive
from kbpf.linux_bpf import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_INNER_MAP,
    BPF_F_LOCK,
    BPF_F_MMAPABLE,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_PRESERVE_ELEMS,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    BPF_NOEXIST,
    BpfCmd,
    BpfMapElemAttr,
)
from kbpf.map import (
    bpf_map_delete_elem,
    bpf_map_freeze,
    bpf_map_get_next_key,
    bpf_map_lookup_and_delete_elem,
    bpf_map_lookup_elem,
    bpf_map_update_elem,
    parse_elem_attr,
)
from kbpf.map.array import ARRAY_VALUE_OFFSET
from tests.kbpf.testhost import DIRECT_BASE, PAGE, TestHost, create_map, u32

ARRAY, PERCPU = "array", "percpu_array"


def fails(errno_, op, host):
    """Run ``op`` to completion; it must fail with ``errno_``."""
    with pytest.raises(BpfError) as e:
        drive(op, host)
    assert e.value.errno == errno_, str(e.value)
    return e.value


class UserSpace:
    """A process on CPU 0 calling bpf(2) on one map: keys and values go through its memory."""

    def __init__(self, host: TestHost, fd: int):
        self.host, self.fd = host, fd
        host.tasks[0] = TaskInfo(1000, 1000, "tester")

    def _call(self, fn, key=None, value=b"", flags=0, value_size=0):
        h = self.host
        kp = h.map_user(u32(key)) if key is not None else 0
        vp = h.map_user(value or bytes(value_size or 8))
        saved, h.cpu = h.cpu, 0
        try:
            drive(fn(h, BpfMapElemAttr(self.fd, kp, vp, flags)), h)
        finally:
            h.cpu = saved
        return h.copy_from_user(vp, value_size) if value_size else None

    def update(self, key, value, flags=BPF_ANY):
        self._call(bpf_map_update_elem, key, value, flags)

    def lookup(self, key, size, flags=0):
        return self._call(bpf_map_lookup_elem, key, flags=flags, value_size=size)

    def delete(self, key):
        self._call(bpf_map_delete_elem, key)

    def next_key(self, key):
        return int.from_bytes(self._call(bpf_map_get_next_key, key, value_size=4), "little")

    def lookup_and_delete(self, key, size):
        return self._call(bpf_map_lookup_and_delete_elem, key, value_size=size)

    def freeze(self):
        self._call(bpf_map_freeze)


def sys_fails(errno_, fn, *args, **kw):
    with pytest.raises(BpfError) as e:
        fn(*args, **kw)
    assert e.value.errno == errno_, str(e.value)


@pytest.fixture
def host():
    return TestHost(ncpus=4, seed=1)


# ---------------------------------------------------------------------------------------------
# Creation: array_map_alloc_check
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, kw, code, why",
    [
        (ARRAY, dict(max_entries=0), errno.EINVAL, "an array needs an element"),
        (ARRAY, dict(key_size=8), errno.EINVAL, "keys are u32 indices"),
        (ARRAY, dict(value_size=0), errno.EINVAL, "values have a size"),
        (ARRAY, dict(map_flags=BPF_F_NO_PREALLOC), errno.EINVAL, "arrays are always preallocated"),
        (ARRAY, dict(map_flags=BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG), errno.EINVAL, "access"),
        (ARRAY, dict(map_flags=BPF_F_PRESERVE_ELEMS), errno.EINVAL, "PERF_EVENT_ARRAY only"),
        (ARRAY, dict(value_size=1 << 31), errno.E2BIG, "value_size above INT_MAX"),
        (PERCPU, dict(map_flags=BPF_F_NUMA_NODE), errno.EINVAL, "per-CPU has no NUMA node"),
        (PERCPU, dict(map_flags=BPF_F_MMAPABLE), errno.EINVAL, "only ARRAY is mmap-able"),
        (PERCPU, dict(map_flags=BPF_F_INNER_MAP), errno.EINVAL, "only ARRAY is an inner map"),
        (PERCPU, dict(value_size=32 * 1024 + 1), errno.E2BIG, "above PCPU_MIN_UNIT_SIZE"),
    ],
)
def test_alloc_check_errors(host, kind, kw, code, why):
    with pytest.raises(BpfError) as e:
        create_map(host, kind, **kw)
    assert e.value.errno == code, why


def test_key_size_error_names_the_expected_size(host):
    with pytest.raises(BpfError, match="expected 4"):
        create_map(host, ARRAY, key_size=2)


def test_percpu_value_of_exactly_32k_is_allowed(host):
    create_map(host, PERCPU, value_size=32 * 1024, max_entries=1)


def test_elements_exist_zeroed_and_elem_size_is_rounded_to_8(host):
    m, _ = create_map(host, ARRAY, value_size=12, max_entries=3)
    addrs = [drive(m.lookup_elem(u32(i)), host) for i in range(3)]
    assert addrs[1] - addrs[0] == 16 and addrs[2] - addrs[1] == 16
    assert all(host.read(a, 12) == bytes(12) for a in addrs)
    assert addrs[0] == m.addr + ARRAY_VALUE_OFFSET


def test_mem_usage_is_header_plus_elements(host):
    m, _ = create_map(host, ARRAY, value_size=12, max_entries=10)
    assert m.map_mem_usage() == ARRAY_VALUE_OFFSET + 10 * 16
    p, _ = create_map(host, PERCPU, value_size=12, max_entries=10)
    assert p.map_mem_usage() == ARRAY_VALUE_OFFSET + 10 * 8 + 10 * 16 * 4
    mm, _ = create_map(host, ARRAY, value_size=8, max_entries=10, map_flags=BPF_F_MMAPABLE)
    assert mm.map_mem_usage() == PAGE + PAGE


# ---------------------------------------------------------------------------------------------
# Program side
# ---------------------------------------------------------------------------------------------


def test_lookup_out_of_range_is_null(host):
    m, _ = create_map(host, ARRAY, max_entries=4)
    assert drive(m.lookup_elem(u32(4)), host) == 0
    assert drive(m.lookup_elem(u32(0xFFFFFFFF)), host) == 0


def test_update_copies_value_size_bytes_and_leaves_padding(host):
    m, _ = create_map(host, ARRAY, value_size=5, max_entries=2)
    a = drive(m.lookup_elem(u32(1)), host)
    host.write(a + 5, b"\xee")  # padding byte up to elem_size
    drive(m.update_elem(u32(1), b"hello", BPF_ANY), host)
    assert host.read(a, 6) == b"hello\xee"


@pytest.mark.parametrize(
    "flags, key, code",
    [
        (3, 0, errno.EINVAL),  # above BPF_EXIST
        (BPF_F_LOCK | 3, 0, errno.EINVAL),
        (BPF_ANY, 4, errno.E2BIG),  # all elements preallocated: no new index
        (BPF_NOEXIST, 0, errno.EEXIST),  # every element already exists
        (BPF_F_LOCK, 0, errno.EINVAL),  # no bpf_spin_lock in the value
    ],
)
def test_update_errors(host, flags, key, code):
    m, _ = create_map(host, ARRAY, max_entries=4)
    fails(code, m.update_elem(u32(key), bytes(8), flags), host)


def test_update_with_bpf_exist_succeeds(host):
    m, _ = create_map(host, ARRAY, max_entries=4)
    drive(m.update_elem(u32(3), b"\x01" * 8, BPF_EXIST), host)
    assert host.read(drive(m.lookup_elem(u32(3)), host), 8) == b"\x01" * 8


def test_delete_is_einval(host):
    m, _ = create_map(host, ARRAY)
    fails(errno.EINVAL, m.delete_elem(u32(0)), host)


def test_get_next_key_walks_indices_and_restarts_out_of_range(host):
    m, _ = create_map(host, ARRAY, max_entries=3)
    assert drive(m.get_next_key(None), host) == u32(0)
    assert drive(m.get_next_key(u32(0)), host) == u32(1)
    assert drive(m.get_next_key(u32(1)), host) == u32(2)
    fails(errno.ENOENT, m.get_next_key(u32(2)), host)
    assert drive(m.get_next_key(u32(77)), host) == u32(0)


def test_operations_arrays_lack_fail_centrally(host):
    m, _ = create_map(host, ARRAY)
    fails(errno.EINVAL, m.lookup_percpu_elem(u32(0), 0), host)
    fails(ENOTSUPP, m.lookup_and_delete_elem(u32(0), 0), host)
    fails(errno.EINVAL, m.push_elem(bytes(8), 0), host)
    fails(errno.EINVAL, m.pop_elem(), host)


def test_direct_value_address_needs_a_single_element(host):
    one, _ = create_map(host, ARRAY, value_size=24, max_entries=1)
    start, end = one.map_values_ptr_range()
    assert (start, end - start) == (drive(one.lookup_elem(u32(0)), host), 24)
    many, _ = create_map(host, ARRAY, max_entries=2)
    with pytest.raises(BpfError) as e:
        many.map_values_ptr_range()
    assert e.value.errno == ENOTSUPP
    pc, _ = create_map(host, PERCPU, max_entries=1)
    with pytest.raises(BpfError) as e:
        pc.map_values_ptr_range()
    assert e.value.errno == errno.EINVAL


def test_program_regions_cover_values_and_follow_rdonly_prog(host):
    m, _ = create_map(host, ARRAY, value_size=8, max_entries=4)
    values = drive(m.lookup_elem(u32(0)), host)
    assert (values, values + 32, True) in m.program_regions()
    ro, _ = create_map(host, ARRAY, max_entries=4, map_flags=BPF_F_RDONLY_PROG)
    assert not ro.program_regions()[0][2]


# ---------------------------------------------------------------------------------------------
# Per-CPU values
# ---------------------------------------------------------------------------------------------


def test_percpu_update_writes_only_this_cpus_copy(host):
    m, _ = create_map(host, PERCPU, value_size=8, max_entries=2)
    host.cpu = 2
    drive(m.update_elem(u32(1), (42).to_bytes(8, "little"), BPF_ANY), host)
    cpu2 = drive(m.lookup_elem(u32(1)), host)
    # the address the host gave CPU 2 lies in CPU 2's per-CPU area, in the direct map
    lo, hi = host.percpu_unit(2)
    assert lo <= cpu2 < hi and cpu2 >= DIRECT_BASE
    assert host.read(cpu2, 8) == (42).to_bytes(8, "little")
    host.cpu = 1
    cpu1 = drive(m.lookup_elem(u32(1)), host)
    assert cpu1 != cpu2 and host.percpu_unit(1)[0] <= cpu1 < host.percpu_unit(1)[1]
    assert host.read(cpu1, 8) == bytes(8)


def test_lookup_percpu_elem_reaches_another_cpus_copy(host):
    m, _ = create_map(host, PERCPU, max_entries=2)
    host.cpu = 2
    mine = drive(m.lookup_elem(u32(0)), host)
    host.cpu = 0
    assert drive(m.lookup_percpu_elem(u32(0), 2), host) == mine
    assert drive(m.lookup_percpu_elem(u32(0), 4), host) == 0  # cpu >= nr_cpu_ids
    assert drive(m.lookup_percpu_elem(u32(2), 0), host) == 0  # out of range


def test_percpu_regions_cover_every_cpus_copy(host):
    m, _ = create_map(host, PERCPU, value_size=8, max_entries=3)
    regions = m.program_regions()
    for cpu in range(4):
        host.cpu = cpu
        for i in range(3):
            a = drive(m.lookup_elem(u32(i)), host)
            assert any(s <= a and a + 8 <= e and w for s, e, w in regions)


# ---------------------------------------------------------------------------------------------
# for_each_map_elem
# ---------------------------------------------------------------------------------------------


def test_for_each_visits_in_index_order_and_counts_the_stopping_element(host):
    m, _ = create_map(host, ARRAY, max_entries=5)
    seen = []

    def callback(map_ptr, key_ptr, value_ptr, ctx, zero):
        key = int.from_bytes(host.read(key_ptr, 4), "little")
        seen.append((map_ptr, key, value_ptr, ctx, zero))
        return 1 if key == 2 else 0

    host.programs[0x1000] = callback
    assert drive(m.for_each_elem(0x1000, 0xC7, 0), host) == 3
    assert [s[1] for s in seen] == [0, 1, 2]
    assert all(s[0] == m.addr and s[3] == 0xC7 and s[4] == 0 for s in seen)
    assert seen[1][2] == drive(m.lookup_elem(u32(1)), host)


def test_for_each_key_slot_is_readable_not_writable_by_programs(host):
    m, _ = create_map(host, ARRAY, max_entries=2)
    keys = []
    host.programs[0x1000] = lambda mp, kp, vp, ctx, z: keys.append(kp) or 0
    assert drive(m.for_each_elem(0x1000, 0, 0), host) == 2
    assert any(s <= keys[0] and keys[0] + 4 <= e and not w for s, e, w in m.program_regions())


def test_for_each_flags_must_be_zero(host):
    m, _ = create_map(host, ARRAY)
    fails(errno.EINVAL, m.for_each_elem(0x1000, 0, 1), host)


def test_for_each_on_percpu_passes_this_cpus_values(host):
    m, _ = create_map(host, PERCPU, max_entries=2)
    host.cpu = 3
    got = []
    host.programs[0x1000] = lambda mp, kp, vp, ctx, z: got.append(vp) or 0
    drive(m.for_each_elem(0x1000, 0, 0), host)
    assert got == [drive(m.lookup_elem(u32(i)), host) for i in range(2)]
    assert all(host.percpu_unit(3)[0] <= a < host.percpu_unit(3)[1] for a in got)


# ---------------------------------------------------------------------------------------------
# BPF_F_MMAPABLE
# ---------------------------------------------------------------------------------------------


def test_mmapable_values_are_page_aligned_pages_user_space_can_map(host):
    m, _ = create_map(host, ARRAY, value_size=8, max_entries=600, map_flags=BPF_F_MMAPABLE)
    first = drive(m.lookup_elem(u32(0)), host)
    assert first % PAGE == 0
    drive(m.update_elem(u32(513), b"ABCDEFGH", BPF_ANY), host)  # on the second page
    pages = m.map_mmap(0, 2 * PAGE, write=False)
    assert len(pages) == 2
    # the second physical page, read through the direct map, holds element 513
    assert host.read(DIRECT_BASE + pages[1] + (513 * 8 - PAGE), 8) == b"ABCDEFGH"
    with pytest.raises(BpfError) as e:
        m.map_mmap(0, 3 * PAGE, write=False)
    assert e.value.errno == errno.EINVAL


def test_mmap_refusals(host):
    plain, _ = create_map(host, ARRAY)
    with pytest.raises(BpfError) as e:
        plain.map_mmap(0, PAGE, write=False)
    assert e.value.errno == errno.EINVAL  # not created mmap-able
    pc, _ = create_map(host, PERCPU)
    with pytest.raises(BpfError) as e:
        pc.map_mmap(0, PAGE, write=False)
    assert e.value.errno == ENOTSUPP  # per-CPU arrays have no map_mmap
    ro, _ = create_map(host, ARRAY, map_flags=BPF_F_MMAPABLE | BPF_F_RDONLY_PROG)
    with pytest.raises(BpfError) as e:
        ro.map_mmap(0, PAGE, write=True)
    assert e.value.errno == errno.EACCES


def test_writable_mmap_blocks_freeze_and_frozen_map_cannot_be_mapped_writable(host):
    m, fd = create_map(host, ARRAY, map_flags=BPF_F_MMAPABLE)
    us = UserSpace(host, fd)
    m.map_mmap(0, PAGE, write=True)
    sys_fails(errno.EBUSY, us.freeze)
    m.munmap_writable()
    us.freeze()
    with pytest.raises(BpfError) as e:
        m.map_mmap(0, PAGE, write=True)
    assert e.value.errno == errno.EPERM
    m.map_mmap(0, PAGE, write=False)


def test_free_returns_the_memory(host):
    before = host.kmalloc_live()
    m, _ = create_map(host, ARRAY, max_entries=8)
    p, _ = create_map(host, PERCPU, max_entries=8)
    mm, _ = create_map(host, ARRAY, map_flags=BPF_F_MMAPABLE)
    for umap in (m, p, mm):
        umap.free()
    assert host.kmalloc_live() == before
    assert not host._pcpu_live and not host._vmap_areas


# ---------------------------------------------------------------------------------------------
# Syscall side
# ---------------------------------------------------------------------------------------------


def test_syscall_update_lookup_round_trip(host):
    m, fd = create_map(host, ARRAY, value_size=6, max_entries=4)
    us = UserSpace(host, fd)
    us.update(2, b"abcdef")
    assert us.lookup(2, 6) == b"abcdef"
    sys_fails(errno.ENOENT, us.lookup, 4, 6)
    sys_fails(errno.E2BIG, us.update, 4, b"abcdef")
    sys_fails(errno.EEXIST, us.update, 1, b"abcdef", BPF_NOEXIST)
    sys_fails(errno.EINVAL, us.delete, 1)
    sys_fails(ENOTSUPP, us.lookup_and_delete, 1, 6)


def test_syscall_percpu_layout_is_one_rounded_value_per_cpu(host):
    m, fd = create_map(host, PERCPU, value_size=4, max_entries=2)
    us = UserSpace(host, fd)
    values = b"".join(bytes([c + 1] * 4) + bytes(4) for c in range(4))
    us.update(1, values)
    assert us.lookup(1, 32) == values
    for cpu in range(4):
        host.cpu = cpu
        assert host.read(drive(m.lookup_elem(u32(1)), host), 4) == bytes([cpu + 1] * 4)
    sys_fails(errno.ENOENT, us.lookup, 2, 32)
    sys_fails(errno.E2BIG, us.update, 2, values)
    sys_fails(errno.EEXIST, us.update, 0, values, BPF_NOEXIST)
    sys_fails(errno.EINVAL, us.update, 0, values, BPF_F_LOCK)


def test_percpu_sys_update_rejects_flags_above_exist(host):
    m, _ = create_map(host, PERCPU)
    fails(errno.EINVAL, m.ops.sys_update_elem(u32(0), bytes(32), 3), host)
    fails(errno.EINVAL, m.ops.sys_update_elem(u32(0), bytes(32), BPF_F_LOCK), host)


def test_syscall_get_next_key(host):
    m, fd = create_map(host, ARRAY, max_entries=3)
    us = UserSpace(host, fd)
    assert us.next_key(None) == 0
    assert us.next_key(1) == 2
    assert us.next_key(9) == 0
    sys_fails(errno.ENOENT, us.next_key, 2)


def test_frozen_map_refuses_syscall_writes_but_not_program_writes(host):
    m, fd = create_map(host, ARRAY)
    us = UserSpace(host, fd)
    us.freeze()
    assert m.frozen
    sys_fails(errno.EPERM, us.update, 0, bytes(8))
    sys_fails(errno.EPERM, us.delete, 0)
    # a second freeze: EBUSY, as API.md states (v6.6 says EPERM; docs/deviations.md)
    sys_fails(errno.EBUSY, us.freeze)
    drive(m.update_elem(u32(0), b"\x05" * 8, BPF_ANY), host)
    assert us.lookup(0, 8) == b"\x05" * 8


def test_fd_access_flags(host):
    ro, ro_fd = create_map(host, ARRAY, map_flags=BPF_F_RDONLY)
    us = UserSpace(host, ro_fd)
    assert us.lookup(0, 8) == bytes(8)
    sys_fails(errno.EPERM, us.update, 0, bytes(8))
    sys_fails(errno.EPERM, us.freeze)
    wo, wo_fd = create_map(host, ARRAY, map_flags=BPF_F_WRONLY)
    us = UserSpace(host, wo_fd)
    us.update(0, bytes(8))
    sys_fails(errno.EPERM, us.lookup, 0, 8)
    sys_fails(errno.EPERM, us.next_key, None)


def test_syscall_lookup_flags_and_bad_fds_and_pointers(host):
    m, fd = create_map(host, ARRAY)
    us = UserSpace(host, fd)
    sys_fails(errno.EINVAL, us.lookup, 0, 8, flags=2)
    sys_fails(errno.EINVAL, us.lookup, 0, 8, flags=BPF_F_LOCK)
    fails(errno.EBADF, bpf_map_lookup_elem(host, BpfMapElemAttr(99, 0, 0, 0)), host)
    other = host.install_other_fd(object())
    fails(errno.EINVAL, bpf_map_lookup_elem(host, BpfMapElemAttr(other, 0, 0, 0)), host)
    value = host.map_user(bytes(8))
    fails(errno.EFAULT, bpf_map_lookup_elem(host, BpfMapElemAttr(fd, 0xDEAD000, value, 0)), host)
    key = host.map_user(u32(0))
    fails(errno.EFAULT, bpf_map_update_elem(host, BpfMapElemAttr(fd, key, 0xDEAD000, 0)), host)
    assert m.write_active == 0


def test_elem_attr_tail_check(host):
    data = bytearray(BpfMapElemAttr(3, 0x1000, 0, 0).pack())
    data[24] = 1  # flags: past BPF_MAP_DELETE_ELEM's last field (key)
    with pytest.raises(BpfError) as e:
        parse_elem_attr(BpfCmd.BPF_MAP_DELETE_ELEM, data)
    assert e.value.errno == errno.EINVAL
    assert parse_elem_attr(BpfCmd.BPF_MAP_UPDATE_ELEM, data).flags == 1


def test_freeze_attr_reads_only_map_fd(host):
    data = bytearray(BpfMapElemAttr(3).pack())
    data[8] = 1
    with pytest.raises(BpfError):
        parse_elem_attr(BpfCmd.BPF_MAP_FREEZE, data)


# ---------------------------------------------------------------------------------------------
# A random walk against a model
# ---------------------------------------------------------------------------------------------


class ArrayModel(RuleBasedStateMachine):
    """ARRAY driven by random updates, lookups, deletes and get_next_key through both sides,
    compared with a list of values."""

    @initialize(entries=st.integers(1, 9), value_size=st.integers(1, 20), mmap=st.booleans())
    def make(self, entries, value_size, mmap):
        self.host = TestHost(ncpus=2, seed=3)
        self.map, fd = create_map(
            self.host,
            ARRAY,
            value_size=value_size,
            max_entries=entries,
            map_flags=BPF_F_MMAPABLE if mmap else 0,
        )
        self.us = UserSpace(self.host, fd)
        self.entries, self.size = entries, value_size
        self.model = [bytes(value_size)] * entries

    @rule(
        key=st.integers(0, 12),
        data=st.binary(min_size=20, max_size=20),
        flags=st.sampled_from([0, 1, 2, 3, 4, 6]),
        prog=st.booleans(),
    )
    def update(self, key, data, flags, prog):
        value = data[: self.size]
        if not prog and flags & BPF_F_LOCK:  # map_update_elem checks it before the array
            expect = errno.EINVAL
        elif (flags & ~BPF_F_LOCK) > BPF_EXIST:
            expect = errno.EINVAL
        elif key >= self.entries:
            expect = errno.E2BIG
        elif flags & BPF_NOEXIST:
            expect = errno.EEXIST
        elif flags & BPF_F_LOCK:
            expect = errno.EINVAL
        else:
            expect = 0
        try:
            if prog:
                drive(self.map.update_elem(u32(key), value, flags), self.host)
            else:
                self.us.update(key, value, flags)
        except BpfError as e:
            assert e.errno == expect
        else:
            assert expect == 0
            self.model[key] = value

    @rule(key=st.integers(0, 12))
    def lookup(self, key):
        addr = drive(self.map.lookup_elem(u32(key)), self.host)
        if key >= self.entries:
            assert addr == 0
            sys_fails(errno.ENOENT, self.us.lookup, key, self.size)
        else:
            assert self.host.read(addr, self.size) == self.model[key]
            assert self.us.lookup(key, self.size) == self.model[key]

    @rule(key=st.integers(0, 12))
    def delete(self, key):
        sys_fails(errno.EINVAL, self.us.delete, key)

    @rule(key=st.one_of(st.none(), st.integers(0, 12)))
    def next_key(self, key):
        if key is not None and key == self.entries - 1:
            sys_fails(errno.ENOENT, self.us.next_key, key)
        else:
            expect = 0 if key is None or key >= self.entries else key + 1
            assert self.us.next_key(key) == expect

    @invariant()
    def for_each_sees_the_model(self):
        if not hasattr(self, "map"):
            return
        seen = []
        self.host.programs[0x40] = lambda m, k, v, c, z: (
            seen.append(self.host.read(v, self.size)) or 0
        )
        assert drive(self.map.for_each_elem(0x40, 0, 0), self.host) == self.entries
        assert seen == self.model


TestArrayModel = ArrayModel.TestCase
