"""Broken objects: every failure is a BpfError whose message names the file and what is wrong.

Each case corrupts a committed object at one precise place (found with pyelftools and the BTF
parser), writes it to a temporary file, and opens it.
"""

from __future__ import annotations

import errno
import struct

import pytest

from kbpf.errors import ENOTSUPP, BpfError
from sim import Machine
from sim.user.btf import BtfError, BtfKind
from sim.user.loader import BpfObject

from .conftest import ObjectBytes, obj_path


def open_fails(path, code: int, *phrases: str) -> BpfError:
    with pytest.raises(BpfError) as exc:
        BpfObject.open(path)
    err = exc.value
    assert err.errno == code, str(err)
    assert str(path) in str(err), str(err)
    for phrase in phrases:
        assert phrase in str(err), str(err)
    return err


def test_missing_file_is_enoent(tmp_path):
    open_fails(tmp_path / "absent.bpf.o", errno.ENOENT, "no such file")
    with pytest.raises(BpfError) as exc:
        Machine(cpus=1).load_object(tmp_path / "absent.bpf.o")
    assert exc.value.errno == errno.ENOENT


def test_a_folder_is_not_an_object(tmp_path):
    open_fails(tmp_path, errno.EISDIR, "is a folder")


def test_not_elf(tmp_path):
    path = tmp_path / "text.bpf.o"
    path.write_text("int main() {}\n")
    open_fails(path, errno.EINVAL, "not an ELF file")


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "phrase"),
    [
        (4, "<B", 1, "not a 64-bit ELF"),
        (5, "<B", 2, "not little-endian"),
        (18, "<H", 62, "machine 62 is not EM_BPF (247)"),
        (16, "<H", 2, "ELF type 2 is not ET_REL"),
        (58, "<H", 40, "section header size 40"),
    ],
)
def test_elf_header_checks(tmp_path, offset, fmt, value, phrase):
    obj = ObjectBytes("counters")
    obj.put(offset, fmt, value)
    open_fails(obj.write(tmp_path), errno.EINVAL, phrase)


