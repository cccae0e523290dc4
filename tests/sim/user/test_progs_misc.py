"""The remaining helpers, called from a clang-compiled program (tests/progs/misc.bpf.c) with
their results stored in ``.bss``: bpf_printk, prandom, the CPU id, both clocks, the current task,
the probe_read family, per-CPU lookup, update flags and delete; and a tracepoint program attached
with ``m.attach`` and fired on two CPUs.
"""

from __future__ import annotations

import errno
import struct
from collections import namedtuple

import pytest

from kbpf.linux_bpf import BPF_ANY, BPF_EXIST, BPF_NOEXIST
from sim import Machine

from .conftest import obj_path

U32_0 = bytes(4)


def signed(r0: int) -> int:
    return r0 - (1 << 64) if r0 >= 1 << 63 else r0


@pytest.fixture
def rig():
    m = Machine(cpus=2)
    return m, m.load_object(obj_path("misc"))


def bss_var(obj, name: str) -> bytes:
    """The bytes of global ``name`` in ``.bss``, located through the object's BTF DATASEC."""
    raw = obj.maps["misc.bss"].lookup(U32_0)
    for var, info in obj.btf.datasec_vars(".bss"):
        if var.name == name:
            return raw[info.offset : info.offset + info.size]
    raise KeyError(name)


IDS = struct.Struct("<2IIIQQQQQ16s")
PROBES = struct.Struct("<Qq8sqQqQq8sqQqQq")
Probes = namedtuple(
    "Probes",
    "copy copy_err str str_len bad bad_err user user_err user_str user_str_err"
    " legacy legacy_err legacy_user legacy_user_err",
)


def test_bpf_printk_formats_like_the_kernel(rig):
    m, obj = rig
    assert m.run_program(obj.programs["print"]) == 0
    # Three arguments or fewer: bpf_trace_printk (6); more: bpf_trace_vprintk (177).
    assert m.trace_lines() == [
        "d=-5 u=4000000000 x=beef",
        "s=kbpf llu=1099511627776 d=-1 x=feed",
    ]


def test_ids_clocks_and_the_idle_task(rig):
    m, obj = rig
    m.run_program(obj.programs["get_ids"], cpu=1)
    r0, r1, cpu, comm_err, mono0, mono1, boot0, boot1, pid_tgid, comm = IDS.unpack(
        bss_var(obj, "ids")
    )
    assert cpu == 1
    assert r0 != r1  # two draws of the per-CPU PRNG
    # Both clocks move forward across the program's own instructions.
    assert 0 < mono0 < mono1 <= m.now_ns
    assert 0 < boot0 < boot1 <= m.now_ns
    # Nothing was running on CPU 1: the program sees its idle task.
    assert pid_tgid == 0
    assert comm_err == 0 and comm == b"swapper/1".ljust(16, b"\0")


def test_prandom_draws_differ_between_runs(rig):
    m, obj = rig
    draws = set()
    for cpu in (0, 1, 0):
        m.run_program(obj.programs["get_ids"], cpu=cpu)
        draws.update(IDS.unpack(bss_var(obj, "ids"))[:2])
    assert len(draws) == 6


def test_probe_read_family(rig):
    m, obj = rig
    obj.maps["names"].update(U32_0, b"hello, world!".ljust(16, b"\0"))
    user_addr = 0x10000
    assert m.run_program(obj.programs["probe"], ctx=struct.pack("<Q", user_addr)) == 0
    p = Probes(*PROBES.unpack(bss_var(obj, "probes")))
    # probe_read_kernel of the program's own stack.
    assert (p.copy_err, p.copy) == (0, 0x1122334455667788)
    # probe_read_kernel_str of a map value into 8 bytes: truncated, NUL-terminated, and the
    # result counts the NUL.
    assert (p.str_len, p.str) == (8, b"hello, \0")
    # A kernel read of a user-range address (NULL) is refused with -ERANGE on x86, and the
    # destination is zeroed (it held 0xff).
    assert (p.bad_err, p.bad) == (-errno.ERANGE, 0)
    # The idle task has no user memory: -EFAULT, destination zeroed.
    assert (p.user_err, p.user) == (-errno.EFAULT, 0)
    assert (p.user_str_err, p.user_str) == (-errno.EFAULT, bytes(8))
    # The legacy bpf_probe_read (4) picks by address on x86-64: kernel memory above TASK_SIZE,
    # user memory below it.
    assert (p.legacy_err, p.legacy) == (0, 0x1122334455667788)
    assert (p.legacy_user_err, p.legacy_user) == (-errno.EFAULT, 0)


def test_lookup_percpu_elem_reads_another_cpus_copy(rig):
    m, obj = rig
    for cpu in (0, 1):
        assert m.run_program(obj.programs["stamp"], cpu=cpu) == 0
    peek = obj.programs["peek_cpu"]
    assert [m.run_program(peek, cpu=0, ctx=struct.pack("<I", c)) for c in (0, 1)] == [1, 101]
    assert m.run_program(peek, cpu=1, ctx=struct.pack("<I", 0)) == 1
    # A CPU number past the possible CPUs gives NULL.
    assert signed(m.run_program(peek, cpu=0, ctx=struct.pack("<I", 2))) == -1


def test_update_flags_and_delete(rig):
    m, obj = rig

    def update(key: int, flags: int, value: int) -> int:
        ctx = struct.pack("<IIQ", key, flags, value)
        return signed(m.run_program(obj.programs["update"], ctx=ctx))

    def delete(key: int) -> int:
        ctx = struct.pack("<IIQ", key, 0, 0)
        return signed(m.run_program(obj.programs["delete"], ctx=ctx))

    table = obj.maps["table"]
    assert update(1, BPF_NOEXIST, 5) == 0
    assert update(1, BPF_NOEXIST, 6) == -errno.EEXIST
    assert update(2, BPF_EXIST, 1) == -errno.ENOENT
    assert update(1, BPF_EXIST, 7) == 0
    assert table.lookup(struct.pack("<I", 1)) == struct.pack("<Q", 7)
    assert update(1, 4, 7) == -errno.EINVAL  # BPF_F_LOCK on a value without a bpf_spin_lock
    assert delete(1) == 0
    assert delete(1) == -errno.ENOENT
    assert table.lookup(struct.pack("<I", 1)) is None
    # A full HASH refuses a new key (-E2BIG) but still replaces an existing one.
    assert [update(k, BPF_ANY, k) for k in range(10, 15)] == [0, 0, 0, 0, -errno.E2BIG]
    assert update(10, BPF_ANY, 1) == 0


def test_a_tracepoint_program_reads_its_context_on_each_cpu(rig):
    m, obj = rig
    m.attach(obj.programs["on_x"], "demo/x")
    fired = [
        m.fire("demo/x", cpu=cpu, ctx=struct.pack("<QII", 3, 4, c))
        for cpu, c in ((0, 0), (1, 1), (1, 5))
    ]
    m.run()
    # One invocation per attached program; each CPU runs its own in order, so CPU 1's second
    # event finds the element its first one inserted.
    assert [[inv.r0 for inv in invs] for invs in fired] == [[0], [0], [1]]
    assert fired[2][0].start_ns >= fired[1][0].end_ns
    table = obj.maps["table"]
    values = {
        struct.unpack("<I", k)[0]: struct.unpack("<Q", table.lookup(k))[0] for k in table.keys()
    }
    assert values == {0: 3 * 4 + 0, 1: (3 * 4 + 1) + (3 * 4 + 5)}
