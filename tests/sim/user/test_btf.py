"""The BTF parser, checked against what clang-14 wrote into the committed objects and against
hand-built BTF for what clang-14 never writes (ENUM64) and for every kind of damage.

Format: Documentation/bpf/btf.rst — a 24-byte header, type records (12-byte ``btf_type`` plus a
kind-specific tail), a string section; ids from 1 in record order, 0 is void.
"""

from __future__ import annotations

import errno
import struct

import pytest

from kbpf.errors import BpfError
from sim.user.btf import (
    BTF_VAR_GLOBAL_ALLOCATED,
    BTF_VAR_STATIC,
    Btf,
    BtfError,
    BtfKind,
)
from sim.user.loader import BpfObject

from .conftest import ObjectBytes, obj_path

# -- a tiny BTF writer for hand-made cases ---------------------------------------------------------


class Builder:
    """Appends type records; ids are returned in order from 1, as the format numbers them."""

    def __init__(self):
        self.types = bytearray()
        self.strings = bytearray(b"\0")
        self.next_id = 1

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(
        self,
        kind: BtfKind,
        name: str = "",
        size_or_type: int = 0,
        vlen: int = 0,
        kind_flag: bool = False,
        tail: bytes = b"",
    ) -> int:
        info = vlen | int(kind) << 24 | int(kind_flag) << 31
        self.types += struct.pack("<III", self.s(name), info, size_or_type) + tail
        self.next_id += 1
        return self.next_id - 1

    def int_(self, name: str, size: int, bits: int | None = None, signed: bool = False) -> int:
        enc = 1 if signed else 0
        return self.add(
            BtfKind.INT, name, size, tail=struct.pack("<I", enc << 24 | (bits or size * 8))
        )

    def blob(self, magic: int = 0xEB9F, version: int = 1) -> bytes:
        hdr = struct.pack(
            "<HBBIIIII",
            magic,
            version,
            0,
            24,
            0,
            len(self.types),
            len(self.types),
            len(self.strings),
        )
        return hdr + bytes(self.types) + bytes(self.strings)


def parse(b: Builder | bytes) -> Btf:
    return Btf.parse(b.blob() if isinstance(b, Builder) else b, "hand.o")


# -- clang's output -----------------------------------------------------------------------------------


def test_every_kind_clang14_emits_is_read_from_types_object():
    btf = ObjectBytes("types").btf()
    kinds = {t.kind for t in btf}
    assert kinds == set(BtfKind) - {BtfKind.UNKN, BtfKind.ENUM64}  # clang-14 has no ENUM64
    assert btf.types[0].name == "void" and len(btf) == len(btf.types)


def test_struct_members_bitfields_and_nested_union():
    btf = ObjectBytes("types").btf()
    shape = btf.find("shape", BtfKind.STRUCT)
    assert shape.size == 64 and shape.kind_flag  # kind_flag: member offsets carry bitfield sizes
    members = {m.name: m for m in shape.members}
    assert [m.name for m in shape.members] == [
        "color",
        "u",
        "weight",
        "flag",
        "level",
        "handle",
        "callback",
        "cv",
        "bytes",
    ]
    assert (members["flag"].bit_offset, members["flag"].bitfield_size) == (128, 1)
    assert (members["level"].bit_offset, members["level"].bitfield_size) == (129, 7)
    assert members["weight"].bit_offset == 64 and members["bytes"].bit_offset == 336
    union = btf.types[members["u"].type]
    assert union.kind == BtfKind.UNION and union.size == 4 and union.name == ""
    assert [btf.describe(m.type) for m in union.members] == ["__u32", "float"]


