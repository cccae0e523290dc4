"""The assembler and disassembler (``kbpf.asm``).

The encodings are checked three ways: against bytes LLVM's BPF assembler produced for the same
instruction (llvm-mc 14, ``-show-encoding``; the v4 ones as clang-19 emitted them), field by field
for every instruction family, and by the round trip ``assemble(disassemble(x)) == x``, which must
hold for any whole number of 8-byte slots, valid or not.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbpf.asm import AsmError, assemble, disassemble
from kbpf.insn import EbpfInst, decode_all
from sim.conformance_data import parse_data_file

DATA = Path(__file__).resolve().parents[1] / "conformance"
DATA_FILES = sorted(DATA.glob("*.data"))


def one(text: str) -> EbpfInst:
    """The single slot that one line assembles to."""
    code = assemble(text)
    assert len(code) == 8, text
    return EbpfInst.decode(code)


# --- encodings LLVM agrees with ------------------------------------------------------------------

# (our syntax, LLVM syntax it was checked against, bytes LLVM printed)
LLVM = [
    ("mov %r0, 1", "r0 = 1", "b7 00 00 00 01 00 00 00"),
    ("mov %r1, %r2", "r1 = r2", "bf 21 00 00 00 00 00 00"),
    ("mov32 %r1, %r2", "w1 = w2", "bc 21 00 00 00 00 00 00"),
    ("add32 %r1, 5", "w1 += 5", "04 01 00 00 05 00 00 00"),
    ("add %r1, %r2", "r1 += r2", "0f 21 00 00 00 00 00 00"),
    ("sub %r3, -7", "r3 -= -7", "17 03 00 00 f9 ff ff ff"),
    ("div %r1, %r2", "r1 /= r2", "3f 21 00 00 00 00 00 00"),
    ("lsh %r1, 60", "r1 <<= 60", "67 01 00 00 3c 00 00 00"),
    ("arsh %r1, %r3", "r1 s>>= r3", "cf 31 00 00 00 00 00 00"),
    ("neg %r1", "r1 = -r1", "87 01 00 00 00 00 00 00"),
    ("neg32 %r2", "w2 = -w2", "84 02 00 00 00 00 00 00"),
    ("be16 %r1", "r1 = be16 r1", "dc 01 00 00 10 00 00 00"),
    ("le64 %r1", "r1 = le64 r1", "d4 01 00 00 40 00 00 00"),
    ("ldxdw %r1, [%r10-8]", "r1 = *(u64 *)(r10 - 8)", "79 a1 f8 ff 00 00 00 00"),
    ("ldxb %r2, [%r1+3]", "r2 = *(u8 *)(r1 + 3)", "71 12 03 00 00 00 00 00"),
    ("stxdw [%r10-8], %r1", "*(u64 *)(r10 - 8) = r1", "7b 1a f8 ff 00 00 00 00"),
    ("stxh [%r1+2], %r3", "*(u16 *)(r1 + 2) = r3", "6b 31 02 00 00 00 00 00"),
    ("jgt %r1, 5, +2", "if r1 > 5 goto +2", "25 01 02 00 05 00 00 00"),
    ("jslt %r1, %r2, -3", "if r1 s< r2 goto -3", "cd 21 fd ff 00 00 00 00"),
    ("jeq32 %r1, 5, +1", "if w1 == 5 goto +1", "16 01 01 00 05 00 00 00"),
    ("jne32 %r1, %r3, +1", "if w1 != w3 goto +1", "5e 31 01 00 00 00 00 00"),
    ("ja +4", "goto +4", "05 00 04 00 00 00 00 00"),
    ("call 1", "call 1", "85 00 00 00 01 00 00 00"),
    ("exit", "exit", "95 00 00 00 00 00 00 00"),
    (
        "lddw %r1, 0x1122334455667788",
        "r1 = 0x1122334455667788 ll",
        "18 01 00 00 88 77 66 55 00 00 00 00 44 33 22 11",
    ),
    ("lock add [%r0], %r1", "lock *(u64 *)(r0 + 0) += r1", "db 10 00 00 00 00 00 00"),
    ("lock add32 [%r10-8], %r1", "lock *(u32 *)(r10 - 8) += w1", "c3 1a f8 ff 00 00 00 00"),
    ("lock and [%r10-8], %r1", "lock *(u64 *)(r10 - 8) &= r1", "db 1a f8 ff 50 00 00 00"),
    # clang-19 -mcpu=v4 output
    ("movsx832 %r2, %r2", "w2 = (s8)w2", "bc 22 08 00 00 00 00 00"),
    ("ldxsh %r1, [%r1+16]", "r1 = *(s16 *)(r1 + 0x10)", "89 11 10 00 00 00 00 00"),
    ("bswap32 %r1", "r1 = bswap32 r1", "d7 01 00 00 20 00 00 00"),
    ("sdiv %r1, %r2", "r1 s/= r2", "3f 21 01 00 00 00 00 00"),
]


@pytest.mark.parametrize(("ours", "llvm", "hexbytes"), LLVM, ids=[x[1] for x in LLVM])
def test_encoding_matches_llvm(ours: str, llvm: str, hexbytes: str) -> None:
    assert assemble(ours) == bytes.fromhex(hexbytes)
    assert disassemble(bytes.fromhex(hexbytes)) == ours + "\n"


# --- each family, field by field -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        # ALU64 (no suffix or 64) and ALU (32); K vs X by whether the source is a register
        ("or %r3, 0x10", (0x47, 3, 0, 0, 0x10)),
        ("or64 %r3, 0x10", (0x47, 3, 0, 0, 0x10)),
        ("xor32 %r3, %r4", (0xAC, 3, 4, 0, 0)),
        ("mov32 %r0, 0xffffffff", (0xB4, 0, 0, 0, -1)),
        ("mov %r0, -2147483648", (0xB7, 0, 0, 0, -(2**31))),
        ("mul32 %r1, %r10", (0x2C, 1, 10, 0, 0)),
        ("mod %r1, 3", (0x97, 1, 0, 0, 3)),
        ("rsh32 %r1, 1", (0x74, 1, 0, 0, 1)),
        # signed division and modulo: offset 1
        ("sdiv32 %r1, -3", (0x34, 1, 0, 1, -3)),
        ("smod %r1, %r2", (0x9F, 1, 2, 1, 0)),
        ("smod32 %r1, %r2", (0x9C, 1, 2, 1, 0)),
        # sign-extending moves: offset = source width
        ("movsx1632 %r1, %r2", (0xBC, 1, 2, 16, 0)),
        ("movsx864 %r1, %r2", (0xBF, 1, 2, 8, 0)),
        ("movsx1664 %r1, %r2", (0xBF, 1, 2, 16, 0)),
        ("movsx3264 %r1, %r2", (0xBF, 1, 2, 32, 0)),
        # byte swaps: le 0xd4, be 0xdc, unconditional (v4) 0xd7; imm = width
        ("le16 %r4", (0xD4, 4, 0, 0, 16)),
        ("be32 %r4", (0xDC, 4, 0, 0, 32)),
        ("be64 %r4", (0xDC, 4, 0, 0, 64)),
        ("swap16 %r4", (0xD7, 4, 0, 0, 16)),
        ("bswap64 %r4", (0xD7, 4, 0, 0, 64)),
        # loads, sign-extending loads, stores
        ("ldxh %r1, [%r2]", (0x69, 1, 2, 0, 0)),
        ("ldxw %r1, [%r2+0x7fff]", (0x61, 1, 2, 0x7FFF, 0)),
        ("ldxsb %r1, [%r2-1]", (0x91, 1, 2, -1, 0)),
        ("ldxsw %r1, [%r2 + 4]", (0x81, 1, 2, 4, 0)),
        ("stb [%r10-1], 0xff", (0x72, 10, 0, -1, 0xFF)),
        ("sth [%r1+2], -1", (0x6A, 1, 0, 2, -1)),
        ("stw [%r1], 7", (0x62, 1, 0, 0, 7)),
        ("stdw [%r1+8], 0x80000000", (0x7A, 1, 0, 8, -(2**31))),
        ("stxb [%r1+0xffff], %r2", (0x73, 1, 2, -1, 0)),
        ("stxw [%r1], %r2", (0x63, 1, 2, 0, 0)),
        # atomics: lock [fetch] op, 32 suffix = 0xc3, otherwise 0xdb
        ("lock fetch add [%r10-8], %r1", (0xDB, 10, 1, -8, 0x01)),
        ("lock or32 [%r10-4], %r1", (0xC3, 10, 1, -4, 0x40)),
        ("lock fetch and32 [%r10-4], %r3", (0xC3, 10, 3, -4, 0x51)),
        ("lock xor [%r10-8], %r1", (0xDB, 10, 1, -8, 0xA0)),
        ("lock fetch xor [%r10-8], %r1", (0xDB, 10, 1, -8, 0xA1)),
        ("lock xchg [%r10-8], %r1", (0xDB, 10, 1, -8, 0xE1)),
        ("lock fetch xchg32 [%r10-8], %r1", (0xC3, 10, 1, -8, 0xE1)),
        ("lock cmpxchg32 [%r10-8], %r1", (0xC3, 10, 1, -8, 0xF1)),
        # jumps and calls
        ("jset %r1, 0x80000000, +1", (0x45, 1, 0, 1, -(2**31))),
        ("jsle32 %r1, %r2, -1", (0xDE, 1, 2, -1, 0)),
        ("jlt %r1, %r2, +0x7fff", (0xAD, 1, 2, 0x7FFF, 0)),
        ("ja32 -5", (0x06, 0, 0, 0, -5)),
        ("call %r2", (0x8D, 2, 0, 0, 0)),
        ("call helper 5", (0x85, 0, 0, 0, 5)),
        ("call local +7", (0x85, 0, 1, 0, 7)),
        ("call runtime 1234", (0x85, 0, 2, 0, 1234)),
        # the raw escape: the slot as a little-endian word, opcode in the low byte
        (".insn 0x1122334455667607", (0x07, 6, 7, 0x5566, 0x11223344)),
    ],
)
def test_family_encoding(text: str, fields: tuple[int, int, int, int, int]) -> None:
    assert one(text) == EbpfInst(*fields)


def test_lddw_forms_use_two_slots() -> None:
    """The pseudo sources are those libbpf writes: 1 map fd, 2 map value + offset, 4 function."""
    code = assemble(
        "lddw %r1, map_fd 3\n"
        "lddw %r2, map_value 4, 16\n"
        "lddw %r3, func cb\n"
        "lddw %r4, -1\n"
        "exit\n"
        "cb: exit\n"
    )
    assert decode_all(code) == [
        EbpfInst(0x18, 1, 1, 0, 3),
        EbpfInst(0, 0, 0, 0, 0),
        EbpfInst(0x18, 2, 2, 0, 4),
        EbpfInst(0, 0, 0, 0, 16),
        EbpfInst(0x18, 3, 4, 0, 4),  # cb is slot 8 and the lddw slot 4: 8 - 4 - 1
        EbpfInst(0, 0, 0, 0, 0),
        EbpfInst(0x18, 4, 0, 0, -1),
        EbpfInst(0, 0, 0, 0, -1),
        EbpfInst(0x95),
        EbpfInst(0x95),
    ]


def test_labels_count_slots_not_lines() -> None:
    """An lddw is two slots, so a jump over one skips 2, and labels may share a line."""
    code = assemble(
        "start:\n"
        "  jeq %r1, 0, over   # forward\n"
        "  lddw %r0, 0x100000000\n"
        "over: ja start       ; backward\n"
        "  exit\n"
    )
    ins = decode_all(code)
    assert ins[0].off == 2
    assert ins[3].off == -4


def test_implicit_exit_label_is_the_first_exit() -> None:
    ins = decode_all(assemble("ja exit\nmov %r0, 1\nexit\nexit\njne %r0, 0, exit"))
    assert ins[0].off == 1
    assert ins[4].off == -3


def test_explicit_exit_label_wins_over_the_implicit_one() -> None:
    ins = decode_all(assemble("ja exit\nexit\nexit:\nexit"))
    assert ins[0].off == 1


def test_call_local_and_ja32_put_the_offset_in_imm() -> None:
    ins = decode_all(assemble("call local f\nja32 done\nf: exit\ndone: exit"))
    assert (ins[0].src, ins[0].off, ins[0].imm) == (1, 0, 1)
    assert (ins[1].off, ins[1].imm) == (0, 1)


def test_comments_blank_lines_and_spacing() -> None:
    assert assemble("\n  # only a comment\nadd %r1,%r2 # trailing\n\t;another\n") == bytes.fromhex(
        "0f21000000000000"
    )


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lineno", "reason"),
    [
        ("exit\nldxq %r0, [%r1]", 2, "unknown mnemonic 'ldxq'"),
        ("or %r0, %r50", 1, "bad register '%r50'"),
        ("mov %r11, 1", 1, "bad register '%r11'"),
        ("add r1, 1", 1, "bad register 'r1'"),
        ("mov32 %r0, 2147483648", 1, "immediate 2147483648 out of range"),
        ("mov32 %r0, -2147483649", 1, "out of range"),
        ("mov32 %r0, 0x100000000", 1, "immediate 0x100000000 out of range"),
        ("ldxb %r0, [%r1+0x10000]", 1, "offset +0x10000 out of range"),
        ("ldxb %r0, [%r1-32769]", 1, "out of range"),
        ("lddw %r0, 0x10000000000000000", 1, "out of 64-bit range"),
        ("lddw %r0", 1, "lddw takes 2 operands"),
        ("lddw %r0, map_value 3", 1, "wrong operand count: expected 4"),
        ("mov %r0, 1, 2", 1, "wrong operand count: expected 2, got 3"),
        ("neg %r0, 1", 1, "wrong operand count: expected 1, got 2"),
        ("exit %r0", 1, "wrong operand count: expected 0, got 1"),
        ("jeq %r0, 1", 1, "wrong operand count: expected 3, got 2"),
        ("ldxb %r0, %r1", 1, "expected a memory operand"),
        ("mov %r0, five", 1, "expected a 32-bit immediate, got 'five'"),
        ("exit\nja NOT_A_LABEL", 2, "undefined label 'NOT_A_LABEL'"),
        ("a:\na:\nexit", 2, "duplicate label 'a'"),
        ("ja 1x", 1, "bad jump target '1x'"),
        ("lock or [%r10-8]", 1, "lock takes [fetch] OP"),
        ("lock", 1, "lock takes [fetch] OP"),
        ("lock nand [%r10-8], %r1", 1, "unknown atomic operation 'nand'"),
        ("call sideways 3", 1, "bad call mode 'sideways'"),
        ("movsx864 %r0, 5", 1, "movsx takes a register source"),
        (".insn 0x10000000000000000", 1, "out of 64-bit range"),
    ],
)
def test_errors_name_line_text_and_fault(text: str, lineno: int, reason: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble(text)
    err = info.value
    line = text.split("\n")[lineno - 1]
    assert isinstance(err, ValueError)
    assert (err.lineno, err.line) == (lineno, line)
    assert str(err).startswith(f'line {lineno}: "{line}": ')
    assert reason in str(err)


def test_jump_out_of_offset_range_is_an_error() -> None:
    text = "ja far\n" + "exit\n" * 40000 + "far: exit\n"
    with pytest.raises(AsmError, match="40000 slots away, out of range -32768..32767"):
        assemble(text)
    # the same distance fits a ja32 (imm)
    assert EbpfInst.decode(assemble(text.replace("ja far", "ja32 far"))).imm == 40000


# The negative/ files whose failure is the assembler's: each must be rejected by assemble().
NEGATIVE_ASM_ERRORS = {
    "invalid_imm32_dec_range.data": "out of range",
    "invalid_imm32_hex_range.data": "out of range",
    "invalid_label.data": "undefined label",
    "invalid_lock.data": "lock takes",
    "invalid_lock2.data": "lock takes",
    "invalid_mnemonic.data": "unknown mnemonic",
    "invalid_offset.data": "expected a memory operand",
    "invalid_offset_range.data": "out of range",
    "invalid_operand_count.data": "lddw takes 2 operands",
    "invalid_register.data": "bad register",
}


@pytest.mark.parametrize("name", sorted(NEGATIVE_ASM_ERRORS))
def test_negative_assembler_cases_are_rejected(name: str) -> None:
    case = parse_data_file(DATA / "negative" / name)
    with pytest.raises(AsmError, match=NEGATIVE_ASM_ERRORS[name]):
        _ = case.program


@pytest.mark.parametrize("name", ["error.data", "incorrect_return_value_high_bits.data"])
def test_negative_runtime_cases_assemble(name: str) -> None:
    """These test the runner's comparison of results and errors, not the assembler."""
    case = parse_data_file(DATA / "negative" / name)
    assert assemble(disassemble(case.program)) == case.program
    assert len(case.program) == 16


