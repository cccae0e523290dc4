"""The helper table: each helper as a program sees it, five u64 arguments in, r0 out.

Errors reach the program as negative errno (two's complement in r0), lookups as an address or
NULL, as bpf-helpers(7) documents them for Linux v6.6."""

import errno

import pytest

from kbpf.errors import BpfError
from kbpf.helper import HELPERS, Ret, all_helper_specs, init_helper_functions, request_helpers
from kbpf.helper.adapter import HelperSpec, adapt
from kbpf.host import Callback, TaskInfo, Touch, drive
from kbpf.linux_bpf import (
    BPF_F_RDONLY_PROG,
    BPF_NOEXIST,
    TASK_SIZE_MAX,
    BpfFuncId,
)
from tests.kbpf.testhost import TestHost, create_map, scratch, u32, u64

F = BpfFuncId
U64 = (1 << 64) - 1


def neg(code: int) -> int:
    """A negative errno as the program sees it in r0."""
    return -code & U64


@pytest.fixture
def host():
    return TestHost(ncpus=4, seed=7)


@pytest.fixture
def call(host):
    table = init_helper_functions(host)

    def call(func_id, *args):
        args = list(args) + [0] * (5 - len(args))
        return table[int(func_id)](*args)

    return call


def test_the_table_offers_every_helper_of_this_module():
    host = TestHost()
    ids = set(init_helper_functions(host))
    expected = {1, 2, 3, 4, 5, 6, 7, 8, 14, 16, 87, 88, 89, 112, 113, 114, 115, 125, 164}
    assert expected | {177, 181, 195} <= ids
    # the families' modules add theirs; each id is offered once
    assert ids == {int(spec.func_id) for spec in all_helper_specs()}
    assert set(request_helpers(host)) == ids
    assert len({spec.func_id for spec in HELPERS}) == len(HELPERS)


def test_request_form_yields_touches_for_the_key(host):
    m, _ = create_map(host, "array", max_entries=4)
    key = scratch(host, u32(1))
    gen = request_helpers(host)[1](m.addr, key, 0, 0, 0)
    assert next(gen) == Touch(key, 4)
    with pytest.raises(StopIteration) as done:
        gen.send(None)
    assert done.value.value == drive(m.lookup_elem(u32(1)), host)


# -- the adapter ---------------------------------------------------------------------------------


def _fails(env, r1, r2, r3, r4, r5):
    raise BpfError(errno.ENOENT, "absent")
    yield


def _returns(env, r1, r2, r3, r4, r5):
    return r1
    yield


def test_adapter_conventions():
    errno_h = adapt(HelperSpec(1, _fails, Ret.ERRNO), None)
    assert drive(errno_h(0, 0, 0, 0, 0), None) == neg(errno.ENOENT)
    pointer_h = adapt(HelperSpec(1, _fails, Ret.POINTER), None)
    assert drive(pointer_h(0, 0, 0, 0, 0), None) == 0
    void_h = adapt(HelperSpec(1, _returns, Ret.VOID), None)
    assert drive(void_h(5, 0, 0, 0, 0), None) == 0
    value_h = adapt(HelperSpec(1, _returns, Ret.VALUE), None)
    assert drive(value_h(-1, 0, 0, 0, 0), None) == U64  # masked to 64 bits
    with pytest.raises(BpfError):
        drive(adapt(HelperSpec(1, _fails, Ret.VALUE), None)(0, 0, 0, 0, 0), None)


# -- map helpers ----------------------------------------------------------------------------------


def test_map_helpers_on_an_array(host, call):
    m, _ = create_map(host, "array", value_size=8, max_entries=4)
    key, val = scratch(host, u32(2)), scratch(host, u64(0x1122334455667788))
    assert call(F.BPF_FUNC_map_update_elem, m.addr, key, val, 0) == 0
    addr = call(F.BPF_FUNC_map_lookup_elem, m.addr, key)
    assert host.read(addr, 8) == u64(0x1122334455667788)
    assert call(F.BPF_FUNC_map_update_elem, m.addr, key, val, BPF_NOEXIST) == neg(errno.EEXIST)
    assert call(F.BPF_FUNC_map_delete_elem, m.addr, key) == neg(errno.EINVAL)
    host.write(key, u32(4))
    assert call(F.BPF_FUNC_map_lookup_elem, m.addr, key) == 0
    assert call(F.BPF_FUNC_map_update_elem, m.addr, key, val, 0) == neg(errno.E2BIG)


def test_lookup_on_something_that_is_not_a_map_is_null(host, call):
    assert call(F.BPF_FUNC_map_lookup_elem, 0xFFFF_8880_0DEA_D000, scratch(host, u32(0))) == 0


def test_rdonly_prog_map_refuses_program_writes(host, call):
    m, _ = create_map(host, "array", map_flags=BPF_F_RDONLY_PROG)
    key, val = scratch(host, u32(0)), scratch(host, bytes(8))
    assert call(F.BPF_FUNC_map_update_elem, m.addr, key, val, 0) == neg(errno.EACCES)
    assert call(F.BPF_FUNC_map_delete_elem, m.addr, key) == neg(errno.EACCES)
    assert call(F.BPF_FUNC_map_lookup_elem, m.addr, key) != 0