def test_sizes_resolve_through_typedefs_qualifiers_pointers_and_arrays():
    btf = ObjectBytes("types").btf()
    members = {m.name: m.type for m in btf.find("shape").members}
    assert btf.resolve_size(btf.find("shape_t").id) == 64  # typedef -> struct
    assert btf.resolve_size(members["bytes"]) == 15  # __u8[3][5]
    assert btf.resolve_size(members["cv"]) == 2  # const volatile __u16
    assert btf.resolve_size(members["handle"]) == 8  # pointer to a FWD: a pointer is 8
    assert btf.resolve_size(members["callback"]) == 8  # pointer to a FUNC_PROTO
    assert btf.resolve_size(members["weight"]) == 8  # FLOAT double
    assert btf.resolve_size(btf.find("tagged_ptr").id) == 8  # VAR -> PTR -> TYPE_TAG
    assert btf.resolve_size(btf.find("shape_tag").id) == 64  # DECL_TAG -> struct


@pytest.mark.parametrize("what", ["void", "fwd", "func_proto", "func"])
def test_types_without_a_size_are_einval(what):
    btf = ObjectBytes("types").btf()
    tid = {
        "void": 0,
        "fwd": btf.find("opaque").id,
        "func_proto": btf.types[btf.find("scale_all").type].id,
        "func": btf.find("scale_all").id,
    }[what]
    with pytest.raises(BtfError) as exc:
        btf.resolve_size(tid)
    assert exc.value.errno == errno.EINVAL and "has no size" in str(exc.value)
    assert "types" in str(exc.value)  # the source named at construction


def test_enum_values_fwd_and_tags():
    btf = ObjectBytes("types").btf()
    color = btf.find("color", BtfKind.ENUM)
    # clang-14 sets no signedness flag, and an ENUM without kind_flag reads as unsigned 32-bit.
    assert not color.kind_flag
    assert [(v.name, v.value) for v in color.values] == [
        ("RED", 1),
        ("GREEN", 2),
        ("BLUE", (-4) & 0xFFFFFFFF),
    ]
    assert btf.find("opaque").kind == BtfKind.FWD and not btf.find("opaque").kind_flag
    tag = btf.find("shape_tag")
    assert tag.kind == BtfKind.DECL_TAG and tag.component_idx == -1  # on the struct itself
    assert btf.types[tag.type].name == "shape"
    assert btf.find("user").kind == BtfKind.TYPE_TAG


def test_describe_spells_types_like_c():
    btf = ObjectBytes("types").btf()
    members = {m.name: m.type for m in btf.find("shape").members}
    assert btf.describe(members["bytes"]) == "__u8[3][5]"
    assert btf.describe(members["callback"]) == "int (*)(int, long)"
    assert btf.describe(members["handle"]) == "struct opaque *"
    assert btf.describe(members["cv"]) == "const volatile __u16"
    assert (
        btf.describe(btf.find("scale_all").id)
        == "int scale_all(restrict int *, restrict const int *)"
    )
    assert btf.describe(btf.find("tagged_ptr").id) == "int __tag(user) * tagged_ptr"


def test_name_lookup_finds_by_name_and_kind():
    btf = ObjectBytes("globals").btf()
    assert btf.find("pair", BtfKind.STRUCT).size == 8
    assert btf.find("pair", BtfKind.VAR).linkage == BTF_VAR_GLOBAL_ALLOCATED
    assert [t.kind for t in btf.find_all("pair")] == [BtfKind.STRUCT, BtfKind.VAR]
    assert btf.find("pair", BtfKind.UNION) is None and btf.find("no_such_type") is None
    with pytest.raises(BtfError, match="type id 9999 is out of range"):
        btf.type_by_id(9999)


def test_clang_leaves_datasec_sizes_and_global_offsets_zero():
    """The raw .BTF, before the loader's fix-up: what btf_fixup_datasec exists for."""
    btf = ObjectBytes("globals").btf()
    for sec in btf.datasecs():
        assert sec.size == 0
    bss = {btf.types[v.type].name: v.offset for v in btf.find(".bss").secinfos}
    assert bss["calls"] == bss["hist"] == bss["last_ns"] == 0


