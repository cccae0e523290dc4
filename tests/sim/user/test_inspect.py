"""``kbpf-sim inspect OBJECT.bpf.o``: maps, programs, sections and the relocated disassembly,
and exit 2 with a one-paragraph message (no traceback) on a bad file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbpf.asm import assemble
from sim.cli import main
from sim.user.loader import BpfObject, program_listing

from .conftest import PROGS, ObjectBytes, obj_path

ROOT = Path(__file__).resolve().parents[3]


def inspect(path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["inspect", str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_lists_maps_programs_and_sections():
    code, out, _ = inspect(obj_path("globals"))
    assert code == 0
    assert out.startswith(
        f"{obj_path('globals')}: object 'globals', license 'GPL', 4 maps, 3 programs"
    )
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  glob")}
    assert rows["globals.rodata"][:7] == [
        "globals.rodata",
        "array",
        "4",
        "46",
        "1",
        "0x480",
        "RDONLY_PROG|MMAPABLE",
    ]
    assert rows["globals.bss"][:5] == ["globals.bss", "array", "4", "56", "1"]
    assert re.search(r"^  bump +tracepoint/demo/bump +tracepoint +39$", out, re.M)
    assert re.search(r"^  write_rodata +tp/demo/bad +tracepoint +6$", out, re.M)
    assert re.search(r"^ +11 +\.bss +NOBITS +56 +WA +zeroed global data$", out, re.M)
    assert re.search(r"^ +\d+ +\.BTF\.ext .*ignored", out, re.M)


def test_btf_maps_show_their_key_and_value_types():
    _, out, _ = inspect(obj_path("types"))
    assert re.search(r"^  shapes +array +4 +64 +1 +0 +\.maps  __u32 -> shape_t$", out, re.M)
    assert re.search(r"^  shape_xdp +xdp +xdp +28$", out, re.M)


def test_disassembly_is_relocated_with_maps_by_name():
    _, out, _ = inspect(obj_path("globals"))
    listing = out.split("Disassembly of bump (section tracepoint/demo/bump, 39 instructions):\n")[1]
    lines = listing.splitlines()
    assert lines[0] == "  bump:"
    assert lines[1] == "      0: lddw %r1, map_value globals.bss, 8"
    assert "     19: lddw %r1, map_value globals.rodata, 0" in lines
    assert "     33: lddw %r1, map_value globals.rodata, 24" in lines  # the printk format
    _, out, _ = inspect(obj_path("counters"))
    assert "      4: lddw %r1, map_fd counts" in out.splitlines()


def test_disassembly_shows_appended_subprograms_and_call_targets():
    _, out, _ = inspect(obj_path("calls"))
    listing = out.split("Disassembly of calc (section tracepoint/demo/calc, 26 instructions):\n")[1]
    lines = listing.split("\n\n")[0].splitlines()
    assert [ln.strip() for ln in lines if ln.endswith(":")] == [
        "calc:",
        "sum_of_squares:",
        "square:",
        "add3:",
    ]
    assert "      4: call local +7    ; -> sum_of_squares" in lines
    assert "     16: call local +2    ; -> square" in lines
    _, out, _ = inspect(obj_path("callbacks"))
    assert "      7: lddw %r2, func +5    ; -> add_index" in out.splitlines()


def test_listing_reassembles_to_the_loaded_instructions():
    """Apart from the names standing in for fds, each line is kbpf.asm syntax."""
    prog = BpfObject.open(obj_path("callbacks")).programs["each_sum"]
    text = "\n".join(
        re.sub(r"^\s*\d+: ", "", ln).split(";")[0].replace("map_fd values", "map_fd 0")
        for ln in program_listing(prog)
        if not ln.endswith(":")
    )
    assert assemble(text) == prog.instructions()


def test_bad_files_exit_2_naming_the_file(tmp_path):
    code, out, err = inspect(tmp_path / "missing.bpf.o")
    assert code == 2 and out == ""
    assert err == f"kbpf-sim: error: {tmp_path / 'missing.bpf.o'}: no such file\n"
    obj = ObjectBytes("counters")
    obj.put(obj.section_offset(".BTF"), "<H", 0)
    code, _, err = inspect(obj.write(tmp_path))
    assert code == 2 and "counters.bpf.o: BTF: bad magic 0x0000" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_file_from_the_real_command_has_no_traceback(tmp_path):
    bad = tmp_path / "notelf.bpf.o"
    bad.write_bytes(b"\x7fELG" + bytes(100))
    r = subprocess.run(
        [sys.executable, "-m", "sim.cli", "inspect", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"kbpf-sim: error: {bad}: not an ELF file (no \\x7fELF magic)\n"
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(
    shutil.which("clang-14") is None or shutil.which("make") is None,
    reason="clang-14 and make are needed to rebuild tests/progs",
)
def test_committed_objects_match_a_fresh_build():
    r = subprocess.run(
        ["make", "-s", "-C", str(PROGS), "check"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
    sources = sorted(p.name for p in PROGS.glob("*.bpf.c"))
    assert sorted(p.name for p in PROGS.glob("*.bpf.o")) == [s[:-1] + "o" for s in sources]
