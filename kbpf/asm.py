"""eBPF assembler and disassembler in the bpf_conformance syntax.

The syntax is the one the conformance suite's ``-- asm`` sections use (``mov %r0, 1``,
``ldxdw %r0, [%r1+8]``, ``jne %r0, 15, failed``, ``lock fetch add [%r10-8], %r1``), so that the
vendored ``.data`` files run without the C++ tool.  It is extended with the forms a loaded program
needs and the suite never writes:

* ``lddw %rN, map_fd FD`` / ``lddw %rN, map_value FD, OFFSET`` / ``lddw %rN, func LABEL``: the
  ``LD_DW_IMM`` pseudo sources 1, 2 and 4 that libbpf writes when it relocates map and callback
  references, so hand-written programs can use maps;
* ``.insn 0x<16 hex digits>``: one raw slot, written as the little-endian 64-bit word (opcode in
  the low byte, exactly as the suite's ``-- raw`` words read).  The disassembler falls back to it for
  every slot it cannot print exactly, which is what makes ``assemble(disassemble(x)) == x`` hold
  for *any* byte string, including ones a verifier would reject.

Jump targets are labels or signed slot offsets (``ja +3``, ``jeq %r1, 5, -2``); offsets count
8-byte slots from the next slot, so an ``lddw`` counts as two.  The first ``exit`` defines an
implicit label ``exit`` unless the program defines one itself.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, replace

from kbpf.insn import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_ARSH,
    BPF_ATOMIC,
    BPF_B,
    BPF_CMPXCHG,
    BPF_DIV,
    BPF_DW,
    BPF_END,
    BPF_FETCH,
    BPF_H,
    BPF_JA,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JMP,
    BPF_JMP32,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGE,
    BPF_JSGT,
    BPF_JSLE,
    BPF_JSLT,
    BPF_K,
    BPF_LDX,
    BPF_LSH,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOD,
    BPF_MOV,
    BPF_MUL,
    BPF_NEG,
    BPF_OR,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
    BPF_RSH,
    BPF_ST,
    BPF_STX,
    BPF_SUB,
    BPF_TO_BE,
    BPF_TO_LE,
    BPF_W,
    BPF_X,
    BPF_XCHG,
    BPF_XOR,
    CALL,
    CALLX,
    EXIT,
    INSN_SIZE,
    LD_DW_IMM,
    EbpfInst,
    decode_all,
)

__all__ = ["AsmError", "assemble", "disassemble"]


class AsmError(ValueError):
    """A line of assembly that cannot be encoded; the message names the line and the fault."""

    def __init__(self, lineno: int, line: str, reason: str) -> None:
        self.lineno = lineno
        self.line = line
        self.reason = reason
        super().__init__(f'line {lineno}: "{line.strip()}": {reason}')


class _Bad(Exception):
    """Raised by the operand parsers; the line loop turns it into an ``AsmError``."""


# --- mnemonic tables (shared by both directions) ---------------------------------------------

_ALU_NAMES = {
    BPF_ADD: "add",
    BPF_SUB: "sub",
    BPF_MUL: "mul",
    BPF_DIV: "div",
    BPF_OR: "or",
    BPF_AND: "and",
    BPF_LSH: "lsh",
    BPF_RSH: "rsh",
    BPF_MOD: "mod",
    BPF_XOR: "xor",
    BPF_MOV: "mov",
    BPF_ARSH: "arsh",
}
_SIGNED_ALU = {BPF_DIV: "sdiv", BPF_MOD: "smod"}  # offset 1 selects the signed form

_JCOND_NAMES = {
    BPF_JEQ: "jeq",
    BPF_JGT: "jgt",
    BPF_JGE: "jge",
    BPF_JSET: "jset",
    BPF_JNE: "jne",
    BPF_JSGT: "jsgt",
    BPF_JSGE: "jsge",
    BPF_JLT: "jlt",
    BPF_JLE: "jle",
    BPF_JSLT: "jslt",
    BPF_JSLE: "jsle",
}

_LDX_NAMES = {
    BPF_LDX | BPF_MEM | BPF_B: "ldxb",
    BPF_LDX | BPF_MEM | BPF_H: "ldxh",
    BPF_LDX | BPF_MEM | BPF_W: "ldxw",
    BPF_LDX | BPF_MEM | BPF_DW: "ldxdw",
    BPF_LDX | BPF_MEMSX | BPF_B: "ldxsb",
    BPF_LDX | BPF_MEMSX | BPF_H: "ldxsh",
    BPF_LDX | BPF_MEMSX | BPF_W: "ldxsw",
}
_SIZES = ((BPF_B, "b"), (BPF_H, "h"), (BPF_W, "w"), (BPF_DW, "dw"))
_ST_NAMES = {BPF_ST | BPF_MEM | s: "st" + n for s, n in _SIZES}
_STX_NAMES = {BPF_STX | BPF_MEM | s: "stx" + n for s, n in _SIZES}

_ATOMIC32 = BPF_STX | BPF_ATOMIC | BPF_W  # 0xc3
_ATOMIC64 = BPF_STX | BPF_ATOMIC | BPF_DW  # 0xdb
_ATOMIC_OPS = {"add": BPF_ADD, "and": BPF_AND, "or": BPF_OR, "xor": BPF_XOR}
_ATOMIC_ALWAYS_FETCH = {"xchg": BPF_XCHG, "cmpxchg": BPF_CMPXCHG}
_ATOMIC_NAMES = {imm: name for name, imm in _ATOMIC_OPS.items()}
_ATOMIC_NAMES |= {imm | BPF_FETCH: "fetch " + name for name, imm in _ATOMIC_OPS.items()}
_ATOMIC_NAMES |= {imm: name for name, imm in _ATOMIC_ALWAYS_FETCH.items()}

_JA32 = BPF_JMP32 | BPF_JA  # 0x06, "gotol": target in imm
_BSWAP = BPF_ALU64 | BPF_END | BPF_TO_LE  # 0xd7
_LE = BPF_ALU | BPF_END | BPF_TO_LE  # 0xd4
_BE = BPF_ALU | BPF_END | BPF_TO_BE  # 0xdc

# --- operand parsing ---------------------------------------------------------------------------

_REGS = {f"%r{n}": n for n in range(11)}
_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|[0-9]+)")
_IDENT = re.compile(r"[A-Za-z_.$][\w.$]*")
_MEM = re.compile(r"\[(%?\w+)(?:([+-].*))?\]")
_TOKENS = re.compile(r"\[[^\]]*\]|[^\s,]+")

_S16 = (-(1 << 15), (1 << 15) - 1)
_S32 = (-(1 << 31), (1 << 31) - 1)


def _int(tok: str, what: str) -> tuple[int, bool]:
    """Parse ``[+-]0x…`` or ``[+-]digits``; returns the value and whether it was hex."""
    m = _INT.fullmatch(tok)
    if m is None:
        raise _Bad(f"expected {what}, got '{tok}'")
    sign, digits = m.groups()
    is_hex = digits[:2] in ("0x", "0X")
    value = int(digits, 16) if is_hex else int(digits)
    return (-value if sign == "-" else value), is_hex


def _imm32(tok: str, what: str = "a 32-bit immediate") -> int:
    """Hex up to 0xffffffff (the bit pattern), decimal in s32 range, as the suite's tool takes them."""
    value, is_hex = _int(tok, what)
    if is_hex and 0 <= value <= 0xFFFFFFFF:
        return value - (1 << 32) if value & 0x80000000 else value
    if _S32[0] <= value <= _S32[1]:
        return value
    raise _Bad(
        f"immediate {tok} out of range (hex 0x0..0xffffffff or decimal -2147483648..2147483647)"
    )


