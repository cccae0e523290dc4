"""Random programs through the compiled engine and a plain reference interpreter must agree.

The engine recovers loops and ifs from the CFG, inlines blocks, unrolls self-loops and counts
the budget per block; any mistake there shows up as a different r0, a different instruction
count, a different fault or a different finishing time on some random control flow.  The
reference below is the opposite design: one instruction at a time, straight from RFC 9669, with
the engine's documented budget rule (ELOOP when the count exceeds the budget at a backward jump
or an exit).
"""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbpf.errors import BpfError
from kbpf.insn import EbpfInst, encode_all, lddw
from sim.cpu.engine import Budget, Costs, ProgramFault, Region, RegionSet, compile_program

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
STACK_TOP = 0x7000_0000
STACK = 4096
DATA = 0x5000_0000
DATA_SIZE = 64
ACCESS_PS = 777
HELPER_PS = 50


def helper(a, b, c, d, e):
    return (a * 3 + b - e) & M64


COSTS = Costs(
    alu=3,
    mul=5,
    div=7,
    branch=11,
    ld_imm64=13,
    load=17,
    store=19,
    atomic=23,
    call=29,
    exit=31,
    local_call=37,
)


def s64(v):
    v &= M64
    return v - (1 << 64) if v >> 63 else v


def s32(v):
    v &= M32
    return v - (1 << 32) if v >> 31 else v


