"""Reader for the bpf_conformance ``.data`` test format.

A file is a sequence of sections introduced by header lines (``-- asm``, ``-- result``, ``-- mem``,
``-- raw``, ``-- error``, plus ``-- c`` and ``-- no register offset``, which carry nothing a VM
needs).  This module reads them the way the upstream runner's parser does, so that a test means
here what it means there:

* lines are split on ``\\n`` only, one trailing ``\\r`` is dropped, and everything from the first
  ``#`` on is a comment, *before* a line is looked at as a header;
* any line containing ``--`` is a header; its section is chosen by substring, in the order
  ``asm``, ``result``, ``mem``, ``raw``, ``no register offset``, `` c``, ``error``; a header
  matching none of them makes upstream skip the whole file, and we report the same skip;
* empty lines are ignored everywhere; ``-- result`` and ``-- error`` keep their *last* line;
  ``-- mem`` and ``-- raw`` concatenate their whitespace-separated tokens over all lines;
* a ``-- raw`` section, if it has any word, replaces the assembled ``-- asm`` code;
* a file with neither a result nor a (non-empty) error, or with no instructions, is skipped.

Where upstream's C++ would silently accept junk (a result like ``0x1 junk``, a memory token above
0xff), this reader raises ``ValueError`` naming the file and line instead: such a file is broken,
and running it anyway would test nothing.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from kbpf.asm import AsmError, assemble

__all__ = ["ConformanceCase", "parse_data_file", "parse_data_text"]

_U64 = 1 << 64
_HEX = re.compile(r"([+-]?)0[xX]([0-9a-fA-F]+)")
_DEC = re.compile(r"([+-]?)([0-9]+)")
_HEX_BYTE = re.compile(r"(?:0[xX])?([0-9a-fA-F]{1,2})")

# Header keywords in upstream's order of precedence; None means "a section we ignore".
_SECTIONS = (
    ("asm", "asm"),
    ("result", "result"),
    ("mem", "mem"),
    ("raw", "raw"),
    ("no register offset", None),
    (" c", None),
    ("error", "error"),
)


@dataclass(frozen=True)
class ConformanceCase:
    """One ``.data`` test.

    ``asm`` is the assembly exactly as handed to the assembler (comments removed, empty lines
    dropped), with ``asm_lines`` giving each of its lines' line number in the file.  ``raw`` is
    the ``-- raw`` 64-bit words.  ``expected_result`` is r0 as an unsigned 64-bit value;
    ``expected_error`` the expected first line of the VM's error message.  ``skip_reason`` is set
    when upstream's runner would skip the file; such a case must not be run.
    """

    name: str
    path: Path | None
    asm: str | None
    raw: tuple[int, ...] | None
    mem: bytes
    expected_result: int | None
    expected_error: str | None
    skip_reason: str | None = None
    asm_lines: tuple[int, ...] = ()

    @cached_property
    def program(self) -> bytes:
        """The instructions: the ``-- raw`` words if any, else the assembled ``-- asm``.

        An assembly error is re-raised as ``AsmError`` numbered by the line of the *file*.
        """
        if self.raw is not None:
            return struct.pack(f"<{len(self.raw)}Q", *self.raw)
        if self.asm is None:
            return b""
        try:
            return assemble(self.asm)
        except AsmError as e:
            lineno = self.asm_lines[e.lineno - 1] if e.lineno <= len(self.asm_lines) else e.lineno
            raise AsmError(lineno, e.line, f"{e.reason} (in {self.name})") from None


class _Section:
    """Lines collected for one section kind, with their file line numbers."""

    __slots__ = ("lines", "numbers")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.numbers: list[int] = []


def _fail(name: str, lineno: int, what: str) -> ValueError:
    return ValueError(f"{name} line {lineno}: {what}")


def _u64(text: str, name: str, lineno: int, what: str) -> int:
    """A ``0x`` hex or decimal number, as ``stoull`` reads it (a leading ``-`` wraps mod 2**64)."""
    m = _HEX.fullmatch(text) or _DEC.fullmatch(text)
    if m is None:
        raise _fail(name, lineno, f"{what} '{text}' is not a 0x-hex or decimal number")
    sign, digits = m.groups()
    value = int(digits, 16 if m.re is _HEX else 10)
    if value >= _U64:
        raise _fail(name, lineno, f"{what} '{text}' does not fit in 64 bits")
    return (-value) % _U64 if sign == "-" else value


def parse_data_text(text: str, name: str = "<text>", path: Path | None = None) -> ConformanceCase:
    """Parse the text of a ``.data`` file; ``name`` is used in error messages."""
    sections: dict[str, _Section] = {
        k: _Section() for k in ("asm", "result", "mem", "raw", "error")
    }
    current: _Section | None = None
    skip: str | None = None
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        cut = line.find("#")
        if cut >= 0:
            line = line[:cut]
        if "--" in line:
            for keyword, kind in _SECTIONS:
                if keyword in line:
                    current = sections[kind] if kind else None
                    break
            else:
                skip = f"unknown directive '{line.strip()}' (line {lineno})"
                break
            continue
        if not line or current is None:
            continue
        current.lines.append(line)
        current.numbers.append(lineno)

    asm_s, res_s, mem_s, raw_s, err_s = (
        sections[k] for k in ("asm", "result", "mem", "raw", "error")
    )

    asm = "\n".join(asm_s.lines) if asm_s.lines else None
    expected_error = (err_s.lines[-1].strip() if err_s.lines else "") or None
    if skip is None and not res_s.lines and expected_error is None:
        skip = "no result or error"
    if skip is not None:
        # Upstream returns before reading any value, so neither do we: the negative/unused-*
        # files, for one, write bytes where words belong and are never meant to be decoded.
        return ConformanceCase(
            name, path, asm, None, b"", None, expected_error, skip, tuple(asm_s.numbers)
        )

    expected_result = None
    if res_s.lines:
        expected_result = _u64(res_s.lines[-1].strip(), name, res_s.numbers[-1], "result")

    mem = bytearray()
    for line, lineno in zip(mem_s.lines, mem_s.numbers, strict=True):
        for tok in line.split():
            m = _HEX_BYTE.fullmatch(tok)
            if m is None:
                raise _fail(name, lineno, f"memory byte '{tok}' is not a hex byte (00..ff)")
            mem.append(int(m.group(1), 16))

    words = [
        _u64(tok, name, lineno, "raw instruction word")
        for line, lineno in zip(raw_s.lines, raw_s.numbers, strict=True)
        for tok in line.split()
    ]
    has_code = bool(words) or any(
        any(not tok.endswith(":") for tok in line.split()) for line in asm_s.lines
    )
    if not has_code:
        skip = "no instructions"
    return ConformanceCase(
        name=name,
        path=path,
        asm=asm,
        raw=tuple(words) if words else None,
        mem=bytes(mem),
        expected_result=expected_result,
        expected_error=expected_error,
        skip_reason=skip,
        asm_lines=tuple(asm_s.numbers),
    )


def parse_data_file(path: str | Path) -> ConformanceCase:
    """Parse one ``.data`` file.  Raises ``OSError`` if unreadable, ``ValueError`` if malformed."""
    path = Path(path)
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        text = f.read()
    return parse_data_text(text, name=path.name, path=path)
