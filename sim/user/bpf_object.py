"""Reading a clang-built eBPF object the way libbpf's ``bpf_object__open`` does.

This half of the loader needs no machine: it checks the ELF (64-bit, little-endian, EM_BPF,
relocatable), classifies its sections (libbpf v1.1.2 ``bpf_object__elf_collect``), parses the BTF
and fixes up its DATASECs, reads the map definitions (BTF-defined maps in ``.maps``; one internal
ARRAY per non-empty ``.data*``/``.rodata*``/``.bss*`` section), finds one program per function
symbol in each executable section other than ``.text``, and links each program: every ``.text``
subprogram it calls or takes the address of is appended after it, as libbpf's
``bpf_object__reloc_code`` does, with the call's (or ``LD_DW_IMM src=4``'s) ``imm`` rewritten to
the new relative offset.  Map and global-data references stay symbolic (:class:`DataReloc`)
until the maps have fds: :meth:`ProgramDef.instructions` writes them, as libbpf's
``bpf_object__relocate_data``.

What libbpf does and this does not: CO-RE and line/func info (``.BTF.ext`` is ignored), externs
(``.kconfig``, ``.ksyms``, kfuncs), ``.struct_ops``, map-in-map and prog-array initialisers
(``values``), legacy ``maps`` definitions (rejected, as libbpf v1.0+ rejects them), and program
types chosen by the user for sections libbpf cannot name (an unknown section is an error here).

Every failure is a :class:`kbpf.BpfError` whose message starts with the file's path.
"""

from __future__ import annotations

import errno
import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError, ELFParseError
from elftools.elf.elffile import ELFFile

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.insn import CALL, INSN_SIZE, LD_DW_IMM
from kbpf.linux_bpf import (
    BPF_F_MMAPABLE,
    BPF_F_RDONLY_PROG,
    BPF_OBJ_NAME_LEN,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
    BpfMapType,
    BpfProgType,
)
from sim.user.btf import (
    BTF_VAR_GLOBAL_ALLOCATED,
    BTF_VAR_STATIC,
    Btf,
    BtfError,
    BtfKind,
    BtfType,
)

EM_BPF = 247
ET_REL = 1
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHF_EXECINSTR = 0x4
SHN_LORESERVE = 0xFF00
ELF64_REL_SIZE = 16
#: LLVM's BPF relocation types (Documentation/bpf/llvm_reloc.rst).
R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10
RELOC_NAMES = {
    0: "R_BPF_NONE",
    1: "R_BPF_64_64",
    2: "R_BPF_64_ABS64",
    3: "R_BPF_64_ABS32",
    4: "R_BPF_64_NODYLD32",
    10: "R_BPF_64_32",
}
PAGE_SIZE = 4096

_INSN = struct.Struct("<BBhi")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")