def _off16(tok: str, what: str = "a 16-bit offset") -> int:
    """Hex up to 0xffff (the bit pattern), decimal in s16 range."""
    value, is_hex = _int(tok, what)
    if is_hex and 0 <= value <= 0xFFFF:
        return value - (1 << 16) if value & 0x8000 else value
    if _S16[0] <= value <= _S16[1]:
        return value
    raise _Bad(f"offset {tok} out of range (hex 0x0..0xffff or decimal -32768..32767)")


def _imm64(tok: str) -> int:
    """lddw takes any 64-bit pattern: hex up to 2**64-1, decimal from -2**63 to 2**64-1."""
    value, _ = _int(tok, "a 64-bit immediate")
    if -(1 << 63) <= value < (1 << 64):
        return value & 0xFFFFFFFFFFFFFFFF
    raise _Bad(f"immediate {tok} out of 64-bit range")


def _reg(tok: str) -> int:
    reg = _REGS.get(tok)
    if reg is None:
        raise _Bad(f"bad register '{tok}' (expected %r0..%r10)")
    return reg


def _mem(tok: str) -> tuple[int, int]:
    """``[%rN]``, ``[%rN+off]`` or ``[%rN-off]`` → (register, offset)."""
    m = _MEM.fullmatch(tok.replace(" ", "").replace("\t", ""))
    if m is None:
        raise _Bad(f"expected a memory operand [%rN+off], got '{tok}'")
    reg, off = m.groups()
    return _reg(reg), (_off16(off) if off else 0)