@pytest.mark.parametrize("path", sorted((DATA / "negative").glob("unused-*.data")), ids=str)
def test_unused_field_cases_disassemble_to_insn(path: Path) -> None:
    """Each negative/unused-* file's first slot sets a field its instruction leaves unused.

    Read as the bytes they were written as (upstream reads them as words and skips them), the
    slot must not print as its mnemonic, which would drop the field: only ``.insn`` keeps it.
    """
    text = path.read_text().split("-- raw", 1)[1].split("-- error", 1)[0]
    code = bytes(int(tok, 16) for tok in text.split())
    assert len(code) == 16
    listing = disassemble(code)
    assert listing.splitlines() == [f".insn 0x{struct.unpack_from('<Q', code)[0]:016x}", "exit"]
    assert assemble(listing) == code


# --- disassembly ---------------------------------------------------------------------------------


def test_disassembly_uses_numeric_offsets() -> None:
    code = assemble("L: ja over\njeq %r1, 5, L\ncall local L\nover: exit")
    assert disassemble(code) == "ja +2\njeq %r1, 5, -2\ncall local -3\nexit\n"


@pytest.mark.parametrize(
    ("hexbytes", "why"),
    [
        ("ff00000000000000", "unknown opcode"),
        ("0700010001000000", "add64 imm with a non-zero offset"),
        ("bf21000001000000", "mov64 reg with a non-zero imm"),
        ("b70b000001000000", "dst register 11"),
        ("bfb1000000000000", "src register 11"),
        ("bc21200000000000", "movsx 32->32 does not exist"),
        ("b701080005000000", "movsx of an immediate"),
        ("d401000011000000", "le with width 17"),
        ("df01000010000000", "ALU64 END with the X bit"),
        ("8d01000001000000", "callx with an imm"),
        ("8503000001000000", "call with dst set"),
        ("8530000001000000", "call with src 3"),
        ("db1af8ff02000000", "atomic with imm 2"),
        ("d31af8ff00000000", "atomic on a byte"),
        ("2000000000000000", "legacy packet load (LD ABS)"),
        ("0000000001000000", "a lone second lddw slot"),
        ("1801000001000000", "a truncated final lddw"),
        ("18010000010000000100000000000000", "an lddw whose second slot has a register"),
        ("18310000010000000000000000000000", "an lddw with src 3 (BTF id)"),
        ("18110000010000000000000005000000", "map_fd with a non-zero second imm"),
    ],
)
def test_disassembly_falls_back_to_insn(hexbytes: str, why: str) -> None:
    code = bytes.fromhex(hexbytes)
    listing = disassemble(code)
    assert listing.startswith(f".insn 0x{struct.unpack_from('<Q', code)[0]:016x}\n"), why
    assert assemble(listing) == code


