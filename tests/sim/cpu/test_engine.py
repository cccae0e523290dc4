"""The execution engine, instruction by instruction and rule by rule (RFC 9669, ISA v4).

Programs are written in the bpf_conformance assembly syntax; each test states the rule it pins
the way the ISA document or Linux states it.
"""

from __future__ import annotations

import errno

import pytest

from kbpf.asm import assemble
from kbpf.errors import BpfError
from kbpf.insn import EbpfInst, encode_all, lddw
from sim.cpu.engine import (
    DEFAULT_CODE_BASE,
    Budget,
    Costs,
    ProgramFault,
    Region,
    RegionSet,
    compile_program,
)

M64 = (1 << 64) - 1
STACK_TOP = 0x7FFF_0000_1000
STACK_LO = STACK_TOP - 4096
DATA = 0xFFFF_8880_0000_0000
RODATA = 0xFFFF_8880_0001_0000


def machine(data: bytes = bytes(64), rodata: bytes = b"") -> RegionSet:
    regions = RegionSet(
        [Region(STACK_LO, STACK_TOP, buf=bytearray(4096), name="stack", shared=False)]
    )
    if data:
        regions.add(Region(DATA, DATA + len(data), buf=bytearray(data), name="data"))
    if rodata:
        regions.add(
            Region(
                RODATA, RODATA + len(rodata), buf=bytearray(rodata), writable=False, name="rodata"
            )
        )
    return regions


def run(
    text: str,
    *regs: int,
    regions: RegionSet | None = None,
    helpers=None,
    budget=1_000_000,
    name: str = "p",
) -> int:
    prog = compile_program(assemble(text), name=name)
    return prog.run(
        regions or machine(), *regs, stack_top=STACK_TOP, helpers=helpers or {}, budget=budget
    )


# --------------------------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------------------------


def test_alu64_immediates_are_sign_extended_to_64_bits():
    assert run("mov %r0, -1\nexit") == M64
    assert run("mov %r0, 1\nadd %r0, -2\nexit") == M64
    assert run("lddw %r0, 0x123456789abcdef0\nand %r0, -16\nexit") == 0x123456789ABCDEF0
    # unsigned division by an immediate uses the sign-extended value as a u64
    assert run("mov %r0, -1\ndiv %r0, -1\nexit") == 1


def test_alu32_operates_on_the_low_half_and_zero_extends():
    assert run("mov32 %r0, -1\nexit") == 0xFFFFFFFF
    assert run("lddw %r0, 0xffffffffffffffff\nadd32 %r0, 1\nexit") == 0
    assert run("lddw %r1, 0x1234567800000005\nmov32 %r0, %r1\nexit") == 5
    assert run("lddw %r0, 0xffffffff00000003\nmul32 %r0, 3\nexit") == 9
    assert run("lddw %r0, 0xffffffff00000000\nneg32 %r0\nexit") == 0


def test_shift_counts_are_masked_to_the_operand_width():
    assert run("mov %r0, 1\nlsh %r0, 65\nexit") == 2
    assert run("mov %r0, 1\nlsh32 %r0, 33\nexit") == 2
    assert run("mov %r0, 1\nmov %r1, -63\nlsh %r0, %r1\nexit") == 2
    assert run("mov %r0, -16\nrsh %r0, 64\nexit") == M64 - 15
    assert run("mov32 %r0, -16\narsh32 %r0, 2\nexit") == 0xFFFFFFFC
    assert run("mov %r0, -16\narsh %r0, 2\nexit") == M64 - 3


def test_division_and_modulo_by_zero():
    # "If BPF program execution would result in division by zero, the destination register is
    # instead set to zero"; modulo by zero leaves it unchanged (ALU: its low half).
    assert run("mov %r0, 7\nmov %r1, 0\ndiv %r0, %r1\nexit") == 0
    assert run("mov %r0, 7\ndiv32 %r0, 0\nexit") == 0
    assert run("mov %r0, -7\nmov %r1, 0\nmod %r0, %r1\nexit") == M64 - 6
    assert run("mov %r0, -7\nmod32 %r0, 0\nexit") == 0xFFFFFFF9
    assert run("mov %r0, -7\nmov %r1, 0\nsdiv %r0, %r1\nexit") == 0
    assert run("mov %r0, -7\nmov %r1, 0\nsmod %r0, %r1\nexit") == M64 - 6