def _is_reg_token(tok: str) -> bool:
    return tok.startswith("%")


# --- the assembler -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Fixup:
    slot: int
    label: str
    field: str  # "off" (jumps) or "imm" (call local, ja32, lddw func)
    lineno: int
    line: str


class _Assembler:
    """One pass over the lines, collecting slots, labels and the label references to patch."""

    def __init__(self) -> None:
        self.slots: list[EbpfInst | bytes] = []
        self.labels: dict[str, int] = {}
        self.fixups: list[_Fixup] = []
        self.first_exit: int | None = None
        self.lineno = 0
        self.line = ""

    # Each handler takes (argument from the table, operands) and appends slots.

    def _target(self, tok: str, field: str, parse) -> int:
        """A jump target: a signed number is the offset itself, an identifier a label to patch."""
        if _INT.fullmatch(tok):
            return parse(tok, "a jump offset")
        if not _IDENT.fullmatch(tok):
            raise _Bad(f"bad jump target '{tok}' (a label or a signed offset such as +3)")
        self.fixups.append(_Fixup(len(self.slots), tok, field, self.lineno, self.line))
        return 0

    def alu(self, arg: tuple[int, int], ops: list[str]) -> None:
        opc, off = arg
        _count(ops, 2)
        dst = _reg(ops[0])
        if _is_reg_token(ops[1]):
            self.slots.append(EbpfInst(opc | BPF_X, dst, _reg(ops[1]), off, 0))
        else:
            self.slots.append(EbpfInst(opc | BPF_K, dst, 0, off, _imm32(ops[1])))

    def neg(self, opc: int, ops: list[str]) -> None:
        _count(ops, 1)
        self.slots.append(EbpfInst(opc, _reg(ops[0])))

    def movsx(self, arg: tuple[int, int], ops: list[str]) -> None:
        opc, off = arg
        _count(ops, 2)
        dst = _reg(ops[0])
        if not _is_reg_token(ops[1]):
            raise _Bad(
                "movsx takes a register source (sign extension of an immediate is not an instruction)"
            )
        self.slots.append(EbpfInst(opc, dst, _reg(ops[1]), off, 0))

    def end(self, arg: tuple[int, int], ops: list[str]) -> None:
        opc, width = arg
        _count(ops, 1)
        self.slots.append(EbpfInst(opc, _reg(ops[0]), 0, 0, width))

    def ldx(self, opc: int, ops: list[str]) -> None:
        _count(ops, 2)
        dst = _reg(ops[0])
        src, off = _mem(ops[1])
        self.slots.append(EbpfInst(opc, dst, src, off, 0))

    def st(self, opc: int, ops: list[str]) -> None:
        _count(ops, 2)
        dst, off = _mem(ops[0])
        self.slots.append(EbpfInst(opc, dst, 0, off, _imm32(ops[1])))

    def stx(self, opc: int, ops: list[str]) -> None:
        _count(ops, 2)
        dst, off = _mem(ops[0])
        self.slots.append(EbpfInst(opc, dst, _reg(ops[1]), off, 0))

    def lddw(self, _: None, ops: list[str]) -> None:
        if len(ops) < 2:
            raise _Bad(f"lddw takes 2 operands (%rN, value), got {len(ops)}")
        dst = _reg(ops[0])
        kind = ops[1].lower()
        if kind == "map_fd":
            _count(ops, 3, "lddw %rN, map_fd FD")
            self.slots += _wide(dst, BPF_PSEUDO_MAP_FD, _imm32(ops[2], "a map fd"), 0)
        elif kind == "map_value":
            _count(ops, 4, "lddw %rN, map_value FD, OFFSET")
            fd = _imm32(ops[2], "a map fd")
            self.slots += _wide(dst, BPF_PSEUDO_MAP_VALUE, fd, _imm32(ops[3], "a value offset"))
        elif kind == "func":
            _count(ops, 3, "lddw %rN, func LABEL")
            rel = self._target(ops[2], "imm", _imm32)
            self.slots += _wide(dst, BPF_PSEUDO_FUNC, rel, 0)
        else:
            _count(ops, 2)
            value = _imm64(ops[1])
            self.slots += _wide(dst, 0, value & 0xFFFFFFFF, value >> 32)

    def ja(self, _: None, ops: list[str]) -> None:
        _count(ops, 1)
        self.slots.append(EbpfInst(BPF_JMP | BPF_JA, off=self._target(ops[0], "off", _off16)))

    def ja32(self, _: None, ops: list[str]) -> None:
        _count(ops, 1)
        self.slots.append(EbpfInst(_JA32, imm=self._target(ops[0], "imm", _imm32)))

    def jcond(self, opc: int, ops: list[str]) -> None:
        _count(ops, 3)
        dst = _reg(ops[0])
        if _is_reg_token(ops[1]):
            src, imm, opc = _reg(ops[1]), 0, opc | BPF_X
        else:
            src, imm = 0, _imm32(ops[1])
        self.slots.append(EbpfInst(opc, dst, src, self._target(ops[2], "off", _off16), imm))

    def exit(self, _: None, ops: list[str]) -> None:
        _count(ops, 0)
        if self.first_exit is None:
            self.first_exit = len(self.slots)
        self.slots.append(EbpfInst(EXIT))

    def call(self, _: None, ops: list[str]) -> None:
        if len(ops) == 1:
            ops = ["helper", ops[0]]
        if len(ops) != 2:
            raise _Bad(
                f"call takes N, %rN, local LABEL, runtime N or helper N, got {len(ops)} operands"
            )
        mode, target = ops[0].lower(), ops[1]
        if mode == "helper" and _is_reg_token(target):
            self.slots.append(EbpfInst(CALLX, _reg(target)))
        elif mode == "helper":
            self.slots.append(EbpfInst(CALL, imm=_imm32(target, "a helper id")))
        elif mode == "local":
            rel = self._target(target, "imm", _imm32)
            self.slots.append(EbpfInst(CALL, src=BPF_PSEUDO_CALL, imm=rel))
        elif mode == "runtime":
            self.slots.append(EbpfInst(CALL, src=BPF_PSEUDO_KFUNC_CALL, imm=_imm32(target)))
        else:
            raise _Bad(f"bad call mode '{ops[0]}' (expected local, runtime or helper)")

    def lock(self, _: None, ops: list[str]) -> None:
        if ops and ops[0].lower() == "fetch":
            fetch, ops = True, ops[1:]
        else:
            fetch = False
        if len(ops) != 3:
            raise _Bad(
                "lock takes [fetch] OP [%rN+off], %rM (OP: add, and, or, xor, xchg, cmpxchg)"
            )
        name = ops[0].lower()
        opc = _ATOMIC64
        if name.endswith("32"):
            name, opc = name[:-2], _ATOMIC32
        elif name.endswith("64"):
            name = name[:-2]
        if name in _ATOMIC_OPS:
            imm = _ATOMIC_OPS[name] | (BPF_FETCH if fetch else 0)
        elif name in _ATOMIC_ALWAYS_FETCH:
            imm = _ATOMIC_ALWAYS_FETCH[name]
        else:
            raise _Bad(f"unknown atomic operation '{ops[0]}'")
        dst, off = _mem(ops[1])
        self.slots.append(EbpfInst(opc, dst, _reg(ops[2]), off, imm))

    def raw(self, _: None, ops: list[str]) -> None:
        _count(ops, 1)
        value, _hex = _int(ops[0], "a 64-bit instruction word such as 0x0000000000000095")
        if not 0 <= value < (1 << 64):
            raise _Bad(f"instruction word {ops[0]} out of 64-bit range")
        self.slots.append(value.to_bytes(INSN_SIZE, "little"))

    # --- driver ---

    def run(self, text: str) -> bytes:
        table = _TABLE
        for lineno, line in enumerate(text.split("\n"), 1):  # "\n" only, as getline
            code = line
            for mark in ("#", ";"):
                cut = code.find(mark)
                if cut >= 0:
                    code = code[:cut]
            tokens = _TOKENS.findall(code)
            if not tokens:
                continue
            self.lineno, self.line = lineno, line
            try:
                while tokens and tokens[0].endswith(":"):
                    self._label(tokens.pop(0)[:-1])
                if not tokens:
                    continue
                entry = table.get(tokens[0].lower())
                if entry is None:
                    raise _Bad(f"unknown mnemonic '{tokens[0]}'")
                handler, arg = entry
                handler(self, arg, tokens[1:])
            except _Bad as e:
                raise AsmError(lineno, line, str(e)) from None
        if self.first_exit is not None:
            self.labels.setdefault("exit", self.first_exit)
        for fx in self.fixups:
            self._patch(fx)
        return b"".join(s if isinstance(s, bytes) else s.encode() for s in self.slots)

    def _label(self, name: str) -> None:
        if not _IDENT.fullmatch(name):
            raise _Bad(f"bad label name '{name}'")
        if name in self.labels:
            raise _Bad(f"duplicate label '{name}' (first defined at slot {self.labels[name]})")
        self.labels[name] = len(self.slots)

    def _patch(self, fx: _Fixup) -> None:
        target = self.labels.get(fx.label)
        if target is None:
            raise AsmError(fx.lineno, fx.line, f"undefined label '{fx.label}'")
        rel = target - fx.slot - 1
        lo, hi = _S16 if fx.field == "off" else _S32
        if not lo <= rel <= hi:
            raise AsmError(
                fx.lineno,
                fx.line,
                f"label '{fx.label}' is {rel} slots away, out of range {lo}..{hi}",
            )
        slot = self.slots[fx.slot]
        assert isinstance(slot, EbpfInst)
        self.slots[fx.slot] = (
            replace(slot, off=rel) if fx.field == "off" else replace(slot, imm=rel)
        )