def test_loader_fixes_datasecs_from_elf_section_sizes_and_symbol_values():
    raw = ObjectBytes("globals")
    btf = BpfObject.open(obj_path("globals")).btf
    symtab = raw.elf.get_section_by_name(".symtab")
    symbols = {
        s.name: s["st_value"] for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_OBJECT"
    }
    for name in (".bss", ".data", ".rodata", "license"):
        sec = btf.find(name, BtfKind.DATASEC)
        assert sec.size == raw.elf.get_section_by_name(name)["sh_size"]
        for var, info in btf.datasec_vars(name):
            assert info.offset == symbols[var.name], var.name
            assert info.size == btf.resolve_size(var.type)
        offsets = [v.offset for v in sec.secinfos]
        assert offsets == sorted(offsets)  # libbpf sorts variables by offset
    bss = {v.name: (i.offset, v.linkage) for v, i in btf.datasec_vars(".bss")}
    assert bss == {
        "calls": (0, 1),
        "hidden": (8, BTF_VAR_STATIC),
        "hist": (16, 1),
        "last_ns": (48, 1),
    }


def test_datasec_without_its_elf_section_is_enoent():
    b = Builder()
    u32 = b.int_("unsigned int", 4)
    var = b.add(BtfKind.VAR, "x", u32, tail=struct.pack("<I", 1))
    b.add(BtfKind.DATASEC, ".data.gone", 0, vlen=1, tail=struct.pack("<III", var, 0, 4))
    btf = parse(b)
    with pytest.raises(BtfError) as exc:
        btf.fixup_datasecs(lambda name: None, lambda sec, v: 0)
    assert exc.value.errno == errno.ENOENT and "'.data.gone'" in str(exc.value)
    with pytest.raises(BtfError, match="variable 'x' has no ELF symbol"):
        parse(b).fixup_datasecs(lambda name: 8, lambda sec, v: None)
    with pytest.raises(BtfError, match="lies outside it"):
        parse(b).fixup_datasecs(lambda name: 8, lambda sec, v: 6)


# -- hand-built BTF --------------------------------------------------------------------------------


def test_enum64_signed_and_unsigned_values():
    b = Builder()
    values = [("SMALL", 1), ("HUGE", 1 << 40), ("TOP", (1 << 64) - 2)]
    tail = b"".join(struct.pack("<III", b.s(n), v & 0xFFFFFFFF, v >> 32) for n, v in values)
    unsigned = b.add(BtfKind.ENUM64, "big", 8, vlen=3, tail=tail)
    tail = struct.pack("<III", b.s("NEG"), 0xFFFFFFFE, 0xFFFFFFFF)
    signed = b.add(BtfKind.ENUM64, "sbig", 8, vlen=1, kind_flag=True, tail=tail)
    btf = parse(b)
    assert [(v.name, v.value) for v in btf.types[unsigned].values] == values
    assert btf.types[signed].values[0].value == -2
    assert btf.resolve_size(unsigned) == 8 and btf.describe(signed) == "enum sbig"


def test_array_size_overflow_is_e2big():
    b = Builder()
    u32 = b.int_("unsigned int", 4)
    inner = b.add(BtfKind.ARRAY, tail=struct.pack("<III", u32, u32, 1 << 20))
    outer = b.add(BtfKind.ARRAY, tail=struct.pack("<III", inner, u32, 1 << 12))
    with pytest.raises(BtfError) as exc:
        parse(b).resolve_size(outer)
    assert exc.value.errno == errno.E2BIG


def _hdr(**fields) -> bytes:
    b = Builder()
    b.int_("int", 4, signed=True)
    blob = bytearray(b.blob())
    names = ["magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off", "str_len"]
    values = list(struct.unpack_from("<HBBIIIII", blob))
    for k, v in fields.items():
        values[names.index(k)] = v
    struct.pack_into("<HBBIIIII", blob, 0, *values)
    return bytes(blob)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x9f\xeb\x01\x00", "truncated header"),
        (_hdr(magic=0x1234), "bad magic 0x1234"),
        (_hdr(magic=0x9FEB), "big-endian"),
        (_hdr(version=2), "unsupported version 2"),
        (_hdr(hdr_len=8), "header length 8"),
        (_hdr(type_len=400), "truncated: the type section ends"),
        (_hdr(str_len=400), "truncated: the string section ends"),
        (_hdr(type_off=2), "not 4-byte aligned"),
    ],
)
def test_malformed_headers(blob, message):
    with pytest.raises(BtfError) as exc:
        Btf.parse(blob, "bad.o")
    assert exc.value.errno == errno.EINVAL
    assert str(exc.value).startswith("[EINVAL] bad.o: BTF: ") and message in str(exc.value)
    assert isinstance(exc.value, BpfError)