def test_signed_division_truncates_toward_zero_like_c():
    assert run("mov %r0, -13\nsdiv %r0, 3\nexit") == (-4) & M64
    assert run("mov %r0, -13\nsmod %r0, 3\nexit") == (-1) & M64
    assert run("mov %r0, 13\nsmod %r0, -3\nexit") == 1
    assert run("mov32 %r0, -13\nsmod32 %r0, 3\nexit") == 0xFFFFFFFF


def test_int_min_divided_by_minus_one():
    assert run("lddw %r0, 0x8000000000000000\nsdiv %r0, -1\nexit") == 1 << 63
    assert run("lddw %r0, 0x8000000000000000\nsmod %r0, -1\nexit") == 0
    assert run("mov32 %r0, 0x80000000\nsdiv32 %r0, -1\nexit") == 0x80000000
    assert run("mov32 %r0, 0x80000000\nsmod32 %r0, -1\nexit") == 0


def test_sign_extending_moves():
    assert run("mov %r1, 0x80\nmovsx864 %r0, %r1\nexit") == M64 - 127
    assert run("mov %r1, 0x8000\nmovsx1632 %r0, %r1\nexit") == 0xFFFF8000
    assert run("mov32 %r1, -2\nmovsx3264 %r0, %r1\nexit") == M64 - 1
    assert run("lddw %r1, 0x1ff\nmovsx832 %r0, %r1\nexit") == 0xFFFFFFFF


def test_byte_swaps():
    v = "lddw %r0, 0x0102030405060708\n"
    assert run(v + "le16 %r0\nexit") == 0x0708
    assert run(v + "le32 %r0\nexit") == 0x05060708
    assert run(v + "be16 %r0\nexit") == 0x0807
    assert run(v + "be32 %r0\nexit") == 0x08070605
    assert run(v + "be64 %r0\nexit") == 0x0807060504030201
    assert run(v + "bswap16 %r0\nexit") == 0x0807
    assert run(v + "bswap64 %r0\nexit") == 0x0807060504030201


def test_jumps_compare_sign_extended_immediates_and_jmp32_low_halves():
    # 64-bit: imm -1 is 0xffff...ffff, also for the unsigned comparisons.
    assert run("mov %r0, 0\nmov %r1, -1\njeq %r1, -1, +1\nexit\nmov %r0, 1\nexit") == 1
    assert run("mov %r0, 0\nmov %r1, 5\njgt %r1, -1, +1\nmov %r0, 1\nexit") == 1
    # JMP32 looks at the low 32 bits only
    prog = "mov %r0, 0\nlddw %r1, 0x1ffffffff\njeq32 %r1, -1, +1\nexit\nmov %r0, 1\nexit"
    assert run(prog) == 1
    assert run("mov %r0, 0\nmov %r1, -5\njslt %r1, -4, +1\nexit\nmov %r0, 1\nexit") == 1


def test_gotol_jumps_by_its_immediate():
    assert run("mov %r0, 1\nja32 over\nmov %r0, 2\nover:\nexit") == 1


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def test_loads_and_stores_through_a_pointer_and_sign_extending_loads():
    regions = machine(bytes(range(16)))
    text = """
        ldxdw %r0, [%r1+0]
        stxdw [%r1+8], %r0
        ldxsb %r2, [%r1+15]
        mov %r3, 0xf0
        stxb [%r1+15], %r3
        ldxsb %r0, [%r1+15]
        exit
    """
    assert run(text, DATA, regions=regions) == M64 - 15
    data = regions.find(DATA, 16, False).buf
    assert bytes(data[8:15]) == bytes(range(7)) and data[15] == 0xF0


def test_cmpxchg_loads_the_old_value_into_r0_zero_extended():
    text = """
        mov %r1, 0x11
        stxw [%r10-8], %r1
        lddw %r0, 0xffffffff00000011
        mov %r2, 0x22
        lock cmpxchg32 [%r10-8], %r2
        ldxw %r3, [%r10-8]
        lsh %r3, 32
        or %r0, %r3
        exit
    """
    # matched: memory becomes 0x22, r0 = 0x11 zero-extended (upper half cleared)
    assert run(text) == (0x22 << 32) | 0x11
    failed = text.replace("lddw %r0, 0xffffffff00000011", "mov %r0, 5")
    assert run(failed) == (0x11 << 32) | 0x11


