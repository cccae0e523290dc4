"""Load-time checks: what a program must satisfy before it may run (kbpf.checks).

Each rule has a test that breaks exactly that rule in an otherwise valid program and checks
that the log names the instruction and the problem.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from kbpf.asm import assemble
from kbpf.checks import check_program, function_starts
from kbpf.errors import BpfError
from kbpf.insn import EbpfInst as I  # noqa: N817 - reads like the kernel's BPF_* macros
from kbpf.insn import encode_all, lddw

EXIT = I(0x95)
HELPERS = {1, 2, 5}
NEGATIVE = Path(__file__).resolve().parents[1] / "conformance" / "negative"
UNUSED_FIELD_FILES = sorted(NEGATIVE.glob("unused-*.data"))


def rejects(insns, match: str, *, at: int | None = None, helpers=HELPERS):
    code = encode_all(insns) if isinstance(insns, list) else insns
    with pytest.raises(BpfError) as e:
        check_program(code, helpers, name="chk")
    assert e.value.errno == errno.EINVAL
    msg = str(e.value)
    assert msg.startswith("[EINVAL] prog 'chk': ")
    if at is not None:
        assert f"insn {at}:" in msg, msg
    assert re.search(match, msg), msg
    return msg


def test_a_valid_program_with_every_kind_of_instruction_passes():
    text = """
        mov %r1, %r10
        add %r1, -8
        stdw [%r1+0], 3
        ldxdw %r2, [%r10-8]
        ldxsh %r3, [%r10-8]
        lock fetch add [%r10-8], %r2
        lock cmpxchg32 [%r10-16], %r3
        lddw %r4, 0x1122334455667788
        lddw %r5, func f
        sdiv %r2, 3
        smod32 %r3, %r2
        movsx3264 %r6, %r3
        bswap32 %r6
        be16 %r6
        jslt32 %r6, -1, skip
        ja32 skip
    skip:
        call 1
        mov %r2, 5
        call %r2
        call local f
        exit
    f:
        mov %r0, 0
        exit
    """
    check_program(assemble(text), HELPERS, name="ok")


def test_length_must_be_whole_instructions_and_not_empty():
    rejects(encode_all([EXIT]) + b"\x00", r"length 9 is not a multiple of 8 bytes")
    rejects(b"", r"program is empty")


@pytest.mark.parametrize(
    "opc, what",
    [
        (0x00, "unknown opcode 0x00"),  # an all-zero slot
        (0xFF, "unknown opcode 0xff"),
        (0x20, "legacy packet access"),  # LD_ABS
        (0x8C, "unknown opcode 0x8c"),  # NEG has no register form
        (0xE4, "unknown opcode 0xe4"),  # ALU op 0xe0 does not exist
        (0xE5, "unknown opcode 0xe5"),  # JMP op 0xe0 does not exist
        (0x99, "unknown opcode 0x99"),  # MEMSX has no DW size
        (0xC2, "unknown opcode 0xc2"),  # ST has no atomic mode
        (0x96, "unknown opcode 0x96"),  # no exit in JMP32
        (0x86, "unknown opcode 0x86"),  # no call in JMP32
        (0xDF, "unknown opcode 0xdf"),  # ALU64 END must be TO_LE
    ],
)
def test_unknown_opcodes(opc, what):
    rejects([I(0xB7), I(opc, 0, 0, 0, 16 if opc == 0xDF else 0), EXIT], what, at=1)


def test_jump_targets_must_be_inside_the_program_and_not_inside_an_lddw():
    rejects([I(0x05, off=5), EXIT], r"jump out of range from insn 0 to 6", at=0)
    rejects([I(0x05, off=-2), EXIT], r"jump out of range from insn 0 to -1", at=0)
    rejects([I(0x06, imm=7), EXIT], r"jump out of range from insn 0 to 8", at=0)
    rejects(
        [I(0x15, 1, off=1), *lddw(0, 5), EXIT], r"into the middle of the LD_DW_IMM at insn 1", at=0
    )


def test_ld_dw_imm_pairs_must_be_complete():
    rejects([I(0xB7), I(0x18, 0, 0, 0, 1)], r"incomplete LD_DW_IMM", at=1)
    rejects([I(0x18, imm=1), I(0x95), EXIT], r"second slot must have opcode", at=0)
    rejects([I(0x18, imm=1), I(0, 1), EXIT], r"second slot.*dst 1", at=0)
    rejects([I(0x18, imm=1), I(0, off=2), EXIT], r"second slot.*off 2", at=0)
    rejects([I(0x18, off=1), I(0), EXIT], r"BPF_LD_IMM64 uses reserved fields \(off 1\)", at=0)


def test_ld_dw_imm_sources():
    check_program(encode_all([*lddw(1, 3, src=1, next_imm=0), EXIT]), HELPERS)  # map fd
    check_program(encode_all([*lddw(1, 3, src=2, next_imm=16), EXIT]), HELPERS)  # map value
    rejects([*lddw(1, 3, src=1, next_imm=4), EXIT], r"unrecognized bpf_ld_imm64.*next_imm 4")
    rejects([*lddw(1, 3, src=3), EXIT], r"BTF variable \(src 3\) is not supported", at=0)
    rejects([*lddw(1, 3, src=5), EXIT], r"map by index \(src 5\) is not supported", at=0)
    rejects([*lddw(1, 3, src=7), EXIT], r"unrecognized bpf_ld_imm64 insn \(src 7\)", at=0)
    rejects([*lddw(1, 9, src=4), EXIT], r"function reference out of range", at=0)


@pytest.mark.parametrize(
    "insn, what",
    [
        (I(0x07, 0, 1, 0, 1), r"BPF_ALU uses reserved fields \(src 1 in an immediate form\)"),
        (I(0x0F, 0, 1, 0, 1), r"BPF_ALU uses reserved fields \(imm 1 in a register form\)"),
        (I(0x07, 0, 0, 1, 1), r"BPF_ALU uses reserved fields \(off 1; only div/mod"),
        (I(0x3F, 0, 1, 2, 0), r"BPF_ALU uses reserved fields \(off 2\)"),
        (I(0xB7, 0, 0, 1, 1), r"BPF_MOV uses reserved fields \(src 0, off 1\)"),
        (
            I(0xBC, 0, 1, 32, 0),
            r"BPF_MOV uses reserved fields \(off 32, imm 0; off must be one "
            r"of 0, 8, 16\)",
        ),
        (I(0xBF, 0, 1, 8, 3), r"BPF_MOV uses reserved fields \(off 8, imm 3"),
        (I(0x87, 0, 1, 0, 0), r"BPF_NEG uses reserved fields \(src 1"),
        (I(0x84, 0, 0, 1, 0), r"BPF_NEG uses reserved fields \(src 0, off 1"),
        (I(0x87, 0, 0, 0, 1), r"BPF_NEG uses reserved fields \(src 0, off 0, imm 1"),
        (I(0xD4, 0, 0, 1, 16), r"BPF_END uses reserved fields \(src 0, off 1"),
        (I(0xDC, 0, 1, 0, 16), r"BPF_END uses reserved fields \(src 1"),
        (I(0xD7, 0, 0, 0, 8), r"BPF_END uses reserved fields.*imm 8"),
        (I(0x79, 0, 10, -8, 1), r"BPF_LDX uses reserved fields \(imm 1\)"),
        (I(0x7A, 10, 1, -8, 0), r"BPF_ST uses reserved fields \(src 1\)"),
        (I(0x7B, 10, 1, -8, 1), r"BPF_STX uses reserved fields \(imm 1\)"),
        (I(0xDB, 10, 1, -8, 0x02), r"BPF_ATOMIC uses invalid atomic opcode 0x02"),
        (I(0xD3, 10, 1, -8, 0x00), r"invalid atomic operand size"),
        (I(0x85, 1, 0, 0, 1), r"BPF_CALL uses reserved fields \(dst 1, off 0\)"),
        (I(0x85, 0, 0, 1, 1), r"BPF_CALL uses reserved fields \(dst 0, off 1\)"),
        (I(0x85, 0, 3, 0, 1), r"BPF_CALL uses reserved fields \(src 3\)"),
        (I(0x8D, 1, 0, 0, 1), r"callx uses reserved fields"),
        (I(0x95, 1, 0, 0, 0), r"BPF_EXIT uses reserved fields \(dst 1"),
        (I(0x95, 0, 1, 0, 0), r"BPF_EXIT uses reserved fields \(dst 0, src 1"),
        (I(0x95, 0, 0, 1, 0), r"BPF_EXIT uses reserved fields \(dst 0, src 0, off 1"),
        (I(0x95, 0, 0, 0, 1), r"BPF_EXIT uses reserved fields.*imm 1"),
        (I(0x05, 0, 0, 0, 1), r"BPF_JA uses reserved fields \(dst 0, src 0, imm 1\)"),
        (I(0x06, 0, 0, 1, 0), r"BPF_JA uses reserved fields \(dst 0, src 0, off 1\)"),
        (I(0x05, 1, 0, 0, 0), r"BPF_JA uses reserved fields \(dst 1"),
        (I(0x15, 0, 1, 0, 0), r"BPF_JMP/JMP32 uses reserved fields \(src 1 in an immediate"),
        (I(0x1E, 0, 1, 0, 1), r"BPF_JMP/JMP32 uses reserved fields \(imm 1 in a register"),
    ],
)
def test_fields_an_instruction_does_not_use_must_be_zero(insn, what):
    rejects([I(0xB7), insn, EXIT], what, at=1)


def test_signed_division_and_sign_extending_moves_are_not_reserved():
    for insn in (I(0x3F, 0, 1, 1), I(0x97, 0, 0, 1, 3), I(0xBC, 0, 1, 16), I(0xBF, 0, 1, 32)):
        check_program(encode_all([I(0xB7), insn, EXIT]), HELPERS)


def test_immediate_shift_counts_and_divisors_are_not_range_checked():
    """RFC 9669 defines them (counts are masked, x/0 = 0); Linux rejects them (deviation)."""
    for insn in (I(0x67, 0, 0, 0, 64), I(0x64, 0, 0, 0, -4), I(0x37, 0, 0, 0, 0)):
        check_program(encode_all([I(0xB7), insn, EXIT]), HELPERS)


def test_register_numbers_stop_at_r10():
    rejects([I(0xBF, 0, 11), EXIT], r"R11 is invalid \(source register\)", at=0)
    rejects([I(0xB7, 12), EXIT], r"R12 is invalid \(destination register\)", at=0)
    rejects([I(0x79, 0, 15, 0), EXIT], r"R15 is invalid", at=0)
    rejects([I(0x8D, 11), EXIT], r"R11 is invalid \(call target register\)", at=0)


@pytest.mark.parametrize(
    "insn",
    [
        [I(0xB7, 10)],
        [I(0x07, 10, 0, 0, 8)],
        [I(0x79, 10, 1, 0)],
        [*lddw(10, 5)],
        [I(0xDB, 1, 10, 0, 0x01)],  # a fetch would write r10
    ],
)
def test_the_frame_pointer_is_read_only(insn):
    rejects([*insn, EXIT], r"frame pointer is read only", at=0)


def test_r10_may_be_read_and_used_as_a_base():
    check_program(
        assemble("mov %r1, %r10\nstdw [%r10-8], 1\nlock add [%r10-8], %r1\nexit"), HELPERS
    )
    check_program(encode_all([I(0xDB, 10, 1, -8, 0xF1), EXIT]), HELPERS)  # cmpxchg writes r0


def test_helper_ids_must_be_known():
    rejects([I(0x85, imm=99), EXIT], r"invalid func unknown#99", at=0)
    rejects([I(0x85, imm=1), EXIT], r"unknown#1", helpers=set())
    rejects([I(0x85, 0, 2, 0, 7), EXIT], r"kfunc calls \(call src 2\) are not supported", at=0)


def test_call_local_targets_must_be_in_range():
    rejects([I(0x85, 0, 1, 0, 5), EXIT], r"call out of range from insn 0 to 6", at=0)
    rejects([I(0x85, 0, 1, 0, -2), EXIT], r"call out of range from insn 0 to -1", at=0)


def test_jumps_stay_inside_their_function():
    code = assemble("call local f\njeq %r0, 0, inside\nexit\nf:\ninside:\nmov %r0, 0\nexit")
    rejects(
        code, r"jump out of range from insn 1 to 3 \(outside its function at insns 0\.\.2\)", at=1
    )


def test_each_function_ends_with_exit_or_a_jump():
    rejects([I(0xB7)], r"last insn is not an exit or jmp", at=0)
    rejects([I(0xB7), I(0x15, 0, 0, -2)], r"last insn is not an exit or jmp", at=1)
    rejects([I(0x85, 0, 1, 0, 1), EXIT, I(0xB7)], r"last insn is not an exit or jmp", at=2)
    check_program(encode_all([I(0xB7), I(0x05, off=-2)]), HELPERS)  # an endless loop is valid


def test_function_starts_are_the_entry_call_targets_and_function_references():
    code = assemble("lddw %r1, func g\ncall local f\nexit\nf:\nexit\ng:\nexit")
    assert function_starts(code) == [0, 4, 5]


def test_all_unused_field_programs_of_the_suite_are_here():
    assert len(UNUSED_FIELD_FILES) == 45


@pytest.mark.parametrize("path", UNUSED_FIELD_FILES, ids=lambda p: p.stem)
def test_bpf_conformance_unused_field_programs_are_rejected(path):
    """negative/unused-*.data: each program sets one field its instruction does not use.

    Their ``-- raw`` sections list bytes, one per token (upstream's runner skips the files)."""
    text = path.read_text()
    raw = text.split("-- raw", 1)[1].split("--", 1)[0]
    code = bytes(int(tok, 16) for line in raw.splitlines() for tok in line.split("#")[0].split())
    msg = rejects(code, r"uses reserved fields|unknown opcode", helpers=HELPERS | {0})
    assert "insn 0:" in msg
