"""bpf(2) on the simulated kernel: Linux's attribute size rules, and what the kernel hands back."""

import errno

import pytest

from kbpf import linux_bpf as uapi
from kbpf.errors import BpfError
from kbpf.linux_bpf import BpfCmd
from sim import Machine


def bpf(m: Machine, cmd: int, attr: bytes) -> int:
    calls = m.kernel.facade_calls
    calls.begin()
    return calls.bpf(cmd, attr)


def map_create_attr(**kw) -> bytes:
    fields = dict(
        map_type=int(uapi.BpfMapType.BPF_MAP_TYPE_ARRAY), key_size=4, value_size=8, max_entries=2
    )
    fields.update(kw)
    return uapi.BpfMapCreateAttr(**fields).pack()


def test_an_attr_larger_than_the_kernels_is_accepted_when_its_tail_is_zero():
    m = Machine(cpus=1)
    fd = bpf(m, BpfCmd.BPF_MAP_CREATE, map_create_attr() + bytes(64))
    assert fd == 3


def test_non_zero_bytes_past_sizeof_bpf_attr_are_E2BIG():
    m = Machine(cpus=1)
    with pytest.raises(BpfError) as exc:
        bpf(m, BpfCmd.BPF_MAP_CREATE, map_create_attr() + bytes(8) + b"\x01")
    assert exc.value.errno == errno.E2BIG


def test_non_zero_bytes_past_the_commands_last_field_are_EINVAL():
    m = Machine(cpus=1)
    raw = bytearray(map_create_attr())
    raw[uapi.BpfMapCreateAttr.END] = 1  # the byte right after map_extra
    with pytest.raises(BpfError) as exc:
        bpf(m, BpfCmd.BPF_MAP_CREATE, bytes(raw))
    assert exc.value.errno == errno.EINVAL and str(uapi.BpfMapCreateAttr.END) in str(exc.value)
    fd = bpf(m, BpfCmd.BPF_MAP_CREATE, map_create_attr())
    # BPF_MAP_DELETE_ELEM reads only map_fd and key: a non-zero value pointer is a bad tail.
    elem = uapi.BpfMapElemAttr(map_fd=fd, key=0x1000, value=0x2000).pack()
    with pytest.raises(BpfError) as exc:
        bpf(m, BpfCmd.BPF_MAP_DELETE_ELEM, elem)
    assert exc.value.errno == errno.EINVAL


def test_a_short_attr_is_zero_extended_and_unknown_commands_are_EINVAL():
    m = Machine(cpus=1)
    short = map_create_attr()[:16]  # up to map_flags: a legacy caller
    assert bpf(m, BpfCmd.BPF_MAP_CREATE, short) >= 3
    with pytest.raises(BpfError) as exc:
        bpf(m, 999, map_create_attr())
    assert exc.value.errno == errno.EINVAL


def test_fds_are_per_process_and_lowest_free():
    m = Machine(cpus=1)
    a = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    b = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    assert (a.fd, b.fd) == (3, 4)
    a.close()
    c = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    assert c.fd == 3
    other = m.kernel.new_process("other")
    with pytest.raises(BpfError) as exc:
        m.kernel.map_from_fd(other, b.fd)
    assert exc.value.errno == errno.EBADF


def test_a_map_lives_while_a_program_holds_it():
    from kbpf.asm import assemble

    m = Machine(cpus=1)
    arr = m.create_map("array", key_size=4, value_size=8, max_entries=1)
    prog = m.load_program(
        assemble(f"""
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd {arr.fd}
        call 1
        jeq %r0, 0, out
        mov %r1, 1
        lock add [%r0], %r1
        ldxdw %r0, [%r0]
        exit
    out:
        exit
    """),
        name="inc",
    )
    assert m.run_program(prog) == 1
    arr.close()  # the program still holds the map
    assert m.run_program(prog) == 2
    with pytest.raises(BpfError) as exc:
        arr.lookup(bytes(4))
    assert exc.value.errno == errno.EBADF