def test_lookup_percpu_elem(host, call):
    m, _ = create_map(host, "percpu_array", max_entries=2)
    key = scratch(host, u32(1))
    host.cpu = 3
    mine = call(F.BPF_FUNC_map_lookup_elem, m.addr, key)
    host.cpu = 0
    assert call(F.BPF_FUNC_map_lookup_percpu_elem, m.addr, key, 3) == mine
    assert call(F.BPF_FUNC_map_lookup_percpu_elem, m.addr, key, 4) == 0
    arr, _ = create_map(host, "array")
    assert call(F.BPF_FUNC_map_lookup_percpu_elem, arr.addr, key, 0) == 0  # not per-CPU


def test_queue_helpers_reach_maps_without_queue_operations(host, call):
    m, _ = create_map(host, "array")
    val = scratch(host, bytes(8))
    assert call(F.BPF_FUNC_map_push_elem, m.addr, val, 0) == neg(errno.EINVAL)
    assert call(F.BPF_FUNC_map_pop_elem, m.addr, val) == neg(errno.EINVAL)
    assert call(F.BPF_FUNC_map_peek_elem, m.addr, val) == neg(errno.EINVAL)


def test_for_each_map_elem_helper(host, call):
    m, _ = create_map(host, "array", max_entries=6)
    host.programs[0x500] = lambda mp, kp, vp, ctx, z: int(host.read(kp, 4) == u32(3))
    assert call(F.BPF_FUNC_for_each_map_elem, m.addr, 0x500, 0, 0) == 4
    assert call(F.BPF_FUNC_for_each_map_elem, m.addr, 0x500, 0, 1) == neg(errno.EINVAL)


# -- bpf_loop ----------------------------------------------------------------------------------


def test_loop_calls_back_with_index_and_ctx_and_stops_on_non_zero(host, call):
    host.programs[0x600] = lambda i, ctx, *rest: 1 if i == 4 else 0
    assert call(F.BPF_FUNC_loop, 10, 0x600, 0xABC, 0) == 5
    assert host.calls[0] == (0x600, (0, 0xABC, 0, 0, 0))
    host.calls.clear()
    assert call(F.BPF_FUNC_loop, 3, 0x600, 0, 0) == 3 and len(host.calls) == 3
    assert call(F.BPF_FUNC_loop, 0, 0x600, 0, 0) == 0


def test_loop_limits(host, call):
    assert call(F.BPF_FUNC_loop, 1, 0x600, 0, 1) == neg(errno.EINVAL)
    assert call(F.BPF_FUNC_loop, (1 << 23) + 1, 0x600, 0, 0) == neg(errno.E2BIG)
    # nr_loops is a u32: the upper half of r1 is ignored
    host.programs[0x600] = lambda *a: 0
    assert call(F.BPF_FUNC_loop, (1 << 32) + 2, 0x600, 0, 0) == 2


def test_loop_request_form_yields_callbacks(host):
    gen = request_helpers(host)[181](2, 0x700, 9, 0, 0)
    assert next(gen) == Callback(0x700, (0, 9, 0, 0, 0))
    assert gen.send(0) == Callback(0x700, (1, 9, 0, 0, 0))
    with pytest.raises(StopIteration) as done:
        gen.send(1)
    assert done.value.value == 2


# -- time, randomness, CPU, task ------------------------------------------------------------------


def test_time_random_cpu(host, call):
    host.now_ns = 123_456
    assert call(F.BPF_FUNC_ktime_get_ns) == 123_456
    assert call(F.BPF_FUNC_ktime_get_boot_ns) == 123_456
    twin = TestHost(seed=7)
    expected = [twin.random_u32() for _ in range(3)]
    assert [call(F.BPF_FUNC_get_prandom_u32) for _ in range(3)] == expected
    host.cpu = 3
    assert call(F.BPF_FUNC_get_smp_processor_id) == 3


def test_current_task(host, call):
    assert call(F.BPF_FUNC_get_current_pid_tgid) == 0  # the idle task
    host.tasks[0] = TaskInfo(pid=1234, tgid=1200, comm="a_rather_long_command")
    assert call(F.BPF_FUNC_get_current_pid_tgid) == 1200 << 32 | 1234
    buf = scratch(host, b"\xff" * 20)
    assert call(F.BPF_FUNC_get_current_comm, buf, 20) == 0
    # TASK_COMM_LEN: at most 15 characters, NUL-terminated, zero-padded to size
    assert host.read(buf, 20) == b"a_rather_long_c" + bytes(5)
    assert call(F.BPF_FUNC_get_current_comm, buf, 4) == 0
    assert host.read(buf, 5) == b"a_r\0t"  # only size bytes are written
    host.cpu = 2
    assert call(F.BPF_FUNC_get_current_comm, buf, 16) == 0
    assert host.read(buf, 16) == b"swapper/2".ljust(16, b"\0")


