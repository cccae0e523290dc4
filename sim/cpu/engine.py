"""The execution engine: an RFC 9669 eBPF interpreter (ISA v4) compiled to Python per program.

:func:`compile_program` turns a checked program into generated Python source, exec'd once
(:mod:`sim.cpu.codegen` explains the structure); the :class:`CompiledProgram` it returns runs
in two forms that share that code:

**Functional** — :meth:`CompiledProgram.run`: no time; helpers are plain callables
``f(r1, r2, r3, r4, r5) -> int`` looked up by id in a dict; returns r0 (u64).

**Timed** — :meth:`CompiledProgram.run_timed` returns a generator for a core's driver (a SimPy
process whose ``env.now`` is integer picoseconds).  The program keeps a local clock ``t``
(absolute ps) that runs ahead on private work: each block adds its precomputed cost
(:class:`Costs`) without any event.  It meets the clock only where another CPU could observe
or change something, and only when another event is due first:

* before a load, store or atomic whose address is in a shared region (anything but its own
  stack): ``if t > horizon: horizon = yield t`` — the driver advances SimPy to ``t`` and sends
  back the new horizon (when the next other event is due, or a big number) — then
  ``t += access(addr, size, is_write, t)`` (the cache model's price; atomics pass
  ``is_write=True``), then the access itself.  An access to a private (stack) region costs
  ``Costs.load``/``Costs.store`` instead;
* at a helper call, the same meeting, then ``r0, t, horizon = yield (helper_id, r1, r2, r3, r4,
  r5, t)``: the driver runs the helper (its locks and touches take simulated time) and sends
  back the result, the new local time and horizon.  For ``callx`` the id is the register's
  value.  An id the driver does not know is its error to raise;
* at the end the generator returns ``(r0, t)`` (``StopIteration.value``): r0 as u64 and the
  local time the program finished at.

A helper that calls back into the program (a ``Callback`` request: ``bpf_loop``,
``for_each_map_elem``) is run by the driver with ``r0, t = yield from prog.call_timed(func,
args, regions=..., stack_top=..., budget=..., t=t, horizon=h, access=...)``; it yields exactly
like the program and returns ``(r0, t)``.  :meth:`CompiledProgram.call` is the functional
equivalent (for the synchronous helper table).

**Budget.**  Every executed instruction counts (``LD_DW_IMM`` once), per invocation, including
callbacks: a callback run on the same stack while the program is inside a helper call shares
the running invocation's :class:`Budget` (found by ``stack_top``, or passed explicitly).
Exceeding it raises ``BpfError(ELOOP)``.

**Frames.**  Frame k (k = 0 for the entry) has ``r10 = stack_top - 512*k`` and owns the 512
bytes below it; at most 8 frames (fewer if the stack region is smaller); one more is
``BpfError(E2BIG)``.  A callback runs in the frame below the one that called the helper.

**Faults.**  An access outside every region of the invocation's :class:`RegionSet`, or a store
to a read-only region, raises :class:`ProgramFault` (EFAULT) naming program, instruction and
address.

**Code addresses.**  Instruction i is at ``code_base + 8*i``: what ``LD_DW_IMM src=4``
(``BPF_PSEUDO_FUNC``) loads and what :meth:`CompiledProgram.call` accepts.
"""

from __future__ import annotations

import errno
import linecache
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from kbpf.checks import check_program
from kbpf.errors import BpfError
from kbpf.insn import BPF_PSEUDO_FUNC, INSN_SIZE, LD_DW_IMM
from sim.cpu import runtime
from sim.cpu.codegen import Generator
from sim.cpu.regions import ProgramFault, Region, RegionSet
from sim.cpu.runtime import FRAME_SIZE, M64, MAX_FRAMES, Budget

__all__ = [
    "Budget",
    "CompiledProgram",
    "Costs",
    "DEFAULT_CODE_BASE",
    "ProgramFault",
    "Region",
    "RegionSet",
    "compile_program",
]