def test_disassemble_rejects_partial_slots() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        disassemble(b"\x95" * 9)


def test_empty_program() -> None:
    assert assemble("") == b""
    assert disassemble(b"") == ""


# --- round trips ---------------------------------------------------------------------------------

REG = st.integers(0, 10)
S16 = st.integers(-(2**15), 2**15 - 1)
S32 = st.integers(-(2**31), 2**31 - 1)
ALU_CODES = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xA0, 0xB0, 0xC0]
JCOND_CODES = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0]
ATOMIC_IMMS = [0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1]


def _slot(opc: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", opc, dst | src << 4, off, imm)


@st.composite
def valid_instruction(draw: st.DrawFn) -> bytes:
    """One well-formed instruction of any family (written from the ISA, not from kbpf.asm)."""
    kind = draw(st.sampled_from(["alu", "neg", "end", "ldx", "st", "stx", "atomic", "jmp", "lddw"]))
    dst = draw(REG)
    if kind == "alu":
        cls = draw(st.sampled_from([0x04, 0x07]))
        code = draw(st.sampled_from(ALU_CODES))
        if draw(st.booleans()):  # register source
            offs = [0]
            if code in (0x30, 0x90):
                offs.append(1)
            if code == 0xB0:
                offs += [8, 16] + ([32] if cls == 0x07 else [])
            return _slot(cls | code | 0x08, dst, draw(REG), draw(st.sampled_from(offs)))
        off = draw(st.sampled_from([0, 1])) if code in (0x30, 0x90) else 0
        return _slot(cls | code, dst, 0, off, draw(S32))
    if kind == "neg":
        return _slot(draw(st.sampled_from([0x84, 0x87])), dst)
    if kind == "end":
        opc = draw(st.sampled_from([0xD4, 0xDC, 0xD7]))
        return _slot(opc, dst, imm=draw(st.sampled_from([16, 32, 64])))
    if kind == "ldx":
        opc = draw(st.sampled_from([0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91]))
        return _slot(opc, dst, draw(REG), draw(S16))
    if kind == "st":
        return _slot(draw(st.sampled_from([0x62, 0x6A, 0x72, 0x7A])), dst, 0, draw(S16), draw(S32))
    if kind == "stx":
        return _slot(draw(st.sampled_from([0x63, 0x6B, 0x73, 0x7B])), dst, draw(REG), draw(S16))
    if kind == "atomic":
        opc = draw(st.sampled_from([0xC3, 0xDB]))
        return _slot(opc, dst, draw(REG), draw(S16), draw(st.sampled_from(ATOMIC_IMMS)))
    if kind == "jmp":
        which = draw(st.sampled_from(["ja", "ja32", "exit", "call", "callx", "cond"]))
        if which == "ja":
            return _slot(0x05, off=draw(S16))
        if which == "ja32":
            return _slot(0x06, imm=draw(S32))
        if which == "exit":
            return _slot(0x95)
        if which == "call":
            return _slot(0x85, src=draw(st.sampled_from([0, 1, 2])), imm=draw(S32))
        if which == "callx":
            return _slot(0x8D, dst)
        opc = draw(st.sampled_from([0x05, 0x06])) | draw(st.sampled_from(JCOND_CODES))
        if draw(st.booleans()):
            return _slot(opc | 0x08, dst, draw(REG), draw(S16))
        return _slot(opc, dst, 0, draw(S16), draw(S32))
    src = draw(st.sampled_from([0, 1, 2, 4]))
    next_imm = draw(S32) if src in (0, 2) else 0
    return _slot(0x18, dst, src, 0, draw(S32)) + _slot(0, imm=next_imm)


@given(st.lists(valid_instruction(), max_size=12))
def test_valid_programs_round_trip_without_insn(insns: list[bytes]) -> None:
    code = b"".join(insns)
    listing = disassemble(code)
    assert ".insn" not in listing
    assert len(listing.splitlines()) == len(insns)  # an lddw pair is one line
    assert assemble(listing) == code


@given(st.binary(max_size=8 * 16).map(lambda b: b[: len(b) - len(b) % 8]))
def test_any_bytes_round_trip(code: bytes) -> None:
    listing = disassemble(code)
    assert assemble(listing) == code
    assert disassemble(assemble(listing)) == listing


# Opcodes the ISA defines (and a few neighbours), so that fuzzed slots are mostly *almost* valid.
KNOWN_OPCODES = sorted(
    {c | k | cls for cls in (0x04, 0x07) for c in ALU_CODES + [0x80, 0xD0] for k in (0, 8)}
    | {
        c | k | cls
        for cls in (0x05, 0x06)
        for c in JCOND_CODES + [0x00, 0x80, 0x90]
        for k in (0, 8)
    }
    | {0x18, 0x00, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0x99, 0xC3, 0xDB, 0xD3}
    | {m | s | c for m in (0x60, 0x80) for s in (0x00, 0x08, 0x10, 0x18) for c in (1, 2, 3)}
)


@st.composite
def fuzzed_slot(draw: st.DrawFn) -> bytes:
    """A slot whose every field is drawn from values that matter: zero, the few non-zero values
    some instruction accepts, or anything.  Random bytes alone almost never have a zero offset,
    so they would only ever exercise the ``.insn`` fallback."""
    opc = draw(st.one_of(st.sampled_from(KNOWN_OPCODES), st.integers(0, 255)))
    dst = draw(st.sampled_from([0, 1, 10, 11, 15]))
    src = draw(st.sampled_from([0, 1, 2, 3, 4, 10, 11, 15]))
    off = draw(st.one_of(st.sampled_from([0, 0, 1, 8, 16, 32, -1]), S16))
    imm = draw(st.one_of(st.sampled_from([0, 0, 1, 16, 32, 64, 0x41, 0xE1, 0xF1, 17]), S32))
    return _slot(opc, dst, src, off, imm)


@st.composite
def one_field_off(draw: st.DrawFn) -> bytes:
    """A valid instruction with one register, offset or immediate field (of either slot of an
    lddw) replaced by an arbitrary value: exactly the slots a careless printer gets wrong."""
    code = bytearray(draw(valid_instruction()))
    slot = 8 * draw(st.integers(0, len(code) // 8 - 1))
    field = draw(st.sampled_from(["dst", "src", "off", "imm"]))
    if field in ("dst", "src"):
        shift = 0 if field == "dst" else 4
        reg = draw(st.integers(0, 15))
        code[slot + 1] = (code[slot + 1] & ~(0xF << shift) & 0xFF) | (reg << shift)
    elif field == "off":
        struct.pack_into("<h", code, slot + 2, draw(S16))
    else:
        struct.pack_into("<i", code, slot + 4, draw(S32))
    return bytes(code)


@given(st.lists(st.one_of(valid_instruction(), fuzzed_slot(), one_field_off()), max_size=16))
def test_mixed_valid_and_fuzzed_slots_round_trip(slots: list[bytes]) -> None:
    code = b"".join(slots)
    listing = disassemble(code)
    assert assemble(listing) == code
    assert disassemble(assemble(listing)) == listing


def test_every_opcode_with_every_interesting_field_value_round_trips() -> None:
    """Exhaustive where hypothesis samples: all 256 opcodes against field values each at the edge
    of some instruction's rule (zero, one, a width, r10, r11, a fetch imm...).  A printer that
    forgets to check one reserved field fails here for certain."""
    slots = [
        _slot(opc, dst, src, off, imm)
        for opc in range(256)
        for dst in (0, 1, 10, 11, 15)
        for src in (0, 1, 2, 4, 10, 11)
        for off in (0, 1, 8, 32, -1)
        for imm in (0, 1, 16, 0x41, 0xE1, -1)
    ]
    code = b"".join(slots)
    listing = disassemble(code)
    assert assemble(listing) == code
    assert listing.count(".insn") < len(slots)  # the grid does reach printable instructions


def test_every_lddw_pair_variant_round_trips() -> None:
    pairs = [
        _slot(0x18, dst, src, off, imm) + _slot(opc2, regs2 & 0xF, regs2 >> 4, off2, imm2)
        for dst in (0, 1, 11)
        for src in range(7)
        for off in (0, 1)
        for imm in (0, -1)
        for opc2 in (0x00, 0x18, 0x95)
        for regs2 in (0x00, 0x01, 0x10)
        for off2 in (0, 1)
        for imm2 in (0, 1, -1)
    ]
    for pair in pairs:  # one program per pair, so each second slot really follows its lddw
        assert assemble(disassemble(pair)) == pair, pair.hex()


# --- the conformance suite -----------------------------------------------------------------------


def test_the_suite_has_313_files() -> None:
    assert len(DATA_FILES) == 313


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.name)
def test_suite_file_assembles_and_round_trips(path: Path) -> None:
    case = parse_data_file(path)
    code = assemble(case.asm)
    assert code and len(code) % 8 == 0
    listing = disassemble(code)
    assert ".insn" not in listing
    assert assemble(listing) == code


def test_lddw_data_asm_equals_its_raw_words() -> None:
    """lddw.data carries both forms; the assembler must agree with the hand-written words."""
    case = parse_data_file(DATA / "lddw.data")
    assert assemble(case.asm) == struct.pack(f"<{len(case.raw)}Q", *case.raw)


def test_assembling_the_whole_suite_is_fast() -> None:
    texts = [parse_data_file(p).asm for p in DATA_FILES]
    start = time.perf_counter()
    for text in texts:
        assemble(text)
    assert time.perf_counter() - start < 0.5