def test_atomic_fetch_operations_return_the_old_value():
    text = """
        mov %r1, 6
        stxdw [%r10-8], %r1
        mov %r2, 3
        lock fetch and [%r10-8], %r2
        ldxdw %r0, [%r10-8]
        lsh %r0, 8
        or %r0, %r2
        exit
    """
    assert run(text) == (2 << 8) | 6
    xchg = "mov %r1, 6\nstxdw [%r10-8], %r1\nmov %r0, 9\nlock xchg [%r10-8], %r0\nexit"
    assert run(xchg) == 6


@pytest.mark.parametrize(
    "insn",
    ["ldxdw %r0, [%r10-520]", "stdw [%r10+0], 1", "ldxw %r0, [%r10-2]", "stb [%r10+8], 1"],
)
def test_constant_stack_offsets_outside_the_512_byte_frame_fault(insn):
    with pytest.raises(ProgramFault) as e:
        run(f"mov %r0, 0\n{insn}\nexit", name="frame")
    assert e.value.errno == errno.EFAULT
    assert e.value.pc == 1 and e.value.prog_name == "frame"
    assert "insn 1" in str(e.value) and f"{e.value.addr:#x}" in str(e.value)


def test_the_whole_frame_is_usable():
    assert run("stdw [%r10-512], 7\nstb [%r10-1], 1\nldxdw %r0, [%r10-512]\nexit") == 7


def test_reading_outside_every_region_faults_naming_program_insn_and_address():
    with pytest.raises(ProgramFault) as e:
        run("mov %r0, 0\nldxw %r0, [%r1+4]\nexit", 0x1234_0000, name="wild")
    f = e.value
    assert (f.prog_name, f.pc, f.addr) == ("wild", 1, 0x1234_0004)
    assert str(f) == (
        "[EFAULT] prog 'wild': insn 1: read of 4 bytes at 0x12340004 outside any region it may "
        "touch"
    )


def test_writing_a_read_only_region_faults_but_reading_it_works():
    regions = machine(rodata=b"\x2a" + bytes(7))
    assert run("ldxb %r0, [%r1+0]\nexit", RODATA, regions=regions) == 0x2A
    with pytest.raises(
        ProgramFault, match="write of 1 bytes at 0x[0-9a-f]+ into read-only region 'rodata'"
    ):
        run("stb [%r1+0], 1\nexit", RODATA, regions=regions)
    with pytest.raises(ProgramFault, match="read-only"):
        run("mov %r2, 1\nlock add [%r1+0], %r2\nexit", RODATA, regions=regions)


def test_an_access_running_past_the_end_of_a_region_faults():
    with pytest.raises(ProgramFault, match="running past the end of region 'data'"):
        run("ldxdw %r0, [%r1+60]\nexit", DATA)


def test_negative_offsets_wrap_like_64_bit_addresses():
    with pytest.raises(ProgramFault) as e:
        run("mov %r1, 4\nldxb %r0, [%r1-8]\nexit")
    assert e.value.addr == M64 - 3


def test_a_pointer_to_the_stack_reaches_it_through_the_region_set():
    text = "mov %r1, %r10\nadd %r1, -16\nstdw [%r1+8], 42\nldxdw %r0, [%r10-8]\nexit"
    assert run(text) == 42


def test_regions_reached_by_page_walk_use_reader_and_writer():
    mem = bytearray(32)
    calls = []

    def reader(addr, size):
        calls.append(("r", addr, size))
        return bytes(mem[addr - DATA : addr - DATA + size])

    def writer(addr, data):
        calls.append(("w", addr, len(data)))
        mem[addr - DATA : addr - DATA + len(data)] = data

    regions = machine(data=b"")
    regions.add(Region(DATA, DATA + 32, reader=reader, writer=writer, name="vmap"))
    text = "stdw [%r1+8], 5\nmov %r2, 2\nlock add [%r1+8], %r2\nldxdw %r0, [%r1+8]\nexit"
    assert run(text, DATA, regions=regions) == 7
    assert calls == [("w", DATA + 8, 8), ("r", DATA + 8, 8), ("w", DATA + 8, 8), ("r", DATA + 8, 8)]


