"""Loading the committed clang-14 objects onto a Machine and running their programs, with the
results read back through the map handles (API.md §3, "Objects and programs").

libbpf v1.1.2 is the reference for what a load does: maps from ``.maps`` and one ARRAY per
global-data section, named ``<first 8 characters of the object name><section>``; initial data
written with BPF_MAP_UPDATE_ELEM; ``.rodata`` created BPF_F_RDONLY_PROG and frozen; the ``.text``
subprograms a program uses appended after it.
"""

from __future__ import annotations

import errno
import shutil
import struct

import pytest

from kbpf.errors import BpfError
from kbpf.linux_bpf import (
    BPF_F_MMAPABLE,
    BPF_F_RDONLY_PROG,
    BpfMapType,
    BpfProgType,
)
from sim import Machine
from sim.user.btf import BtfKind
from sim.user.loader import BpfObject, ObjectMap, ObjectProgram
from sim.user.maps import MapHandle
from sim.user.programs import ProgramHandle

from .conftest import obj_path, skip_unless_map_type

U32_0 = bytes(4)


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def as_u64(b: bytes) -> int:
    return struct.unpack("<Q", b)[0]


def open_fds(m: Machine) -> int:
    return sum(1 for fd, _ in m.kernel.facade.fds.items() if fd > 2)


# -- open ------------------------------------------------------------------------------------------


def test_open_reads_definitions_and_creates_nothing():
    m = Machine(cpus=2)
    obj = m.open_object(obj_path("counters"))
    assert obj.name == "counters" and obj.license == "GPL" and not obj.loaded
    assert open_fds(m) == 0
    counts, hits = obj.maps["counts"], obj.maps["percpu_hits"]
    assert isinstance(counts, ObjectMap)
    assert (counts.map_type, counts.key_size, counts.value_size, counts.max_entries) == (
        BpfMapType.BPF_MAP_TYPE_ARRAY,
        4,
        8,
        4,
    )
    # __uint(key_size, ...) / __uint(value_size, ...) instead of __type(key/value, ...)
    assert (hits.map_type, hits.key_size, hits.value_size, hits.max_entries) == (
        BpfMapType.BPF_MAP_TYPE_PERCPU_ARRAY,
        4,
        8,
        2,
    )
    assert hits.btf_key_type_id == 0 and obj.btf.describe(counts.btf_value_type_id) == "__u64"
    progs = obj.programs
    assert isinstance(progs["count"], ObjectProgram)
    assert [(p.name, p.section, p.prog_type) for p in progs.values()] == [
        ("count", "tracepoint/demo/emit", BpfProgType.BPF_PROG_TYPE_TRACEPOINT),
        ("count_cpu", "tp/demo/cpu", BpfProgType.BPF_PROG_TYPE_TRACEPOINT),
    ]
    with pytest.raises(AttributeError, match="before the object is loaded"):
        _ = counts.fd


def test_open_takes_str_and_pathlike():
    m = Machine(cpus=1)
    assert m.open_object(str(obj_path("calls"))).programs.keys() == {"calc", "only_square"}
    assert m.open_object(obj_path("calls")).path == str(obj_path("calls"))
    with pytest.raises(TypeError):
        m.open_object(42)


# -- counters: ARRAY and PERCPU_ARRAY ----------------------------------------------------------------


def test_counters_from_two_cpus_seen_through_the_map_handles():
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("counters"))
    assert obj.loaded and open_fds(m) == 4
    counts, hits = obj.maps["counts"], obj.maps["percpu_hits"]
    assert isinstance(counts, MapHandle) and isinstance(obj.programs["count"], ProgramHandle)
    assert counts.name == "counts" and counts.fd > 2
    prog = obj.programs["count"]
    assert (prog.name, prog.section, prog.prog_type) == (
        "count",
        "tracepoint/demo/emit",
        BpfProgType.BPF_PROG_TYPE_TRACEPOINT,
    )
    for cpu in (0, 1, 1, 1, 0):
        assert m.run_program(prog, cpu=cpu) == 1
    assert as_u64(counts.lookup(U32_0)) == 5
    assert [as_u64(v) for v in hits.lookup_percpu(U32_0)] == [2, 3]