#: Where code lives unless the host says otherwise: x86-64 Linux's module area, where BPF JIT
#: images are placed.  Only used to give functions addresses (``BPF_PSEUDO_FUNC``).
DEFAULT_CODE_BASE = 0xFFFFFFFFC0000000


@dataclass(frozen=True)
class Costs:
    """Picoseconds per instruction class (defaults: a 3 GHz core, one cycle = 333 ps).

    ``load``/``store`` price accesses to a private region (the stack); a shared access is
    priced by the host's ``access`` callback instead.  ``atomic`` is the locked instruction
    itself and is paid on every atomic, shared or not, on top of ``access``.  ``call`` is a
    helper call's entry; ``local_call`` a bpf-to-bpf call; ``callx`` (a helper call through a
    register) pays both.  Division and modulo, signed or not, cost ``div``.
    """

    alu: int = 333
    mul: int = 1000
    div: int = 8000
    branch: int = 333
    ld_imm64: int = 333
    load: int = 333
    store: int = 333
    atomic: int = 6000
    call: int = 3000
    exit: int = 333
    local_call: int = 1000


class _AnyHelper:
    """A helper-id collection that contains every id: compile_program checks the encoding, the
    kernel checks helper ids against its table before (``kbpf.checks.check_program``)."""

    def __contains__(self, _item) -> bool:
        return True