def test_truncated_file(tmp_path):
    obj = ObjectBytes("counters")
    path = tmp_path / "cut.bpf.o"
    for size in (40, len(obj.data) // 2, len(obj.data) - 1):
        path.write_bytes(bytes(obj.data[:size]))
        open_fails(path, errno.EINVAL, "truncated")


def test_section_extending_past_the_end_of_the_file(tmp_path):
    obj = ObjectBytes("counters")
    obj.put(obj.section_header(".BTF") + 32, "<Q", 1 << 20)  # sh_size
    open_fails(obj.write(tmp_path), errno.EINVAL, "truncated: section", "ends at byte")


def test_no_symbol_table(tmp_path):
    obj = ObjectBytes("counters")
    obj.put(obj.section_header(".symtab") + 4, "<I", 1)  # SHT_SYMTAB -> SHT_PROGBITS
    open_fails(obj.write(tmp_path), errno.ENOENT, "no symbol table")


# -- BTF ------------------------------------------------------------------------------------------


def test_corrupt_btf_magic(tmp_path):
    obj = ObjectBytes("counters")
    obj.put(obj.section_offset(".BTF"), "<H", 0xBEEF)
    err = open_fails(obj.write(tmp_path), errno.EINVAL, "BTF: bad magic 0xbeef")
    assert isinstance(err, BtfError)


def test_truncated_btf_type_section(tmp_path):
    obj = ObjectBytes("counters")
    base = obj.section_offset(".BTF")
    type_len = struct.unpack_from("<I", obj.data, base + 12)[0]
    obj.put(base + 12, "<I", type_len + 4096)
    open_fails(obj.write(tmp_path), errno.EINVAL, "BTF: truncated")


def test_btf_type_id_out_of_range(tmp_path):
    obj = ObjectBytes("counters")
    btf = obj.btf()
    ptr = next(t for t in btf if t.kind == BtfKind.PTR)
    obj.put(obj.btf_type(ptr.id) + 8, "<I", 5000)
    open_fails(
        obj.write(tmp_path), errno.EINVAL, f"type [{ptr.id}] PTR", "type id 5000, out of range"
    )


def test_btf_reference_loop(tmp_path):
    obj = ObjectBytes("counters")
    u32 = obj.btf().find("__u32", BtfKind.TYPEDEF)
    obj.put(obj.btf_type(u32.id) + 8, "<I", u32.id)  # typedef __u32 __u32
    open_fails(obj.write(tmp_path), errno.EINVAL, "loop in type references", f"[{u32.id}] TYPEDEF")


def test_datasec_variable_outside_its_section(tmp_path):
    obj = ObjectBytes("counters")
    obj.put(obj.symbol("counts") + 8, "<Q", 4096)  # st_value: the map's offset in .maps
    open_fails(obj.write(tmp_path), errno.EINVAL, "DATASEC '.maps'", "lies outside it")


def test_maps_without_btf(tmp_path):
    obj = ObjectBytes("counters")
    obj.rename_section(".BTF", ".BTX")
    open_fails(obj.write(tmp_path), errno.EINVAL, "no .BTF")


# -- map definitions -------------------------------------------------------------------------------


def test_legacy_maps_section_is_not_supported(tmp_path):
    obj = ObjectBytes("counters")
    obj.rename_section(".maps", "maps")
    open_fails(obj.write(tmp_path), ENOTSUPP, "legacy map definitions", "'maps'")


def test_unknown_map_field(tmp_path):
    obj = ObjectBytes("counters")
    strings = obj.btf_strings()
    at = bytes(obj.data).index(b"\0max_entries\0", strings) + 1
    obj.data[at : at + 11] = b"max_entriez"
    open_fails(obj.write(tmp_path), ENOTSUPP, "map 'counts'", "unknown field 'max_entriez'")


def test_unknown_map_type(tmp_path):
    obj = ObjectBytes("counters")
    btf = obj.btf()
    var = btf.find("counts", BtfKind.VAR)
    type_member = next(m for m in btf.types[var.type].members if m.name == "type")
    array = btf.types[btf.types[type_member.type].type]
    obj.put(obj.btf_type(array.id) + 12 + 8, "<I", 99)  # btf_array.nelems
    open_fails(obj.write(tmp_path), errno.EINVAL, "map 'counts': unknown map type 99")


def test_map_attribute_not_encoded_with_uint(tmp_path):
    obj = ObjectBytes("counters")
    btf = obj.btf()
    var = btf.find("counts", BtfKind.VAR)
    member = next(m for m in btf.types[var.type].members if m.name == "max_entries")
    ptr = btf.types[member.type]
    u32 = btf.find("__u32", BtfKind.TYPEDEF)
    obj.put(obj.btf_type(ptr.id) + 8, "<I", u32.id)  # pointer to __u32 instead of to int[N]
    open_fails(obj.write(tmp_path), errno.EINVAL, "'max_entries' must point to an ARRAY")


# -- programs and relocations ----------------------------------------------------------------------


def test_unknown_program_section(tmp_path):
    obj = ObjectBytes("counters")
    obj.rename_section("tracepoint/demo/emit", "tracepoinx/demo/emit")
    open_fails(
        obj.write(tmp_path),
        errno.EINVAL,
        "program 'count'",
        "section 'tracepoinx/demo/emit' names no program type",
    )


def test_static_program_is_not_supported(tmp_path):
    obj = ObjectBytes("counters")
    at = obj.symbol("count") + 4  # st_info: bind << 4 | type
    obj.data[at] = 0x02  # STB_LOCAL, STT_FUNC
    open_fails(obj.write(tmp_path), ENOTSUPP, "program 'count' is static")


def test_unsupported_relocation_type(tmp_path):
    obj = ObjectBytes("counters")
    at = obj.relocation(".reltracepoint/demo/emit", 0)
    r_offset, r_info = struct.unpack_from("<QQ", obj.data, at)
    obj.put(at + 8, "<Q", (r_info >> 32) << 32 | 3)  # R_BPF_64_ABS32
    open_fails(
        obj.write(tmp_path),
        ENOTSUPP,
        "unsupported relocation R_BPF_64_ABS32",
        "against 'counts'",
        "expected R_BPF_64_64",
    )


def test_relocation_of_an_instruction_that_is_no_load(tmp_path):
    obj = ObjectBytes("counters")
    at = obj.relocation(".reltracepoint/demo/emit", 0)
    r_offset = struct.unpack_from("<Q", obj.data, at)[0]
    obj.data[obj.section_offset("tracepoint/demo/emit") + r_offset] = 0xB7  # mov64 imm
    open_fails(obj.write(tmp_path), errno.EINVAL, "opcode 0xb7", "neither a call nor")


def test_relocation_naming_a_missing_symbol(tmp_path):
    obj = ObjectBytes("counters")
    at = obj.relocation(".reltracepoint/demo/emit", 0)
    obj.put(at + 8, "<Q", 4000 << 32 | 1)
    open_fails(obj.write(tmp_path), errno.EINVAL, "symbol 4000 does not exist")


def test_call_into_the_middle_of_a_subprogram(tmp_path):
    obj = ObjectBytes("calls")
    at = obj.relocation(".reltp/demo/sq", 0)
    r_offset = struct.unpack_from("<Q", obj.data, at)[0]
    insn = obj.section_offset("tp/demo/sq") + r_offset
    imm = struct.unpack_from("<i", obj.data, insn + 4)[0]
    obj.put(insn + 4, "<i", imm + 1)
    open_fails(obj.write(tmp_path), errno.EINVAL, "inside 'square', not at its start")


# -- load time -------------------------------------------------------------------------------------


def test_program_rejected_by_the_kernel_names_file_program_and_instruction(tmp_path):
    obj = ObjectBytes("counters")
    code = obj.section_offset("tp/demo/cpu")
    first_call = bytes(obj.data).index(b"\x85\x00\x00\x00\x08\x00\x00\x00", code)  # call 8
    obj.put(first_call + 4, "<i", 9999)
    path = obj.write(tmp_path)
    m = Machine(cpus=1)
    with pytest.raises(BpfError) as exc:
        m.load_object(path)
    msg = str(exc.value)
    assert exc.value.errno == errno.EINVAL
    assert str(path) in msg and "program 'count_cpu' (section 'tp/demo/cpu')" in msg
    assert "9999" in msg and f"insn {(first_call - code) // 8}" in msg


def test_the_committed_objects_all_open():
    """The corruptions above start from objects that are themselves fine."""
    for name in ("counters", "calls", "globals", "callbacks", "hashes", "types", "perf_default"):
        assert BpfObject.open(obj_path(name)).programs
