"""EbpfPreProcessor: map references in LD_DW_IMM become kernel addresses, as
``resolve_pseudo_ldimm64`` + ``convert_pseudo_ld_imm64`` do in the v6.6 verifier."""

import errno

import pytest

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.insn import EXIT, EbpfInst, decode_all, encode_all, lddw
from kbpf.linux_bpf import (
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_VALUE,
)
from kbpf.preprocessor import EbpfPreProcessor
from tests.kbpf.testhost import TestHost, create_map


def prog(*parts) -> bytes:
    insns = []
    for p in parts:
        insns += p if isinstance(p, list) else [p]
    return encode_all(insns + [EbpfInst(EXIT)])


def loaded_value(insns: list[EbpfInst], at: int) -> int:
    return (insns[at].imm & 0xFFFFFFFF) | (insns[at + 1].imm & 0xFFFFFFFF) << 32


@pytest.fixture
def host():
    return TestHost(ncpus=2)


def test_map_fd_becomes_the_maps_address_and_src_is_cleared(host):
    m, fd = create_map(host, "array", max_entries=4)
    code = prog(lddw(1, fd, src=BPF_PSEUDO_MAP_FD, next_imm=0))
    pre = EbpfPreProcessor.preprocess(host, code)
    insns = decode_all(pre.new_insn)
    assert loaded_value(insns, 0) == m.addr
    assert insns[0].src == 0 and insns[0].dst == 1
    assert pre.raw_file_ptr == [m.addr]


def test_map_value_becomes_value_address_plus_offset(host):
    data, fd = create_map(host, "array", value_size=64, max_entries=1)
    start, _ = data.map_values_ptr_range()
    pre = EbpfPreProcessor.preprocess(
        host, prog(lddw(2, fd, src=BPF_PSEUDO_MAP_VALUE, next_imm=40))
    )
    insns = decode_all(pre.new_insn)
    assert loaded_value(insns, 0) == start + 40 and insns[0].src == 0
    assert pre.raw_file_ptr == [data.addr]


def test_each_map_is_listed_once_in_order_of_first_use(host):
    a, fa = create_map(host, "array")
    b, fb = create_map(host, "array", max_entries=1)
    code = prog(
        lddw(1, fb, src=BPF_PSEUDO_MAP_FD, next_imm=0),
        lddw(1, fa, src=BPF_PSEUDO_MAP_FD, next_imm=0),
        lddw(1, fb, src=BPF_PSEUDO_MAP_VALUE, next_imm=0),
    )
    assert EbpfPreProcessor.preprocess(host, code).raw_file_ptr == [b.addr, a.addr]


def test_plain_constants_and_callbacks_are_untouched(host):
    code = prog(lddw(3, 0x1122334455667788), lddw(4, 7, src=BPF_PSEUDO_FUNC, next_imm=0))
    pre = EbpfPreProcessor.preprocess(host, code)
    assert pre.new_insn == code and pre.raw_file_ptr == []


def errno_of(host, code):
    with pytest.raises(BpfError) as e:
        EbpfPreProcessor.preprocess(host, code)
    return e.value.errno


def test_value_offset_beyond_the_value_is_einval(host):
    _, fd = create_map(host, "array", value_size=64, max_entries=1)
    assert errno_of(host, prog(lddw(1, fd, src=BPF_PSEUDO_MAP_VALUE, next_imm=64))) == errno.EINVAL
    assert errno_of(host, prog(lddw(1, fd, src=BPF_PSEUDO_MAP_VALUE, next_imm=-1))) == errno.EINVAL


def test_direct_value_needs_a_one_element_array(host):
    _, many = create_map(host, "array", max_entries=2)
    assert errno_of(host, prog(lddw(1, many, src=BPF_PSEUDO_MAP_VALUE, next_imm=0))) == ENOTSUPP
    _, pc = create_map(host, "percpu_array", max_entries=1)
    assert errno_of(host, prog(lddw(1, pc, src=BPF_PSEUDO_MAP_VALUE, next_imm=0))) == errno.EINVAL


def test_bad_fds(host):
    assert errno_of(host, prog(lddw(1, 77, src=BPF_PSEUDO_MAP_FD, next_imm=0))) == errno.EBADF
    other = host.install_other_fd(object())
    assert errno_of(host, prog(lddw(1, other, src=BPF_PSEUDO_MAP_FD, next_imm=0))) == errno.EINVAL


def test_malformed_ld_dw_imm(host):
    _, fd = create_map(host, "array")
    truncated = encode_all([EbpfInst(EXIT), lddw(1, 5)[0]])
    assert errno_of(host, truncated) == errno.EINVAL
    bad_second = encode_all([lddw(1, 5)[0], EbpfInst(0, dst=1), EbpfInst(EXIT)])
    assert errno_of(host, bad_second) == errno.EINVAL
    assert errno_of(host, prog(lddw(1, fd, src=BPF_PSEUDO_MAP_FD, next_imm=1))) == errno.EINVAL
    assert errno_of(host, prog(lddw(1, 1, src=BPF_PSEUDO_BTF_ID, next_imm=0))) == errno.EINVAL
    assert errno_of(host, prog(lddw(1, 0, src=BPF_PSEUDO_MAP_IDX, next_imm=0))) == errno.EPROTO
    assert errno_of(host, prog(lddw(1, 0, src=7, next_imm=0))) == errno.EINVAL
    assert errno_of(host, b"\x95" + bytes(6)) == errno.EINVAL  # not whole instructions
