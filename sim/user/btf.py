"""BTF: the type information clang puts in an eBPF object's ``.BTF`` section.

No Python library reads BTF, so this is a parser written from the format the kernel documents
(``Documentation/bpf/btf.rst``, ``include/uapi/linux/btf.h``): a 24-byte header, then a type
section of variable-length records and a string section, both placed by offsets relative to the
end of the header.  Type ids count from 1 in record order; id 0 is ``void``.

The loader needs BTF for two things, and both shape this module:

* BTF-defined maps: a map in ``.maps`` is a VAR whose STRUCT members encode the definition in
  their *types* (``__uint(max_entries, 64)`` is a pointer to an array of 64 ints), so the loader
  walks pointers and arrays and resolves sizes (:meth:`Btf.resolve_size`, as libbpf's
  ``btf__resolve_size``);
* global data: clang leaves every DATASEC's size and its variables' offsets at 0 and leaves them
  to the loader, which fills them from the ELF section sizes and symbol values
  (:meth:`Btf.fixup_datasecs`, as libbpf's ``btf_fixup_datasec``).

Malformed input raises :class:`BtfError` (a :class:`kbpf.BpfError`, EINVAL unless said
otherwise) whose message names the file and what is wrong: bad magic, a truncated header or
record, an offset outside its section, a type id out of range, an unknown kind, or a loop in a
chain of references.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from kbpf.errors import BpfError

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
_HEADER = struct.Struct("<HBBIIIII")
HEADER_SIZE = _HEADER.size  # 24
_TYPE = struct.Struct("<III")  # name_off, info, size_or_type
_U32 = struct.Struct("<I")
_S32 = struct.Struct("<i")
_TRIPLE = struct.Struct("<III")
_PAIR = struct.Struct("<II")
_ENUM = struct.Struct("<Ii")
#: A pointer's size on the BPF target (libbpf's ``btf_ptr_sz`` for a 64-bit object).
PTR_SIZE = 8
#: How many references :meth:`Btf.resolve_size` follows, as libbpf's ``MAX_RESOLVE_DEPTH``.
MAX_RESOLVE_DEPTH = 32
_U32_MAX = 0xFFFFFFFF


class BtfKind(IntEnum):
    """``BTF_KIND_*`` (include/uapi/linux/btf.h, v6.6)."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


#: Kinds whose third header word is a size.
SIZED_KINDS = frozenset(
    {
        BtfKind.INT,
        BtfKind.STRUCT,
        BtfKind.UNION,
        BtfKind.ENUM,
        BtfKind.DATASEC,
        BtfKind.FLOAT,
        BtfKind.ENUM64,
    }
)
#: Kinds whose third header word refers to another type.
REF_KINDS = frozenset(
    {
        BtfKind.PTR,
        BtfKind.TYPEDEF,
        BtfKind.VOLATILE,
        BtfKind.CONST,
        BtfKind.RESTRICT,
        BtfKind.FUNC,
        BtfKind.FUNC_PROTO,
        BtfKind.VAR,
        BtfKind.DECL_TAG,
        BtfKind.TYPE_TAG,
    }
)
#: Modifiers that :meth:`Btf.skip_mods_and_typedefs` looks through.
MODIFIER_KINDS = frozenset(
    {BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT, BtfKind.TYPE_TAG}
)
#: The edges a chain of references follows: a cycle through these is a loop (the kernel's
#: "Loop detected"); a cycle through a struct member is an ordinary linked structure.
_CHAIN_KINDS = MODIFIER_KINDS | {BtfKind.PTR, BtfKind.ARRAY, BtfKind.VAR, BtfKind.DECL_TAG}

# INT encoding bits, VAR/FUNC linkage.
BTF_INT_SIGNED = 1 << 0
BTF_INT_CHAR = 1 << 1
BTF_INT_BOOL = 1 << 2
BTF_VAR_STATIC = 0
BTF_VAR_GLOBAL_ALLOCATED = 1
BTF_VAR_GLOBAL_EXTERN = 2
BTF_FUNC_STATIC = 0
BTF_FUNC_GLOBAL = 1
BTF_FUNC_EXTERN = 2
LINKAGE_NAMES = {0: "static", 1: "global", 2: "extern"}


class BtfError(BpfError):
    """Malformed or unusable BTF; the message starts with the file it came from."""

    def __init__(self, source: str, what: str, code: int = errno.EINVAL):
        self.source = source
        self.what = what
        super().__init__(code, f"{source}: BTF: {what}")


