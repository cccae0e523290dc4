"""The bpf_conformance suite on the engine, in both forms, and the runner behind
``kbpf-sim conformance``.

Every one of the 313 tests runs through the functional form and through the timed form driven
by a driver that makes the program meet the clock at every shared access, so the two forms are
shown to compute the same r0 on the whole suite.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sim.conformance import Report, main, run_case, run_paths
from sim.conformance_data import parse_data_file, parse_data_text

DATA = Path(__file__).resolve().parents[1] / "conformance"
DATA_FILES = sorted(DATA.glob("*.data"))
NEGATIVE_FILES = sorted((DATA / "negative").glob("*.data"))


def test_the_whole_suite_is_here():
    assert len(DATA_FILES) == 313 and len(NEGATIVE_FILES) == 60


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.stem)
def test_conformance_functional(path):
    outcome = run_case(parse_data_file(path))
    assert outcome.status == "pass", outcome.message


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.stem)
def test_conformance_timed(path):
    outcome = run_case(parse_data_file(path), timed=True)
    assert outcome.status == "pass", outcome.message


@pytest.mark.parametrize("path", NEGATIVE_FILES, ids=lambda p: p.stem)
def test_negative_files_are_rejected_with_a_clear_error(path):
    """negative/: programs that do not assemble, a wrong expected result, an expected error the
    program does not produce, and files upstream skips.  None may pass; each says why."""
    outcome = run_case(parse_data_file(path))
    assert outcome.status in ("fail", "skip")
    assert outcome.message
    if path.stem.startswith("invalid_") and path.stem != "invalid_unknown_directive":
        assert outcome.status == "fail" and "line " in outcome.message  # the assembler's line
    if path.stem == "incorrect_return_value_high_bits":
        assert outcome.message == "returned 0x8877665544332211, expected 0x8977665544332211"
    if path.stem == "error":
        assert "but expected error 'Invalid'" in outcome.message


def case(text: str):
    return parse_data_text(text, name="t.data")


def test_the_runtime_passes_memory_length_and_helper_5():
    assert run_case(case("-- asm\nmov %r0, %r2\nexit\n-- mem\n01 02 03\n-- result\n3")).passed
    assert run_case(case("-- asm\nldxb %r0, [%r1+2]\nexit\n-- mem\n01 02 03\n-- result\n3")).passed
    assert run_case(case("-- asm\nmov %r0, %r1\nexit\n-- result\n0")).passed  # no mem: r1 = 0
    echo = "-- asm\nmov %r1, 77\ncall 5\nexit\n-- result\n77"
    assert run_case(case(echo)).passed and run_case(case(echo), timed=True).passed


def test_a_wrong_result_fails_comparing_all_64_bits():
    o = run_case(case("-- asm\nmov %r0, -1\nexit\n-- result\n0xffffffff"))
    assert o.status == "fail" and o.message == "returned 0xffffffffffffffff, expected 0xffffffff"


def test_an_expected_error_passes_only_with_that_exact_message():
    fault = "-- asm\nldxb %r0, [%r1+0]\nexit\n-- error\n"
    message = "prog 't': insn 0: read of 1 bytes at 0x0 outside any region it may touch"
    assert run_case(case(fault + message)).passed
    assert run_case(case(fault + "[EFAULT] " + message)).passed
    wrong = run_case(case(fault + "Invalid"))
    assert wrong.status == "fail" and "but expected error 'Invalid'" in wrong.message
    unhelpful = run_case(case("-- asm\ncall 6\nexit\n-- result\n0"))
    assert unhelpful.status == "fail" and "invalid func unknown#6" in unhelpful.message


def test_run_paths_takes_files_and_folders_but_not_subfolders():
    report = run_paths([DATA / "add.data", DATA])
    assert isinstance(report, Report)
    assert len(report.outcomes) == 314 and report.failed == 0
    with pytest.raises(FileNotFoundError):
        run_paths([DATA / "no-such.data"])


def test_main_prints_failures_and_the_summary(tmp_path):
    (tmp_path / "good.data").write_text("-- asm\nmov %r0, 1\nexit\n-- result\n1\n")
    (tmp_path / "bad.data").write_text("-- asm\nmov %r0, 2\nexit\n-- result\n1\n")
    (tmp_path / "skipped.data").write_text("-- asm\nexit\n")
    out = io.StringIO()
    assert main([tmp_path], out=out) == 1
    assert out.getvalue().splitlines() == [
        "FAIL bad.data: returned 0x2, expected 0x1",
        "1 passed, 1 failed, 1 skipped",
    ]
    out = io.StringIO()
    assert main([tmp_path / "good.data", tmp_path / "skipped.data"], out=out) == 0
    assert out.getvalue() == "1 passed, 0 failed, 1 skipped\n"
