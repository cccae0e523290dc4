"""BPF_PROG_LOAD attribute parsing (``bpf_prog_load``'s checks before verification) and the
load log written back to user space."""

import errno

import pytest

from kbpf.errors import BpfError
from kbpf.host import TaskInfo
from kbpf.insn import EXIT, EbpfInst, encode_all
from kbpf.linux_bpf import (
    BPF_F_SLEEPABLE,
    BPF_LOG_FIXED,
    BPF_LOG_LEVEL1,
    BpfProgLoadAttr,
    BpfProgType,
)
from kbpf.prog import BpfProgMeta, BpfVerifierLog
from tests.kbpf.testhost import TestHost

CODE = encode_all([EbpfInst(0xB7, dst=0, imm=7), EbpfInst(EXIT)])


@pytest.fixture
def host():
    h = TestHost()
    h.tasks[0] = TaskInfo(10, 10, "loader")
    return h


def attr(host, **kw) -> bytes:
    base = dict(
        prog_type=int(BpfProgType.BPF_PROG_TYPE_TRACEPOINT),
        insn_cnt=2,
        insns=host.map_user(CODE),
        license=host.map_user(b"GPL\0"),
        prog_name=b"count",
    )
    base.update(kw)
    return BpfProgLoadAttr(**base).pack()


def errno_of(host, data):
    with pytest.raises(BpfError) as e:
        BpfProgMeta.from_attr(host, data)
    return e.value.errno


def test_a_program_is_read_from_user_memory(host):
    meta = BpfProgMeta.from_attr(host, attr(host))
    assert meta.prog_type is BpfProgType.BPF_PROG_TYPE_TRACEPOINT
    assert meta.insns == CODE and meta.insn_cnt == 2
    assert (meta.name, meta.license, meta.gpl_compatible) == ("count", "GPL", True)


def test_licenses(host):
    lic = host.map_user(b"Dual MIT/GPL\0")
    assert BpfProgMeta.from_attr(host, attr(host, license=lic)).gpl_compatible
    lic = host.map_user(b"Proprietary\0")
    assert not BpfProgMeta.from_attr(host, attr(host, license=lic)).gpl_compatible
    long = host.map_user(b"G" * 200)  # no NUL: cut at 127 bytes, as the kernel's buffer
    assert BpfProgMeta.from_attr(host, attr(host, license=long)).license == "G" * 127


@pytest.mark.parametrize(
    "fields, code",
    [
        (dict(prog_type=33), errno.EINVAL),  # not a v6.6 program type
        (dict(prog_type=0), errno.EINVAL),
        (dict(prog_flags=1 << 7), errno.EINVAL),
        (dict(insn_cnt=0), errno.E2BIG),
        (dict(insn_cnt=1_000_001), errno.E2BIG),
        (dict(license=0), errno.EFAULT),
        (dict(license=0xDEAD0000), errno.EFAULT),
        (dict(insns=0xDEAD0000), errno.EFAULT),
        (dict(prog_name=b"bad name"), errno.EINVAL),
        (dict(log_buf=0x1000, log_size=0), errno.EINVAL),  # buffer without size
        (dict(log_level=1, log_size=64), errno.EINVAL),  # size without buffer
        (dict(log_level=0, log_buf=0x1000, log_size=64), errno.EINVAL),  # no level
        (dict(log_level=16), errno.EINVAL),  # unknown level bit
    ],
)
def test_load_attribute_errors(host, fields, code):
    assert errno_of(host, attr(host, **fields)) == code


def test_known_prog_flags_pass(host):
    assert BpfProgMeta.from_attr(host, attr(host, prog_flags=BPF_F_SLEEPABLE)).prog_flags == 16


def test_bytes_past_the_union_are_einval(host):
    data = attr(host) + b"\x01"
    assert errno_of(host, data) == errno.EINVAL


def test_log_is_written_back_rotating_by_default(host):
    buf = host.map_user(bytes(8))
    log = BpfVerifierLog.from_attr(
        BpfProgLoadAttr(log_level=BPF_LOG_LEVEL1, log_buf=buf, log_size=8)
    )
    log.write("0123456789\n")
    with pytest.raises(BpfError) as e:
        log.finalize(host)
    assert e.value.errno == errno.ENOSPC
    assert host.copy_from_user(buf, 8) == b"456789\n\0"  # the end of the log is kept


def test_fixed_log_keeps_the_start_and_reports_true_size(host):
    buf = host.map_user(bytes(64))
    log = BpfVerifierLog(BPF_LOG_LEVEL1 | BPF_LOG_FIXED, buf, 64)
    log.write("insn 3: unknown opcode 0xff\n")
    assert log.finalize(host) == len("insn 3: unknown opcode 0xff\n") + 1
    assert host.copy_from_user(buf, 29) == b"insn 3: unknown opcode 0xff\n\0"
    small = host.map_user(bytes(4))
    log = BpfVerifierLog(BPF_LOG_LEVEL1 | BPF_LOG_FIXED, small, 4)
    log.write("abcdef")
    with pytest.raises(BpfError):
        log.finalize(host)
    assert host.copy_from_user(small, 4) == b"abc\0"


def test_a_log_without_level_keeps_nothing(host):
    log = BpfVerifierLog()
    log.write("ignored")
    assert log.text == "" and log.finalize(host) == 0