def _one(build) -> bytes:
    b = Builder()
    build(b)
    return b.blob()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda b: b.add(BtfKind.PTR, "", 5), "refers to type id 5, out of range"),
        (
            lambda b: b.add(BtfKind.ARRAY, tail=struct.pack("<III", 1, 7, 3)),
            "index type refers to type id 7",
        ),
        (
            lambda b: b.add(BtfKind.STRUCT, "s", 4, vlen=1, tail=struct.pack("<III", 0, 9, 0)),
            "member '' refers",
        ),
        (
            lambda b: b.add(BtfKind.TYPEDEF, "self", 1),
            "loop in type references: [1] TYPEDEF -> [1] TYPEDEF",
        ),
        (
            lambda b: (b.add(BtfKind.CONST, "", 2), b.add(BtfKind.PTR, "", 1)),
            "loop in type references",
        ),
        (lambda b: b.add(BtfKind.UNKN), "kind 0 (UNKN)"),
        (lambda b: b.types.extend(struct.pack("<III", 0, 25 << 24, 0)), "unknown kind 25"),
        (lambda b: b.types.extend(struct.pack("<II", 0, 1 << 24)), "needs 12 bytes, 8 remain"),
        (
            lambda b: b.add(BtfKind.STRUCT, "s", 4, vlen=2, tail=b"\0" * 12),
            "needs 36 bytes, 24 remain",
        ),
        (
            lambda b: b.types.extend(struct.pack("<III", 999, 2 << 24, 0)),
            "name offset 999 is outside",
        ),
        (lambda b: b.add(BtfKind.INT, "odd", 3, tail=struct.pack("<I", 24)), "has size 3"),
        (lambda b: b.add(BtfKind.INT, "wide", 4, tail=struct.pack("<I", 40)), "40 bits at bit 0"),
        (lambda b: b.add(BtfKind.VAR, "v", 0, tail=struct.pack("<I", 7)), "linkage 7"),
        (lambda b: b.add(BtfKind.PTR, "", 0, vlen=2), "has vlen 2"),
        (lambda b: (b.int_("int", 4), b.add(BtfKind.FUNC, "f", 1)), "not a FUNC_PROTO"),
        (
            lambda b: (
                b.int_("int", 4),
                b.add(BtfKind.DATASEC, ".d", 4, vlen=1, tail=struct.pack("<III", 1, 0, 4)),
            ),
            "not a VAR",
        ),
    ],
)
def test_malformed_types_name_the_type(build, message):
    with pytest.raises(BtfError) as exc:
        Btf.parse(_one(build), "bad.o")
    assert exc.value.errno == errno.EINVAL
    assert "bad.o: BTF:" in str(exc.value) and message in str(exc.value)


def test_string_section_must_be_nul_delimited():
    b = Builder()
    b.int_("int", 4)
    blob = bytearray(b.blob())
    blob[-1] = ord("x")
    with pytest.raises(BtfError, match="start and end with a NUL"):
        Btf.parse(bytes(blob), "bad.o")


def test_a_linked_list_through_a_struct_is_not_a_loop():
    b = Builder()
    ptr = b.next_id
    b.add(BtfKind.PTR, "", ptr + 1)
    b.add(BtfKind.STRUCT, "node", 8, vlen=1, tail=struct.pack("<III", b.s("next"), ptr, 0))
    btf = parse(b)
    assert btf.resolve_size(ptr + 1) == 8 and btf.describe(ptr) == "struct node *"
