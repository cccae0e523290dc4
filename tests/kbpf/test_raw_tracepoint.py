"""BPF_RAW_TRACEPOINT_OPEN's attribute as ``bpf_raw_tracepoint_open`` / ``bpf_raw_tp_link_attach``
(kernel/bpf/syscall.c, v6.6) read it: CHECK_ATTR, the program type, and the name copied with
``strncpy_from_user`` into a 128-byte buffer."""

import errno

import pytest

from kbpf.errors import BpfError
from kbpf.host import TaskInfo
from kbpf.linux_bpf import BPF_ATTR_SIZE, PAGE_SIZE, BpfProgType, BpfRawTracepointOpenAttr
from kbpf.raw_tracepoint import RAW_TP_NAME_MAX, BpfRawTracePointArg
from tests.kbpf.testhost import TestHost

P = BpfProgType


@pytest.fixture
def host():
    h = TestHost(ncpus=2)
    h.tasks[0] = TaskInfo(300, 300, "loader")
    return h


def attr_bytes(name_ptr: int, prog_fd: int, size: int = BPF_ATTR_SIZE) -> bytearray:
    data = bytearray(size)
    data[:12] = BpfRawTracepointOpenAttr(name=name_ptr, prog_fd=prog_fd).pack()[:12]
    return data


def parse(host, data, prog_type=None):
    return BpfRawTracePointArg.try_from_bpf_attr(host, data, prog_type)


def fails(code, host, data, prog_type=None):
    with pytest.raises(BpfError) as e:
        parse(host, data, prog_type)
    assert e.value.errno == code, str(e.value)


def test_name_and_prog_fd(host):
    name = host.map_user(b"sched_switch\0")
    arg = parse(host, attr_bytes(name, 7), P.BPF_PROG_TYPE_RAW_TRACEPOINT)
    assert arg == BpfRawTracePointArg("sched_switch", 7)
    obj = BpfRawTracepointOpenAttr(name=name, prog_fd=8)
    assert parse(host, obj, P.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE).prog_fd == 8
    assert parse(host, attr_bytes(name, 7, size=12)).name == "sched_switch"  # a short attr


def test_check_attr(host):
    """Bytes past raw_tracepoint.prog_fd (offset 12) must be zero."""
    name = host.map_user(b"x\0")
    data = attr_bytes(name, 3)
    data[12] = 1
    fails(errno.EINVAL, host, data)
    data = attr_bytes(name, 3)
    data[BPF_ATTR_SIZE - 1] = 1
    fails(errno.EINVAL, host, data)


def test_long_names_are_cut_not_refused(host):
    """The kernel copies at most 127 bytes and terminates the buffer: a longer name is cut."""
    name = host.map_user(b"t" * 200 + b"\0")
    assert parse(host, attr_bytes(name, 3)).name == "t" * RAW_TP_NAME_MAX


def test_the_copy_stops_at_127_bytes(host):
    """A name without a NUL whose 127th byte is the last mapped one is fine: the copy never
    reads further.  One that runs into unmapped memory before its NUL faults."""
    page = host.map_user(bytes(PAGE_SIZE))  # the page after it stays unmapped
    edge = page + PAGE_SIZE - RAW_TP_NAME_MAX
    host.copy_to_user(edge, b"n" * RAW_TP_NAME_MAX)
    assert parse(host, attr_bytes(edge, 3)).name == "n" * RAW_TP_NAME_MAX
    fails(errno.EFAULT, host, attr_bytes(page + PAGE_SIZE - 50, 3))


def test_unreadable_names(host):
    fails(errno.EFAULT, host, attr_bytes(0, 3))  # NULL
    fails(errno.EFAULT, host, attr_bytes(0xBAD000, 3))
    host.tasks.clear()  # the idle task has no user memory
    fails(errno.EFAULT, host, attr_bytes(0x1000_0000, 3))


@pytest.mark.parametrize(
    "prog_type, with_name",
    [
        (P.BPF_PROG_TYPE_TRACING, True),  # attach point from BTF: no name allowed
        (P.BPF_PROG_TYPE_TRACING, False),  # and kbpf has no BTF to attach by
        (P.BPF_PROG_TYPE_LSM, False),
        (P.BPF_PROG_TYPE_KPROBE, True),
        (P.BPF_PROG_TYPE_TRACEPOINT, True),
        (99, True),
    ],
)
def test_program_types(host, prog_type, with_name):
    name = host.map_user(b"sys_enter\0") if with_name else 0
    fails(errno.EINVAL, host, attr_bytes(name, 3), prog_type)


def test_type_is_checked_before_the_name_is_read(host):
    """Linux refuses a wrong program type before it touches the name: EINVAL, not EFAULT."""
    fails(errno.EINVAL, host, attr_bytes(0xBAD000, 3), P.BPF_PROG_TYPE_KPROBE)