@dataclass(slots=True)
class BtfMember:
    """A STRUCT/UNION member: ``bit_offset`` from the start, ``bitfield_size`` 0 unless a
    bitfield (the kind_flag encoding)."""

    name: str
    type: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass(slots=True)
class BtfParam:
    name: str
    type: int


@dataclass(slots=True)
class BtfEnumValue:
    name: str
    value: int


@dataclass(slots=True)
class BtfArray:
    type: int
    index_type: int
    nelems: int


@dataclass(slots=True)
class BtfVarSecinfo:
    """One variable of a DATASEC: ``offset`` and ``size`` in the section (mutable: the loader
    fills the offsets clang leaves at 0)."""

    type: int
    offset: int
    size: int


@dataclass(slots=True)
class BtfType:
    """One type record.  ``size`` is meaningful for :data:`SIZED_KINDS`, ``type`` for
    :data:`REF_KINDS`; the kind-specific parts are in the other fields.  ``offset`` is where
    the record starts inside the type section (tests corrupt records through it)."""

    id: int
    kind: BtfKind
    name: str
    name_off: int
    vlen: int
    kind_flag: bool
    size_or_type: int
    offset: int
    members: list[BtfMember] = field(default_factory=list)
    params: list[BtfParam] = field(default_factory=list)
    values: list[BtfEnumValue] = field(default_factory=list)
    secinfos: list[BtfVarSecinfo] = field(default_factory=list)
    array: BtfArray | None = None
    linkage: int = 0
    int_encoding: int = 0
    int_offset: int = 0
    int_bits: int = 0
    component_idx: int = -1

    @property
    def size(self) -> int:
        return self.size_or_type if self.kind in SIZED_KINDS else 0

    @property
    def type(self) -> int:
        return self.size_or_type if self.kind in REF_KINDS else 0

    def __repr__(self) -> str:
        return f"<BTF [{self.id}] {self.kind.name} {self.name!r}>"


_VOID = BtfType(0, BtfKind.UNKN, "void", 0, 0, False, 0, -1)


