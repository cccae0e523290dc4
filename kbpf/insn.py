"""eBPF instruction encoding (RFC 9669), the seed's ``EbpfInst``.

An instruction is 8 bytes, little-endian: ``opcode:8 | dst:4 src:4 | offset:s16 | imm:s32``.
``LD_DW_IMM`` (``lddw``) is *wide*: a second 8-byte slot whose only non-zero field may be its
``imm``, holding the upper 32 bits of the constant.  Offsets of jumps count instructions (8-byte
slots) from the *next* slot.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

INSN_SIZE = 8

# --- instruction classes (low 3 bits) -------------------------------------------------------
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# --- ALU/JMP source bit ------------------------------------------------------------------------
BPF_K = 0x00
BPF_X = 0x08

# --- ALU operation codes (high 4 bits) ---------------------------------------------------------
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0
BPF_MOV = 0xB0
BPF_ARSH = 0xC0
BPF_END = 0xD0

# BPF_END source bit: TO_LE = 0 (0xd4), TO_BE = 1 (0xdc); in ALU64 (0xd7) an unconditional swap.
BPF_TO_LE = 0x00
BPF_TO_BE = 0x08

# --- JMP operation codes -----------------------------------------------------------------------
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xA0
BPF_JLE = 0xB0
BPF_JSLT = 0xC0
BPF_JSLE = 0xD0

# --- load/store sizes and modes ----------------------------------------------------------------
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18

BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xC0

SIZE_BYTES = {BPF_W: 4, BPF_H: 2, BPF_B: 1, BPF_DW: 8}

# --- atomic operations (imm of BPF_ATOMIC) -------------------------------------------------------
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH

# --- pseudo sources ----------------------------------------------------------------------------
BPF_PSEUDO_MAP_FD = 1  # lddw src: imm is a map fd
BPF_PSEUDO_MAP_VALUE = 2  # lddw src: imm is a map fd, next_imm an offset into its value
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4  # lddw src: imm is a relative instruction offset of a callback
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6
BPF_PSEUDO_CALL = 1  # call src: bpf-to-bpf call, imm relative
BPF_PSEUDO_KFUNC_CALL = 2

# --- frequently used whole opcodes ---------------------------------------------------------------
LD_DW_IMM = BPF_LD | BPF_DW | BPF_IMM  # 0x18
CALL = BPF_JMP | BPF_CALL  # 0x85
CALLX = BPF_JMP | BPF_CALL | BPF_X  # 0x8d
EXIT = BPF_JMP | BPF_EXIT  # 0x95

MAX_BPF_STACK = 512
MAX_CALL_FRAMES = 8

_INSN = struct.Struct("<BBhi")


def opclass(opcode: int) -> int:
    return opcode & 0x07


@dataclass(frozen=True, slots=True)
class EbpfInst:
    """One 8-byte instruction slot, fields as the kernel's ``struct bpf_insn`` has them."""

    opc: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        return _INSN.pack(
            self.opc & 0xFF,
            (self.dst & 0xF) | ((self.src & 0xF) << 4),
            _s16(self.off),
            _s32(self.imm),
        )

    @classmethod
    def decode(cls, data: bytes | memoryview, index: int = 0) -> EbpfInst:
        opc, regs, off, imm = _INSN.unpack_from(data, index * INSN_SIZE)
        return cls(opc, regs & 0xF, regs >> 4, off, imm)

    @property
    def is_wide(self) -> bool:
        return self.opc == LD_DW_IMM


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def decode_all(data: bytes | bytearray | memoryview) -> list[EbpfInst]:
    """Decode a whole program; the length must be a multiple of 8 bytes."""
    if len(data) % INSN_SIZE:
        raise ValueError(f"program length {len(data)} is not a multiple of {INSN_SIZE} bytes")
    return [EbpfInst(o, r & 0xF, r >> 4, off, imm) for o, r, off, imm in _INSN.iter_unpack(data)]


def encode_all(insns: list[EbpfInst]) -> bytes:
    return b"".join(i.encode() for i in insns)


def lddw(dst: int, value: int, src: int = 0, next_imm: int | None = None) -> list[EbpfInst]:
    """The two slots of ``LD_DW_IMM``: low 32 bits in the first, high 32 (or ``next_imm``) in the second."""
    lo = value & 0xFFFFFFFF
    hi = (value >> 32) & 0xFFFFFFFF if next_imm is None else next_imm
    return [EbpfInst(LD_DW_IMM, dst, src, 0, lo), EbpfInst(0, 0, 0, 0, hi)]