def test_a_region_removed_during_a_helper_call_is_no_longer_reachable():
    """A ring-buffer record submitted by a helper must fault if the program touches it after:
    the site that cached the region drops it when ``RegionSet.version`` changes."""
    regions = machine()
    rec = Region(DATA + 0x1000, DATA + 0x1010, buf=bytearray(16), name="record")
    regions.add(rec)
    text = """
        mov %r6, %r1
        stdw [%r6+0], 1
        call 9
        stdw [%r6+0], 2
        exit
    """

    def submit(*_):
        regions.remove(rec)
        return 0

    with pytest.raises(ProgramFault) as e:
        run(text, rec.start, regions=regions, helpers={9: submit})
    assert e.value.pc == 3


def test_region_set_rejects_overlaps_and_unknown_removals():
    rs = RegionSet([Region(0x1000, 0x2000, buf=bytearray(0x1000), name="a")])
    with pytest.raises(ValueError, match="overlaps"):
        rs.add(Region(0x1FFF, 0x3000, buf=bytearray(0x1001), name="b"))
    with pytest.raises(KeyError):
        rs.remove(Region(0x1000, 0x2000, buf=bytearray(0x1000), name="a"))
    assert rs.find(0x1FF8, 8, False).name == "a" and rs.find(0x1FF9, 8, False) is None


# --------------------------------------------------------------------------------------------
# Budget
# --------------------------------------------------------------------------------------------


def test_the_budget_counts_every_executed_instruction_exactly():
    text = "mov %r0, 1\nlddw %r1, 5\nadd %r0, %r1\nexit"  # 4 instructions (lddw counts once)
    assert run(text, budget=4) == 6
    with pytest.raises(BpfError) as e:
        run(text, budget=3, name="short")
    assert e.value.errno == errno.ELOOP
    assert str(e.value) == "[ELOOP] prog 'short': instruction budget of 3 exhausted at insn 4"


def test_an_endless_loop_exhausts_the_budget():
    with pytest.raises(BpfError, match=r"budget of 1000 exhausted at insn 1") as e:
        run("mov %r0, 0\nja -1\nexit", budget=1000)
    assert e.value.errno == errno.ELOOP


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 100])
def test_loop_budget_is_exact_at_the_boundary(n):
    """3 setup/exit instructions + 3 per iteration; the unrolled loop must fail exactly when
    one instruction is missing."""
    text = f"mov %r0, 0\nmov %r1, 0\nloop:\nadd %r0, %r1\nadd %r1, 1\njlt %r1, {n}, loop\nexit"
    need = 3 + 3 * n
    bud = Budget(need)
    assert run(text, budget=bud) == n * (n - 1) // 2
    assert bud.used == need and bud.left == 0
    with pytest.raises(BpfError, match="budget"):
        run(text, budget=need - 1)


# --------------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------------


def test_local_calls_get_their_own_frame_and_preserve_r6_to_r9():
    text = """
        mov %r6, 6
        stdw [%r10-8], 100
        mov %r1, 5
        call local f
        ldxdw %r1, [%r10-8]
        add %r0, %r1
        add %r0, %r6
        exit
    f:
        stdw [%r10-8], 1
        mov %r6, 0
        mov %r0, %r10
        sub %r0, %r1
        exit
    """
    # callee r10 = STACK_TOP - 512; the caller's slot and r6 survive
    assert run(text) == (STACK_TOP - 512 - 5) + 100 + 6


def test_more_than_eight_frames_is_e2big():
    text = """
        mov %r1, %r0
        call local f
        exit
    f:
        add %r1, 1
        mov %r0, %r1
        jge %r1, {depth}, done
        call local f
    done:
        exit
    """
    assert run(text.format(depth=7)) == 7  # frame k has r1 == k: frames 0..7
    with pytest.raises(BpfError) as e:
        run(text.format(depth=8), name="deep")
    assert e.value.errno == errno.E2BIG and "prog 'deep': insn 6" in str(e.value)