def test_percpu_values_written_by_user_space_are_what_each_cpu_sees():
    m = Machine(cpus=3)
    obj = m.load_object(obj_path("counters"))
    hits = obj.maps["percpu_hits"]
    hits.update(U32_0, u64(10) + u64(20) + u64(30))  # ncpus * round_up(8, 8) bytes
    m.run_program(obj.programs["count"], cpu=2)
    m.run_program(obj.programs["count"], cpu=2)
    assert [as_u64(v) for v in hits.lookup_percpu(U32_0)] == [10, 20, 32]


def test_helpers_smp_processor_id_and_ktime():
    m = Machine(cpus=4)
    obj = m.load_object(obj_path("counters"))
    prog = obj.programs["count_cpu"]
    assert [m.run_program(prog, cpu=c) for c in (3, 1, 3)] == [3, 1, 3]
    assert [as_u64(obj.maps["counts"].lookup(u32(k))) for k in range(4)] == [0, 1, 0, 2]
    stamps = [as_u64(v) for v in obj.maps["percpu_hits"].lookup_percpu(u32(1))]
    assert stamps[0] == stamps[2] == 0
    assert 0 < stamps[1] < stamps[3] <= m.now_ns


# -- global data -----------------------------------------------------------------------------------


def var(obj: BpfObject, section: str, name: str) -> tuple[int, int]:
    """(offset, size) of a global variable in its section, from the fixed-up BTF."""
    for v, info in obj.btf.datasec_vars(section):
        if v.name == name:
            return info.offset, info.size
    raise KeyError(name)


def read_var(obj: BpfObject, section: str, name: str) -> int:
    off, size = var(obj, section, name)
    raw = obj.maps[f"globals{section}"].lookup(U32_0)
    return int.from_bytes(raw[off : off + size], "little")


def test_global_data_maps_are_named_sized_flagged_and_initialised_as_libbpf_does():
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("globals"))
    assert list(obj.maps) == ["globals.rodata", "globals.data", "globals.bss", ".rodata.str1.1"]
    sizes = {s.name: s.size for s in obj.sections}
    for name, section in (
        ("globals.rodata", ".rodata"),
        ("globals.data", ".data"),
        ("globals.bss", ".bss"),
        (".rodata.str1.1", ".rodata.str1.1"),
    ):
        h = obj.maps[name]
        assert (h.map_type, h.key_size, h.max_entries) == (BpfMapType.BPF_MAP_TYPE_ARRAY, 4, 1)
        assert h.value_size == sizes[section]
    assert obj.maps["globals.rodata"].map_flags == BPF_F_RDONLY_PROG | BPF_F_MMAPABLE
    assert obj.maps["globals.data"].map_flags == BPF_F_MMAPABLE
    # No DATASEC describes the string literals, so libbpf does not make it mmap-able.
    assert obj.maps[".rodata.str1.1"].map_flags == BPF_F_RDONLY_PROG
    assert read_var(obj, ".rodata", "scale") == 3
    off, _ = var(obj, ".rodata", "limits")
    raw = obj.maps["globals.rodata"].lookup(U32_0)
    assert struct.unpack_from("<QQ", raw, off) == (100, 200)
    assert read_var(obj, ".data", "total") == 5
    assert obj.maps["globals.bss"].lookup(U32_0) == bytes(56)
    assert obj.maps[".rodata.str1.1"].lookup(U32_0) == b"limits %llu %llu\n\0"


def test_programs_update_globals_and_print():
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("globals"))
    bump = obj.programs["bump"]
    assert m.run_program(bump, cpu=0) == 8  # total 5 + scale 3
    assert m.run_program(bump, cpu=1) == 11
    assert read_var(obj, ".bss", "calls") == 2 and read_var(obj, ".data", "total") == 11
    off, size = var(obj, ".bss", "hist")
    hist = struct.unpack_from("<8I", obj.maps["globals.bss"].lookup(U32_0), off)
    assert size == 32 and hist == (0, 1, 1, 0, 0, 0, 0, 0)
    assert 0 < read_var(obj, ".bss", "last_ns") <= m.now_ns
    assert read_var(obj, ".bss", "hidden") == 4  # a static variable, reached through .bss + 8
    # read_all: limits 100 + 200, pair {7, 9}, hidden 4; its format string is in .rodata.str1.1
    assert m.run_program(obj.programs["read_all"]) == 320
    assert m.trace_lines() == ["total=8 calls=1", "total=11 calls=2", "limits 100 200"]