class Btf:
    """Parsed BTF: ``types[id]`` (index 0 is ``void``) and name lookup."""

    def __init__(self, types: list[BtfType], strings: bytes, source: str):
        self.types = types
        self.strings = strings
        self.source = source
        self._by_name: dict[str, list[BtfType]] | None = None

    # -- parsing ----------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, source: str = "<BTF>") -> Btf:
        """Parse a ``.BTF`` section's bytes; ``source`` names the file in error messages."""
        data = bytes(data)

        def fail(what: str) -> BtfError:
            return BtfError(source, what)

        if len(data) < HEADER_SIZE:
            raise fail(f"truncated header: {len(data)} bytes, the header alone takes {HEADER_SIZE}")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(
            data
        )
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise fail("big-endian BTF (magic 0x9feb) in a little-endian object")
            raise fail(f"bad magic {magic:#06x}, expected {BTF_MAGIC:#06x}")
        if version != BTF_VERSION:
            raise fail(f"unsupported version {version}, expected {BTF_VERSION}")
        if hdr_len < HEADER_SIZE or hdr_len > len(data):
            raise fail(f"header length {hdr_len} is outside 24..{len(data)} (the data's size)")
        if data[HEADER_SIZE:hdr_len].strip(b"\0"):
            raise fail(f"header of {hdr_len} bytes has non-zero bytes past the 24 known ones")
        body = len(data) - hdr_len
        for what, off, length in (("type", type_off, type_len), ("string", str_off, str_len)):
            if off + length > body:
                raise fail(
                    f"truncated: the {what} section ends at byte {hdr_len + off + length}, "
                    f"past the end of the data ({len(data)} bytes)"
                )
        if type_off % 4:
            raise fail(f"type section offset {type_off} is not 4-byte aligned")
        if type_off < str_off + str_len and str_off < type_off + type_len:
            raise fail("the type and string sections overlap")
        strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        if strings and (strings[0] != 0 or strings[-1] != 0):
            raise fail("string section must start and end with a NUL byte")
        types = [_VOID]
        sec = data[hdr_len + type_off : hdr_len + type_off + type_len]
        pos = 0
        while pos < len(sec):
            types.append(_parse_record(sec, pos, len(types), strings, fail))
            pos = types[-1].offset + _record_size(types[-1])
        btf = cls(types, strings, source)
        btf._validate()
        return btf

    def _validate(self) -> None:
        """Every referenced id exists; kinds fit where they are used; no reference loops."""
        n = len(self.types)

        def check(t: BtfType, ref: int, what: str) -> None:
            if not 0 <= ref < n:
                raise BtfError(
                    self.source,
                    f"type [{t.id}] {t.kind.name} '{t.name}': {what} refers to "
                    f"type id {ref}, out of range (the last id is {n - 1})",
                )

        for t in self.types[1:]:
            if t.kind in REF_KINDS:
                check(t, t.size_or_type, "its type")
            if t.array is not None:
                check(t, t.array.type, "its element type")
                check(t, t.array.index_type, "its index type")
            for m in t.members:
                check(t, m.type, f"member '{m.name}'")
            for p in t.params:
                check(t, p.type, f"parameter '{p.name}'")
            for v in t.secinfos:
                check(t, v.type, "a variable")
        for t in self.types[1:]:
            if t.kind == BtfKind.FUNC and self.types[t.type].kind != BtfKind.FUNC_PROTO:
                raise BtfError(
                    self.source,
                    f"FUNC [{t.id}] '{t.name}' has type [{t.type}], "
                    f"a {self.types[t.type].kind.name}, not a FUNC_PROTO",
                )
            for v in t.secinfos:
                if self.types[v.type].kind not in (BtfKind.VAR, BtfKind.FUNC):
                    raise BtfError(
                        self.source,
                        f"DATASEC [{t.id}] '{t.name}' lists type [{v.type}], "
                        f"a {self.types[v.type].kind.name}, not a VAR",
                    )
        self._check_loops()

    def _check_loops(self) -> None:
        finite: set[int] = {0}
        for start in range(1, len(self.types)):
            path: list[int] = []
            seen: set[int] = set()
            tid = start
            while tid not in finite:
                if tid in seen:
                    loop = path[path.index(tid) :] + [tid]
                    raise BtfError(
                        self.source,
                        "loop in type references: "
                        + " -> ".join(f"[{i}] {self.types[i].kind.name}" for i in loop),
                    )
                seen.add(tid)
                path.append(tid)
                t = self.types[tid]
                if t.kind == BtfKind.ARRAY:
                    tid = t.array.type
                elif t.kind in _CHAIN_KINDS:
                    tid = t.type
                else:
                    break
            finite.update(path)

    # -- lookup -----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of type ids including ``void`` (libbpf's ``btf__type_cnt``)."""
        return len(self.types)

    def __iter__(self) -> Iterator[BtfType]:
        return iter(self.types[1:])

    def type_by_id(self, type_id: int) -> BtfType:
        if not isinstance(type_id, int) or not 0 <= type_id < len(self.types):
            raise BtfError(
                self.source,
                f"type id {type_id} is out of range (the last id is {len(self.types) - 1})",
            )
        return self.types[type_id]

    def __getitem__(self, type_id: int) -> BtfType:
        return self.type_by_id(type_id)

    def find(self, name: str, kind: BtfKind | None = None) -> BtfType | None:
        """The first type called ``name`` (of ``kind``, when given), or None."""
        for t in self.find_all(name):
            if kind is None or t.kind == kind:
                return t
        return None

    def find_all(self, name: str) -> list[BtfType]:
        if self._by_name is None:
            index: dict[str, list[BtfType]] = {}
            for t in self.types[1:]:
                if t.name:
                    index.setdefault(t.name, []).append(t)
            self._by_name = index
        return list(self._by_name.get(name, ()))

    def datasecs(self) -> list[BtfType]:
        return [t for t in self.types[1:] if t.kind == BtfKind.DATASEC]

    def string_at(self, offset: int) -> str:
        return _string(self.strings, offset, lambda what: BtfError(self.source, what))

    # -- resolution -------------------------------------------------------------------------
    def skip_mods_and_typedefs(self, type_id: int) -> BtfType:
        """The type behind typedefs and qualifiers (const, volatile, restrict, type tags)."""
        t = self.type_by_id(type_id)
        while t.kind in MODIFIER_KINDS:
            t = self.types[t.type]
        return t

    def resolve_size(self, type_id: int) -> int:
        """The size in bytes of ``type_id``, as libbpf's ``btf__resolve_size``: through
        typedefs, qualifiers, VARs and tags; a pointer is 8 bytes; an array multiplies its
        element's size.  ``void``, FWD, FUNC and FUNC_PROTO have none (EINVAL); a size past
        32 bits is E2BIG."""
        t = self.type_by_id(type_id)
        first = t
        nelems = 1
        for _ in range(MAX_RESOLVE_DEPTH):
            if t.kind in SIZED_KINDS:
                size = t.size
                break
            if t.kind == BtfKind.PTR:
                size = PTR_SIZE
                break
            if t.kind == BtfKind.ARRAY:
                if nelems and t.array.nelems > _U32_MAX // nelems:
                    raise BtfError(
                        self.source, f"size of [{first.id}] overflows 32 bits", errno.E2BIG
                    )
                nelems *= t.array.nelems
                t = self.types[t.array.type]
                continue
            if t.kind in MODIFIER_KINDS or t.kind in (BtfKind.VAR, BtfKind.DECL_TAG):
                t = self.types[t.type]
                continue
            what = "void" if t.id == 0 else f"[{t.id}] {t.kind.name} '{t.name}'"
            raise BtfError(
                self.source,
                f"type [{first.id}] {self.describe(first.id)!r} has no size "
                f"(it resolves to {what})",
            )
        else:
            raise BtfError(
                self.source, f"type [{first.id}] is more than {MAX_RESOLVE_DEPTH} references deep"
            )
        if nelems and size > _U32_MAX // nelems:
            raise BtfError(self.source, f"size of [{first.id}] overflows 32 bits", errno.E2BIG)
        return nelems * size

    def describe(self, type_id: int, depth: int = 0) -> str:
        """A C-like spelling of a type (``__u32``, ``struct shape``, ``__u8[3][5]``,
        ``int (*)(int, long)``), for listings and messages."""
        t = self.type_by_id(type_id)
        if depth > MAX_RESOLVE_DEPTH:
            return "..."
        k = t.kind
        if t.id == 0:
            return "void"
        if k in (BtfKind.INT, BtfKind.FLOAT, BtfKind.TYPEDEF):
            return t.name
        if k in (BtfKind.STRUCT, BtfKind.UNION, BtfKind.ENUM, BtfKind.ENUM64):
            tag = {BtfKind.STRUCT: "struct", BtfKind.UNION: "union"}.get(k, "enum")
            return f"{tag} {t.name or '(anon)'}"
        if k == BtfKind.FWD:
            return f"{'union' if t.kind_flag else 'struct'} {t.name}"
        if k in (BtfKind.CONST, BtfKind.VOLATILE, BtfKind.RESTRICT):
            return f"{k.name.lower()} {self.describe(t.type, depth + 1)}"
        if k == BtfKind.TYPE_TAG:
            return f"{self.describe(t.type, depth + 1)} __tag({t.name})"
        if k == BtfKind.PTR:
            target = self.types[t.type]
            if target.kind == BtfKind.FUNC_PROTO:
                return self._proto(target, "(*)", depth)
            return f"{self.describe(t.type, depth + 1)} *"
        if k == BtfKind.ARRAY:
            dims = []
            while t.kind == BtfKind.ARRAY:
                dims.append(f"[{t.array.nelems}]")
                t = self.types[t.array.type]
            return self.describe(t.id, depth + 1) + "".join(dims)
        if k == BtfKind.FUNC_PROTO:
            return self._proto(t, "", depth)
        if k == BtfKind.FUNC:
            return self._proto(self.types[t.type], t.name, depth)
        if k == BtfKind.VAR:
            return f"{self.describe(t.type, depth + 1)} {t.name}"
        if k == BtfKind.DATASEC:
            return f"section {t.name}"
        if k == BtfKind.DECL_TAG:
            return f"__decl_tag({t.name}) on {self.describe(t.type, depth + 1)}"
        return k.name  # pragma: no cover - every kind is handled above

    def _proto(self, proto: BtfType, middle: str, depth: int) -> str:
        args = ", ".join(
            self.describe(p.type, depth + 1) if p.type else "..." for p in proto.params
        )
        return f"{self.describe(proto.type, depth + 1)} {middle}({args or 'void'})"

    # -- libbpf's fix-ups -------------------------------------------------------------------
    def fixup_datasecs(
        self,
        section_size: Callable[[str], int | None],
        var_offset: Callable[[str, BtfType], int | None],
    ) -> None:
        """Fill what clang leaves to the loader, as libbpf's ``btf_fixup_datasec``.

        For each DATASEC whose size is 0, its size becomes ``section_size(name)`` (the ELF
        section's; None or 0 is an error: ENOENT) and each non-extern VAR's offset becomes
        ``var_offset(section name, var)`` — the value of its ELF symbol.  A global VAR without a
        symbol is ENOENT, as in libbpf; a static one keeps offset 0 when the loader finds no
        symbol for it (libbpf never looks for static ones).  ``.kconfig`` and ``.ksyms`` are
        left alone, as libbpf does.  Variables end sorted by offset.
        """
        for sec in self.datasecs():
            if sec.name in (".kconfig", ".ksyms"):
                sec.secinfos.sort(key=lambda v: v.offset)
                continue
            fix_offsets = False
            if sec.size_or_type == 0:
                size = section_size(sec.name)
                if not size:
                    raise BtfError(
                        self.source,
                        f"DATASEC '{sec.name}' has size 0 and the object "
                        "has no ELF section of that name to take it from",
                        errno.ENOENT,
                    )
                sec.size_or_type = size
                fix_offsets = True
            for vi in sec.secinfos:
                var = self.types[vi.type]
                if var.kind != BtfKind.VAR or var.linkage == BTF_VAR_GLOBAL_EXTERN:
                    continue
                off = var_offset(sec.name, var)
                if off is None:
                    if var.linkage == BTF_VAR_STATIC:
                        continue
                    raise BtfError(
                        self.source,
                        f"DATASEC '{sec.name}': variable '{var.name}' has no ELF symbol",
                        errno.ENOENT,
                    )
                if fix_offsets:
                    vi.offset = off
            for vi in sec.secinfos:
                if vi.offset + vi.size > sec.size:
                    raise BtfError(
                        self.source,
                        f"DATASEC '{sec.name}' ({sec.size} bytes): variable "
                        f"[{vi.type}] at offset {vi.offset} of {vi.size} bytes "
                        "lies outside it",
                    )
            sec.secinfos.sort(key=lambda v: v.offset)

    def datasec_vars(self, name: str) -> list[tuple[BtfType, BtfVarSecinfo]]:
        """``(VAR, secinfo)`` for each variable of the DATASEC called ``name`` (empty if none)."""
        sec = self.find(name, BtfKind.DATASEC)
        return [] if sec is None else [(self.types[v.type], v) for v in sec.secinfos]


