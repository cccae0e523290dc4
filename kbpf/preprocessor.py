"""EbpfPreProcessor: relocate map references in ``LD_DW_IMM`` before a program runs.

A loader (libbpf, or ``Machine.load_program``) leaves map references as 64-bit immediate loads
whose source register says what the immediate means.  Linux resolves them in
``resolve_pseudo_ldimm64`` (kernel/bpf/verifier.c) and then clears the source register
(``convert_pseudo_ld_imm64``); this does the same:

* ``src = 0``: a plain 64-bit constant, untouched;
* ``src = 1`` (BPF_PSEUDO_MAP_FD): ``imm`` is a map fd, the second slot's ``imm`` must be 0;
  both slots become the map's kernel address (low, high 32 bits);
* ``src = 2`` (BPF_PSEUDO_MAP_VALUE): ``imm`` is a map fd and the second slot's ``imm`` an
  offset into the map's value; both become ``value address + offset``.  The map must offer a
  direct value (``map_values_ptr_range``: a one-element array; EINVAL otherwise, ENOTSUPP for a
  larger array) and the offset must lie inside it (EINVAL);
* ``src = 4`` (BPF_PSEUDO_FUNC): a callback's instruction offset, left for the loader;
* ``src = 3/5/6`` (BTF ids, fd_array indices): EINVAL / EPROTO, as Linux without vmlinux BTF or
  ``fd_array``.

A ``LD_DW_IMM`` whose second slot is missing or has non-zero fields other than ``imm`` is
EINVAL ("invalid bpf_ld_imm64 insn").  ``raw_file_ptr`` lists the kernel addresses of the maps
the program uses, each once, in order of first use: the maps the program keeps alive.
"""

from __future__ import annotations

import errno
import struct

from kbpf.errors import BpfError
from kbpf.host import KernelAuxiliaryOps
from kbpf.insn import INSN_SIZE, LD_DW_IMM
from kbpf.linux_bpf import (
    BPF_MAX_VAR_OFF,
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
)

_INSN = struct.Struct("<BBhi")


class EbpfPreProcessor:
    """The relocated program (``new_insn``, bytes) and the maps it references
    (``raw_file_ptr``, kernel addresses)."""

    def __init__(self, new_insn: bytes, raw_file_ptr: list[int]):
        self.new_insn = new_insn
        self.raw_file_ptr = raw_file_ptr

    def get_new_insn(self) -> bytes:
        return self.new_insn

    def get_raw_file_ptr(self) -> list[int]:
        return self.raw_file_ptr

    @classmethod
    def preprocess(cls, host: KernelAuxiliaryOps, insns: bytes) -> EbpfPreProcessor:
        """Relocate every map reference in ``insns`` (a whole number of 8-byte slots)."""
        if len(insns) % INSN_SIZE:
            raise BpfError(
                errno.EINVAL, f"program of {len(insns)} bytes is not a whole number of instructions"
            )
        out = bytearray(insns)
        count = len(insns) // INSN_SIZE
        maps: list[int] = []
        i = 0
        while i < count:
            opc, regs, off, imm = _INSN.unpack_from(out, i * INSN_SIZE)
            if opc != LD_DW_IMM:
                i += 1
                continue
            if i + 1 >= count:
                raise BpfError(errno.EINVAL, f"insn {i}: LD_DW_IMM is missing its second slot")
            opc2, regs2, off2, imm2 = _INSN.unpack_from(out, (i + 1) * INSN_SIZE)
            if opc2 or regs2 or off2:
                raise BpfError(errno.EINVAL, f"insn {i}: invalid bpf_ld_imm64 insn (second slot)")
            src = regs >> 4
            if src == 0 or src == BPF_PSEUDO_FUNC:
                i += 2
                continue
            if src == BPF_PSEUDO_MAP_FD:
                if imm2:
                    raise BpfError(
                        errno.EINVAL, f"insn {i}: map fd reference with non-zero second imm"
                    )
                addr = host.get_unified_map_ptr_from_fd(imm)
                map_addr = addr
            elif src == BPF_PSEUDO_MAP_VALUE:
                offset = imm2 & 0xFFFFFFFF
                if offset >= BPF_MAX_VAR_OFF:
                    raise BpfError(
                        errno.EINVAL, f"insn {i}: direct value offset of {offset} is not allowed"
                    )
                umap = host.get_unified_map_from_fd(imm)
                if not umap.ops.implements("map_values_ptr_range"):
                    raise BpfError(
                        errno.EINVAL,
                        f"insn {i}: no direct value access support for {umap.meta.map_type.name}",
                    )
                start, end = umap.map_values_ptr_range()
                if offset >= end - start:
                    raise BpfError(
                        errno.EINVAL,
                        f"insn {i}: invalid access to map value pointer, "
                        f"value_size={end - start} off={offset}",
                    )
                addr = start + offset
                map_addr = umap.addr
            elif src == BPF_PSEUDO_BTF_ID:
                raise BpfError(errno.EINVAL, f"insn {i}: BTF id references need kernel BTF")
            elif src in (BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
                raise BpfError(errno.EPROTO, f"insn {i}: fd_idx without fd_array is invalid")
            else:
                raise BpfError(errno.EINVAL, f"insn {i}: unrecognized bpf_ld_imm64 src {src}")
            lo = addr & 0xFFFFFFFF
            hi = addr >> 32 & 0xFFFFFFFF
            _INSN.pack_into(out, i * INSN_SIZE, opc, regs & 0x0F, off, _s32(lo))
            _INSN.pack_into(out, (i + 1) * INSN_SIZE, 0, 0, 0, _s32(hi))
            if map_addr not in maps:
                maps.append(map_addr)
            i += 2
        return cls(bytes(out), maps)


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v