def test_user_space_writes_to_data_are_seen_by_programs():
    m = Machine(cpus=1)
    obj = m.load_object(obj_path("globals"))
    data = bytearray(obj.maps["globals.data"].lookup(U32_0))
    off, _ = var(obj, ".data", "total")
    data[off : off + 8] = u64(1000)
    obj.maps["globals.data"].update(U32_0, bytes(data))
    assert m.run_program(obj.programs["bump"]) == 1003


def test_rodata_is_frozen_for_user_space_and_read_only_for_programs():
    m = Machine(cpus=1)
    obj = m.load_object(obj_path("globals"))
    rodata = obj.maps["globals.rodata"]
    with pytest.raises(BpfError) as exc:
        rodata.update(U32_0, bytes(rodata.value_size))
    assert exc.value.errno == errno.EPERM
    with pytest.raises(BpfError) as exc:
        m.run_program(obj.programs["write_rodata"])
    assert exc.value.errno == errno.EFAULT
    assert "write_rodata" in str(exc.value) and "insn 3" in str(exc.value)
    assert read_var(obj, ".rodata", "scale") == 3
    assert m.run_program(obj.programs["bump"]) == 8  # the machine stays usable


def test_clearing_mmapable_on_global_data_still_works():
    m = Machine(cpus=1)
    obj = m.open_object(obj_path("globals"))
    obj.maps["globals.data"].set_flags(0)
    obj.load()
    assert obj.maps["globals.data"].map_flags == 0
    assert m.run_program(obj.programs["bump"]) == 8


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("a_long_object_name.bpf.o", ["a_long_o.rodata", "a_long_o.data", "a_long_o.bss"]),
        ("my.prog.bpf.o", ["my.rodata", "my.data", "my.bss"]),
        ("g-1.o", ["g_1.rodata", "g_1.data", "g_1.bss"]),
    ],
)
def test_internal_map_names_follow_the_object_name(tmp_path, filename, expected):
    """libbpf: the object name is the base name cut at its first dot; the map takes its first
    8 characters (here ``-``, outside the kernel's name alphabet, becomes ``_``)."""
    path = tmp_path / filename
    shutil.copy(obj_path("globals"), path)
    m = Machine(cpus=1)
    obj = m.load_object(path)
    assert list(obj.maps) == expected + [".rodata.str1.1"]
    assert [obj.maps[n].name for n in expected] == expected
    assert m.run_program(obj.programs["bump"]) == 8


# -- changing maps before load ---------------------------------------------------------------------


def test_set_type_max_entries_and_flags_change_what_is_created():
    m = Machine(cpus=2)
    obj = m.open_object(obj_path("counters"))
    counts = obj.maps["counts"]
    counts.set_type("percpu_array")
    counts.set_max_entries(16)
    counts.set_flags(0)
    assert counts.map_type == BpfMapType.BPF_MAP_TYPE_PERCPU_ARRAY and counts.max_entries == 16
    obj.load()
    h = obj.maps["counts"]
    assert (h.map_type, h.max_entries) == (BpfMapType.BPF_MAP_TYPE_PERCPU_ARRAY, 16)
    m.run_program(obj.programs["count"], cpu=1)
    m.run_program(obj.programs["count"], cpu=1)
    assert [as_u64(v) for v in h.lookup_percpu(U32_0)] == [0, 2]
    assert h.lookup(u32(15)) == bytes(16)


def test_set_flags_rdonly_prog_makes_the_program_fault():
    m = Machine(cpus=1)
    obj = m.open_object(obj_path("counters"))
    obj.maps["counts"].set_flags(BPF_F_RDONLY_PROG)
    obj.load()
    assert obj.maps["counts"].map_flags == BPF_F_RDONLY_PROG
    with pytest.raises(BpfError) as exc:
        m.run_program(obj.programs["count"])
    assert exc.value.errno == errno.EFAULT and "read-only" in str(exc.value)