# -- records ----------------------------------------------------------------------------------


def _string(strings: bytes, offset: int, fail) -> str:
    if offset == 0:
        return ""
    if not 0 <= offset < len(strings):
        raise fail(f"name offset {offset} is outside the string section ({len(strings)} bytes)")
    end = strings.find(b"\0", offset)
    raw = strings[offset:end]
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise fail(f"name at string offset {offset} is not UTF-8: {raw!r}") from None


def _tail_size(kind: BtfKind, vlen: int) -> int:
    """Bytes that follow the 12-byte header for a record of ``kind`` with ``vlen`` entries."""
    if kind == BtfKind.INT or kind == BtfKind.VAR or kind == BtfKind.DECL_TAG:
        return 4
    if kind == BtfKind.ARRAY:
        return 12
    if kind in (BtfKind.STRUCT, BtfKind.UNION, BtfKind.DATASEC):
        return 12 * vlen
    if kind == BtfKind.ENUM or kind == BtfKind.FUNC_PROTO:
        return 8 * vlen
    if kind == BtfKind.ENUM64:
        return 12 * vlen
    return 0


def _record_size(t: BtfType) -> int:
    return _TYPE.size + _tail_size(t.kind, t.vlen)


def _parse_record(
    sec: bytes, pos: int, tid: int, strings: bytes, fail: Callable[[str], BtfError]
) -> BtfType:
    if pos + _TYPE.size > len(sec):
        raise fail(
            f"truncated: type [{tid}] at type-section offset {pos} needs 12 bytes, "
            f"{len(sec) - pos} remain"
        )
    name_off, info, size_or_type = _TYPE.unpack_from(sec, pos)
    raw_kind = (info >> 24) & 0x1F
    try:
        kind = BtfKind(raw_kind)
    except ValueError:
        raise fail(
            f"type [{tid}] at type-section offset {pos} has unknown kind {raw_kind}"
        ) from None
    if kind == BtfKind.UNKN:
        raise fail(f"type [{tid}] at type-section offset {pos} has kind 0 (UNKN)")
    vlen = info & 0xFFFF
    kind_flag = bool(info >> 31)
    tail = _tail_size(kind, vlen)
    body = pos + _TYPE.size
    if body + tail > len(sec):
        raise fail(
            f"truncated: type [{tid}] {kind.name} at type-section offset {pos} needs "
            f"{_TYPE.size + tail} bytes, {len(sec) - pos} remain"
        )

    def name_at(off: int) -> str:
        return _string(strings, off, lambda what: fail(f"type [{tid}] {kind.name}: {what}"))

    t = BtfType(tid, kind, name_at(name_off), name_off, vlen, kind_flag, size_or_type, pos)
    where = f"type [{tid}] {kind.name} '{t.name}'"
    if kind == BtfKind.INT:
        (word,) = _U32.unpack_from(sec, body)
        t.int_encoding, t.int_offset, t.int_bits = (
            (word >> 24) & 0x0F,
            (word >> 16) & 0xFF,
            word & 0xFF,
        )
        if size_or_type not in (1, 2, 4, 8, 16):
            raise fail(f"{where} has size {size_or_type}, not 1, 2, 4, 8 or 16")
        if t.int_offset + t.int_bits > size_or_type * 8:
            raise fail(
                f"{where}: {t.int_bits} bits at bit {t.int_offset} do not fit in "
                f"{size_or_type} bytes"
            )
    elif kind == BtfKind.ARRAY:
        t.array = BtfArray(*_TRIPLE.unpack_from(sec, body))
    elif kind in (BtfKind.STRUCT, BtfKind.UNION):
        for i in range(vlen):
            m_name, m_type, m_off = _TRIPLE.unpack_from(sec, body + 12 * i)
            if kind_flag:
                t.members.append(BtfMember(name_at(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24))
            else:
                t.members.append(BtfMember(name_at(m_name), m_type, m_off))
    elif kind == BtfKind.ENUM:
        # kind_flag says the values are signed; otherwise the 32 bits read as unsigned.
        for i in range(vlen):
            v_name, v_val = _ENUM.unpack_from(sec, body + 8 * i)
            t.values.append(BtfEnumValue(name_at(v_name), v_val if kind_flag else v_val & _U32_MAX))
        if size_or_type not in (1, 2, 4, 8):
            raise fail(f"{where} has size {size_or_type}, not 1, 2, 4 or 8")
    elif kind == BtfKind.ENUM64:
        for i in range(vlen):
            v_name, lo, hi = _TRIPLE.unpack_from(sec, body + 12 * i)
            value = lo | hi << 32
            if kind_flag and value >> 63:
                value -= 1 << 64
            t.values.append(BtfEnumValue(name_at(v_name), value))
        if size_or_type not in (1, 2, 4, 8):
            raise fail(f"{where} has size {size_or_type}, not 1, 2, 4 or 8")
    elif kind == BtfKind.FUNC_PROTO:
        for i in range(vlen):
            p_name, p_type = _PAIR.unpack_from(sec, body + 8 * i)
            t.params.append(BtfParam(name_at(p_name), p_type))
    elif kind == BtfKind.VAR:
        (t.linkage,) = _U32.unpack_from(sec, body)
        if t.linkage > BTF_VAR_GLOBAL_EXTERN:
            raise fail(f"{where} has linkage {t.linkage}, not 0 (static), 1 (global) or 2 (extern)")
        if not t.name:
            raise fail(f"type [{tid}] VAR has no name")
    elif kind == BtfKind.DATASEC:
        for i in range(vlen):
            t.secinfos.append(BtfVarSecinfo(*_TRIPLE.unpack_from(sec, body + 12 * i)))
        if not t.name:
            raise fail(f"type [{tid}] DATASEC has no name")
    elif kind == BtfKind.DECL_TAG:
        (t.component_idx,) = _S32.unpack_from(sec, body)
        if t.component_idx < -1:
            raise fail(f"{where} has component index {t.component_idx}, below -1")
    elif kind == BtfKind.FUNC:
        t.linkage = vlen
        t.vlen = 0
        if t.linkage > BTF_FUNC_EXTERN:
            raise fail(f"{where} has linkage {t.linkage}, not 0 (static), 1 (global) or 2 (extern)")
    elif kind == BtfKind.FLOAT:
        if size_or_type not in (2, 4, 8, 12, 16):
            raise fail(f"{where} has size {size_or_type}, not 2, 4, 8, 12 or 16")
    if (
        kind
        not in (
            BtfKind.STRUCT,
            BtfKind.UNION,
            BtfKind.ENUM,
            BtfKind.ENUM64,
            BtfKind.FUNC_PROTO,
            BtfKind.DATASEC,
            BtfKind.FUNC,
        )
        and vlen
    ):
        raise fail(f"{where} has vlen {vlen}; a {kind.name} has none")
    return t