def _count(ops: list[str], n: int, form: str | None = None) -> None:
    if len(ops) != n:
        shape = f" ({form})" if form else ""
        raise _Bad(f"wrong operand count: expected {n}{shape}, got {len(ops)}")


def _wide(dst: int, src: int, imm: int, next_imm: int) -> list[EbpfInst]:
    return [EbpfInst(LD_DW_IMM, dst, src, 0, imm), EbpfInst(0, imm=next_imm)]


def _build_table() -> dict[str, tuple]:
    A = _Assembler
    t: dict[str, tuple] = {}
    for suffix, cls in (("", BPF_ALU64), ("64", BPF_ALU64), ("32", BPF_ALU)):
        for code, name in _ALU_NAMES.items():
            t[name + suffix] = (A.alu, (cls | code, 0))
        for code, name in _SIGNED_ALU.items():
            t[name + suffix] = (A.alu, (cls | code, 1))
        t["neg" + suffix] = (A.neg, cls | BPF_NEG)
    for width in (8, 16):
        t[f"movsx{width}32"] = (A.movsx, (BPF_ALU | BPF_MOV | BPF_X, width))
    for width in (8, 16, 32):
        t[f"movsx{width}64"] = (A.movsx, (BPF_ALU64 | BPF_MOV | BPF_X, width))
    for width in (16, 32, 64):
        t[f"le{width}"] = (A.end, (_LE, width))
        t[f"be{width}"] = (A.end, (_BE, width))
        t[f"swap{width}"] = (A.end, (_BSWAP, width))
        t[f"bswap{width}"] = (A.end, (_BSWAP, width))
    for names, handler in ((_LDX_NAMES, A.ldx), (_ST_NAMES, A.st), (_STX_NAMES, A.stx)):
        for opc, name in names.items():
            t[name] = (handler, opc)
    for code, name in _JCOND_NAMES.items():
        t[name] = (A.jcond, BPF_JMP | code)
        t[name + "32"] = (A.jcond, BPF_JMP32 | code)
    for name in ("lddw", "ja", "ja32", "exit", "call", "lock"):
        t[name] = (getattr(A, name), None)
    t[".insn"] = (A.raw, None)
    return t