def test_descriptors_refuse_changes_after_load_and_forward_to_the_handles():
    m = Machine(cpus=1)
    obj = m.open_object(obj_path("counters"))
    desc = obj.maps["counts"]
    pdesc = obj.programs["count"]
    obj.load()
    for change in (
        lambda: desc.set_type("hash"),
        lambda: desc.set_max_entries(2),
        lambda: desc.set_flags(0),
    ):
        with pytest.raises(BpfError) as exc:
            change()
        assert exc.value.errno == errno.EBUSY and "counters.bpf.o" in str(exc.value)
    assert desc.handle is obj.maps["counts"] and desc.fd == obj.maps["counts"].fd
    assert pdesc.handle is obj.programs["count"] and pdesc.fd == obj.programs["count"].fd
    assert m.run_program(obj.programs["count"]) == 1
    assert as_u64(desc.lookup(U32_0)) == 1
    assert obj.map_def("counts") is desc and obj.program_def("count") is pdesc


def test_global_data_maps_keep_their_shape():
    obj = BpfObject.open(obj_path("globals"))
    for change in (
        lambda m: m.set_type("hash"),
        lambda m: m.set_max_entries(4),
        lambda m: m.set_value_size(8),
    ):
        with pytest.raises(BpfError, match="one-element ARRAY") as exc:
            change(obj.maps["globals.bss"])
        assert exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("bad", [-1, 1 << 32, "8", True])
def test_set_max_entries_takes_an_unsigned_32_bit_integer(bad):
    obj = BpfObject.open(obj_path("counters"))
    with pytest.raises(BpfError, match="max_entries must be an unsigned 32-bit integer"):
        obj.maps["counts"].set_max_entries(bad)


def test_unknown_type_name_is_einval():
    obj = BpfObject.open(obj_path("counters"))
    with pytest.raises(BpfError) as exc:
        obj.maps["counts"].set_type("hashtable")
    assert exc.value.errno == errno.EINVAL and "hashtable" in str(exc.value)


def test_a_second_load_is_refused():
    m = Machine(cpus=1)
    obj = m.load_object(obj_path("counters"))
    with pytest.raises(BpfError, match="already loaded") as exc:
        obj.load()
    assert exc.value.errno == errno.EINVAL and str(obj_path("counters")) in str(exc.value)
    assert open_fds(m) == 4  # nothing created twice


def test_a_failed_load_closes_what_it_created_and_names_the_map():
    m = Machine(cpus=1)
    obj = m.open_object(obj_path("counters"))
    obj.maps["percpu_hits"].set_max_entries(0)  # arrays need at least one entry
    with pytest.raises(BpfError) as exc:
        obj.load()
    msg = str(exc.value)
    assert exc.value.errno == errno.EINVAL
    assert (
        str(obj_path("counters")) in msg and "map 'percpu_hits'" in msg and "max_entries=0" in msg
    )
    assert open_fds(m) == 0 and obj.maps["counts"].handle is None
    with pytest.raises(BpfError, match="already loaded"):
        obj.load()


def test_close_releases_every_fd():
    m = Machine(cpus=1)
    obj = m.load_object(obj_path("globals"))
    assert open_fds(m) == 7
    obj.close()
    assert open_fds(m) == 0


def test_an_object_opened_without_a_machine_needs_one_to_load():
    obj = BpfObject.open(obj_path("calls"))
    with pytest.raises(BpfError, match="without a machine"):
        obj.load()
    m = Machine(cpus=1)
    obj.load(m)
    assert m.run_program(obj.programs["only_square"], ctx=u64(5)) == 26


# -- bpf-to-bpf calls and callbacks ----------------------------------------------------------------


def test_subprograms_are_appended_after_each_program_that_uses_them():
    obj = BpfObject.open(obj_path("calls"))
    calc, sq = obj.programs["calc"].definition, obj.programs["only_square"].definition
    assert calc.functions == [(0, "calc"), (12, "sum_of_squares"), (19, "square"), (22, "add3")]
    assert sq.functions == [(0, "only_square"), (4, "square")]
    assert calc.insn_count == 26 and sq.insn_count == 7
    # Each call's imm now counts from the next instruction to the appended copy.
    assert calc.calls == {4: "sum_of_squares", 9: "add3", 13: "square", 16: "square"}
    code = obj.programs["calc"].instructions()
    for insn, target in ((4, 12), (9, 22), (13, 19), (16, 19)):
        opc, regs, _, imm = struct.unpack_from("<BBhi", code, insn * 8)
        assert (opc, regs >> 4, insn + imm + 1) == (0x85, 1, target)