def test_helpers_results_are_masked_and_unknown_helpers_are_einval():
    assert run("call 1\nexit", helpers={1: lambda *a: -1}) == M64
    assert run("mov %r1, 3\nmov %r2, 4\ncall 1\nexit", helpers={1: lambda a, b, *_: a * b}) == 12
    with pytest.raises(BpfError) as e:
        run("mov %r0, 0\ncall 77\nexit", name="h")
    assert e.value.errno == errno.EINVAL and str(e.value).endswith(
        "insn 1: call to unknown helper 77"
    )


def test_callx_calls_the_helper_whose_id_is_in_the_register():
    helpers = {5: lambda a, *_: a + 1}
    assert run("mov %r1, 41\nmov %r2, 5\ncall %r2\nexit", helpers=helpers) == 42
    with pytest.raises(BpfError, match="unknown helper 6"):
        run("mov %r2, 6\ncall %r2\nexit", helpers=helpers)


def test_code_addresses_of_functions():
    text = "lddw %r0, func f\nexit\nf:\nmov %r0, %r1\nexit"
    prog = compile_program(assemble(text))
    assert prog.code_base == DEFAULT_CODE_BASE
    assert prog.run(machine(), stack_top=STACK_TOP, helpers={}) == DEFAULT_CODE_BASE + 8 * 3
    other = compile_program(assemble(text), code_base=0x4000)
    assert other.run(machine(), stack_top=STACK_TOP, helpers={}) == 0x4000 + 24
    assert other.call(0x4000 + 24, (9,), regions=machine(), stack_top=STACK_TOP) == 9
    with pytest.raises(BpfError, match="not the address of a function"):
        other.call(0x4000 + 8, (), regions=machine(), stack_top=STACK_TOP)


def test_a_callback_runs_in_the_next_frame_and_shares_the_budget():
    """bpf_loop-style: the helper calls back into the program; the callback has a frame below
    the caller's and its instructions count against the invocation's budget."""
    text = """
        stdw [%r10-8], 7
        lddw %r1, func cb
        call 181
        ldxdw %r1, [%r10-8]
        add %r0, %r1
        exit
    cb:
        stdw [%r10-8], 1000
        mov %r0, %r10
        exit
    """
    prog = compile_program(assemble(text))
    frames = []

    def loop_helper(func, *_):
        for _ in range(3):
            frames.append(prog.call(func, (), stack_top=STACK_TOP))
        return 0

    bud = Budget(100)
    r0 = prog.run(machine(), stack_top=STACK_TOP, helpers={181: loop_helper}, budget=bud)
    assert frames == [STACK_TOP - 512] * 3
    assert r0 == 7  # the caller's stack slot survived the callbacks
    assert bud.used == 6 + 3 * 3
    with pytest.raises(BpfError, match="budget of 10 exhausted"):
        prog.run(machine(), stack_top=STACK_TOP, helpers={181: loop_helper}, budget=10)


# --------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------


def test_unresolved_map_references_are_rejected_at_compile_time():
    code = encode_all([*lddw(1, 3, src=1, next_imm=0), EbpfInst(0x95)])
    with pytest.raises(BpfError) as e:
        compile_program(code, name="maps")
    assert e.value.errno == errno.EINVAL and "insn 0" in str(e.value)


def test_compile_checks_the_encoding():
    with pytest.raises(BpfError, match="unknown opcode 0xff"):
        compile_program(encode_all([EbpfInst(0xFF), EbpfInst(0x95)]))


def test_the_generated_source_is_python_with_loops_as_loops():
    prog = compile_program(assemble("mov %r0, 0\nloop:\nadd %r0, 1\njlt %r0, 10, loop\nexit"))
    assert "while True:" in prog.source and "def f0(" in prog.source and "def g0(" in prog.source
    assert "pc ==" not in prog.source  # a single-entry loop needs no dispatch


# --------------------------------------------------------------------------------------------
# Timed form
# --------------------------------------------------------------------------------------------

COSTS = Costs(
    alu=10,
    mul=20,
    div=30,
    branch=40,
    ld_imm64=50,
    load=60,
    store=70,
    atomic=80,
    call=90,
    exit=100,
    local_call=110,
)