def sext(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def trunc_div(a, b):
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def trunc_mod(a, b):
    r = abs(a) % abs(b)
    return -r if a < 0 else r


class Ref:
    """A one-instruction-at-a-time interpreter of the single-function subset used here."""

    def __init__(self, insns: bytes, budget: int):
        self.insns = [EbpfInst.decode(insns, i) for i in range(len(insns) // 8)]
        self.budget = budget
        self.stack = bytearray(STACK)
        self.data = bytearray(DATA_SIZE)

    def region(self, addr, n, pc, write, frame_off=None):
        if frame_off is not None and not (-512 <= frame_off and frame_off + n <= 0):
            raise ProgramFault("ref", pc, addr, "outside the frame")  # r10-relative: own frame
        if STACK_TOP - STACK <= addr and addr + n <= STACK_TOP:
            return self.stack, addr - (STACK_TOP - STACK), False
        if DATA <= addr and addr + n <= DATA + DATA_SIZE:
            return self.data, addr - DATA, True
        raise ProgramFault("ref", pc, addr, "fault")

    def run(self, r1=0):
        regs = [0] * 11
        regs[1] = r1
        regs[10] = STACK_TOP
        pc = 0
        count = 0
        t = 0
        c = COSTS
        frames = []  # (return pc, saved r1..r9, r10) of each caller
        while True:
            ins = self.insns[pc]
            count += 1
            opc, dst, src, off, imm = ins.opc, ins.dst, ins.src, ins.off, ins.imm
            cls = opc & 7
            nxt = pc + 1
            if cls in (4, 7):
                t += self.alu(regs, ins)
            elif opc == 0x18:
                t += c.ld_imm64
                regs[dst] = (imm & M32) | ((self.insns[pc + 1].imm & M32) << 32)
                nxt = pc + 2
            elif cls == 1:
                n = {0: 4, 8: 2, 0x10: 1, 0x18: 8}[opc & 0x18]
                addr = (regs[src] + off) & M64
                buf, o, shared = self.region(addr, n, pc, False, off if src == 10 else None)
                t += ACCESS_PS if shared else c.load
                v = int.from_bytes(buf[o : o + n], "little")
                regs[dst] = sext(v, 8 * n) & M64 if opc & 0xE0 == 0x80 else v
            elif cls in (2, 3) and opc & 0xE0 == 0x60:
                n = {0: 4, 8: 2, 0x10: 1, 0x18: 8}[opc & 0x18]
                addr = (regs[dst] + off) & M64
                buf, o, shared = self.region(addr, n, pc, True, off if dst == 10 else None)
                t += ACCESS_PS if shared else c.store
                v = imm if cls == 2 else regs[src]
                buf[o : o + n] = (v & ((1 << 8 * n) - 1)).to_bytes(n, "little")
            elif cls == 3:  # atomic
                n = 8 if opc & 0x18 == 0x18 else 4
                mask = (1 << 8 * n) - 1
                addr = (regs[dst] + off) & M64
                buf, o, shared = self.region(addr, n, pc, True, off if dst == 10 else None)
                t += c.atomic + (ACCESS_PS if shared else 0)
                old = int.from_bytes(buf[o : o + n], "little")
                v = regs[src] & mask
                op = imm & 0xF0
                new = {
                    0x00: (old + v) & mask,
                    0x40: old | v,
                    0x50: old & v,
                    0xA0: old ^ v,
                    0xE0: v,
                }.get(op)
                if op == 0xF0:
                    new = v if old == regs[0] & mask else old
                    regs[0] = old
                elif imm & 1:
                    regs[src] = old
                buf[o : o + n] = new.to_bytes(n, "little")
            elif opc == 0x95:
                t += c.exit
                if count > self.budget:
                    raise BpfError(errno.ELOOP, "budget")
                if not frames:
                    return regs[0], count, t
                nxt, saved, r10 = frames.pop()
                regs[1:10] = saved
                regs[10] = r10
            elif opc == 0x85 and src == 1:  # call local: a fresh frame 512 bytes down
                t += c.local_call
                if len(frames) == 7:
                    raise BpfError(errno.E2BIG, "frames")
                frames.append((pc + 1, regs[1:10], regs[10]))
                regs[0] = regs[6] = regs[7] = regs[8] = regs[9] = 0
                regs[10] -= 512
                nxt = pc + 1 + imm
            elif opc == 0x85:  # helper 1; the test driver adds HELPER_PS to the clock
                t += c.call + HELPER_PS
                regs[0] = helper(*regs[1:6])
            else:  # jumps
                t += c.branch
                target = pc + 1 + (imm if opc == 0x06 else off)
                if opc & 0xF0 == 0 or self.taken(regs, ins):
                    nxt = target
                if nxt <= pc and count > self.budget:
                    raise BpfError(errno.ELOOP, "budget")
            pc = nxt

    @staticmethod
    def taken(regs, ins):
        opc, op = ins.opc, ins.opc & 0xF0
        wide = opc & 7 == 5
        a = regs[ins.dst]
        b = regs[ins.src] if opc & 8 else ins.imm & M64
        if not wide:
            a, b = a & M32, b & M32
        sa, sb = (s64(a), s64(b)) if wide else (s32(a), s32(b))
        return {
            0x10: a == b,
            0x20: a > b,
            0x30: a >= b,
            0x40: bool(a & b),
            0x50: a != b,
            0x60: sa > sb,
            0x70: sa >= sb,
            0xA0: a < b,
            0xB0: a <= b,
            0xC0: sa < sb,
            0xD0: sa <= sb,
        }[op]

    @staticmethod
    def alu(regs, ins):
        opc, dst, src, off, imm = ins.opc, ins.dst, ins.src, ins.off, ins.imm
        op = opc & 0xF0
        wide = opc & 7 == 7
        bits = 64 if wide else 32
        mask = (1 << bits) - 1
        a = regs[dst] & mask
        b = (regs[src] if opc & 8 else imm & M64) & mask
        sign = s64 if wide else s32
        cost = COSTS.mul if op == 0x20 else COSTS.div if op in (0x30, 0x90) else COSTS.alu
        if op == 0x00:
            r = a + b
        elif op == 0x10:
            r = a - b
        elif op == 0x20:
            r = a * b
        elif op == 0x30:
            r = 0 if b == 0 else (trunc_div(sign(a), sign(b)) if off else a // b)
        elif op == 0x90:
            r = a if b == 0 else (trunc_mod(sign(a), sign(b)) if off else a % b)
        elif op == 0x40:
            r = a | b
        elif op == 0x50:
            r = a & b
        elif op == 0xA0:
            r = a ^ b
        elif op == 0x60:
            r = a << (b & (bits - 1))
        elif op == 0x70:
            r = a >> (b & (bits - 1))
        elif op == 0xC0:
            r = sign(a) >> (b & (bits - 1))
        elif op == 0x80:
            r = -a
        elif op == 0xB0:
            r = sext(regs[src], off) if (opc & 8 and off) else b
        else:  # END
            width = imm
            v = regs[dst] & ((1 << width) - 1)
            swap = wide or opc & 8
            r = int.from_bytes(v.to_bytes(width // 8, "little"), "big") if swap else v
            regs[dst] = r & M64
            return cost
        regs[dst] = r & mask
        return cost


# --------------------------------------------------------------------------------------------
# Random programs
# --------------------------------------------------------------------------------------------

IMMS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 7, 31, 32, 33, 63, 64, 0x7FFFFFFF, -0x80000000, 0xFF, -256]),
    st.integers(-(2**31), 2**31 - 1),
)
ALU_OPS = [
    (0x00, 0), (0x10, 0), (0x20, 0), (0x30, 0), (0x30, 1), (0x40, 0), (0x50, 0), (0x60, 0),
    (0x70, 0), (0x90, 0), (0x90, 1), (0xA0, 0), (0xC0, 0), (0xB0, 0),
]  # fmt: skip
JMP_OPS = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0]
SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}


STRAIGHT = ["alu", "alu", "stack", "ptr", "data", "atomic", "lddw", "misc"]
ANY = [
    "alu",
    "alu",
    "alu",
    "jmp",
    "jmp",
    "ja",
    "stack",
    "ptr",
    "data",
    "atomic",
    "lddw",
    "misc",
    "exit",
]


def _items(draw, length, calls: bool, kinds=ANY, exit_=True, dsts=(0, 1, 2, 3, 4, 5, 6, 7)):
    items: list = []
    kinds = kinds + (["call", "call"] if calls else [])
    for _ in range(length):
        kind = draw(st.sampled_from(kinds))
        dst = draw(st.sampled_from(dsts))
        src = draw(st.integers(0, 10))
        imm = draw(IMMS)
        if kind == "alu":
            op, off = draw(st.sampled_from(ALU_OPS))
            cls = draw(st.sampled_from([0x04, 0x07]))
            x = draw(st.booleans())
            items.append(
                [EbpfInst(cls | op | (8 if x else 0), dst, src if x else 0, off, 0 if x else imm)]
            )
        elif kind == "misc":
            choice = draw(st.integers(0, 4))
            if choice == 0:  # neg
                items.append([EbpfInst(draw(st.sampled_from([0x84, 0x87])), dst)])
            elif choice == 1:  # movsx
                wide = draw(st.booleans())
                off = draw(st.sampled_from([8, 16, 32] if wide else [8, 16]))
                items.append([EbpfInst(0xBF if wide else 0xBC, dst, src, off)])
            elif choice == 2:  # le/be/bswap
                opc = draw(st.sampled_from([0xD4, 0xDC, 0xD7]))
                items.append([EbpfInst(opc, dst, 0, 0, draw(st.sampled_from([16, 32, 64])))])
            elif choice == 3:  # memsx load from the stack
                n = draw(st.sampled_from([1, 2, 4]))
                items.append([EbpfInst(0x81 | SIZES[n], dst, 10, -draw(st.integers(n, 64)))])
            else:  # arsh/rsh/lsh by register
                opc = draw(st.sampled_from([0x6F, 0x7F, 0xCF, 0x6C, 0x7C, 0xCC]))
                items.append([EbpfInst(opc, dst, src)])
        elif kind in ("jmp", "ja"):
            items.append(
                (
                    kind,
                    dst,
                    src,
                    imm,
                    draw(st.integers(0, length)),
                    draw(st.sampled_from(JMP_OPS)),
                    draw(st.booleans()),
                    draw(st.booleans()),
                )
            )
        elif kind == "call":
            items.append(("local",) if draw(st.booleans()) else [EbpfInst(0x85, imm=1)])
        elif kind == "stack":
            n = draw(st.sampled_from([1, 2, 4, 8]))
            off = draw(st.one_of(st.integers(-64, -n), st.integers(-520, 8)))
            if draw(st.booleans()):
                items.append([EbpfInst(0x61 | SIZES[n], dst, 10, off)])
            elif draw(st.booleans()):
                items.append([EbpfInst(0x63 | SIZES[n], 10, src, off)])
            else:
                items.append([EbpfInst(0x62 | SIZES[n], 10, 0, off, imm)])
        elif kind in ("ptr", "data", "atomic"):
            base = 9 if kind == "ptr" else 8
            n = draw(st.sampled_from([1, 2, 4, 8]))
            off = draw(st.integers(-16, 64))
            if kind == "atomic":
                n = draw(st.sampled_from([4, 8]))
                base = draw(st.sampled_from([8, 9, 10]))
                off = -8 if base == 10 else draw(st.integers(-8, 56)) & ~(n - 1)
                aop = draw(
                    st.sampled_from([0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1])
                )
                items.append(
                    [
                        EbpfInst(
                            0xC3 | (0x18 if n == 8 else 0), base, draw(st.integers(0, 7)), off, aop
                        )
                    ]
                )
            elif draw(st.booleans()):
                items.append([EbpfInst(0x61 | SIZES[n], dst, base, off)])
            else:
                items.append([EbpfInst(0x63 | SIZES[n], base, src, off)])
        elif kind == "lddw":
            items.append(lddw(dst, draw(st.integers(0, M64))))
        else:
            items.append([EbpfInst(0x95)])
    if exit_:
        items.append([EbpfInst(0x95)])
    return items


def _layout(items, first: int):
    """Slot index of each item of a function starting at slot ``first`` (after its prologue)."""
    starts, pos = [], first
    for item in items:
        starts.append(pos)
        pos += len(item) if isinstance(item, list) else 1
    return starts, pos


PROLOGUE = [EbpfInst(0xBF, 9, 10), EbpfInst(0x07, 9, 0, 0, -256), *lddw(8, DATA)]


@st.composite
def programs(draw, calls: bool = False):
    """Random programs of one function, or two with ``calls`` (the second may be called from
    both, recursively too; helper 1 is :func:`helper`).  Each function's prologue points r9
    into its stack frame and r8 at a shared data region; they are never written again, and
    ALU ops write r0..r7."""
    n_funcs = 2 if calls else 1
    funcs = [
        _items(draw, draw(st.integers(1, 22 if n_funcs == 1 else 12)), calls)
        for _ in range(n_funcs)
    ]
    layouts, pos = [], 0
    for items in funcs:
        starts, end = _layout(items, pos + len(PROLOGUE))
        layouts.append((pos, starts))
        pos = end
    sub = layouts[-1][0]
    out: list[EbpfInst] = []
    for items, (_fstart, starts) in zip(funcs, layouts, strict=True):
        out += PROLOGUE
        for k, item in enumerate(items):
            here = starts[k]
            if isinstance(item, list):
                out += item
            elif item[0] == "local":
                out.append(EbpfInst(0x85, 0, 1, 0, sub - here - 1))
            else:
                kind, dst, src, imm, target_item, op, x, j32 = item
                rel = starts[target_item] - here - 1
                if kind == "ja":
                    out.append(EbpfInst(0x06, 0, 0, 0, rel) if j32 else EbpfInst(0x05, 0, 0, rel))
                else:
                    cls = 0x06 if j32 else 0x05
                    out.append(
                        EbpfInst(
                            cls | op | (8 if x else 0), dst, src if x else 0, rel, 0 if x else imm
                        )
                    )
    return encode_all(out)


@st.composite
def counting_loops(draw):
    """``r1 = 0; loop: <straight-line body>; r1 += 1; if r1 < N goto loop; exit``: a single-block
    loop that ends, with private and shared accesses in its body (the unrolled shape)."""
    body = _items(
        draw,
        draw(st.integers(0, 10)),
        False,
        kinds=STRAIGHT,
        exit_=False,
        dsts=(0, 2, 3, 4, 5, 6, 7),
    )
    code = [*PROLOGUE, EbpfInst(0xB7, 1)]
    for item in body:
        code += item
    length = sum(len(item) for item in body) + 2
    n = draw(st.integers(1, 40))
    code += [EbpfInst(0x07, 1, 0, 0, 1), EbpfInst(0xA5, 1, 0, -length, n), EbpfInst(0x95)]
    return encode_all(code)


def regions():
    return RegionSet([
        Region(STACK_TOP - STACK, STACK_TOP, buf=bytearray(STACK), name="stack", shared=False),
        Region(DATA, DATA + DATA_SIZE, buf=bytearray(DATA_SIZE), name="data"),
    ])  # fmt: skip


def outcome(fn):
    try:
        return ("ok", *fn())
    except ProgramFault as f:
        return ("fault", f.pc, f.addr)
    except BpfError as e:
        return ("error", e.errno)


def engine_functional(code, budget):
    prog = compile_program(code, name="rand", costs=COSTS)
    bud = Budget(budget)
    r0 = prog.run(regions(), stack_top=STACK_TOP, helpers={1: helper}, budget=bud)
    return r0, bud.used


def engine_timed(code, budget, step):
    prog = compile_program(code, name="rand", costs=COSTS)
    bud = Budget(budget)
    gen = prog.run_timed(
        regions(),
        stack_top=STACK_TOP,
        budget=bud,
        t=0,
        horizon=step,
        access=lambda a, n, w, t: ACCESS_PS,
    )
    answer = None
    while True:
        try:
            req = gen.send(answer)
        except StopIteration as done:
            r0, t = done.value
            return r0, bud.used, t
        if type(req) is int:
            answer = req + step
        else:
            hid, a1, a2, a3, a4, a5, t = req
            assert hid == 1
            answer = (helper(a1, a2, a3, a4, a5), t + HELPER_PS, t + HELPER_PS + step)


@settings(max_examples=400, deadline=None)
@given(programs(), st.integers(1, 400))
def test_random_programs_agree_with_the_reference(code, budget):
    ref = outcome(lambda: Ref(code, budget).run())
    got = outcome(lambda: engine_functional(code, budget))
    want = ref if ref[0] != "ok" else ref[:3]
    assert got == want, f"functional form differs\n{compile_program(code).source}"


@settings(max_examples=300, deadline=None)
@given(programs(calls=True), st.integers(1, 600))
def test_random_programs_with_calls_agree_with_the_reference(code, budget):
    ref = outcome(lambda: Ref(code, budget).run())
    got = outcome(lambda: engine_functional(code, budget))
    want = ref if ref[0] != "ok" else ref[:3]
    assert got == want, f"functional form differs\n{compile_program(code).source}"


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(programs(), programs(calls=True)),
    st.integers(1, 400),
    st.sampled_from([0, 1000, 10**12]),
)
def test_random_programs_timed_form_agrees_including_time(code, budget, step):
    ref = outcome(lambda: Ref(code, budget).run())
    got = outcome(lambda: engine_timed(code, budget, step))
    assert got == ref, f"timed form differs\n{compile_program(code).source}"


