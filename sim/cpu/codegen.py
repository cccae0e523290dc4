"""Compile an eBPF program into Python source: one function per BPF function, loops as loops.

Why generate source: a CPython interpreter loop that decodes and dispatches every instruction
spends most of its time on the dispatch.  Generated code has no dispatch on straight-line
paths: each BPF register is a Python local, each instruction one or two Python statements,
each BPF function a Python function (so r6–r9 survive a call as the caller's locals, and each
frame's r10 is an argument).  What remains is control flow, which Python can only express as
``if``/``while``/``break``/``continue``; this module recovers that structure from the CFG.

**Structure.**  Within one function, the basic blocks are laid out in program order.  Every
backward jump ``src -> dst`` (in program order) makes the interval of blocks ``[dst, src]`` a
*loop region*; overlapping intervals are merged until the regions nest, so any CFG, reducible
or not, maps onto a tree of regions.  A loop region is a ``while True:``; its body is the
sequence of its *items*: its own blocks and its child regions, in program order.

Control transfer between items uses a local ``pc`` (the target block's first instruction):

* a forward jump inside the region sets ``pc`` and falls out of the item's code; each later
  item is wrapped in ``if pc == <its block>:`` *only if* some other target could be pending at
  that point.  The compiler computes the exact set of pending targets at each item (``P``
  below), so straight-line sequences, if-then shapes and a loop's own header need no test;
* a jump back to an item of the same loop is ``continue`` (``pc`` set first unless the loop
  has a single entry point, as a ``for`` loop's header does);
* a jump out of a loop sets ``pc`` and ``break`` s; after the inner ``while`` a short test
  re-dispatches targets the enclosing region handles with ``continue`` or ``break``;
* a block whose only predecessor is a forward edge in the same region is emitted *inside* that
  edge's branch (the ``then``/``else`` of an ``if``), which removes most ``pc`` traffic.

So a loop of one block, such as ``r0 += r1; r1 += 1; if r1 < N goto loop``, becomes a bare
``while True:`` with an ``if ...: continue`` at its end: no dispatch at all per iteration.
Measured against the alternative the design started from (a ``while True:`` dispatching on
``pc`` through a balanced if-tree, hand-written for prime.data's two-block loop): 59 against
53 M insn/s, with the structured form also avoiding any dispatch on straight-line code.

**Budget.**  Each block subtracts its length from the local ``b``; ``b < 0`` is tested on every
jump that goes backward in program order (every cycle has one; recursion is bounded by the
frame limit instead) and at every exit, so the check costs one comparison per loop iteration.
Counts are exact: a run that ends fails with ELOOP iff it executed more instructions than its
budget, and a run that does not end fails at the first backward jump past the budget.  (A fault
between the budget running out and that check is reported as the fault.)  Single-block loops
are unrolled (:meth:`_FunctionWriter.unrolled`) so the check is paid once per group of copies.

**Memory.**  A load or store through ``r10`` with a constant offset is statically the current
stack frame: it indexes the stack buffer directly (``so`` is r10's index in it).  Every other
access site keeps a cache of the region it touched last (``lo``/``hi``/``d``/``m`` locals:
an address ``a`` with ``lo <= a <= hi`` is byte ``m[a - d]``) and calls the slow path in
:mod:`sim.cpu.runtime` on a miss, which also raises the fault.  ``struct`` ``unpack_from`` /
``pack_into`` measured ~3x faster than ``int.from_bytes`` over a slice.  A helper or a call may
remove a region (a submitted ring-buffer reservation); then ``RegionSet.version`` changes and
the caller's caches are dropped.

**Two forms** come out of one source: ``f<N>`` (functional: helpers are plain calls) and
``g<N>`` (timed: a generator).  The timed form accumulates the cost of each block in the local
clock ``t`` and yields only at shared memory and helper calls (see :mod:`sim.cpu.engine`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from kbpf.checks import function_starts, is_jump, jump_target
from kbpf.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_EXIT,
    BPF_FETCH,
    BPF_JA,
    BPF_JMP,
    BPF_LD,
    BPF_LDX,
    BPF_MEMSX,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_ST,
    BPF_STX,
    BPF_X,
    BPF_XCHG,
    LD_DW_IMM,
    SIZE_BYTES,
)


class _Hex(int):
    """An int that prints in hex, so that masks read as masks in the generated source."""

    def __str__(self) -> str:
        return f"{int(self):#X}".replace("0X", "0x")

    __format__ = lambda self, spec="": str(self)  # noqa: E731


def _lit(v: int) -> str:
    """A constant as generated code writes it: hex when large, decimal when small."""
    return str(_Hex(v)) if v > 0xFFFF else str(v)


M64 = _Hex(0xFFFFFFFFFFFFFFFF)
M32 = _Hex(0xFFFFFFFF)
S64 = _Hex(0x8000000000000000)
S32 = _Hex(0x80000000)
FRAME = 512

#: Loops nested deeper than this are folded into their parent region (CPython allows 20
#: statically nested loops per function).
MAX_LOOP_NEST = 12
#: Blocks are inlined into their predecessor's branch at most this deep (CPython allows 100
#: indentation levels) and at most this many in a row (the writer recurses per block).
MAX_INLINE_DEPTH = 24
MAX_INLINE_CHAIN = 100
#: Single-block self-loops of at most UNROLL_MAX_INSNS instructions run several copies of their
#: body per ``while`` iteration (about UNROLL_TARGET instructions, at most UNROLL_MAX copies), so
#: the budget is checked once per copy group.  Measured on the ALU loop of
#: bench/bench_engine.py (ratio to the baseline): 1 copy 2.15x, 2: 2.36x, 4: 2.44x, 8: 2.57x,
#: 16: no better.
UNROLL_MAX = 8
UNROLL_TARGET = 32
UNROLL_MAX_INSNS = 16

_INSN = struct.Struct("<BBhi")
_MASK = {1: _Hex(0xFF), 2: _Hex(0xFFFF), 4: M32, 8: M64}


# --------------------------------------------------------------------------------------------
# Control-flow analysis
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Block:
    start: int  # first instruction index
    end: int  # index after its last slot
    last: int  # index of its last instruction (the terminator, if any)
    term: str  # "exit" | "ja" | "cond" | "fall"
    succ: list[int]  # successor block starts; for "cond": [taken, fallthrough]
    idx: int = 0
    preds: list[Block] = field(default_factory=list)
    region: Region | None = None
    inline_into: Block | None = None  # emitted inside this predecessor's edge
    depth: int = 0  # inline nesting depth (indentation)
    chain: int = 0  # inlined blocks above this one (recursion depth of the writer)
    kids: list[Block] = field(default_factory=list)  # blocks inlined into this one

    def tree(self):
        yield self
        for k in self.kids:
            yield from k.tree()


@dataclass(eq=False)
class Region:
    lo: int  # first block index
    hi: int  # last block index
    loop: bool
    parent: Region | None = None
    children: list[Region] = field(default_factory=list)
    items: list = field(default_factory=list)  # Blocks (inline-tree roots) and child Regions
    pos: dict[int, int] = field(default_factory=dict)  # block start -> item index
    starts: frozenset = frozenset()  # block starts inside the region
    exits: set[int] = field(default_factory=set)  # targets outside, reached from inside
    back: set[int] = field(default_factory=set)  # targets reached by `continue`
    ptop: frozenset = frozenset()  # pending targets at the top of the region
    live: list[bool] = field(default_factory=list)
    guard: list[bool] = field(default_factory=list)
    first_start: int = 0
    last_start: int = 0


@dataclass
class Function:
    start: int
    end: int
    blocks: list[Block]
    by_start: dict[int, Block]
    root: Region


def decode(insns: bytes) -> list[tuple[int, int, int, int, int]]:
    return [(o, r & 0xF, r >> 4, off, imm) for o, r, off, imm in _INSN.iter_unpack(insns)]


def analyse(decoded, fstart: int, fend: int) -> Function:
    """Blocks, loop regions, inlining and the pending-target sets of one function."""
    # -- blocks ---------------------------------------------------------------------------
    leaders = {fstart}
    i = fstart
    while i < fend:
        opc, _d, _s, off, imm = decoded[i]
        if opc == LD_DW_IMM:
            i += 2
            continue
        if is_jump(opc):
            leaders.add(jump_target(i, opc, off, imm))
            if i + 1 < fend:
                leaders.add(i + 1)
        elif opc == BPF_JMP | BPF_EXIT and i + 1 < fend:
            leaders.add(i + 1)
        i += 1
    order = sorted(leaders)
    blocks: list[Block] = []
    for n, s in enumerate(order):
        e = order[n + 1] if n + 1 < len(order) else fend
        last = s
        i = s
        while i < e:  # find the last real instruction (skipping LD_DW_IMM second slots)
            last = i
            i += 2 if decoded[i][0] == LD_DW_IMM else 1
        opc, _d, _s, off, imm = decoded[last]
        if opc == BPF_JMP | BPF_EXIT:
            term, succ = "exit", []
        elif is_jump(opc) and opc & 0xF0 == BPF_JA:
            term, succ = "ja", [jump_target(last, opc, off, imm)]
        elif is_jump(opc):
            term, succ = "cond", [jump_target(last, opc, off, imm), last + 1]
        else:
            term, succ = "fall", [e]
        blocks.append(Block(s, e, last, term, succ, idx=n))
    by_start = {b.start: b for b in blocks}
    for b in blocks:
        for t in b.succ:
            by_start[t].preds.append(b)

    # -- loop regions: one interval per backward edge, merged until they nest ---------------
    intervals = set()
    for b in blocks:
        for t in b.succ:
            tb = by_start[t]
            if tb.idx <= b.idx:
                intervals.add((tb.idx, b.idx))
    intervals = _laminar(intervals)
    root = Region(0, len(blocks) - 1, loop=False)
    stack = [root]
    depth_of = {id(root): 0}
    for lo, hi in sorted(intervals, key=lambda iv: (iv[0], -iv[1])):
        while not (stack[-1].lo <= lo and hi <= stack[-1].hi):
            stack.pop()
        parent = stack[-1]
        if (lo, hi) == (parent.lo, parent.hi) and parent.loop:
            continue
        if depth_of[id(parent)] >= MAX_LOOP_NEST:
            continue  # folded into the parent: its back edges become the parent's `continue`s
        reg = Region(lo, hi, loop=True, parent=parent)
        parent.children.append(reg)
        depth_of[id(reg)] = depth_of[id(parent)] + 1
        stack.append(reg)

    def assign(reg: Region):
        for b in blocks[reg.lo : reg.hi + 1]:
            b.region = reg
        for c in reg.children:
            assign(c)

    assign(root)

    # -- inlining: a block with one forward predecessor edge in its own region ---------------
    for b in blocks:
        if len(b.preds) != 1 or b.start == fstart:
            continue
        p = b.preds[0]
        if p.idx >= b.idx or p.region is not b.region:
            continue
        depth = p.depth + (1 if p.term == "cond" else 0)
        if depth > MAX_INLINE_DEPTH or p.chain >= MAX_INLINE_CHAIN:
            continue
        b.inline_into = p
        b.depth = depth
        b.chain = p.chain + 1
        p.kids.append(b)

    # -- items and exits -------------------------------------------------------------------
    def build(reg: Region):
        reg.starts = frozenset(b.start for b in blocks[reg.lo : reg.hi + 1])
        reg.first_start = blocks[reg.lo].start
        reg.last_start = blocks[reg.hi].start
        i = reg.lo
        child_at = {c.lo: c for c in reg.children}
        while i <= reg.hi:
            if i in child_at:
                c = child_at[i]
                build(c)
                k = len(reg.items)
                reg.items.append(c)
                for s in c.starts:
                    reg.pos[s] = k
                i = c.hi + 1
                continue
            b = blocks[i]
            if b.inline_into is None:
                k = len(reg.items)
                reg.items.append(b)
                for x in b.tree():
                    reg.pos[x.start] = k
            i += 1
        for b in blocks[reg.lo : reg.hi + 1]:
            for t in b.succ:
                if t not in reg.starts:
                    reg.exits.add(t)
        for k, item in enumerate(reg.items):
            for t in _item_exits(item):
                if t in reg.starts and reg.pos[t] <= k:
                    reg.back.add(t)

    build(root)
    if root.back:  # pragma: no cover - a backward jump always lies inside a loop region
        raise AssertionError("backward jump outside any loop region")
    _simulate(root, frozenset({fstart}))
    return Function(fstart, fend, blocks, by_start, root)


def _laminar(intervals: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge crossing intervals until any two are nested or disjoint.

    One sweep in order of (start, -end) with a stack of the intervals that contain the current
    start: a new interval that ends after the top of the stack crosses it, so the two merge
    (and the merged one may cross the next one down).  Intervals already popped ended before
    the current start, so they cannot cross anything that follows.
    """
    done: list[tuple[int, int]] = []
    stack: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals, key=lambda iv: (iv[0], -iv[1])):
        while stack and stack[-1][1] < lo:
            done.append(stack.pop())
        while stack and stack[-1][1] < hi:
            lo = stack.pop()[0]
        if stack and stack[-1] == (lo, hi):
            continue
        stack.append((lo, hi))
    return done + stack