class Driver:
    """Answers the timed form's requests and records them."""

    def __init__(self, horizon_step=0, helpers=None):
        self.step = horizon_step
        self.helpers = helpers or {}
        self.meets = []
        self.calls = []
        self.accesses = []

    def access(self, addr, size, write, t):
        self.accesses.append((addr, size, write, t))
        return 1000

    def drive(self, gen):
        answer = None
        while True:
            try:
                req = gen.send(answer)
            except StopIteration as done:
                return done.value
            if type(req) is int:
                self.meets.append(req)
                answer = req + self.step
            else:
                self.calls.append(req)
                hid, *args, t = req
                answer = (self.helpers[hid](*args), t + 500, t + 500 + self.step)


def run_timed(text, *regs, driver, regions=None, t=0, horizon=0, budget=1_000_000):
    prog = compile_program(assemble(text), costs=COSTS)
    gen = prog.run_timed(
        regions or machine(),
        *regs,
        stack_top=STACK_TOP,
        budget=budget,
        t=t,
        horizon=horizon,
        access=driver.access,
    )
    return driver.drive(gen)


def test_timed_private_work_costs_its_block_time_without_meeting_the_clock():
    d = Driver()
    text = "mov %r0, 2\nmul %r0, 3\nstxdw [%r10-8], %r0\nldxdw %r0, [%r10-8]\nexit"
    r0, t = run_timed(text, driver=d, t=1_000)
    assert r0 == 6
    assert t == 1_000 + 10 + 20 + 70 + 60 + 100
    assert d.meets == [] and d.accesses == []


def test_timed_shared_accesses_meet_the_clock_only_when_something_else_is_due():
    text = "mov %r2, 1\nstxdw [%r1+0], %r2\nldxdw %r0, [%r1+0]\nlock add [%r1+0], %r2\nexit"
    eager = Driver(horizon_step=0)  # another event is always due right now
    r0, t = run_timed(text, DATA, driver=eager, t=0, horizon=0)
    assert r0 == 1
    assert eager.meets == [10, 1010, 2010 + 80]
    assert [a[:3] for a in eager.accesses] == [(DATA, 8, True), (DATA, 8, False), (DATA, 8, True)]
    assert t == 10 + 1000 + 1000 + 80 + 1000 + 100
    alone = Driver(horizon_step=0)
    assert run_timed(text, DATA, driver=alone, horizon=10**15) == (r0, t)
    assert alone.meets == []  # nothing else due: no events, same time


def test_timed_helper_calls_yield_the_helper_tuple():
    d = Driver(horizon_step=10**12, helpers={7: lambda a, b, *_: a + b})
    r0, t = run_timed("mov %r1, 2\nmov %r2, 3\ncall 7\nexit", driver=d, horizon=10**12)
    assert r0 == 5
    assert d.calls == [(7, 2, 3, 0, 0, 0, 10 + 10 + 90)]
    assert t == 110 + 500 + 100


def test_timed_callbacks_run_through_call_timed_and_share_the_budget():
    text = """
        lddw %r1, func cb
        call 181
        exit
    cb:
        mov %r0, 42
        ldxdw %r2, [%r10-8]
        exit
    """
    prog = compile_program(assemble(text), costs=COSTS)
    regions = machine()
    bud = Budget(1000)
    gen = prog.run_timed(
        regions, stack_top=STACK_TOP, budget=bud, t=0, horizon=10**12, access=lambda *a: 0
    )
    req = gen.send(None)
    hid, func, *_rest, t = req
    assert hid == 181 and func == DEFAULT_CODE_BASE + 8 * 4
    sub = prog.call_timed(
        func, (), regions=regions, stack_top=STACK_TOP, budget=1_000_000, t=t, horizon=10**12
    )
    with pytest.raises(StopIteration) as done:
        sub.send(None)
    r0, t2 = done.value.value
    assert r0 == 42 and t2 == t + 10 + 60 + 100
    with pytest.raises(StopIteration) as end:
        gen.send((r0, t2, 10**12))
    assert end.value.value == (42, t2 + 100)
    assert bud.used == 3 + 3
