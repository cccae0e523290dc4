"""Run bpf_conformance ``.data`` tests on the engine, with the suite's own runtime.

Each test gets what the reference plugins (uBPF, rbpf, bpf2c) give it, not the kbpf host:

* r1 = the address of a writable copy of the ``-- mem`` bytes (0 when there are none), r2 =
  their length, r10 = the top of a 4 KiB stack (8 frames of 512 bytes);
* one helper, id 5, returning its first argument ("unwind" in the plugins); ``callx`` reaches
  it through a register;
* r0 is compared in all 64 bits.

Every CPU version (v1–v4) and group (including ``callx``) is enabled, so a test is skipped only
when upstream's runner would skip it whatever the options: no instructions, no result or
error, or an unknown directive.  A test whose ``-- error`` section names an error passes when
assembling, checking or running fails with exactly that first line of message, as upstream
compares its plugin's output.

``main`` is the ``kbpf-sim conformance`` command: one line per failing test, then
``N passed, N failed, N skipped``; exit status 0 only when none failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kbpf.checks import check_program
from kbpf.errors import BpfError
from sim.conformance_data import parse_data_file
from sim.cpu.engine import Budget, compile_program
from sim.cpu.regions import Region, RegionSet

#: Where the test's memory and stack live (any addresses would do; these are recognisable).
MEM_BASE = 0x0000_1000_0000_0000
STACK_TOP = 0x0000_2000_0000_0000
STACK_SIZE = 4096
#: The plugins' helper table: helper 5 returns its first argument.
CONFORMANCE_HELPERS: dict[int, Callable[[int, int, int, int, int], int]] = {
    5: lambda a, b, c, d, e: a,
}
#: Price of a shared access in the timed runs (any constant: only r0 is compared).
ACCESS_PS = 1000


@dataclass(frozen=True)
class Outcome:
    """The result of one test: ``status`` is ``"pass"``, ``"fail"`` or ``"skip"``."""

    name: str
    status: str
    message: str = ""
    r0: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class Report:
    """Outcomes of a run, in the order the tests ran."""

    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def passed(self) -> int:
        return self.count("pass")

    @property
    def failed(self) -> int:
        return self.count("fail")

    @property
    def skipped(self) -> int:
        return self.count("skip")

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


def _runtime(mem: bytes) -> tuple[RegionSet, int, int]:
    regions = RegionSet(
        [
            Region(
                STACK_TOP - STACK_SIZE,
                STACK_TOP,
                buf=bytearray(STACK_SIZE),
                name="stack",
                shared=False,
            )
        ]
    )
    if mem:
        regions.add(Region(MEM_BASE, MEM_BASE + len(mem), buf=bytearray(mem), name="mem"))
        return regions, MEM_BASE, len(mem)
    return regions, 0, 0


def drive_timed(gen, helpers, *, step: int = 0, access_ps: int = ACCESS_PS):
    """A trivial driver for the timed form: every ``yield t`` is answered at once with the
    horizon ``t + step`` (``step=0`` makes the program meet the clock at every shared access),
    every helper tuple by calling ``helpers``.  Returns the generator's ``(r0, t)``."""
    send = gen.send
    answer = None
    while True:
        try:
            req = send(answer)
        except StopIteration as done:
            return done.value
        if type(req) is int:
            answer = req + step
        else:
            hid, a1, a2, a3, a4, a5, t = req
            fn = helpers.get(hid)
            if fn is None:
                raise BpfError(22, f"call to unknown helper {hid}")
            answer = (fn(a1, a2, a3, a4, a5) & 0xFFFFFFFFFFFFFFFF, t + 1000, t + 1000 + step)


def access_constant(addr: int, size: int, write: bool, t: int) -> int:
    """The timed runs' cache model: every shared access costs :data:`ACCESS_PS`."""
    return ACCESS_PS


def execute(
    program: bytes, mem: bytes, *, name: str = "test", timed: bool = False, budget: int = 1_000_000
) -> int:
    """Check, compile and run ``program`` with the conformance runtime; return r0."""
    check_program(program, CONFORMANCE_HELPERS.keys(), name=name)
    prog = compile_program(program, name=name)
    regions, r1, r2 = _runtime(mem)
    if not timed:
        return prog.run(
            regions, r1, r2, stack_top=STACK_TOP, helpers=CONFORMANCE_HELPERS, budget=budget
        )
    gen = prog.run_timed(
        regions,
        r1,
        r2,
        stack_top=STACK_TOP,
        budget=Budget(budget),
        t=0,
        horizon=0,
        access=access_constant,
    )
    r0, _t = drive_timed(gen, CONFORMANCE_HELPERS)
    return r0


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def run_case(case, *, timed: bool = False) -> Outcome:
    """Run one parsed case (:func:`sim.conformance_data.parse_data_file`)."""
    name = case.name
    if case.skip_reason:
        return Outcome(name, "skip", case.skip_reason)
    expected_error = case.expected_error
    try:
        program = case.program
        r0 = execute(program, case.mem, name=Path(name).stem, timed=timed)
    except (BpfError, ValueError) as err:
        texts = {_first_line(str(err))}
        for attr in ("strerror", "reason"):
            value = getattr(err, attr, None)
            if isinstance(value, str):
                texts.add(_first_line(value))
        message = _first_line(str(err))
        if expected_error is not None:
            if expected_error in texts:
                return Outcome(name, "pass", message)
            return Outcome(
                name, "fail", f"failed with '{message}' but expected error '{expected_error}'"
            )
        return Outcome(name, "fail", f"failed: {message}")
    if expected_error is not None:
        return Outcome(name, "fail", f"returned {r0:#x} but expected error '{expected_error}'", r0)
    if r0 != case.expected_result:
        return Outcome(name, "fail", f"returned {r0:#x}, expected {case.expected_result:#x}", r0)
    return Outcome(name, "pass", "", r0)


def data_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.data`` files named by ``paths``: files as given, folders' ``*.data`` (sorted, not
    recursive).  A missing path is a ``FileNotFoundError``."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.data")))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files


def run_paths(paths: Iterable[str | Path], *, timed: bool = False) -> Report:
    """Run every test in ``paths`` (files, or folders of ``*.data``)."""
    report = Report()
    for path in data_files(paths):
        try:
            case = parse_data_file(path)
        except (OSError, ValueError) as err:
            report.outcomes.append(Outcome(path.name, "fail", f"unreadable test: {err}"))
            continue
        report.outcomes.append(run_case(case, timed=timed))
    return report


def main(paths: Iterable[str | Path], *, out=None) -> int:
    """Run the tests, print one line per failure and the summary; 0 iff none failed."""
    out = out or sys.stdout
    report = run_paths(paths)
    for o in report.outcomes:
        if o.status == "fail":
            print(f"FAIL {o.name}: {o.message}", file=out)
    print(report.summary(), file=out)
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:] or ["tests/conformance"]))
