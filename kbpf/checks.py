"""Load-time checks of an eBPF program: what the kernel rejects before anything runs.

Linux runs the verifier at ``BPF_PROG_LOAD``; most of it (types, pointer provenance, bounded
loops, uninitialised registers) is a proof that kbpf-sim does not attempt, because the simulated
machine checks every memory access and counts every instruction at run time instead.  What it
*does* check here is the part of the verifier that is about the encoding itself, where a
program that fails it has no meaning at all:

* the length is a whole number of 8-byte slots, and the program is not empty;
* every opcode is one RFC 9669 defines (through ISA v4), plus ``callx`` (0x8d) as the
  bpf_conformance suite's "callx" group uses it; legacy packet access (``LD_ABS``/``LD_IND``)
  is not supported;
* every field an instruction does not use is zero ("Unused fields shall be cleared to zero",
  RFC 9669 §3), with the exact per-class rules of Linux's ``check_alu_op``, ``do_check`` and
  ``resolve_pseudo_ldimm64``;
* register numbers are at most 10 and r10 (the frame pointer) is never written;
* ``LD_DW_IMM`` pairs are complete and their second slot holds nothing but ``imm``;
* jump and call targets are inside the program, not in the middle of an ``LD_DW_IMM``, and jumps
  stay inside their own function (``check_subprogs``); each function ends with ``exit`` or a jump;
* helper calls name helpers the host has.

The message of the ``BpfError(EINVAL)`` raised is the load log: the program name, the
instruction index and what is wrong, like the verifier log a user would read.
``docs/deviations.md`` lists where these rules differ from Linux v6.6.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Collection

from kbpf.errors import BpfError
from kbpf.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_DIV,
    BPF_DW,
    BPF_END,
    BPF_EXIT,
    BPF_FETCH,
    BPF_JA,
    BPF_JMP,
    BPF_JMP32,
    BPF_LD,
    BPF_LDX,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOD,
    BPF_MOV,
    BPF_NEG,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
    BPF_ST,
    BPF_STX,
    BPF_W,
    BPF_X,
    BPF_XCHG,
    INSN_SIZE,
    LD_DW_IMM,
)

#: Linux's BPF_COMPLEXITY_LIMIT_INSNS: the longest program a privileged user may load.
MAX_INSNS = 1_000_000

#: The largest register number an instruction may name (r10, the read-only frame pointer).
MAX_REG = 10

_ATOMIC_OPS = {
    0x00: "add",
    0x40: "or",
    0x50: "and",
    0xA0: "xor",
    0x00 | BPF_FETCH: "fetch add",
    0x40 | BPF_FETCH: "fetch or",
    0x50 | BPF_FETCH: "fetch and",
    0xA0 | BPF_FETCH: "fetch xor",
    BPF_XCHG: "xchg",
    BPF_CMPXCHG: "cmpxchg",
}

_INSN = struct.Struct("<BBhi")


def _decode(insns: bytes) -> list[tuple[int, int, int, int, int]]:
    return [(o, r & 0xF, r >> 4, off, imm) for o, r, off, imm in _INSN.iter_unpack(insns)]


def jump_target(i: int, opc: int, off: int, imm: int) -> int:
    """Where the jump at index ``i`` goes: ``gotol`` (JMP32 JA) counts in ``imm``, every other
    jump in ``off``; both relative to the next slot."""
    if opc == (BPF_JMP32 | BPF_JA):
        return i + imm + 1
    return i + off + 1


def is_jump(opc: int) -> bool:
    """A JA or conditional jump (not a call or exit)."""
    cls = opc & 0x07
    if cls not in (BPF_JMP, BPF_JMP32):
        return False
    op = opc & 0xF0
    return op not in (BPF_CALL, BPF_EXIT)


def function_starts(insns: bytes) -> list[int]:
    """Sorted instruction indices where functions begin: the entry, every ``call local`` target
    and every ``LD_DW_IMM src=4`` (``BPF_PSEUDO_FUNC``) target — as Linux's
    ``add_subprog_and_kfunc`` finds subprograms.  Targets outside the program are ignored here
    (:func:`check_program` rejects them)."""
    decoded = _decode(insns)
    n = len(decoded)
    starts = {0}
    for i, (opc, _dst, src, _off, imm) in enumerate(decoded):
        if (opc == BPF_JMP | BPF_CALL and src == BPF_PSEUDO_CALL) or (
            opc == LD_DW_IMM and src == BPF_PSEUDO_FUNC
        ):
            target = i + imm + 1
            if 0 <= target < n:
                starts.add(target)
    return sorted(starts)


class _Log:
    """Builds the error for one instruction, naming the program and the index."""

    def __init__(self, name: str):
        self.name = name

    def fail(self, i: int | None, what: str) -> BpfError:
        where = f"insn {i}: " if i is not None else ""
        return BpfError(errno.EINVAL, f"prog '{self.name}': {where}{what}")


def check_program(insns: bytes, helper_ids: Collection[int], *, name: str = "prog") -> None:
    """Reject a program whose encoding is not a valid eBPF program; return None if it is.

    ``helper_ids`` are the helper function ids the host provides (``call N`` with any other N
    is rejected, as Linux rejects an unknown ``func_id``).  Raises ``BpfError(EINVAL)`` whose
    message names the instruction and the rule it breaks.
    """
    log = _Log(name)
    if len(insns) % INSN_SIZE:
        raise log.fail(None, f"program length {len(insns)} is not a multiple of {INSN_SIZE} bytes")
    if not insns:
        raise log.fail(None, "program is empty")
    n = len(insns) // INSN_SIZE
    if n > MAX_INSNS:
        raise log.fail(None, f"program has {n} instructions, more than {MAX_INSNS}")
    decoded = _decode(insns)

    # Pass 1: every slot on its own, and which slots are the second half of an LD_DW_IMM.
    second_slot = bytearray(n)
    i = 0
    while i < n:
        opc = decoded[i][0]
        if opc == LD_DW_IMM:
            _check_lddw(log, decoded, i, n)
            second_slot[i + 1] = 1
            i += 2
            continue
        _check_insn(log, decoded[i], i, helper_ids)
        i += 1

    # Pass 2: targets, now that the LD_DW_IMM second slots are known.
    for i, (opc, _dst, src, off, imm) in enumerate(decoded):
        if second_slot[i]:
            continue
        if is_jump(opc):
            _check_target(log, i, jump_target(i, opc, off, imm), n, second_slot, "jump")
        elif opc == BPF_JMP | BPF_CALL and src == BPF_PSEUDO_CALL:
            _check_target(log, i, i + imm + 1, n, second_slot, "call")
        elif opc == LD_DW_IMM and src == BPF_PSEUDO_FUNC:
            _check_target(log, i, i + imm + 1, n, second_slot, "function reference")

    # Pass 3: functions (check_subprogs): jumps stay inside, each ends with exit or a jump.
    starts = function_starts(insns)
    ends = starts[1:] + [n]
    for start, end in zip(starts, ends, strict=True):
        for i in range(start, end):
            opc, _dst, _src, off, imm = decoded[i]
            if second_slot[i] or not is_jump(opc):
                continue
            target = jump_target(i, opc, off, imm)
            if not start <= target < end:
                raise log.fail(
                    i,
                    f"jump out of range from insn {i} to {target} (outside its function "
                    f"at insns {start}..{end - 1})",
                )
        last = end - 1
        opc = decoded[last][0]
        if second_slot[last] or opc not in (
            BPF_JMP | BPF_EXIT,
            BPF_JMP | BPF_JA,
            BPF_JMP32 | BPF_JA,
        ):
            raise log.fail(last, "last insn is not an exit or jmp")


def _check_target(log: _Log, i: int, target: int, n: int, second_slot: bytearray, what: str):
    if not 0 <= target < n:
        raise log.fail(i, f"{what} out of range from insn {i} to {target}")
    if second_slot[target]:
        raise log.fail(
            i, f"{what} from insn {i} into the middle of the LD_DW_IMM at insn {target - 1}"
        )


def _reg(log: _Log, i: int, reg: int, what: str, write: bool = False) -> None:
    if reg > MAX_REG:
        raise log.fail(i, f"R{reg} is invalid ({what} register)")
    if write and reg == MAX_REG:
        raise log.fail(i, "frame pointer is read only (r10 written)")


def _check_lddw(log: _Log, decoded, i: int, n: int) -> None:
    opc, dst, src, off, imm = decoded[i]
    if i + 1 >= n:
        raise log.fail(i, "incomplete LD_DW_IMM: the second slot is missing")
    nopc, ndst, nsrc, noff, nimm = decoded[i + 1]
    if nopc or ndst or nsrc or noff:
        raise log.fail(
            i,
            "invalid bpf_ld_imm64 insn: its second slot must have opcode, registers and "
            f"offset zero (opcode {nopc:#04x}, dst {ndst}, src {nsrc}, off {noff})",
        )
    if off:
        raise log.fail(i, f"BPF_LD_IMM64 uses reserved fields (off {off})")
    _reg(log, i, dst, "destination", write=True)
    if src in (0, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_FUNC):
        return
    if src == BPF_PSEUDO_MAP_FD:
        if nimm:
            raise log.fail(
                i, f"unrecognized bpf_ld_imm64 insn (map fd load with next_imm {nimm}, must be 0)"
            )
        return
    if src in (3, 5, 6):
        kinds = {
            3: "BTF variable (src 3)",
            5: "map by index (src 5)",
            6: "map value by index (src 6)",
        }
        raise log.fail(i, f"LD_DW_IMM of a {kinds[src]} is not supported")
    raise log.fail(i, f"unrecognized bpf_ld_imm64 insn (src {src})")


def _check_insn(log: _Log, insn, i: int, helper_ids: Collection[int]) -> None:
    opc, dst, src, off, imm = insn
    cls = opc & 0x07
    if cls in (BPF_ALU, BPF_ALU64):
        _check_alu(log, insn, i)
    elif cls in (BPF_JMP, BPF_JMP32):
        _check_jmp(log, insn, i, helper_ids)
    elif cls == BPF_LDX:
        mode, size = opc & 0xE0, opc & 0x18
        if not (mode == BPF_MEM or (mode == BPF_MEMSX and size != BPF_DW)):
            raise log.fail(i, f"unknown opcode {opc:#04x}")
        if imm:
            raise log.fail(i, f"BPF_LDX uses reserved fields (imm {imm})")
        _reg(log, i, src, "source")
        _reg(log, i, dst, "destination", write=True)
    elif cls == BPF_ST:
        if opc & 0xE0 != BPF_MEM:
            raise log.fail(i, f"unknown opcode {opc:#04x}")
        if src:
            raise log.fail(i, f"BPF_ST uses reserved fields (src {src})")
        _reg(log, i, dst, "base")
    elif cls == BPF_STX:
        mode, size = opc & 0xE0, opc & 0x18
        if mode == BPF_MEM:
            if imm:
                raise log.fail(i, f"BPF_STX uses reserved fields (imm {imm})")
            _reg(log, i, dst, "base")
            _reg(log, i, src, "source")
        elif mode == BPF_ATOMIC:
            if size not in (BPF_W, BPF_DW):
                raise log.fail(i, f"invalid atomic operand size (opcode {opc:#04x})")
            if imm not in _ATOMIC_OPS:
                raise log.fail(i, f"BPF_ATOMIC uses invalid atomic opcode {imm & 0xFFFFFFFF:#04x}")
            _reg(log, i, dst, "base")
            _reg(log, i, src, "source")
            if imm & BPF_FETCH and imm != BPF_CMPXCHG:
                _reg(log, i, src, "fetch destination", write=True)
        else:
            raise log.fail(i, f"unknown opcode {opc:#04x}")
    elif cls == BPF_LD:
        mode = opc & 0xE0
        if mode in (0x20, 0x40) and opc & 0x18 != BPF_DW:
            raise log.fail(
                i, f"legacy packet access (LD_ABS/LD_IND, opcode {opc:#04x}) is not supported"
            )
        raise log.fail(i, f"unknown opcode {opc:#04x}")


def _check_alu(log: _Log, insn, i: int) -> None:
    opc, dst, src, off, imm = insn
    cls, op, x = opc & 0x07, opc & 0xF0, opc & BPF_X
    if op > BPF_END:
        raise log.fail(i, f"unknown opcode {opc:#04x} (invalid BPF_ALU opcode {op:#x})")
    if op == BPF_NEG:
        if x:
            raise log.fail(i, f"unknown opcode {opc:#04x} (BPF_NEG has no register form)")
        if src or off or imm:
            raise log.fail(i, f"BPF_NEG uses reserved fields (src {src}, off {off}, imm {imm})")
    elif op == BPF_END:
        if cls == BPF_ALU64 and x:
            raise log.fail(i, f"unknown opcode {opc:#04x} (ALU64 BPF_END must be TO_LE)")
        if src or off or imm not in (16, 32, 64):
            raise log.fail(
                i,
                f"BPF_END uses reserved fields (src {src}, off {off}, imm {imm}; "
                "imm must be 16, 32 or 64)",
            )
    elif op == BPF_MOV:
        if x:
            allowed = (0, 8, 16) if cls == BPF_ALU else (0, 8, 16, 32)
            if imm or off not in allowed:
                raise log.fail(
                    i,
                    f"BPF_MOV uses reserved fields (off {off}, imm {imm}; off "
                    f"must be one of {', '.join(map(str, allowed))})",
                )
        elif src or off:
            raise log.fail(i, f"BPF_MOV uses reserved fields (src {src}, off {off})")
    else:
        signed_ok = op in (BPF_DIV, BPF_MOD)
        if off not in ((0, 1) if signed_ok else (0,)):
            raise log.fail(
                i,
                f"BPF_ALU uses reserved fields (off {off}"
                + ("; only div/mod take off 1 (sdiv/smod))" if not signed_ok else ")"),
            )
        if x and imm:
            raise log.fail(i, f"BPF_ALU uses reserved fields (imm {imm} in a register form)")
        if not x and src:
            raise log.fail(i, f"BPF_ALU uses reserved fields (src {src} in an immediate form)")
    if x:
        _reg(log, i, src, "source")
    _reg(log, i, dst, "destination", write=True)


def _check_jmp(log: _Log, insn, i: int, helper_ids: Collection[int]) -> None:
    opc, dst, src, off, imm = insn
    cls, op, x = opc & 0x07, opc & 0xF0, opc & BPF_X
    if op in (0xE0, 0xF0):
        raise log.fail(i, f"unknown opcode {opc:#04x} (invalid BPF_JMP/JMP32 opcode {op:#x})")
    if op == BPF_CALL:
        if cls == BPF_JMP32:
            raise log.fail(i, f"unknown opcode {opc:#04x} (BPF_CALL is a JMP-class instruction)")
        if x:  # callx: the target (a helper id) is in the register named by dst
            if src or off or imm:
                raise log.fail(i, f"callx uses reserved fields (src {src}, off {off}, imm {imm})")
            _reg(log, i, dst, "call target")
            return
        if off or dst:
            raise log.fail(i, f"BPF_CALL uses reserved fields (dst {dst}, off {off})")
        if src == 0:
            if imm not in helper_ids:
                raise log.fail(i, f"invalid func unknown#{imm} (no helper with id {imm})")
        elif src == BPF_PSEUDO_KFUNC_CALL:
            raise log.fail(i, "kfunc calls (call src 2) are not supported")
        elif src != BPF_PSEUDO_CALL:
            raise log.fail(i, f"BPF_CALL uses reserved fields (src {src})")
        return
    if op == BPF_EXIT:
        if cls == BPF_JMP32 or x:
            raise log.fail(i, f"unknown opcode {opc:#04x} (exit is 0x95)")
        if dst or src or off or imm:
            raise log.fail(
                i, f"BPF_EXIT uses reserved fields (dst {dst}, src {src}, off {off}, imm {imm})"
            )
        return
    if op == BPF_JA:
        if x:
            raise log.fail(i, f"unknown opcode {opc:#04x} (BPF_JA has no register form)")
        unused = imm if cls == BPF_JMP else off
        if dst or src or unused:
            field = "imm" if cls == BPF_JMP else "off"
            raise log.fail(
                i, f"BPF_JA uses reserved fields (dst {dst}, src {src}, {field} {unused})"
            )
        return
    if x:
        if imm:
            raise log.fail(i, f"BPF_JMP/JMP32 uses reserved fields (imm {imm} in a register form)")
        _reg(log, i, src, "source")
    elif src:
        raise log.fail(i, f"BPF_JMP/JMP32 uses reserved fields (src {src} in an immediate form)")
    _reg(log, i, dst, "destination")