# -- probe_read_* ---------------------------------------------------------------------------------


@pytest.fixture
def task(host):
    host.tasks[0] = TaskInfo(500, 500, "reader")
    return host


def test_probe_read_kernel_copies_or_zeroes(task, call):
    host = task
    src = scratch(host, b"kernel bytes")
    dst = scratch(host, b"\xff" * 12)
    assert call(F.BPF_FUNC_probe_read_kernel, dst, 12, src) == 0
    assert host.read(dst, 12) == b"kernel bytes"
    host.write(dst, b"\xff" * 12)
    unmapped = 0xFFFF_8880_3F00_0000
    assert call(F.BPF_FUNC_probe_read_kernel, dst, 12, unmapped) == neg(errno.EFAULT)
    assert host.read(dst, 12) == bytes(12)
    user = host.map_user(b"user data")
    host.write(dst, b"\xff" * 12)
    assert call(F.BPF_FUNC_probe_read_kernel, dst, 9, user) == neg(errno.ERANGE)
    assert host.read(dst, 9) == bytes(9)


def test_probe_read_user(task, call):
    host = task
    user = host.map_user(b"user data")
    dst = scratch(host, size=16)
    assert call(F.BPF_FUNC_probe_read_user, dst, 9, user) == 0
    assert host.read(dst, 9) == b"user data"
    host.write(dst, b"\xff" * 8)
    assert call(F.BPF_FUNC_probe_read_user, dst, 8, scratch(host, bytes(8))) == neg(errno.EFAULT)
    assert host.read(dst, 8) == bytes(8)
    assert call(F.BPF_FUNC_probe_read_user, dst, 8, TASK_SIZE_MAX - 4) == neg(errno.EFAULT)


def test_probe_read_user_on_the_idle_task_faults(host, call):
    user = host.map_user(b"data")
    dst = scratch(host, size=4)
    assert call(F.BPF_FUNC_probe_read_user, dst, 4, user) == neg(errno.EFAULT)
    assert call(F.BPF_FUNC_probe_read_user_str, dst, 4, user) == neg(errno.EFAULT)


def test_probe_read_kernel_str(task, call):
    host = task
    src = scratch(host, b"hello\0world")
    dst = scratch(host, b"\xee" * 16)
    assert call(F.BPF_FUNC_probe_read_kernel_str, dst, 16, src) == 6  # length with the NUL
    assert host.read(dst, 8) == b"hello\0\xee\xee"  # not padded
    assert call(F.BPF_FUNC_probe_read_kernel_str, dst, 4, src) == 4  # cut: size-1 bytes + NUL
    assert host.read(dst, 4) == b"hel\0"
    empty = scratch(host, b"\0")
    assert call(F.BPF_FUNC_probe_read_kernel_str, dst, 16, empty) == 1
    assert call(F.BPF_FUNC_probe_read_kernel_str, dst, 0, src) == 0
    host.write(dst, b"\xee" * 16)
    assert call(F.BPF_FUNC_probe_read_kernel_str, dst, 16, 0x1000) == neg(errno.ERANGE)
    assert host.read(dst, 16) == bytes(16)


def test_probe_read_user_str(task, call):
    host = task
    src = host.map_user(b"abc\0")
    dst = scratch(host, b"\xee" * 8)
    assert call(F.BPF_FUNC_probe_read_user_str, dst, 8, src) == 4
    assert host.read(dst, 5) == b"abc\0\xee"
    assert call(F.BPF_FUNC_probe_read_user_str, dst, 3, src) == 3
    assert host.read(dst, 3) == b"ab\0"
    # Linux's quirk: an empty user string gives 0, not 1
    assert call(F.BPF_FUNC_probe_read_user_str, dst, 8, host.map_user(b"\0")) == 0
    host.write(dst, b"\xee" * 8)
    assert call(F.BPF_FUNC_probe_read_user_str, dst, 8, scratch(host, b"k\0")) == neg(errno.EFAULT)
    assert host.read(dst, 8) == bytes(8)


def test_probe_read_user_str_across_an_unmapped_page_faults(task, call):
    host = task
    # a string that runs to the end of its last mapped page without a NUL
    src = host.map_user(b"x" * 4096, addr=0x7000_0000)
    dst = scratch(host, size=64)
    assert call(F.BPF_FUNC_probe_read_user_str, dst, 64, src + 4096 - 10) == neg(errno.EFAULT)


def test_probe_read_compat_picks_user_or_kernel_by_address(task, call):
    host = task
    user = host.map_user(b"U" * 4)
    kern = scratch(host, b"K" * 4)
    dst = scratch(host, size=4)
    assert call(F.BPF_FUNC_probe_read, dst, 4, user) == 0 and host.read(dst, 4) == b"UUUU"
    assert call(F.BPF_FUNC_probe_read, dst, 4, kern) == 0 and host.read(dst, 4) == b"KKKK"