class CompiledProgram:
    """A program compiled to Python: see the module docstring for the two forms."""

    def __init__(self, name: str, insns: bytes, code_base: int, costs: Costs, gen: Generator):
        self.name = name
        self.insns = insns
        self.n_insns = len(insns) // INSN_SIZE
        self.code_base = code_base
        self.costs = costs
        self.function_starts = list(gen.starts)
        self.source = gen.source()
        filename = f"<bpf prog {name!r} {id(self):x}>"
        linecache.cache[filename] = (len(self.source), None, self.source.splitlines(True), filename)
        ns = _namespace(name)
        exec(compile(self.source, filename, "exec"), ns)  # noqa: S102 - our own generated code
        self._f = {s: ns[f"f{s}"] for s in gen.starts}
        self._g = {s: ns[f"g{s}"] for s in gen.starts}
        self._f0 = self._f[0]
        self._g0 = self._g[0]
        #: stack_top -> the Budget of the invocation running on that stack (for callbacks)
        self._active: dict[int, Budget] = {}

    def __repr__(self) -> str:
        return f"CompiledProgram({self.name!r}, {self.n_insns} insns)"

    # -- the runtime tuple the generated functions unpack ----------------------------------------
    def _runtime(self, regions: RegionSet, stack_top: int, helpers, bud: Budget, access) -> tuple:
        st = regions.find(stack_top - 1, 1, True)
        if st is None or st.buf is None:
            raise BpfError(
                errno.EINVAL,
                f"prog '{self.name}': no writable buffer-backed stack region ends at "
                f"stack_top {stack_top:#x}",
            )
        frames = min(MAX_FRAMES, (stack_top - st.start) // FRAME_SIZE)
        if frames < 1:
            raise BpfError(
                errno.EINVAL,
                f"prog '{self.name}': stack region {st.name!r} is smaller than one "
                f"{FRAME_SIZE}-byte frame",
            )
        # A call from frame r10 is allowed while the callee's frame r10 - 512 is one of them.
        clim = stack_top - FRAME_SIZE * (frames - 2)
        return (regions, st.buf, st.start - st.base, clim, helpers, bud, access)

    @staticmethod
    def _budget(budget) -> Budget:
        return budget if isinstance(budget, Budget) else Budget(budget)

    # -- functional form ---------------------------------------------------------------------------
    def run(
        self,
        regions: RegionSet,
        r1: int = 0,
        r2: int = 0,
        r3: int = 0,
        r4: int = 0,
        r5: int = 0,
        *,
        stack_top: int,
        helpers: Mapping[int, Callable[[int, int, int, int, int], int]],
        budget: int | Budget = 1_000_000,
    ) -> int:
        """Run the program to completion without time; return r0 as an unsigned 64-bit int."""
        bud = self._budget(budget)
        rt = self._runtime(regions, stack_top, helpers, bud, None)
        bud.rt = rt
        active = self._active
        active[stack_top] = bud
        try:
            r0, bud.left = self._f0(
                r1 & M64, r2 & M64, r3 & M64, r4 & M64, r5 & M64, stack_top, bud.left, rt
            )
        finally:
            if active.get(stack_top) is bud:
                del active[stack_top]
        return r0

    def call(
        self,
        func_addr: int,
        args=(),
        *,
        regions: RegionSet | None = None,
        stack_top: int | None = None,
        helpers: Mapping[int, Callable] | None = None,
        budget: int | Budget = 1_000_000,
    ) -> int:
        """Run the function at code address ``func_addr`` with ``args`` in r1.. (functional).

        Inside a helper call of a running invocation (found by ``stack_top``, or by passing that
        invocation's :class:`Budget`), the function runs in the frame below the caller's and
        counts against the same budget; otherwise it is a fresh run from ``stack_top``.
        """
        fn, start = self._function(func_addr, self._f)
        bud, rt, r10 = self._frame_for(start, regions, stack_top, helpers, budget, None)
        regs = _args(args)
        saved = bud.r10
        try:
            r0, bud.left = fn(*regs, r10, bud.left, rt)
        finally:
            bud.r10 = saved
        return r0

    # -- timed form --------------------------------------------------------------------------------
    def run_timed(
        self,
        regions: RegionSet,
        r1: int = 0,
        r2: int = 0,
        r3: int = 0,
        r4: int = 0,
        r5: int = 0,
        *,
        stack_top: int,
        budget: int | Budget = 1_000_000,
        t: int,
        horizon: int,
        access: Callable[[int, int, bool, int], int],
    ):
        """A generator running the program in simulated time (module docstring); it returns
        ``(r0, t)``."""
        bud = self._budget(budget)
        rt = self._runtime(regions, stack_top, None, bud, access)
        bud.rt = rt
        args = (r1 & M64, r2 & M64, r3 & M64, r4 & M64, r5 & M64)
        return self._drive(self._g0, args, stack_top, stack_top, bud, rt, t, horizon, True)

    def call_timed(
        self,
        func_addr: int,
        args=(),
        *,
        regions: RegionSet | None = None,
        stack_top: int | None = None,
        budget: int | Budget = 1_000_000,
        t: int,
        horizon: int,
        access: Callable[[int, int, bool, int], int] | None = None,
    ):
        """A generator running the function at ``func_addr`` in simulated time, for a
        ``Callback`` request; it yields like :meth:`run_timed` and returns ``(r0, t)``."""
        fn, start = self._function(func_addr, self._g)
        bud, rt, r10 = self._frame_for(start, regions, stack_top, None, budget, access)
        return self._drive(fn, _args(args), r10, stack_top, bud, rt, t, horizon, False)

    def _drive(self, g, args, r10, stack_top, bud, rt, t, horizon, entry: bool):
        active = self._active
        if entry:
            active[stack_top] = bud
        saved = bud.r10
        try:
            r0, bud.left, t, _h = yield from g(*args, r10, bud.left, rt, t, horizon)
        finally:
            bud.r10 = saved
            if entry and active.get(stack_top) is bud:
                del active[stack_top]
        return r0, t

    # -- helpers for call / call_timed -------------------------------------------------------------
    def _function(self, func_addr: int, table: dict):
        off = func_addr - self.code_base
        start = off // INSN_SIZE
        if off % INSN_SIZE or start not in table:
            raise BpfError(
                errno.EINVAL,
                f"prog '{self.name}': {func_addr & M64:#x} is not the address of a function of "
                f"this program (functions start at insns {self.function_starts})",
            )
        return table[start], start

    def _frame_for(self, start, regions, stack_top, helpers, budget, access):
        bud = budget if isinstance(budget, Budget) else self._active.get(stack_top)
        if bud is not None and bud.rt is not None and bud.r10 is not None:
            rt = bud.rt
            if helpers is not None and rt[4] is not helpers:
                rt = rt[:4] + (helpers,) + rt[5:]
            if access is not None and rt[6] is not access:
                rt = rt[:6] + (access,)
            clim = rt[3]
            if bud.r10 < clim:
                runtime.too_deep(self.name, start)
            return bud, rt, bud.r10 - FRAME_SIZE
        if regions is None or stack_top is None:
            raise BpfError(
                errno.EINVAL,
                f"prog '{self.name}': a call outside a running invocation needs regions and "
                "stack_top",
            )
        bud = self._budget(budget if budget is not None else 1_000_000)
        rt = self._runtime(regions, stack_top, helpers if helpers is not None else {}, bud, access)
        bud.rt = rt
        return bud, rt, stack_top


def _args(args) -> tuple[int, int, int, int, int]:
    regs = [a & M64 for a in args]
    if len(regs) > 5:
        raise BpfError(errno.EINVAL, f"at most 5 argument registers, got {len(regs)}")
    return tuple(regs + [0] * (5 - len(regs)))


def _namespace(name: str) -> dict:
    """The globals of a program's generated code: struct accessors, arithmetic helpers, slow
    paths and error raisers bound to the program's name."""
    ns = {
        "__builtins__": __builtins__,
        "_sdiv64": runtime.sdiv64,
        "_smod64": runtime.smod64,
        "_sdiv32": runtime.sdiv32,
        "_smod32": runtime.smod32,
        "_bswap16": runtime.bswap16,
        "_bswap32": runtime.bswap32,
        "_bswap64": runtime.bswap64,
        "_ld": partial(runtime.load, name),
        "_st": partial(runtime.store, name),
        "_at": partial(runtime.atomic, name),
        "_ld_t": partial(runtime.load_t, name),
        "_st_t": partial(runtime.store_t, name),
        "_at_t": partial(runtime.atomic_t, name),
        "_eloop": partial(runtime.budget_exhausted, name),
        "_e2big": partial(runtime.too_deep, name),
        "_nohelper": partial(runtime.no_helper, name),
        "_stack_fault": partial(runtime.stack_fault, name),
    }
    for n, f in runtime.UNPACK.items():
        ns[f"_U{n}"] = f
    for n, f in runtime.UNPACK_SIGNED.items():
        ns[f"_S{n}"] = f
    for n, f in runtime.PACK.items():
        ns[f"_P{n}"] = f
    return ns


def compile_program(
    insns: bytes,
    *,
    name: str = "prog",
    costs: Costs | None = None,
    code_base: int = DEFAULT_CODE_BASE,
) -> CompiledProgram:
    """Compile a program (after the preprocessor: map references already resolved).

    The encoding is checked first (:func:`kbpf.checks.check_program`, any helper id allowed:
    the kernel checks ids against its table at load); ``LD_DW_IMM`` with a source other than
    0 (a constant) or 4 (a function's code address) is ``BpfError(EINVAL)``, since the
    preprocessor should have turned map references into constants.
    """
    insns = bytes(insns)
    check_program(insns, _AnyHelper(), name=name)
    n = len(insns) // INSN_SIZE
    i = 0
    while i < n:
        if insns[i * INSN_SIZE] != LD_DW_IMM:
            i += 1
            continue
        src = insns[i * INSN_SIZE + 1] >> 4
        if src not in (0, BPF_PSEUDO_FUNC):
            raise BpfError(
                errno.EINVAL,
                f"prog '{name}': insn {i}: LD_DW_IMM with src {src} was not resolved by the "
                "preprocessor (the engine runs only src 0 constants and src 4 code addresses)",
            )
        i += 2
    gen = Generator(insns, code_base=code_base, costs=costs or Costs())
    return CompiledProgram(name, insns, code_base, costs or Costs(), gen)