def _item_exits(item) -> set[int]:
    if isinstance(item, Region):
        return item.exits
    out = set()
    for b in item.tree():
        kid_starts = {k.start for k in b.kids}
        out.update(t for t in b.succ if t not in kid_starts)
    return out


def _simulate(reg: Region, ptop: frozenset) -> None:
    """Compute, for each item, whether it is reachable here and whether it needs a ``pc`` test.

    ``P`` is the exact set of targets that may be pending at each point of the sequence: an
    item needs ``if pc ...`` only when ``P`` holds a target that is not one of its entries.
    """
    reg.ptop = ptop
    pending = set(ptop)
    reg.live = [False] * len(reg.items)
    reg.guard = [False] * len(reg.items)
    for k, item in enumerate(reg.items):
        if isinstance(item, Region):
            ent = {t for t in pending if t in item.starts}
        else:
            ent = {item.start} & pending
        if not ent:
            continue
        reg.live[k] = True
        reg.guard[k] = pending != ent
        pending -= ent
        if isinstance(item, Region):
            _simulate(item, frozenset(ent | item.back))
        for t in _item_exits(item):
            if t in reg.starts and reg.pos[t] > k:
                pending.add(t)
    if pending:  # pragma: no cover - every pending target belongs to a later item
        raise AssertionError(f"targets {sorted(pending)} left pending at the end of a region")


