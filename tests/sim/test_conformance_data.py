"""The ``.data`` reader (``sim.conformance_data``), on the vendored suite and on small texts that
pin down each rule of upstream's parser (bpf_conformance ``lib/src/bpf_test_parser.cc``)."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import pytest

from kbpf.asm import AsmError, assemble
from sim.conformance_data import ConformanceCase, parse_data_file, parse_data_text

DATA = Path(__file__).resolve().parents[1] / "conformance"
DATA_FILES = sorted(DATA.glob("*.data"))
MANIFEST = {row["file"]: row for row in csv.DictReader((DATA / "MANIFEST.csv").open())}


# --- the vendored suite ------------------------------------------------------------------------


def test_the_vendored_suite_is_complete() -> None:
    assert len(DATA_FILES) == 313
    assert len(list((DATA / "negative").glob("*.data"))) == 60
    assert set(MANIFEST) == {p.name for p in DATA_FILES}
    for name in ("LICENSE.Apache-2.0", "LICENSE.bpf_conformance", "README.md"):
        assert (DATA / name).is_file()


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.name)
def test_every_suite_file_parses_assembles_and_has_a_result(path: Path) -> None:
    case = parse_data_file(path)
    assert case.name == path.name
    assert case.skip_reason is None
    assert case.expected_error is None
    assert case.expected_result == int(MANIFEST[path.name]["expected_r0"], 16)
    assert case.asm is not None
    assert case.program and len(case.program) % 8 == 0
    if case.raw is None:
        assert case.program == assemble(case.asm)
    assert ("mem" in MANIFEST[path.name]["features"]) == bool(case.mem)


def test_suite_counts_match_the_reference_notes() -> None:
    cases = [parse_data_file(p) for p in DATA_FILES]
    assert sum(1 for c in cases if c.mem) == 40
    assert [c.name for c in cases if c.raw is not None] == ["lddw.data"]


def test_raw_words_replace_the_assembly() -> None:
    case = parse_data_file(DATA / "lddw.data")
    assert case.raw == (0x5566778800000018, 0x1122334400000000, 0x0000000000000095)
    assert case.program == struct.pack("<3Q", *case.raw)
    assert case.program[0] == 0x18  # each word is little-endian: the opcode is its low byte


def test_mem_is_the_concatenated_hex_bytes() -> None:
    case = parse_data_file(DATA / "le16-high.data")
    assert case.mem == bytes.fromhex("221100ffeeddccbbaa")


def test_c_and_no_register_offset_sections_are_ignored() -> None:
    prime = parse_data_file(DATA / "prime.data")
    assert "uint64_t" not in (prime.asm or "") and prime.asm.startswith("mov %r1, 67")
    callx = parse_data_file(DATA / "callx.data")
    assert "call instruction" not in (callx.asm or "")
    assert callx.expected_result == 2


# --- negative/ ----------------------------------------------------------------------------------

ASSEMBLER_ERRORS = [
    "invalid_imm32_dec_range.data",
    "invalid_imm32_hex_range.data",
    "invalid_label.data",
    "invalid_lock.data",
    "invalid_lock2.data",
    "invalid_mnemonic.data",
    "invalid_offset.data",
    "invalid_offset_range.data",
    "invalid_operand_count.data",
    "invalid_register.data",
]


@pytest.mark.parametrize("name", ASSEMBLER_ERRORS)
def test_negative_assembler_errors_name_the_file_line(name: str) -> None:
    path = DATA / "negative" / name
    case = parse_data_file(path)
    assert case.skip_reason is None
    with pytest.raises(AsmError) as info:
        _ = case.program
    file_line = path.read_text().split("\n")[info.value.lineno - 1]
    assert file_line.split("#")[0].strip() == info.value.line.strip()
    assert name in str(info.value)


def test_negative_files_that_upstream_skips() -> None:
    skips = {
        p.name: parse_data_file(p).skip_reason for p in sorted((DATA / "negative").glob("*.data"))
    }
    unused = [n for n in skips if n.startswith("unused-")]
    assert len(unused) == 45
    assert all(skips[n] == "no result or error" for n in unused)
    assert skips["empty.data"] == "no result or error"
    assert skips["empty_instructions.data"] == "no instructions"
    assert skips["invalid_unknown_directive.data"].startswith("unknown directive '-- Unknown")
    runnable = {n for n, why in skips.items() if why is None}
    assert runnable == set(ASSEMBLER_ERRORS) | {
        "error.data",
        "incorrect_return_value_high_bits.data",
    }


def test_negative_runner_checks_parse_into_expectations() -> None:
    err = parse_data_file(DATA / "negative" / "error.data")
    assert (err.expected_error, err.expected_result) == ("Invalid", None)
    high = parse_data_file(DATA / "negative" / "incorrect_return_value_high_bits.data")
    assert high.expected_result == 0x8977665544332211
    assert high.mem == bytes.fromhex("aabb1122334455667788ccdd")


# --- the format rules, one by one ------------------------------------------------------------------


def parse(text: str) -> ConformanceCase:
    return parse_data_text(text, name="t.data")


def test_comments_are_cut_before_headers_are_recognised() -> None:
    case = parse(
        "# -- raw would be a header\n-- asm # trailing\nexit # done\n-- result\n0x1 # r0\n"
    )
    assert case.asm == "exit "
    assert case.raw is None
    assert case.expected_result == 1


def test_result_keeps_the_last_line_and_reads_hex_or_decimal() -> None:
    assert parse("-- asm\nexit\n-- result\n0x5\n\n42\n").expected_result == 42
    assert parse("-- asm\nexit\n-- result\n0xFFFFFFFFFFFFFFFF\n").expected_result == 2**64 - 1
    assert parse("-- asm\nexit\n-- result\n-1\n").expected_result == 2**64 - 1  # as stoull


def test_header_keyword_precedence_follows_upstream() -> None:
    """``-- asm result`` is an asm header: ``asm`` is tested first."""
    case = parse("-- asm result\nexit\n-- result\n7")
    assert case.asm == "exit" and case.expected_result == 7


def test_crlf_line_endings() -> None:
    case = parse("-- asm\r\nmov %r0, 3\r\nexit\r\n-- result\r\n0x3\r\n-- mem\r\n01 02\r\n")
    assert case.program == assemble("mov %r0, 3\nexit")
    assert case.mem == b"\x01\x02"


def test_mem_spans_lines_and_accepts_0x_prefixes() -> None:
    case = parse("-- asm\nexit\n-- mem\n00 ff\n0x10\n  7f\n-- result\n0")
    assert case.mem == bytes([0x00, 0xFF, 0x10, 0x7F])


def test_error_section_keeps_its_trimmed_last_line() -> None:
    case = parse("-- asm\nexit\n-- error\n  first  \n  Invalid instruction  \n")
    assert case.expected_error == "Invalid instruction"
    assert case.expected_result is None
    assert case.skip_reason is None


def test_empty_error_and_no_result_is_skipped_without_reading_values() -> None:
    case = parse("-- raw\n07 00 01 zz\n-- error\n")
    assert case.skip_reason == "no result or error"
    assert case.raw is None


def test_unknown_directive_skips_the_file() -> None:
    case = parse("-- asm\nexit\n-- elf\n-- result\n0x0")
    assert case.skip_reason == "unknown directive '-- elf' (line 3)"


def test_labels_alone_are_no_instructions() -> None:
    assert parse("-- asm\nstart:\n-- result\n0").skip_reason == "no instructions"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- asm\nexit\n-- result\n0x1 junk\n", "t.data line 4: result '0x1 junk'"),
        ("-- asm\nexit\n-- result\n0x10000000000000000\n", "does not fit in 64 bits"),
        ("-- asm\nexit\n-- mem\n00 100\n-- result\n0\n", "t.data line 4: memory byte '100'"),
        ("-- raw\n0x95 nine\n-- result\n0\n", "t.data line 2: raw instruction word 'nine'"),
    ],
)
def test_malformed_values_are_errors_naming_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse(text)


def test_assembly_errors_are_numbered_by_file_line() -> None:
    case = parse("# header\n-- asm\n\nmov %r0, 1\n# comment\nmov %r0, %r12\nexit\n-- result\n1")
    with pytest.raises(AsmError) as info:
        _ = case.program
    assert info.value.lineno == 6
    assert "bad register '%r12'" in str(info.value)