_TABLE = _build_table()


def assemble(text: str) -> bytes:
    """Assemble a program; raises ``AsmError`` naming the first bad line."""
    return _Assembler().run(text)


# --- the disassembler ----------------------------------------------------------------------------


def _r(n: int) -> str:
    return f"%r{n}"


def _m(reg: int, off: int) -> str:
    return f"[%r{reg}]" if off == 0 else f"[%r{reg}{off:+d}]"


def _format(ins: EbpfInst) -> str | None:
    """The text of one (non-wide) slot, or None when no mnemonic reassembles to exactly it.

    Every branch checks all the fields the assembler would leave zero, because printing a slot
    whose reserved field is set as its plain mnemonic would lose that field on reassembly.
    """
    opc, dst, src, off, imm = ins.opc, ins.dst, ins.src, ins.off, ins.imm
    cls = opc & 0x07
    code = opc & 0xF0
    if cls == BPF_ALU or cls == BPF_ALU64:
        if dst > 10:
            return None
        sfx = "32" if cls == BPF_ALU else ""
        is_x = opc & BPF_X
        if code == BPF_END:
            if src or off or imm not in (16, 32, 64):
                return None
            if cls == BPF_ALU:
                return f"{'be' if is_x else 'le'}{imm} {_r(dst)}"
            return None if is_x else f"bswap{imm} {_r(dst)}"
        if code == BPF_NEG:
            return None if is_x or src or off or imm else f"neg{sfx} {_r(dst)}"
        name = _ALU_NAMES.get(code)
        if name is None:
            return None
        if is_x and (imm or src > 10):
            return None
        if not is_x and src:
            return None
        if off:
            if off == 1 and code in _SIGNED_ALU:
                name = _SIGNED_ALU[code]
            elif code == BPF_MOV and is_x and (off in (8, 16) or (off == 32 and not sfx)):
                return f"movsx{off}{sfx or '64'} {_r(dst)}, {_r(src)}"
            else:
                return None
        return f"{name}{sfx} {_r(dst)}, {_r(src) if is_x else imm}"
    if cls == BPF_JMP or cls == BPF_JMP32:
        if opc == BPF_JMP | BPF_JA:
            return None if dst or src or imm else f"ja {off:+d}"
        if opc == _JA32:
            return None if dst or src or off else f"ja32 {imm:+d}"
        if opc == EXIT:
            return None if dst or src or off or imm else "exit"
        if opc == CALL:
            if dst or off:
                return None
            if src == 0:
                return f"call {imm}"
            if src == BPF_PSEUDO_CALL:
                return f"call local {imm:+d}"
            if src == BPF_PSEUDO_KFUNC_CALL:
                return f"call runtime {imm}"
            return None
        if opc == CALLX:
            return None if src or off or imm or dst > 10 else f"call {_r(dst)}"
        name = _JCOND_NAMES.get(code)
        if name is None or dst > 10:
            return None
        sfx = "32" if cls == BPF_JMP32 else ""
        if opc & BPF_X:
            if imm or src > 10:
                return None
            return f"{name}{sfx} {_r(dst)}, {_r(src)}, {off:+d}"
        return None if src else f"{name}{sfx} {_r(dst)}, {imm}, {off:+d}"
    if opc in _LDX_NAMES:
        if imm or dst > 10 or src > 10:
            return None
        return f"{_LDX_NAMES[opc]} {_r(dst)}, {_m(src, off)}"
    if opc in _ST_NAMES:
        return None if src or dst > 10 else f"{_ST_NAMES[opc]} {_m(dst, off)}, {imm}"
    if opc in _STX_NAMES:
        if imm or dst > 10 or src > 10:
            return None
        return f"{_STX_NAMES[opc]} {_m(dst, off)}, {_r(src)}"
    if opc == _ATOMIC32 or opc == _ATOMIC64:
        name = _ATOMIC_NAMES.get(imm)
        if name is None or dst > 10 or src > 10:
            return None
        return f"lock {name}{'32' if opc == _ATOMIC32 else ''} {_m(dst, off)}, {_r(src)}"
    return None