def _next_live(reg: Region, k: int) -> int | None:
    for j in range(k + 1, len(reg.items)):
        if reg.live[j]:
            return j
    return None


def _untested_entry(reg: Region, j: int, t: int) -> bool:
    """Arriving at live item ``j`` with pending target ``t``: is ``pc`` never tested?"""
    if reg.guard[j]:
        return False
    item = reg.items[j]
    if not isinstance(item, Region):
        return True
    if item.ptop != {t}:
        return False
    first = _next_live(item, -1)
    return first is not None and _untested_entry(item, first, t)


def pc_needed_forward(reg: Region, k: int, t: int) -> bool:
    """Must a forward jump from item ``k`` to ``t`` (inside ``reg``) set ``pc``?"""
    j = reg.pos[t]
    return _next_live(reg, k) != j or not _untested_entry(reg, j, t)


def pc_needed_back(reg: Region, t: int) -> bool:
    """Must a ``continue`` to ``t`` at the top of loop ``reg`` set ``pc``?"""
    if reg.ptop != {t}:
        return True
    first = _next_live(reg, -1)
    return first is None or not _untested_entry(reg, first, t)


# --------------------------------------------------------------------------------------------
# Source generation
# --------------------------------------------------------------------------------------------

Lines = list[tuple[int, str]]


def _indent(lines: Lines, k: int = 1) -> Lines:
    return [(d + k, s) for d, s in lines]