@settings(max_examples=200, deadline=None)
@given(counting_loops(), st.integers(1, 800), st.sampled_from([0, 10**12]))
def test_unrolled_loops_count_and_time_exactly(code, budget, step):
    ref = outcome(lambda: Ref(code, budget).run())
    assert outcome(lambda: engine_functional(code, budget)) == (ref if ref[0] != "ok" else ref[:3])
    assert outcome(lambda: engine_timed(code, budget, step)) == ref


def _nested_loops(depth: int, ifs: int) -> bytes:
    """``depth`` loops nested in each other around a chain of ``ifs`` if-then blocks."""
    code, heads = [EbpfInst(0xB7, 0)], []
    for _ in range(depth):
        heads.append(len(code))
        code.append(EbpfInst(0x07, 0, 0, 0, 1))
    for k in range(ifs):
        code += [EbpfInst(0x25, 0, 0, 1, k), EbpfInst(0x07, 6, 0, 0, 1)]
    for d in reversed(range(depth)):
        code.append(EbpfInst(0xA5, 0, 0, heads[d] - len(code) - 1, 40 + d))
    code += [EbpfInst(0x0F, 0, 6), EbpfInst(0x95)]
    return encode_all(code)


@pytest.mark.parametrize("depth, ifs", [(1, 200), (13, 5), (25, 30)])
def test_deep_loop_nests_and_long_if_chains_compile_and_agree(depth, ifs):
    """Python allows 20 nested loops and 100 indentation levels: deeper loop nests are folded
    into their parent and long inline chains are cut, without changing the result."""
    code = _nested_loops(depth, ifs)
    assert engine_functional(code, 10**6) == Ref(code, 10**6).run()[:2]
    assert engine_timed(code, 10**6, 0) == Ref(code, 10**6).run()
    chain = encode_all([EbpfInst(0x05)] * 3000 + [EbpfInst(0x07, 0, 0, 0, 3), EbpfInst(0x95)])
    assert engine_functional(chain, 10**6) == (3, 3002)