def _format_wide(first: EbpfInst, second: EbpfInst) -> str | None:
    """An ``lddw`` pair, or None if either slot carries something the forms cannot express."""
    if first.off or first.dst > 10 or second.opc or second.dst or second.src or second.off:
        return None
    dst, src, imm, next_imm = _r(first.dst), first.src, first.imm, second.imm
    if src == 0:
        value = (imm & 0xFFFFFFFF) | ((next_imm & 0xFFFFFFFF) << 32)
        return f"lddw {dst}, {value:#x}"
    if src == BPF_PSEUDO_MAP_FD and next_imm == 0:
        return f"lddw {dst}, map_fd {imm}"
    if src == BPF_PSEUDO_MAP_VALUE:
        return f"lddw {dst}, map_value {imm}, {next_imm}"
    if src == BPF_PSEUDO_FUNC and next_imm == 0:
        return f"lddw {dst}, func {imm:+d}"
    return None


def disassemble(insns: bytes | bytearray | memoryview) -> str:
    """One line per instruction (an ``lddw`` pair is one line), numeric jump offsets, and
    ``.insn 0x…`` for any slot that no mnemonic reproduces bit for bit."""
    slots = decode_all(insns)
    words = struct.unpack(f"<{len(slots)}Q", insns)
    lines: list[str] = []
    i, n = 0, len(slots)
    while i < n:
        ins = slots[i]
        if ins.opc == LD_DW_IMM:
            text = _format_wide(ins, slots[i + 1]) if i + 1 < n else None
            if text is not None:
                lines.append(text)
                i += 2
                continue
        else:
            text = _format(ins)
        lines.append(text if text is not None else f".insn {words[i]:#018x}")
        i += 1
    return "".join(line + "\n" for line in lines)