class _FunctionWriter:
    """Writes one BPF function as ``f<start>`` (functional) or ``g<start>`` (timed)."""

    def __init__(self, gen: Generator, fn: Function, timed: bool):
        self.g = gen
        self.fn = fn
        self.timed = timed
        self.d = gen.decoded
        self.costs = gen.costs
        self.sites = 0
        self.helper_ids: set[int] = set()
        self.uses_pc = False
        self.has_calls = False  # helper or local calls (may remove regions)

    # -- top level --------------------------------------------------------------------------
    def write(self) -> list[str]:
        body = self.region(self.fn.root)
        name = ("g" if self.timed else "f") + str(self.fn.start)
        params = "r1, r2, r3, r4, r5, r10, b, rt" + (", t, horizon" if self.timed else "")
        out = [f"def {name}({params}):"]
        pro = [
            "rs, stk, sd, clim, helpers, bud, access = rt",
            "so = r10 - sd",
            "r0 = r6 = r7 = r8 = r9 = 0",
        ]
        if self.sites:
            pro.append(" = ".join(f"lo{k}" for k in range(self.sites)) + " = 1")
            pro.append(" = ".join(f"hi{k}" for k in range(self.sites)) + " = -1")
            if self.has_calls:
                pro.append("ver = rs.version")
        if not self.timed:
            for h in sorted(self.helper_ids):
                pro.append(f"hp{h} = helpers.get({h})")
        if self.uses_pc:
            pro.append(f"pc = {self.fn.start}")
        if self.timed:
            pro.append("if False:  # a generator even when it never meets the clock")
            pro.append("    yield")
        out += ["    " + s for s in pro]
        out += ["    " * (d + 1) + s for d, s in body]
        return out

    # -- regions and items --------------------------------------------------------------------
    def region(self, reg: Region) -> Lines:
        blk = self.unrollable(reg)
        if blk is not None:
            return self.unrolled(reg, blk)
        lines: Lines = []
        inner = 0
        if reg.loop:
            lines.append((0, "while True:"))
            inner = 1
        for k, item in enumerate(reg.items):
            if not reg.live[k]:
                continue
            if isinstance(item, Region):
                code = self.region(item) + self.dispatch(reg, k, item)
            else:
                code, _leaves = self.block(item, reg, k)
            if reg.guard[k]:
                self.uses_pc = True
                if isinstance(item, Region):
                    test = f"if {item.first_start} <= pc <= {item.last_start}:"
                else:
                    test = f"if pc == {item.start}:"
                lines.append((inner, test))
                lines += _indent(code or [(0, "pass")], inner + 1)
            else:
                lines += _indent(code, inner)
        return lines

    def unrollable(self, reg: Region) -> Block | None:
        """A loop of one block that branches back to itself and calls nothing: the shape of a
        counting or copying loop, worth unrolling (see :meth:`unrolled`)."""
        if not reg.loop or len(reg.items) != 1 or not reg.live[0]:
            return None
        blk = reg.items[0]
        if not isinstance(blk, Block) or blk.kids or blk.term != "cond":
            return None
        if blk.succ[0] != blk.start or blk.succ[1] == blk.start or reg.ptop != {blk.start}:
            return None
        if blk_len(self.d, blk) > UNROLL_MAX_INSNS:
            return None
        for i in range(blk.start, blk.last):
            opc = self.d[i][0]
            if opc & 0x07 == BPF_JMP and opc & 0xF0 == BPF_CALL:
                return None
        return blk

    def unrolled(self, reg: Region, blk: Block) -> Lines:
        """The loop body several times per ``while`` iteration.

        The budget is deducted once per group, after checking that a whole group fits; when it
        does not, iterations run one at a time with the usual check, so ELOOP is raised at
        exactly the same iteration as without unrolling.  An exit from copy j gives back the
        budget of the copies that did not run.  In the timed form a body without shared
        accesses advances the clock once per group too (and gives back time the same way);
        one with shared accesses keeps exact time at each of them.
        """
        n = blk_len(self.d, blk)
        u = max(2, min(UNROLL_MAX, UNROLL_TARGET // n))
        cond = self.condition(blk.last)
        exit_code, _ = self.edge(blk, blk.succ[1], reg, 0)
        single, _ = self.block(blk, reg, 0)
        lines: Lines = [(0, "while True:"), (1, f"if b < {u * n}:")]
        lines += _indent(single, 2)
        lines.append((1, f"b -= {u * n}"))
        group_at = len(lines)
        private = True  # no shared access in the body: the clock may be advanced per group
        per_copy = 0
        for j in range(1, u + 1):
            body = self.straight(blk, count=False)
            private = private and not any(text.startswith("t += ") for _d, text in body)
            per_copy = self.pending + self.costs.branch
            if not (self.timed and private):
                body += self.flush(self.costs.branch)
            self.pending = 0
            lines += _indent(body, 1)
            if j < u:
                lines.append((1, f"if not ({cond}):"))
                lines.append((2, f"b += {(u - j) * n}"))
                if self.timed and private:
                    lines.append((2, f"t -= {(u - j) * per_copy}"))
                lines += _indent(exit_code, 2)
        if self.timed and private and per_copy:
            lines.insert(group_at, (1, f"t += {u * per_copy}"))
        lines.append((1, f"if {cond}:"))
        lines.append((2, "continue"))
        lines += _indent(exit_code, 1)
        return lines

    def dispatch(self, reg: Region, k: int, child: Region) -> Lines:
        """After a child loop: re-dispatch the targets it left for that this region handles
        with ``continue`` (earlier items) or ``break`` (outside this region)."""
        fwd = {t for t in child.exits if t in reg.starts and reg.pos[t] > k}
        back = {t for t in child.exits if t in reg.starts and reg.pos[t] < k}
        out = {t for t in child.exits if t not in reg.starts}
        parts = [(s, w) for s, w in ((back, "continue"), (out, "break")) if s]
        if not parts:
            return []
        self.uses_pc = True
        lines: Lines = []
        for n, (targets, word) in enumerate(parts):
            if not fwd and n == len(parts) - 1:
                lines.append((0, word))
            else:
                lines.append((0, f"if {_member('pc', targets)}:"))
                lines.append((1, word))
        return lines

    # -- one block (and the blocks inlined into it) ------------------------------------------
    def straight(self, blk: Block, count: bool = True) -> Lines:
        """The block's instructions before its terminator (their cost left in ``pending``),
        preceded by the budget deduction unless ``count`` is False."""
        d = self.d
        lines: Lines = [(0, f"b -= {blk_len(d, blk)}")] if count else []
        self.pending = 0
        i = blk.start
        body_end = blk.last if blk.term != "fall" else blk.end
        while i < body_end:
            lines += self.insn(i)
            i += 2 if d[i][0] == LD_DW_IMM else 1
        return lines

    def block(self, blk: Block, reg: Region, k: int) -> tuple[Lines, bool]:
        lines = self.straight(blk)
        c = self.costs
        if blk.term == "exit":
            lines += self.flush(c.exit)
            lines.append((0, "if b < 0:"))
            lines.append((1, f"_eloop(bud, {blk.last})"))
            lines.append((0, "return r0, b, t, horizon" if self.timed else "return r0, b"))
            return lines, True
        if blk.term == "fall":
            lines += self.flush(0)
            code, leaves = self.edge(blk, blk.succ[0], reg, k)
            return lines + code, leaves
        lines += self.flush(c.branch)
        if blk.term == "ja":
            code, leaves = self.edge(blk, blk.succ[0], reg, k)
            return lines + code, leaves
        taken, fall = blk.succ
        if taken == fall:
            code, leaves = self.edge(blk, taken, reg, k)
            return lines + code, leaves
        cond = self.condition(blk.last)
        tl, tleaves = self.edge(blk, taken, reg, k)
        fl, fleaves = self.edge(blk, fall, reg, k)
        if not tl and not fl:
            return lines, False
        if not tl:
            lines.append((0, f"if not ({cond}):"))
            return lines + _indent(fl), False
        if tleaves:
            lines.append((0, f"if {cond}:"))
            return lines + _indent(tl) + fl, fleaves
        if not fl:
            lines.append((0, f"if {cond}:"))
            return lines + _indent(tl), False
        if fleaves:
            lines.append((0, f"if not ({cond}):"))
            return lines + _indent(fl) + tl, tleaves
        lines.append((0, f"if {cond}:"))
        lines += _indent(tl)
        lines.append((0, "else:"))
        return lines + _indent(fl), False

    def edge(self, blk: Block, t: int, reg: Region, k: int) -> tuple[Lines, bool]:
        """Code that transfers control from ``blk`` to block ``t``; and whether it leaves
        (``continue``/``break``/``return`` on every path)."""
        tb = self.fn.by_start[t]
        if tb.inline_into is blk:
            return self.block(tb, reg, k)
        lines: Lines = []
        if t <= blk.last:  # backward in program order: every cycle passes here
            lines.append((0, "if b < 0:"))
            lines.append((1, f"_eloop(bud, {blk.last})"))
        if t in reg.starts:
            if reg.pos[t] > k:
                if pc_needed_forward(reg, k, t):
                    self.uses_pc = True
                    lines.append((0, f"pc = {t}"))
                return lines, False
            if pc_needed_back(reg, t):
                self.uses_pc = True
                lines.append((0, f"pc = {t}"))
            lines.append((0, "continue"))
            return lines, True
        self.uses_pc = True
        lines.append((0, f"pc = {t}"))
        lines.append((0, "break"))
        return lines, True

    # -- timing ---------------------------------------------------------------------------------
    def flush(self, extra: int) -> Lines:
        """Add the cost accumulated since the last sync point (plus ``extra``) to ``t``."""
        total = self.pending + extra
        self.pending = 0
        if self.timed and total:
            return [(0, f"t += {total}")]
        return []

    # -- instructions --------------------------------------------------------------------------
    def condition(self, i: int) -> str:
        opc, dst, src, _off, imm = self.d[i]
        op = opc & 0xF0
        wide = opc & 0x07 == BPF_JMP
        x = opc & BPF_X
        a = f"r{dst}"
        if wide:
            b = f"r{src}" if x else _lit(imm & M64)
            sa, sb = f"({a} ^ {S64})", (f"(r{src} ^ {S64})" if x else _lit((imm & M64) ^ S64))
        else:
            a = f"({a} & {M32})"
            b = f"(r{src} & {M32})" if x else _lit(imm & M32)
            sa = f"({a} ^ {S32})"
            sb = f"((r{src} & {M32}) ^ {S32})" if x else _lit((imm & M32) ^ S32)
        table = {
            0x10: f"{a} == {b}",
            0x50: f"{a} != {b}",
            0x20: f"{a} > {b}",
            0x30: f"{a} >= {b}",
            0xA0: f"{a} < {b}",
            0xB0: f"{a} <= {b}",
            0x40: f"{a} & {b}",
            0x60: f"{sa} > {sb}",
            0x70: f"{sa} >= {sb}",
            0xC0: f"{sa} < {sb}",
            0xD0: f"{sa} <= {sb}",
        }
        return table[op]

    def insn(self, i: int) -> Lines:
        opc = self.d[i][0]
        cls = opc & 0x07
        if cls in (BPF_ALU, BPF_ALU64):
            self.pending += self.alu_cost(opc)
            return [(0, s) for s in self.alu(i)]
        if cls == BPF_LD:
            return self.lddw(i)
        if cls == BPF_LDX:
            return self.ldx(i)
        if cls in (BPF_ST, BPF_STX):
            if opc & 0xE0 == BPF_ATOMIC:
                return self.atomic(i)
            return self.store(i)
        if cls == BPF_JMP and opc & 0xF0 == BPF_CALL:
            return self.call(i)
        raise AssertionError(
            f"insn {i}: opcode {opc:#04x} in straight-line code"
        )  # pragma: no cover

    def alu_cost(self, opc: int) -> int:
        op = opc & 0xF0
        if op == 0x20:
            return self.costs.mul
        if op in (0x30, 0x90):
            return self.costs.div
        return self.costs.alu

    def alu(self, i: int) -> list[str]:
        opc, dst, src, off, imm = self.d[i]
        op = opc & 0xF0
        x = opc & BPF_X
        r = f"r{dst}"
        s = f"r{src}"
        if opc & 0x07 == BPF_ALU64:
            k = imm & M64  # immediates are sign-extended to 64 bits
            v = s if x else _lit(k)
            if op == 0x00:
                return [f"{r} = ({r} + {v}) & {M64}"]
            if op == 0x10:
                return [f"{r} = ({r} - {v}) & {M64}"]
            if op == 0x20:
                return [f"{r} = ({r} * {v}) & {M64}"]
            if op == 0x30:
                if off == 1:
                    return [f"{r} = _sdiv64({r}, {v})"]
                if x:
                    return [f"{r} = {r} // {s} if {s} else 0"]
                return [f"{r} = {r} // {_lit(k)}" if k else f"{r} = 0"]
            if op == 0x90:
                if off == 1:
                    return [f"{r} = _smod64({r}, {v})"]
                if x:
                    return [f"if {s}:", f"    {r} = {r} % {s}"]
                return [f"{r} = {r} % {_lit(k)}"] if k else []
            if op == 0x40:
                return [f"{r} |= {v}"]
            if op == 0x50:
                return [f"{r} &= {v}"]
            if op == 0xA0:
                return [f"{r} ^= {v}"]
            if op == 0x60:
                sh = f"({s} & 63)" if x else str(imm & 63)
                return [f"{r} = ({r} << {sh}) & {M64}"]
            if op == 0x70:
                sh = f"({s} & 63)" if x else str(imm & 63)
                return [f"{r} >>= {sh}"]
            if op == 0xC0:
                sh = f"({s} & 63)" if x else str(imm & 63)
                return [f"{r} = ((({r} ^ {S64}) - {S64}) >> {sh}) & {M64}"]
            if op == 0x80:
                return [f"{r} = -{r} & {M64}"]
            if op == 0xB0:
                if not x:
                    return [f"{r} = {_lit(k)}"]
                if off == 0:
                    return [f"{r} = {s}"] if dst != src else []
                m, sb = (1 << off) - 1, 1 << (off - 1)
                return [f"{r} = ((({s} & {m}) ^ {sb}) - {sb}) & {M64}"]
            if op == 0xD0:  # ALU64 END: unconditional byte swap
                return [f"{r} = _bswap{imm}({r})" if imm != 16 else f"{r} = _bswap16({r} & 0xFFFF)"]
            raise AssertionError(f"ALU64 op {op:#x}")  # pragma: no cover
        k = imm & M32
        v = s if x else _lit(k)
        if op == 0x00:
            return [f"{r} = ({r} + {v}) & {M32}"]
        if op == 0x10:
            return [f"{r} = ({r} - {v}) & {M32}"]
        if op == 0x20:
            return [f"{r} = ({r} * {v}) & {M32}"]
        if op == 0x30:
            if off == 1:
                return [f"{r} = _sdiv32({r}, {v})"]
            if x:
                return [f"{r} = ({r} & {M32}) // ({s} & {M32}) if {s} & {M32} else 0"]
            return [f"{r} = ({r} & {M32}) // {_lit(k)}" if k else f"{r} = 0"]
        if op == 0x90:
            if off == 1:
                return [f"{r} = _smod32({r}, {v})"]
            if x:
                return [f"{r} = ({r} & {M32}) % ({s} & {M32}) if {s} & {M32} else {r} & {M32}"]
            return [f"{r} = ({r} & {M32}) % {_lit(k)}" if k else f"{r} &= {M32}"]
        if op == 0x40:
            return [f"{r} = ({r} | {v}) & {M32}"]
        if op == 0x50:
            return [f"{r} &= {s} & {M32}" if x else f"{r} &= {_lit(k)}"]
        if op == 0xA0:
            return [f"{r} = ({r} ^ {v}) & {M32}"]
        if op == 0x60:
            sh = f"({s} & 31)" if x else str(imm & 31)
            return [f"{r} = ({r} << {sh}) & {M32}"]
        if op == 0x70:
            sh = f"({s} & 31)" if x else str(imm & 31)
            return [f"{r} = ({r} & {M32}) >> {sh}"]
        if op == 0xC0:
            sh = f"({s} & 31)" if x else str(imm & 31)
            return [f"{r} = (((({r} & {M32}) ^ {S32}) - {S32}) >> {sh}) & {M32}"]
        if op == 0x80:
            return [f"{r} = -{r} & {M32}"]
        if op == 0xB0:
            if not x:
                return [f"{r} = {_lit(k)}"]
            if off == 0:
                return [f"{r} = {s} & {M32}"]
            m, sb = (1 << off) - 1, 1 << (off - 1)
            return [f"{r} = ((({s} & {m}) ^ {sb}) - {sb}) & {M32}"]
        if op == 0xD0:
            if not x:  # TO_LE on a little-endian machine: truncate to the width
                return [f"{r} &= {_MASK[imm // 8]}"] if imm != 64 else []
            if imm == 16:
                return [f"{r} = _bswap16({r} & 0xFFFF)"]
            return [f"{r} = _bswap{imm}({r})"]
        raise AssertionError(f"ALU op {op:#x}")  # pragma: no cover

    def lddw(self, i: int) -> Lines:
        opc, dst, src, _off, imm = self.d[i]
        self.pending += self.costs.ld_imm64
        if src == 0:
            value = (imm & M32) | ((self.d[i + 1][4] & M32) << 32)
        elif src == BPF_PSEUDO_FUNC:
            value = self.g.code_base + 8 * (i + imm + 1)
        else:  # pragma: no cover - compile_program rejects these first
            raise AssertionError(f"LD_DW_IMM src {src}")
        return [(0, f"r{dst} = {_lit(value)}")]

    # -- memory ---------------------------------------------------------------------------------
    @staticmethod
    def _stack_index(off: int, n: int) -> str | None:
        """The stack-buffer index expression for ``[r10 + off]``, or None when it is outside
        the frame (the access then faults when executed)."""
        if -FRAME <= off and off + n <= 0:
            return f"so - {-off}" if off < 0 else "so"
        return None

    def _stack_fault(self, i: int, off: int, n: int, write: bool) -> Lines:
        return [(0, f"_stack_fault({i}, r10 + {off}, {n}, {write}, {off})")]

    def _site(self) -> int:
        k = self.sites
        self.sites += 1
        return k

    def _addr(self, reg: int, off: int) -> str:
        if off == 0:
            return f"a = r{reg}"
        return f"a = r{reg} + {off}" if off > 0 else f"a = r{reg} - {-off}"

    def ldx(self, i: int) -> Lines:
        opc, dst, src, off, _imm = self.d[i]
        n = SIZE_BYTES[opc & 0x18]
        signed = opc & 0xE0 == BPF_MEMSX
        r = f"r{dst}"

        def read(buf: str, idx: str) -> str:
            if signed:
                return f"{r} = _S{n}({buf}, {idx})[0] & {M64}"
            if n == 1:
                return f"{r} = {buf}[{idx}]"
            return f"{r} = _U{n}({buf}, {idx})[0]"

        if src == 10:
            self.pending += self.costs.load
            idx = self._stack_index(off, n)
            if idx is None:
                return self._stack_fault(i, off, n, False)
            return [(0, read("stk", idx))]
        k = self._site()
        lines = self.flush(0)
        lines.append((0, self._addr(src, off)))
        lines.append((0, f"if lo{k} <= a <= hi{k}:"))
        if self.timed:
            lines += _indent(self._meet(k, n, False, self.costs.load))
        lines.append((1, read(f"m{k}", f"a - d{k}")))
        lines.append((0, "else:"))
        if self.timed:
            lines.append(
                (
                    1,
                    f"{r}, t, horizon, lo{k}, hi{k}, d{k}, m{k}, s{k} = yield from "
                    f"_ld_t(rs, access, a, {n}, {signed}, {i}, t, horizon, "
                    f"{self.costs.load})",
                )
            )
        else:
            lines.append((1, f"{r}, lo{k}, hi{k}, d{k}, m{k} = _ld(rs, a, {n}, {signed}, {i})"))
        return lines

    def _meet(self, k: int, n: int, write: bool, private_ps: int | None) -> Lines:
        """Timed form: meet the clock and price a shared access; private ones cost a constant."""
        lines: Lines = [
            (0, f"if s{k}:"),
            (1, "if t > horizon:"),
            (2, "horizon = yield t"),
            (1, f"t += access(a, {n}, {write}, t)"),
        ]
        if private_ps:
            lines += [(0, "else:"), (1, f"t += {private_ps}")]
        return lines

    def store(self, i: int) -> Lines:
        opc, dst, src, off, imm = self.d[i]
        n = SIZE_BYTES[opc & 0x18]
        if opc & 0x07 == BPF_ST:
            value = _lit(imm & _MASK[n])
        else:
            value = f"r{src}" if n == 8 else f"r{src} & {_MASK[n]}"

        def write(buf: str, idx: str) -> str:
            if n == 1:
                return f"{buf}[{idx}] = {value}"
            return f"_P{n}({buf}, {idx}, {value})"

        if dst == 10:
            self.pending += self.costs.store
            idx = self._stack_index(off, n)
            if idx is None:
                return self._stack_fault(i, off, n, True)
            return [(0, write("stk", idx))]
        k = self._site()
        lines = self.flush(0)
        lines.append((0, self._addr(dst, off)))
        lines.append((0, f"if lo{k} <= a <= hi{k}:"))
        if self.timed:
            lines += _indent(self._meet(k, n, True, self.costs.store))
        lines.append((1, write(f"m{k}", f"a - d{k}")))
        lines.append((0, "else:"))
        if self.timed:
            lines.append(
                (
                    1,
                    f"t, horizon, lo{k}, hi{k}, d{k}, m{k}, s{k} = yield from "
                    f"_st_t(rs, access, a, {n}, {value}, {i}, t, horizon, "
                    f"{self.costs.store})",
                )
            )
        else:
            lines.append((1, f"lo{k}, hi{k}, d{k}, m{k} = _st(rs, a, {n}, {value}, {i})"))
        return lines

    def atomic(self, i: int) -> Lines:
        opc, dst, src, off, imm = self.d[i]
        n = SIZE_BYTES[opc & 0x18]
        mask = _MASK[n]
        self.pending += self.costs.atomic
        s = f"r{src}"
        sv = s if n == 8 else f"({s} & {mask})"
        code = imm & ~BPF_FETCH

        def rmw(buf: str, idx: str) -> list[tuple[int, str]]:
            out = [(0, f"o = {idx}"), (0, f"x = _U{n}({buf}, o)[0]")]
            if code == 0x00:
                out.append((0, f"_P{n}({buf}, o, (x + {s}) & {mask})"))
            elif code == 0x40:
                out.append((0, f"_P{n}({buf}, o, x | {sv})"))
            elif code == 0x50:
                out.append((0, f"_P{n}({buf}, o, x & {s})"))
            elif code == 0xA0:
                out.append((0, f"_P{n}({buf}, o, x ^ {sv})"))
            elif imm == BPF_XCHG:
                out.append((0, f"_P{n}({buf}, o, {sv})"))
            elif imm == BPF_CMPXCHG:
                r0 = "r0" if n == 8 else f"(r0 & {mask})"
                out.append((0, f"if x == {r0}:"))
                out.append((1, f"_P{n}({buf}, o, {sv})"))
            return out

        if imm == BPF_CMPXCHG:
            fetch = [(0, "r0 = x")]
        elif imm & BPF_FETCH:
            fetch = [(0, f"{s} = x")]
        else:
            fetch = []
        if dst == 10:
            idx = self._stack_index(off, n)
            if idx is None:
                return self._stack_fault(i, off, n, True)
            return rmw("stk", idx) + fetch
        k = self._site()
        lines = self.flush(0)
        lines.append((0, self._addr(dst, off)))
        lines.append((0, f"if lo{k} <= a <= hi{k}:"))
        if self.timed:
            lines += _indent(self._meet(k, n, True, None))
        lines += _indent(rmw(f"m{k}", f"a - d{k}"))
        lines.append((0, "else:"))
        if self.timed:
            lines.append(
                (
                    1,
                    f"x, t, horizon, lo{k}, hi{k}, d{k}, m{k}, s{k} = yield from "
                    f"_at_t(rs, access, a, {n}, {imm & 0xFF}, {s}, r0, {i}, t, horizon)",
                )
            )
        else:
            lines.append(
                (1, f"x, lo{k}, hi{k}, d{k}, m{k} = _at(rs, a, {n}, {imm & 0xFF}, {s}, r0, {i})")
            )
        return lines + fetch

    # -- calls ------------------------------------------------------------------------------------
    def call(self, i: int) -> Lines:
        opc, dst, src, _off, imm = self.d[i]
        c = self.costs
        self.has_calls = True
        if opc & BPF_X:  # callx: the helper id is the value of the register named by dst
            return self.helper_call(i, f"r{dst}", None, c.local_call + c.call)
        if src == BPF_PSEUDO_CALL:
            lines = self.flush(c.local_call)
            lines += [(0, "if r10 < clim:"), (1, f"_e2big({i})")]
            target = i + imm + 1
            if self.timed:
                lines.append(
                    (
                        0,
                        f"r0, b, t, horizon = yield from g{target}(r1, r2, r3, r4, r5, "
                        f"r10 - {FRAME}, b, rt, t, horizon)",
                    )
                )
            else:
                lines.append((0, f"r0, b = f{target}(r1, r2, r3, r4, r5, r10 - {FRAME}, b, rt)"))
            return lines + self.revalidate()
        return self.helper_call(i, str(imm), imm, c.call)

    def helper_call(self, i: int, hid: str, static_id: int | None, cost: int) -> Lines:
        lines = self.flush(cost)
        if self.timed:
            lines += [
                (0, "if t > horizon:"),
                (1, "horizon = yield t"),
                (0, "bud.left = b"),
                (0, "bud.r10 = r10"),
                (0, f"r0, t, horizon = yield ({hid}, r1, r2, r3, r4, r5, t)"),
                (0, f"r0 &= {M64}"),
                (0, "b = bud.left"),
            ]
        else:
            if static_id is not None:
                self.helper_ids.add(static_id)
                fn = f"hp{static_id}"
            else:
                fn = "hx"
                lines.append((0, f"hx = helpers.get({hid})"))
            lines += [
                (0, f"if {fn} is None:"),
                (1, f"_nohelper({hid}, {i})"),
                (0, "bud.left = b"),
                (0, "bud.r10 = r10"),
                (0, f"r0 = {fn}(r1, r2, r3, r4, r5) & {M64}"),
                (0, "b = bud.left"),
            ]
        return lines + self.revalidate()

    def revalidate(self) -> Lines:
        """After a call: drop every site's cached region if a region was removed meanwhile.
        (The sites are numbered as they are written, so this names them at the end.)"""
        return [(0, "\x00REVALIDATE")]


def blk_len(decoded, blk: Block) -> int:
    """Instructions in a block (an ``LD_DW_IMM`` counts once)."""
    n = 0
    i = blk.start
    while i < blk.end:
        n += 1
        i += 2 if decoded[i][0] == LD_DW_IMM else 1
    return n


def _member(var: str, targets: set[int]) -> str:
    if len(targets) == 1:
        return f"{var} == {next(iter(targets))}"
    return f"{var} in {tuple(sorted(targets))}"


class Generator:
    """Generates the source of a whole program: both forms of every function."""

    def __init__(self, insns: bytes, *, code_base: int, costs):
        self.decoded = decode(insns)
        self.n = len(self.decoded)
        self.code_base = code_base
        self.costs = costs
        self.starts = function_starts(insns)
        ends = self.starts[1:] + [self.n]
        self.functions = [
            analyse(self.decoded, s, e) for s, e in zip(self.starts, ends, strict=True)
        ]

    def source(self) -> str:
        out: list[str] = []
        for timed in (False, True):
            for fn in self.functions:
                w = _FunctionWriter(self, fn, timed)
                lines = w.write()
                reset = ""
                if w.sites:
                    names = " = ".join(f"hi{k}" for k in range(w.sites))
                    reset = f"if rs.version != ver:\n{{ind}}    ver = rs.version\n{{ind}}    {names} = -1"
                for line in lines:
                    if line.endswith("\x00REVALIDATE"):
                        if reset:
                            ind = line[: len(line) - len(line.lstrip())]
                            out.append(ind + reset.replace("{ind}", ind))
                        continue
                    out.append(line)
                out.append("")
        return "\n".join(out) + "\n"
