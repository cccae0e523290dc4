"""Shared helpers: the committed objects in tests/progs, and byte-level access to them so that a
test can corrupt one precisely (a header field, a section name, a symbol, a relocation, a BTF
record) and check the loader's error."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kbpf.linux_bpf import BpfMapType
from kbpf.map.create import map_ops_class
from sim.user.btf import HEADER_SIZE, Btf

PROGS = Path(__file__).resolve().parents[2] / "progs"


def obj_path(name: str) -> Path:
    return PROGS / f"{name}.bpf.o"


def skip_unless_map_type(map_type: BpfMapType) -> None:
    """Skip a test whose object declares a map family kbpf does not implement yet."""
    try:
        map_ops_class(map_type)
    except ImportError as e:
        pytest.skip(f"{map_type.name} is not implemented yet ({e})")


class ObjectBytes:
    """A committed object's bytes and the file offsets of the parts tests corrupt."""

    def __init__(self, name: str):
        self.name = name
        self.data = bytearray(obj_path(name).read_bytes())
        self.elf = ELFFile(io.BytesIO(bytes(self.data)))
        self.shoff = self.elf["e_shoff"]

    def section_index(self, name: str) -> int:
        for i, sec in enumerate(self.elf.iter_sections()):
            if sec.name == name:
                return i
        raise KeyError(name)

    def section_header(self, name: str) -> int:
        """File offset of the section's 64-byte header."""
        return self.shoff + 64 * self.section_index(name)

    def section_offset(self, name: str) -> int:
        return self.elf.get_section(self.section_index(name))["sh_offset"]

    def section_name(self, name: str) -> int:
        """File offset of the section's name inside the section-name string table."""
        sec = self.elf.get_section(self.section_index(name))
        shstr = self.elf.get_section(self.elf["e_shstrndx"])
        return shstr["sh_offset"] + sec["sh_name"]

    def rename_section(self, old: str, new: str) -> None:
        assert len(new.encode()) <= len(old.encode())
        at = self.section_name(old)
        raw = new.encode() + b"\0"
        self.data[at : at + len(raw)] = raw

    def symbol(self, name: str) -> int:
        """File offset of the symbol's 24-byte entry."""
        symtab = self.elf.get_section_by_name(".symtab")
        for i, sym in enumerate(symtab.iter_symbols()):
            if sym.name == name:
                return symtab["sh_offset"] + 24 * i
        raise KeyError(name)

    def relocation(self, rel_section: str, index: int = 0) -> int:
        """File offset of entry ``index`` (16 bytes: r_offset, r_info) of ``rel_section``."""
        return self.section_offset(rel_section) + 16 * index

    def btf(self) -> Btf:
        return Btf.parse(self.elf.get_section_by_name(".BTF").data(), self.name)

    def btf_type(self, type_id: int) -> int:
        """File offset of BTF type record ``type_id``."""
        base = self.section_offset(".BTF")
        hdr_len, type_off = struct.unpack_from("<II", self.data, base + 4)
        return base + hdr_len + type_off + self.btf().types[type_id].offset

    def btf_strings(self) -> int:
        base = self.section_offset(".BTF")
        hdr_len = struct.unpack_from("<I", self.data, base + 4)[0]
        str_off = struct.unpack_from("<I", self.data, base + HEADER_SIZE - 8)[0]
        return base + hdr_len + str_off

    def put(self, offset: int, fmt: str, *values) -> None:
        struct.pack_into(fmt, self.data, offset, *values)

    def write(self, tmp_path: Path, filename: str | None = None) -> Path:
        out = tmp_path / (filename or f"{self.name}.bpf.o")
        out.write_bytes(bytes(self.data))
        return out