def test_bpf_to_bpf_calls_compute_the_right_answers():
    m = Machine(cpus=1)
    obj = m.load_object(obj_path("calls"))
    for a, b in ((3, 4), (0, 0), (1000, 7)):
        want = a * a + b * b + a + b + 1
        assert m.run_program(obj.programs["calc"], ctx=u64(a) + u64(b)) == want
    assert m.run_program(obj.programs["only_square"], ctx=u64(12)) == 145


def test_callback_addresses_become_pseudo_func_loads():
    obj = BpfObject.open(obj_path("callbacks"))
    d = obj.programs["loop_sum"].definition
    assert d.functions == [(0, "loop_sum"), (13, "add_index")]
    opc, regs, _, imm = struct.unpack_from("<BBhi", d.code, 7 * 8)
    assert (opc, regs >> 4, 7 + imm + 1) == (0x18, 4, 13)  # LD_DW_IMM src=4 -> add_index


def test_bpf_loop_and_for_each_map_elem_run_their_callbacks():
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("callbacks"))
    assert m.run_program(obj.programs["loop_sum"], ctx=u64(3)) == 3 * sum(range(10))
    values = obj.maps["values"]
    for k in range(5):
        values.update(u32(k), u64(10 * k + 1))
    assert m.run_program(obj.programs["each_sum"], cpu=1) == (1 + 11 + 21 + 31 + 41) * 100 + 5


def test_xdp_program_with_a_struct_value_and_a_restrict_subprogram():
    m = Machine(cpus=1)
    obj = m.load_object(obj_path("types"))
    prog = obj.programs["shape_xdp"]
    assert prog.prog_type == BpfProgType.BPF_PROG_TYPE_XDP and prog.section == "xdp"
    assert m.run_program(prog, ctx=bytes(24)) == 2  # XDP_PASS
    shape = obj.btf.find("shape", BtfKind.STRUCT)
    bits = {mb.name: mb.bit_offset for mb in shape.members}
    value = obj.maps["shapes"].lookup(U32_0)
    word = value[bits["flag"] // 8]
    assert word & 1 == 1 and word >> 1 == 5  # flag = 1, level = 5 in the same byte


# -- families written elsewhere --------------------------------------------------------------------


def test_hash_and_percpu_hash_counters():
    skip_unless_map_type(BpfMapType.BPF_MAP_TYPE_HASH)
    skip_unless_map_type(BpfMapType.BPF_MAP_TYPE_PERCPU_HASH)
    m = Machine(cpus=2)
    obj = m.load_object(obj_path("hashes"))
    prog = obj.programs["count_key"]
    for cpu, key in ((0, 7), (1, 7), (1, 9), (1, 7)):
        assert m.run_program(prog, cpu=cpu, ctx=u32(key)) == key
    by_key, percpu = obj.maps["by_key"], obj.maps["percpu_by_key"]
    assert sorted(by_key.keys()) == [u32(7), u32(9)]
    assert as_u64(by_key.lookup(u32(7))) == 3 and as_u64(by_key.lookup(u32(9))) == 1
    # The program inserts on first sight with value 1 on the CPU that saw it; the other CPU's
    # copy of a new element starts at 0.
    assert [as_u64(v) for v in percpu.lookup_percpu(u32(7))] == [1, 2]
    assert [as_u64(v) for v in percpu.lookup_percpu(u32(9))] == [0, 1]
    assert by_key.lookup(u32(8)) is None


def test_perf_event_array_without_max_entries_gets_one_slot_per_cpu():
    obj = BpfObject.open(obj_path("perf_default"))
    assert obj.maps["events"].max_entries == 0  # as declared
    skip_unless_map_type(BpfMapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY)
    m = Machine(cpus=3)
    obj = m.load_object(obj_path("perf_default"))
    events = obj.maps["events"]
    assert (events.map_type, events.key_size, events.value_size, events.max_entries) == (
        BpfMapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY,
        4,
        4,
        3,
    )