# -- libbpf's section table (v1.1.2 ``section_defs[]``) --------------------------------------------
# "name+" matches "name" or "name/..."; "name/" needs that prefix; anything else matches exactly.
_P = BpfProgType
SECTION_DEFS: tuple[tuple[str, BpfProgType], ...] = (
    ("socket", _P.BPF_PROG_TYPE_SOCKET_FILTER),
    ("sk_reuseport/migrate", _P.BPF_PROG_TYPE_SK_REUSEPORT),
    ("sk_reuseport", _P.BPF_PROG_TYPE_SK_REUSEPORT),
    ("kprobe+", _P.BPF_PROG_TYPE_KPROBE),
    ("uprobe+", _P.BPF_PROG_TYPE_KPROBE),
    ("uprobe.s+", _P.BPF_PROG_TYPE_KPROBE),
    ("kretprobe+", _P.BPF_PROG_TYPE_KPROBE),
    ("uretprobe+", _P.BPF_PROG_TYPE_KPROBE),
    ("uretprobe.s+", _P.BPF_PROG_TYPE_KPROBE),
    ("kprobe.multi+", _P.BPF_PROG_TYPE_KPROBE),
    ("kretprobe.multi+", _P.BPF_PROG_TYPE_KPROBE),
    ("ksyscall+", _P.BPF_PROG_TYPE_KPROBE),
    ("kretsyscall+", _P.BPF_PROG_TYPE_KPROBE),
    ("usdt+", _P.BPF_PROG_TYPE_KPROBE),
    ("tc", _P.BPF_PROG_TYPE_SCHED_CLS),
    ("classifier", _P.BPF_PROG_TYPE_SCHED_CLS),
    ("action", _P.BPF_PROG_TYPE_SCHED_ACT),
    ("tracepoint+", _P.BPF_PROG_TYPE_TRACEPOINT),
    ("tp+", _P.BPF_PROG_TYPE_TRACEPOINT),
    ("raw_tracepoint+", _P.BPF_PROG_TYPE_RAW_TRACEPOINT),
    ("raw_tp+", _P.BPF_PROG_TYPE_RAW_TRACEPOINT),
    ("raw_tracepoint.w+", _P.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE),
    ("raw_tp.w+", _P.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE),
    ("tp_btf+", _P.BPF_PROG_TYPE_TRACING),
    ("fentry+", _P.BPF_PROG_TYPE_TRACING),
    ("fmod_ret+", _P.BPF_PROG_TYPE_TRACING),
    ("fexit+", _P.BPF_PROG_TYPE_TRACING),
    ("fentry.s+", _P.BPF_PROG_TYPE_TRACING),
    ("fmod_ret.s+", _P.BPF_PROG_TYPE_TRACING),
    ("fexit.s+", _P.BPF_PROG_TYPE_TRACING),
    ("freplace+", _P.BPF_PROG_TYPE_EXT),
    ("lsm+", _P.BPF_PROG_TYPE_LSM),
    ("lsm.s+", _P.BPF_PROG_TYPE_LSM),
    ("lsm_cgroup+", _P.BPF_PROG_TYPE_LSM),
    ("iter+", _P.BPF_PROG_TYPE_TRACING),
    ("iter.s+", _P.BPF_PROG_TYPE_TRACING),
    ("syscall", _P.BPF_PROG_TYPE_SYSCALL),
    ("xdp.frags/devmap", _P.BPF_PROG_TYPE_XDP),
    ("xdp/devmap", _P.BPF_PROG_TYPE_XDP),
    ("xdp.frags/cpumap", _P.BPF_PROG_TYPE_XDP),
    ("xdp/cpumap", _P.BPF_PROG_TYPE_XDP),
    ("xdp.frags", _P.BPF_PROG_TYPE_XDP),
    ("xdp", _P.BPF_PROG_TYPE_XDP),
    ("perf_event", _P.BPF_PROG_TYPE_PERF_EVENT),
    ("lwt_in", _P.BPF_PROG_TYPE_LWT_IN),
    ("lwt_out", _P.BPF_PROG_TYPE_LWT_OUT),
    ("lwt_xmit", _P.BPF_PROG_TYPE_LWT_XMIT),
    ("lwt_seg6local", _P.BPF_PROG_TYPE_LWT_SEG6LOCAL),
    ("sockops", _P.BPF_PROG_TYPE_SOCK_OPS),
    ("sk_skb/stream_parser", _P.BPF_PROG_TYPE_SK_SKB),
    ("sk_skb/stream_verdict", _P.BPF_PROG_TYPE_SK_SKB),
    ("sk_skb", _P.BPF_PROG_TYPE_SK_SKB),
    ("sk_msg", _P.BPF_PROG_TYPE_SK_MSG),
    ("lirc_mode2", _P.BPF_PROG_TYPE_LIRC_MODE2),
    ("flow_dissector", _P.BPF_PROG_TYPE_FLOW_DISSECTOR),
    ("cgroup_skb/ingress", _P.BPF_PROG_TYPE_CGROUP_SKB),
    ("cgroup_skb/egress", _P.BPF_PROG_TYPE_CGROUP_SKB),
    ("cgroup/skb", _P.BPF_PROG_TYPE_CGROUP_SKB),
    ("cgroup/sock_create", _P.BPF_PROG_TYPE_CGROUP_SOCK),
    ("cgroup/sock_release", _P.BPF_PROG_TYPE_CGROUP_SOCK),
    ("cgroup/sock", _P.BPF_PROG_TYPE_CGROUP_SOCK),
    ("cgroup/post_bind4", _P.BPF_PROG_TYPE_CGROUP_SOCK),
    ("cgroup/post_bind6", _P.BPF_PROG_TYPE_CGROUP_SOCK),
    ("cgroup/bind4", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/bind6", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/connect4", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/connect6", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/sendmsg4", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/sendmsg6", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/recvmsg4", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/recvmsg6", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/getpeername4", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/getpeername6", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/getsockname4", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/getsockname6", _P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ("cgroup/sysctl", _P.BPF_PROG_TYPE_CGROUP_SYSCTL),
    ("cgroup/getsockopt", _P.BPF_PROG_TYPE_CGROUP_SOCKOPT),
    ("cgroup/setsockopt", _P.BPF_PROG_TYPE_CGROUP_SOCKOPT),
    ("cgroup/dev", _P.BPF_PROG_TYPE_CGROUP_DEVICE),
    ("struct_ops+", _P.BPF_PROG_TYPE_STRUCT_OPS),
    ("sk_lookup", _P.BPF_PROG_TYPE_SK_LOOKUP),
)


def prog_type_for_section(section: str) -> BpfProgType | None:
    """The program type libbpf gives a program in ``section`` (``sec_def_matches``), or None."""
    for pattern, ptype in SECTION_DEFS:
        if pattern.endswith("/"):
            if section.startswith(pattern):
                return ptype
        elif pattern.endswith("+"):
            stem = pattern[:-1]
            if section == stem or section.startswith(stem + "/"):
                return ptype
        elif section == pattern:
            return ptype
    return None


def object_name(path: str | os.PathLike) -> str:
    """libbpf's object name: the file's base name cut to 15 characters, then at its first dot
    (``globals.bpf.o`` -> ``globals``; ``my.prog.o`` -> ``my``)."""
    base = os.path.basename(os.fspath(path))[: BPF_OBJ_NAME_LEN - 1]
    return base.split(".", 1)[0]


def internal_map_name(obj_name: str, section: str) -> str:
    """libbpf's ``internal_map_name``: the first 8 characters of the object name and the
    section name (``globals.rodata``); a section name with a second dot (``.rodata.str1.1``)
    is used alone; at most 15 characters, each outside ``[A-Za-z0-9_.]`` replaced by ``_``."""
    sfx_len = min(max(7, len(section)), BPF_OBJ_NAME_LEN - 1)
    pfx_len = 0 if "." in section[1:] else min(BPF_OBJ_NAME_LEN - sfx_len - 1, len(obj_name))
    name = (obj_name[:pfx_len] + section[:sfx_len])[: BPF_OBJ_NAME_LEN - 1]
    return "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in name)


def ringbuf_size(size: int) -> int:
    """libbpf's ``adjust_ringbuf_sz``: a ring buffer's size rounded up to a power-of-two number
    of pages (0 stays 0, so that the kernel reports it)."""
    if size == 0 or (size % PAGE_SIZE == 0 and _pow2(size // PAGE_SIZE)):
        return size
    mul = 1
    while mul * PAGE_SIZE <= size:
        mul <<= 1
    return mul * PAGE_SIZE


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# -- the pieces of an opened object ---------------------------------------------------------------


@dataclass
class SectionInfo:
    """One ELF section, for listings: what the loader made of it in ``role``."""

    index: int
    name: str
    type: str
    size: int
    flags: int
    role: str


@dataclass
class MapDef:
    """A map the object declares, before creation.

    ``kind`` is ``"btf"`` for a map in ``.maps`` or the section kind (``"data"``, ``"rodata"``,
    ``"bss"``) for global data; ``section``/``offset`` locate its definition (relocations find
    maps by them); ``initial`` is a global-data map's first contents.
    """

    name: str
    kind: str
    section: str
    section_index: int
    offset: int
    map_type: BpfMapType
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    initial: bytes | None = None
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0

    @property
    def is_internal(self) -> bool:
        return self.kind != "btf"


@dataclass(frozen=True)
class DataReloc:
    """A ``LD_DW_IMM`` at ``insn`` of a linked program that refers to map ``map_name``:
    the map itself (``value`` False: src=1, imm=fd) or its value at ``offset`` (src=2,
    imm=fd, second slot = offset)."""

    insn: int
    map_name: str
    value: bool
    offset: int = 0


@dataclass
class _Func:
    """A function symbol's code inside its section."""

    name: str
    section: str
    section_index: int
    start: int  # instruction index in the section
    code: bytes
    relocs: dict[int, _Reloc] = field(default_factory=dict)  # by instruction index in the function

    @property
    def count(self) -> int:
        return len(self.code) // INSN_SIZE


@dataclass(frozen=True)
class _Reloc:
    kind: str  # "call", "func_addr", "map", "data"
    sym_name: str
    sym_off: int
    map_name: str = ""


@dataclass
class ProgramDef:
    """A program after linking: its instructions with the subprograms it uses appended
    (``code``), the symbolic map references left in it, and where each function begins."""

    name: str
    section: str
    prog_type: BpfProgType
    code: bytes
    data_relocs: list[DataReloc]
    functions: list[tuple[int, str]]  # (first instruction, function name), the program first
    calls: dict[int, str]  # instruction -> called/referenced function name

    @property
    def insn_count(self) -> int:
        return len(self.code) // INSN_SIZE

    def instructions(self, fds: dict[str, int] | None = None) -> bytes:
        """The program with its map references written as libbpf writes them: src=1, imm=fd
        for a map; src=2, imm=fd and the offset in the second slot for global data.  ``fds``
        maps map names to fds; None writes fd 0 (for listings before load)."""
        out = bytearray(self.code)
        for r in self.data_relocs:
            fd = 0 if fds is None else fds[r.map_name]
            pos = r.insn * INSN_SIZE
            opc, regs, off, imm = _INSN.unpack_from(out, pos)
            if r.value:
                src = BPF_PSEUDO_MAP_VALUE
                _INSN.pack_into(out, pos + INSN_SIZE, 0, 0, 0, _s32(r.offset))
            else:
                src = BPF_PSEUDO_MAP_FD
            _INSN.pack_into(out, pos, opc, (regs & 0x0F) | src << 4, off, _s32(fd))
        return bytes(out)


@dataclass
class ParsedObject:
    """Everything :func:`parse_object` read from one file."""

    path: str
    name: str
    license: str
    kern_version: int
    btf: Btf | None
    maps: list[MapDef]
    programs: list[ProgramDef]
    sections: list[SectionInfo]


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# -- parsing --------------------------------------------------------------------------------------


@dataclass
class _Sym:
    index: int
    name: str
    value: int
    size: int
    type: int  # STT_*
    bind: int  # STB_*
    visibility: int
    shndx: int


STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STV_INTERNAL, STV_HIDDEN = 1, 2


class _Reader:
    """One pass over an object file; every error names ``self.path``."""

    def __init__(self, path: str, data: bytes):
        self.path = path
        self.data = data

    def fail(self, what: str, code: int = errno.EINVAL) -> BpfError:
        return BpfError(code, f"{self.path}: {what}")

    # -- ELF --------------------------------------------------------------------------------
    def check_header(self) -> None:
        d = self.data
        if len(d) < 4 or d[:4] != b"\x7fELF":
            raise self.fail("not an ELF file (no \\x7fELF magic)")
        if len(d) < 64:
            raise self.fail(f"truncated: {len(d)} bytes, an ELF64 header alone takes 64")
        if d[4] != 2:
            raise self.fail(f"not a 64-bit ELF (EI_CLASS {d[4]}); eBPF objects are ELF64")
        if d[5] != 1:
            raise self.fail(
                f"not little-endian (EI_DATA {d[5]}); this machine loads "
                "little-endian eBPF (clang -target bpf / bpfel)"
            )
        e_type, e_machine = struct.unpack_from("<HH", d, 16)
        if e_machine != EM_BPF:
            raise self.fail(f"machine {e_machine} is not EM_BPF ({EM_BPF}): not an eBPF object")
        if e_type != ET_REL:
            raise self.fail(
                f"ELF type {e_type} is not ET_REL (1): eBPF objects are relocatable "
                "files (clang -c)"
            )
        (e_shoff,) = struct.unpack_from("<Q", d, 40)
        e_shentsize, e_shnum = struct.unpack_from("<HH", d, 58)
        if e_shnum and e_shentsize != 64:
            raise self.fail(f"section header size {e_shentsize}, expected 64")
        if e_shoff + e_shnum * 64 > len(d):
            raise self.fail(
                f"truncated: the section headers end at byte {e_shoff + e_shnum * 64}, "
                f"the file has {len(d)}"
            )

    def open_elf(self) -> ELFFile:
        """pyelftools over the bytes, after checking that every section's contents lie inside
        the file (pyelftools would silently read short)."""
        d = self.data
        (e_shoff,) = struct.unpack_from("<Q", d, 40)
        (e_shnum,) = struct.unpack_from("<H", d, 60)
        for i in range(e_shnum):
            sh_type, _flags, _addr, sh_offset, sh_size = struct.unpack_from(
                "<IQQQQ", d, e_shoff + 64 * i + 4
            )
            if sh_type not in (0, SHT_NOBITS) and sh_offset + sh_size > len(d):
                raise self.fail(
                    f"truncated: section {i} ends at byte {sh_offset + sh_size}, "
                    f"the file has {len(d)}"
                )
        return ELFFile(io.BytesIO(d))


def parse_object(path: str | os.PathLike) -> ParsedObject:
    """Read and link the object at ``path``; raises :class:`kbpf.BpfError` naming the file."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    spath = os.fspath(path)
    try:
        data = Path(spath).read_bytes()
    except FileNotFoundError:
        raise BpfError(errno.ENOENT, f"{spath}: no such file") from None
    except IsADirectoryError:
        raise BpfError(errno.EISDIR, f"{spath}: is a folder, not an object file") from None
    except OSError as e:
        raise BpfError(e.errno or errno.EIO, f"{spath}: cannot read: {e.strerror}") from None
    reader = _Reader(spath, data)
    reader.check_header()
    try:
        return _parse(reader)
    except BpfError:
        raise
    except (
        ELFError,
        ELFParseError,
        struct.error,
        ValueError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
        AttributeError,
        TypeError,
    ) as e:
        # pyelftools reports a malformed file with whatever exception its parser hit.
        raise reader.fail(f"malformed ELF: {type(e).__name__}: {e}") from None


def _parse(r: _Reader) -> ParsedObject:
    elf = r.open_elf()
    path = r.path
    sections = list(elf.iter_sections())
    nsec = len(sections)
    symtabs = [s for s in sections if s["sh_type"] == "SHT_SYMTAB"]
    if not symtabs:
        raise r.fail("no symbol table (a stripped object?): libbpf needs .symtab", errno.ENOENT)
    if len(symtabs) > 1:
        raise r.fail("more than one symbol table")
    syms = _read_symbols(r, symtabs[0], nsec)

    info: list[SectionInfo] = []
    license_str, kversion = "", 0
    btf_data: bytes | None = None
    maps_sec = None
    exec_secs: list[int] = []
    data_secs: list[tuple[int, str]] = []  # (index, kind)
    rel_secs: list = []
    text_index = -1
    for idx, sec in enumerate(sections):
        if idx == 0:
            continue
        name, shtype, flags = sec.name, sec["sh_type"], sec["sh_flags"]
        size = sec["sh_size"]
        role = "ignored"
        if name == "license":
            license_str = sec.data().split(b"\0", 1)[0].decode(errors="replace")
            role = "license"
        elif name == "version":
            if size != 4:
                raise r.fail(f"section 'version' has {size} bytes, expected 4")
            kversion = int.from_bytes(sec.data(), "little")
            role = "kernel version"
        elif name == "maps":
            raise r.fail(
                "legacy map definitions in section 'maps' (struct bpf_map_def) are not "
                'supported, as in libbpf v1.0+: declare maps in SEC(".maps") with '
                "__uint/__type",
                ENOTSUPP,
            )
        elif name == ".maps":
            maps_sec = (idx, sec)
            role = "BTF-defined maps"
        elif name == ".BTF":
            if shtype != "SHT_PROGBITS":
                raise r.fail(f"section .BTF has type {shtype}, expected SHT_PROGBITS")
            btf_data = sec.data()
            role = "BTF"
        elif name == ".BTF.ext":
            role = "BTF.ext (ignored: line info, func info, CO-RE)"
        elif shtype == "SHT_SYMTAB":
            role = "symbols"
        elif shtype == "SHT_PROGBITS" and size > 0 and flags & SHF_EXECINSTR:
            if name == ".text":
                text_index = idx
                role = "subprograms"
            else:
                role = "programs"
            exec_secs.append(idx)
        elif shtype == "SHT_PROGBITS" and size > 0 and _is_data(name, ".data"):
            data_secs.append((idx, "data"))
            role = "global data"
        elif shtype == "SHT_PROGBITS" and size > 0 and _is_data(name, ".rodata"):
            data_secs.append((idx, "rodata"))
            role = "read-only global data"
        elif shtype == "SHT_NOBITS" and _is_data(name, ".bss"):
            if size > 0:
                data_secs.append((idx, "bss"))
            role = "zeroed global data"
        elif shtype == "SHT_REL":
            target = sec["sh_info"]
            if sec["sh_entsize"] != ELF64_REL_SIZE or target >= nsec:
                raise r.fail(
                    f"relocation section {name}: entry size {sec['sh_entsize']} "
                    f"(expected {ELF64_REL_SIZE}) or target section {target} is invalid"
                )
            tsec = sections[target]
            if tsec["sh_flags"] & SHF_EXECINSTR and tsec["sh_type"] == "SHT_PROGBITS":
                rel_secs.append(sec)
                role = f"relocations for {tsec.name}"
            else:
                role = f"relocations for {tsec.name} (ignored)"
        elif shtype == "SHT_RELA":
            tsec = sections[sec["sh_info"]] if sec["sh_info"] < nsec else None
            if tsec is not None and tsec["sh_flags"] & SHF_EXECINSTR:
                raise r.fail(
                    f"relocation section {name} is SHT_RELA; BPF code is relocated with "
                    "SHT_REL entries only",
                    ENOTSUPP,
                )
        elif name in (".struct_ops", ".kconfig", ".ksyms") or name.startswith(".struct_ops"):
            raise r.fail(f"section '{name}' is not supported by this loader", ENOTSUPP)
        elif shtype == "SHT_STRTAB":
            role = "names"
        elif name.startswith(".debug"):
            role = "DWARF (ignored)"
        type_text = shtype.removeprefix("SHT_") if isinstance(shtype, str) else f"{shtype:#x}"
        info.append(SectionInfo(idx, name, type_text, size, flags, role))

    obj_name = object_name(path)
    btf = None
    if btf_data is not None:
        btf = Btf.parse(btf_data, path)
        _fixup_btf(r, btf, sections, syms)

    maps: list[MapDef] = []
    if maps_sec is not None:
        if btf is None:
            raise r.fail(
                "section .maps holds BTF-defined maps, but the object has no .BTF (compile with -g)"
            )
        maps += _btf_maps(r, btf, maps_sec[0], maps_sec[1])
    for idx, kind in data_secs:
        sec = sections[idx]
        name = internal_map_name(obj_name, sec.name)
        size = sec["sh_size"]
        flags = BPF_F_RDONLY_PROG if kind == "rodata" else 0
        if btf is not None and any(
            v.kind == BtfKind.VAR and v.linkage != BTF_VAR_STATIC
            for v, _ in btf.datasec_vars(sec.name)
        ):
            flags |= BPF_F_MMAPABLE  # libbpf's map_is_mmapable
        initial = bytes(size) if kind == "bss" else sec.data()
        maps.append(
            MapDef(
                name,
                kind,
                sec.name,
                idx,
                0,
                BpfMapType.BPF_MAP_TYPE_ARRAY,
                4,
                size,
                1,
                flags,
                initial,
            )
        )
    seen: dict[str, MapDef] = {}
    for m in maps:
        if m.name in seen:
            raise r.fail(
                f"two maps are named '{m.name}' (sections {seen[m.name].section} and {m.section})"
            )
        seen[m.name] = m

    funcs = _functions(r, sections, syms, exec_secs, text_index)
    _collect_relocs(r, sections, syms, rel_secs, funcs, maps, text_index)
    programs = [
        _link(r, f, funcs, text_index, sections) for f in funcs if f.section_index != text_index
    ]
    return ParsedObject(path, obj_name, license_str, kversion, btf, maps, programs, info)


def _is_data(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _read_symbols(r: _Reader, symtab, nsec: int) -> list[_Sym]:
    raw = symtab.data()
    if symtab["sh_entsize"] != _SYM.size or len(raw) % _SYM.size:
        raise r.fail(f"symbol table entry size {symtab['sh_entsize']}, expected {_SYM.size}")
    strtab = symtab.elffile.get_section(symtab["sh_link"]) if symtab["sh_link"] < nsec else None
    if strtab is None or strtab["sh_type"] != "SHT_STRTAB":
        raise r.fail("symbol table's string table (sh_link) is missing or not SHT_STRTAB")
    strings = strtab.data()
    out = []
    for i in range(len(raw) // _SYM.size):
        st_name, st_info, st_other, st_shndx, st_value, st_size = _SYM.unpack_from(
            raw, i * _SYM.size
        )
        if st_name >= max(len(strings), 1):
            raise r.fail(f"symbol {i}: name offset {st_name} is outside the string table")
        end = strings.find(b"\0", st_name)
        name = strings[st_name : end if end >= 0 else len(strings)].decode(errors="replace")
        if st_shndx < SHN_LORESERVE and st_shndx >= nsec:
            raise r.fail(f"symbol {i} '{name}' points to section {st_shndx}; the file has {nsec}")
        out.append(
            _Sym(i, name, st_value, st_size, st_info & 0xF, st_info >> 4, st_other & 0x3, st_shndx)
        )
    return out


def _fixup_btf(r: _Reader, btf: Btf, sections, syms: list[_Sym]) -> None:
    """libbpf's ``btf_fixup_datasec`` with sizes from the ELF sections and offsets from the
    symbols: a global VAR takes its GLOBAL/WEAK OBJECT symbol's value; a static one the value
    of a local OBJECT symbol of the same name in that section (libbpf does not look)."""
    sizes = {s.name: s["sh_size"] for s in sections}
    by_index = {i: s.name for i, s in enumerate(sections)}
    globals_ = {}
    locals_ = {}
    for s in syms:
        if s.type != STT_OBJECT:
            continue
        if s.bind in (STB_GLOBAL, STB_WEAK):
            globals_.setdefault(s.name, s)
        elif s.shndx < SHN_LORESERVE:
            locals_.setdefault((by_index.get(s.shndx), s.name), s)

    def var_offset(sec_name: str, var: BtfType) -> int | None:
        if var.linkage == BTF_VAR_STATIC:
            s = locals_.get((sec_name, var.name))
            return None if s is None else s.value
        s = globals_.get(var.name)
        if s is None:
            return None
        if s.visibility in (STV_HIDDEN, STV_INTERNAL):
            var.linkage = BTF_VAR_STATIC  # as libbpf: hidden globals count as static
        return s.value

    btf.fixup_datasecs(sizes.get, var_offset)


# -- BTF-defined maps --------------------------------------------------------------------------

_INT_FIELDS = (
    "type",
    "max_entries",
    "map_flags",
    "numa_node",
    "key_size",
    "value_size",
    "pinning",
    "map_extra",
)


def _btf_maps(r: _Reader, btf: Btf, sec_index: int, sec) -> list[MapDef]:
    datasec = btf.find(".maps", BtfKind.DATASEC)
    if datasec is None:
        raise r.fail("section .maps has no DATASEC '.maps' in .BTF")
    out = []
    for vi in datasec.secinfos:
        var = btf.type_by_id(vi.type)
        name = var.name
        where = f"map '{name}'"
        if var.kind != BtfKind.VAR:
            raise r.fail(f"DATASEC .maps lists [{var.id}], a {var.kind.name}, not a VAR")
        if not name:
            raise r.fail("a map in .maps has no name")
        if vi.offset + vi.size > sec["sh_size"]:
            raise r.fail(
                f"{where}: BTF places it at {vi.offset}+{vi.size}, past the end of .maps "
                f"({sec['sh_size']} bytes)"
            )
        if var.linkage != BTF_VAR_GLOBAL_ALLOCATED:
            raise r.fail(
                f"{where}: unsupported linkage {var.linkage} (maps must be global, "
                "not static or extern)",
                ENOTSUPP,
            )
        struct_t = btf.skip_mods_and_typedefs(var.type)
        if struct_t.kind != BtfKind.STRUCT:
            raise r.fail(f"{where}: its definition is a {struct_t.kind.name}, not a STRUCT")
        if struct_t.size > vi.size:
            raise r.fail(
                f"{where}: definition of {struct_t.size} bytes exceeds its "
                f"{vi.size}-byte slot in .maps"
            )
        fields: dict[str, int] = {}
        key_tid = value_tid = 0
        for m in struct_t.members:
            if m.name in _INT_FIELDS:
                val = _map_field_int(r, btf, where, m)
                if m.name in ("key_size", "value_size") and fields.get(m.name, val) != val:
                    raise r.fail(
                        f"{where}: {m.name} {val} conflicts with the size of its "
                        f"{m.name[:-5]} type ({fields[m.name]})"
                    )
                fields[m.name] = val
            elif m.name in ("key", "value"):
                ptr = btf.type_by_id(m.type)
                if ptr.kind != BtfKind.PTR:
                    raise r.fail(
                        f"{where}: '{m.name}' must be declared with __type (a pointer), "
                        f"got a {ptr.kind.name}"
                    )
                try:
                    size = btf.resolve_size(ptr.type)
                except BtfError as e:
                    raise r.fail(f"{where}: cannot size its {m.name} type: {e.what}") from None
                prev = fields.get(m.name + "_size")
                if prev is not None and prev != size:
                    raise r.fail(
                        f"{where}: {m.name}_size {prev} conflicts with its {m.name} type "
                        f"{btf.describe(ptr.type)!r} of {size} bytes"
                    )
                fields[m.name + "_size"] = size
                if m.name == "key":
                    key_tid = ptr.type
                else:
                    value_tid = ptr.type
            elif m.name == "values":
                raise r.fail(
                    f"{where}: 'values' initialisers (map-in-map, prog-array) are not supported",
                    ENOTSUPP,
                )
            else:
                raise r.fail(f"{where}: unknown field '{m.name}' in its definition", ENOTSUPP)
        if not fields.get("type"):
            raise r.fail(f"{where}: map type isn't specified (__uint(type, ...))")
        try:
            mtype = BpfMapType(fields["type"])
        except ValueError:
            raise r.fail(f"{where}: unknown map type {fields['type']}") from None
        for unsupported in ("numa_node", "map_extra"):
            if fields.get(unsupported):
                raise r.fail(f"{where}: {unsupported} is not supported by this loader", ENOTSUPP)
        max_entries = fields.get("max_entries", 0)
        if mtype == BpfMapType.BPF_MAP_TYPE_RINGBUF:
            max_entries = ringbuf_size(max_entries)
        out.append(
            MapDef(
                name,
                "btf",
                ".maps",
                sec_index,
                vi.offset,
                mtype,
                fields.get("key_size", 0),
                fields.get("value_size", 0),
                max_entries,
                fields.get("map_flags", 0),
                None,
                key_tid,
                value_tid,
            )
        )
    return out


def _map_field_int(r: _Reader, btf: Btf, where: str, member) -> int:
    """``__uint(name, N)`` is ``int (*name)[N]``: a pointer to an array of N ints."""
    ptr = btf.skip_mods_and_typedefs(member.type)
    if ptr.kind != BtfKind.PTR:
        raise r.fail(
            f"{where}: attribute '{member.name}' must be a pointer (__uint), got a {ptr.kind.name}"
        )
    arr = btf.type_by_id(ptr.type)
    if arr.kind != BtfKind.ARRAY:
        raise r.fail(
            f"{where}: attribute '{member.name}' must point to an ARRAY (__uint), "
            f"got a {arr.kind.name}"
        )
    return arr.array.nelems


# -- programs and relocations ------------------------------------------------------------------


def _functions(
    r: _Reader, sections, syms: list[_Sym], exec_secs: list[int], text_index: int
) -> list[_Func]:
    funcs = []
    for idx in exec_secs:
        sec = sections[idx]
        code = sec.data()
        if len(code) % INSN_SIZE:
            raise r.fail(
                f"section {sec.name}: {len(code)} bytes is not a whole number of "
                "8-byte instructions"
            )
        for s in syms:
            if s.shndx != idx or s.type != STT_FUNC:
                continue
            if s.value % INSN_SIZE or s.size % INSN_SIZE or s.value + s.size > len(code):
                raise r.fail(
                    f"section {sec.name}: function '{s.name}' at {s.value}+{s.size} "
                    f"crosses the section boundary or is misaligned"
                )
            if s.size == 0:
                raise r.fail(f"section {sec.name}: function '{s.name}' has no instructions")
            if idx != text_index and s.bind == STB_LOCAL:
                raise r.fail(
                    f"section {sec.name}: program '{s.name}' is static; programs "
                    "must be global functions",
                    ENOTSUPP,
                )
            funcs.append(
                _Func(s.name, sec.name, idx, s.value // INSN_SIZE, code[s.value : s.value + s.size])
            )
    for f in funcs:
        if f.section_index != text_index and prog_type_for_section(f.section) is None:
            raise r.fail(
                f"program '{f.name}': section '{f.section}' names no program type "
                "libbpf knows (tracepoint/..., tp/..., kprobe/..., raw_tp/..., xdp, "
                "tc, socket, perf_event, fentry/..., ...)",
                errno.EINVAL,
            )
    return funcs


def _func_at(funcs: list[_Func], section_index: int, insn: int) -> _Func | None:
    for f in funcs:
        if f.section_index == section_index and f.start <= insn < f.start + f.count:
            return f
    return None


def _collect_relocs(
    r: _Reader,
    sections,
    syms: list[_Sym],
    rel_secs,
    funcs: list[_Func],
    maps: list[MapDef],
    text_index: int,
) -> None:
    """Classify each relocation in an executable section, as libbpf's ``record_reloc``:
    by the instruction it patches and the section of its symbol."""
    data_maps = {m.section_index: m for m in maps if m.is_internal}
    btf_maps = {m.offset: m for m in maps if not m.is_internal}
    for rsec in rel_secs:
        target = rsec["sh_info"]
        tname = sections[target].name
        code = sections[target].data()
        raw = rsec.data()
        for i in range(len(raw) // ELF64_REL_SIZE):
            r_offset, r_info = _REL.unpack_from(raw, i * ELF64_REL_SIZE)
            sym_idx, rtype = r_info >> 32, r_info & 0xFFFFFFFF
            where = f"relocation #{i} in {rsec.name}"
            if sym_idx >= len(syms):
                raise r.fail(f"{where}: symbol {sym_idx} does not exist")
            sym = syms[sym_idx]
            sym_name = sym.name or (sections[sym.shndx].name if sym.shndx < len(sections) else "?")
            if r_offset % INSN_SIZE or r_offset >= len(code):
                raise r.fail(f"{where}: offset {r_offset:#x} is not an instruction of {tname}")
            insn = r_offset // INSN_SIZE
            func = _func_at(funcs, target, insn)
            if func is None:
                continue  # no function covers it (libbpf: an overridden weak function)
            local = insn - func.start
            opc, regs, _off, imm = _INSN.unpack_from(code, r_offset)
            where = f"{where} (against '{sym_name}', insn {local} of '{func.name}')"
            if opc not in (CALL, LD_DW_IMM):
                raise r.fail(
                    f"{where}: the instruction (opcode {opc:#04x}) is neither a call nor "
                    "a 64-bit immediate load"
                )
            want = R_BPF_64_32 if opc == CALL else R_BPF_64_64
            if rtype != want:
                rname = RELOC_NAMES.get(rtype, f"type {rtype}")
                raise r.fail(
                    f"{where}: unsupported relocation {rname} on "
                    f"{'a call' if opc == CALL else 'LD_DW_IMM'} "
                    f"(expected {RELOC_NAMES[want]})",
                    ENOTSUPP,
                )
            if sym.shndx == 0 and sym.bind in (STB_GLOBAL, STB_WEAK):
                raise r.fail(
                    f"{where}: extern symbols (kconfig, ksyms, kfuncs) are not supported", ENOTSUPP
                )
            if opc == CALL:
                if regs >> 4 != BPF_PSEUDO_CALL:
                    raise r.fail(
                        f"{where}: relocated call has src {regs >> 4}, not "
                        f"BPF_PSEUDO_CALL ({BPF_PSEUDO_CALL})"
                    )
                if sym.shndx != text_index:
                    raise r.fail(
                        f"{where}: calls must target .text, the symbol is in section {sym.shndx}"
                    )
                if sym.value % INSN_SIZE:
                    raise r.fail(f"{where}: call target offset {sym.value} is misaligned")
                func.relocs[local] = _Reloc("call", sym_name, sym.value)
                continue
            if sym.shndx == 0 or sym.shndx >= SHN_LORESERVE:
                raise r.fail(
                    f"{where}: symbol is in special section {sym.shndx:#x} (an "
                    "uninitialised global variable?)"
                )
            if sym.shndx == text_index and (
                (sym.bind == STB_LOCAL and sym.type == STT_SECTION)
                or (sym.bind == STB_GLOBAL and sym.type == STT_FUNC)
            ):
                if sym.value % INSN_SIZE or imm % INSN_SIZE:
                    raise r.fail(f"{where}: function address {sym.value}+{imm} is misaligned")
                func.relocs[local] = _Reloc("func_addr", sym_name, sym.value)
                continue
            if sym.shndx in data_maps:
                m = data_maps[sym.shndx]
                func.relocs[local] = _Reloc("data", sym_name, sym.value, m.name)
                continue
            sec_name = sections[sym.shndx].name
            if sec_name == ".maps":
                m = btf_maps.get(sym.value)
                if m is None:
                    raise r.fail(f"{where}: no map is defined at offset {sym.value} of .maps")
                func.relocs[local] = _Reloc("map", sym_name, 0, m.name)
                continue
            if any(_is_data(sec_name, p) for p in (".data", ".rodata", ".bss")):
                raise r.fail(f"{where}: section {sec_name} is empty, so it has no map")
            raise r.fail(
                f"{where}: symbol is in section '{sec_name}', which is neither .maps, "
                "global data nor .text",
                ENOTSUPP,
            )


def _link(r: _Reader, main: _Func, funcs: list[_Func], text_index: int, sections) -> ProgramDef:
    """Append the .text subprograms ``main`` reaches, libbpf's ``bpf_object__reloc_code``."""
    code = bytearray(main.code)
    placed: dict[int, int] = {}  # id(func) -> first instruction in code
    functions = [(0, main.name)]
    calls: dict[int, str] = {}
    data_relocs: list[DataReloc] = []

    def process(func: _Func, base: int) -> None:
        for local in range(func.count):
            i = base + local
            opc, regs, off, imm = _INSN.unpack_from(code, i * INSN_SIZE)
            rel = func.relocs.get(local)
            if rel is not None and rel.kind in ("map", "data"):
                if rel.kind == "map":
                    data_relocs.append(DataReloc(i, rel.map_name, False))
                else:
                    data_relocs.append(DataReloc(i, rel.map_name, True, imm + rel.sym_off))
                continue
            is_call = opc == CALL and regs >> 4 == BPF_PSEUDO_CALL
            if not is_call and (rel is None or rel.kind != "func_addr"):
                if opc == LD_DW_IMM and regs >> 4 == BPF_PSEUDO_FUNC:
                    raise r.fail(
                        f"'{func.name}' insn {local}: function address without a relocation"
                    )
                continue
            if rel is not None and rel.kind == "call":
                target = rel.sym_off // INSN_SIZE + imm + 1
                target_sec = text_index
            elif rel is not None:
                target = (rel.sym_off + imm) // INSN_SIZE
                target_sec = text_index
            else:  # a call to a static function of the same section carries no relocation
                target = func.start + local + imm + 1
                target_sec = func.section_index
                if target_sec != text_index:
                    raise r.fail(
                        f"'{func.name}' insn {local}: call into its own section "
                        f"{func.section}; subprograms must be in .text"
                    )
            sub = _func_at(funcs, target_sec, target)
            if sub is None:
                raise r.fail(
                    f"'{func.name}' insn {local}: call target .text insn {target} is in no function"
                )
            if sub.start != target:
                raise r.fail(
                    f"'{func.name}' insn {local}: call target .text insn {target} is "
                    f"inside '{sub.name}', not at its start"
                )
            if id(sub) not in placed:
                placed[id(sub)] = len(code) // INSN_SIZE
                functions.append((placed[id(sub)], sub.name))
                code.extend(sub.code)
                process(sub, placed[id(sub)])
            new_imm = placed[id(sub)] - i - 1
            new_regs = regs if is_call else (regs & 0x0F) | BPF_PSEUDO_FUNC << 4
            _INSN.pack_into(code, i * INSN_SIZE, opc, new_regs, off, new_imm)
            calls[i] = sub.name

    process(main, 0)
    ptype = prog_type_for_section(main.section)
    return ProgramDef(main.name, main.section, ptype, bytes(code), data_relocs, functions, calls)
