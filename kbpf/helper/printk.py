"""``bpf_trace_printk`` and ``bpf_trace_vprintk``: Linux v6.6's format checking and printing.

Two steps, as in the kernel:

1. :func:`bprintf_prepare` (``bpf_bprintf_prepare``, kernel/bpf/helpers.c) walks the format,
   rejects what BPF may not print (-EINVAL), and captures each argument: integers truncated to
   their C size, ``%s`` strings copied from memory at once (so the program cannot change them
   afterwards), ``%pI4``-style addresses and ``%pB`` symbols pre-formatted.  The captured
   arguments share a 512-byte buffer (``MAX_BPRINTF_BIN_ARGS``): a string is cut to what is left
   of it, and an argument that no longer fits is -ENOSPC.
2. :func:`bstr_printf` (lib/vsprintf.c) renders the result into a 1024-byte buffer
   (``MAX_BPRINTF_BUF``): the text is cut to 1023 bytes, the return value is the full length.

What the format may contain: printable ASCII and whitespace; ``%%``; flags ``0 + - space`` and a
width, but no precision, ``#`` or ``*``; conversions ``d i u x X`` with ``l``/``ll``, ``c``,
``s``, ``p`` and ``pK px ps pS pB pks pus pi4 pI4 pi6 pI6``.  At most three arguments for
``trace_printk`` (its registers r3..r5), twelve for ``trace_vprintk``.

Pointers print as Linux prints them with ``kptr_restrict = 0``: ``%p`` and ``%pK`` hashed
(16 hex digits, the upper 8 zero), ``%px`` raw; ``%ps``/``%pS``/``%pB`` as symbols, and since a
kbpf host has no kernel symbol table every address prints as ``0x<hex>`` (what ``sprint_symbol``
prints for an unknown address).  ``%s`` reads user memory below ``TASK_SIZE`` and kernel memory
above it (x86-64), ``%pks``/``%pus`` say which; an unreadable string prints as empty.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from kbpf.errors import BpfError
from kbpf.helper.basic import (
    HelperEnv,
    copy_from_kernel_nofault,
    strncpy_from_kernel_nofault,
    strncpy_from_user_nofault,
)
from kbpf.host import Op, Touch
from kbpf.linux_bpf import TASK_SIZE_MAX

MAX_BPRINTF_BUF = 1024
MAX_BPRINTF_BIN_ARGS = 512
MAX_BPRINTF_VARARGS = 12
MAX_TRACE_PRINTK_VARARGS = 3
U64 = (1 << 64) - 1
MAX_ERRNO = 4095

# printf_spec flags
LEFT, PLUS, SPACE, ZEROPAD = 1, 2, 4, 8
_FLAG_CHARS = {ord("-"): LEFT, ord("+"): PLUS, ord(" "): SPACE, ord("0"): ZEROPAD}
_PUNCT = frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_SPACE = frozenset(b" \t\n\v\f\r")
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@dataclass(frozen=True, slots=True)
class Conv:
    """One captured conversion: ``kind`` is ``num``, ``char``, ``str``, ``ptr`` (with ``ext``,
    the character after ``p``) or ``pre`` (text pre-formatted by the prepare step, printed
    as is)."""

    kind: str
    value: object
    flags: int = 0
    width: int = -1
    signed: bool = False
    base: int = 10
    upper: bool = False
    ext: str = ""


class _ArgBuf:
    """The 512-byte ``bin_args`` buffer's fill level, for the ENOSPC and string-cut rules."""

    def __init__(self) -> None:
        self.used = 0

    def align4(self) -> None:
        self.used = (self.used + 3) & ~3

    def room(self) -> int:
        return MAX_BPRINTF_BIN_ARGS - self.used

    def take(self, n: int) -> None:
        self.used = min(self.used + n, MAX_BPRINTF_BIN_ARGS)


def _copy_string(env: HelperEnv, ptr: int, ptype: str, bufsz: int) -> Op:
    """``bpf_trace_copy_string``: a C string of at most ``bufsz`` bytes (NUL included) from
    user (``u``, or ``s`` below TASK_SIZE) or kernel memory; returns (bytes without NUL,
    bytes used in the argument buffer); an unreadable string is empty and uses 1 byte."""
    host = env.host
    if ptype == "u" or (ptype == "s" and ptr < TASK_SIZE_MAX):
        ret, data = strncpy_from_user_nofault(host, ptr, bufsz)
    else:
        ret, data = strncpy_from_kernel_nofault(host, ptr, bufsz)
        if ret > 0:
            yield Touch(ptr, len(data))
    if ret <= 0:
        return b"", 1 if ret < 0 else len(data)
    return data.rstrip(b"\0")[: bufsz - 1], ret


def _ip_string(raw: bytes, ext: str) -> bytes:
    """``%pI4 %pi4 %pI6 %pi6`` of 4 or 16 bytes (lib/vsprintf.c ``ip4_string``/``ip6_string``)."""
    if ext[1] == "4":
        fmt = "{:d}" if ext[0] == "I" else "{:03d}"
        return ".".join(fmt.format(b) for b in raw).encode()
    groups = [raw[i : i + 2].hex() for i in range(0, 16, 2)]
    return (":" if ext[0] == "I" else "").join(groups).encode()


def bprintf_prepare(env: HelperEnv, fmt: bytes, raw_args: list[int]) -> Op:
    """``bpf_bprintf_prepare``: check ``fmt`` (a buffer that must contain a NUL) against the
    ``len(raw_args)`` arguments and capture them.  Returns the list of literal ``bytes`` and
    :class:`Conv` pieces :func:`bstr_printf` renders.  -EINVAL for a bad format, -ENOSPC when
    the captured arguments overflow their buffer."""
    end = fmt.find(b"\0")
    if end < 0:
        raise BpfError(errno.EINVAL, "format string is not NUL-terminated within fmt_size")
    fmt = fmt[:end] + bytes(4)  # the NUL, and room for look-ahead past it
    num_args = len(raw_args)
    buf = _ArgBuf()
    pieces: list[bytes | Conv] = []
    lit = bytearray()
    num_spec = 0
    skip_alnum = False  # bstr_printf skips the alphanumerics after a %p conversion
    i = 0
    while i < end:
        c = fmt[i]
        if c >= 0x80 or not (0x20 <= c < 0x7F or c in _SPACE):
            raise BpfError(errno.EINVAL, f"format byte {c:#04x} at {i} is not printable ASCII")
        if c != 0x25:  # '%'
            if skip_alnum and c in _ALNUM:
                i += 1
                continue
            skip_alnum = False
            lit.append(c)
            i += 1
            continue
        skip_alnum = False
        if fmt[i + 1] == 0x25:
            lit.append(0x25)
            i += 2
            continue
        if num_spec >= num_args:
            raise BpfError(
                errno.EINVAL, f"format has more conversions than the {num_args} arguments"
            )
        start = i
        i += 1
        flags = 0
        while fmt[i] in _FLAG_CHARS:
            flags |= _FLAG_CHARS[fmt[i]]
            i += 1
        width = -1
        if 0x31 <= fmt[i] <= 0x39:
            j = i
            while 0x30 <= fmt[i] <= 0x39:
                i += 1
            width = int(fmt[j:i])
        if lit:
            pieces.append(bytes(lit))
            lit.clear()
        arg = raw_args[num_spec]
        ch = chr(fmt[i])
        nxt = fmt[i + 1]
        if ch == "p":
            if nxt == 0 or nxt in _SPACE or nxt in _PUNCT:
                conv = Conv("ptr", arg, flags, width, ext="")
            elif chr(nxt) in "ku" and fmt[i + 2] == ord("s"):
                ptype = chr(nxt)
                i += 2
                conv = yield from _capture_string(env, fmt, i, arg, ptype, buf, flags, width)
                conv = Conv("pre", conv.value)
            elif chr(nxt) in "KxsS":
                conv = Conv("ptr", arg, flags, width, ext=chr(nxt))
                i += 1
            elif chr(nxt) == "B":
                text = f"0x{arg:x}".encode()[: max(buf.room() - 1, 0)]
                buf.take(len(f"0x{arg:x}") + 1)
                conv = Conv("pre", text)
                i += 1
            elif chr(nxt) in "iI" and chr(fmt[i + 2]) in "46":
                ext = chr(nxt) + chr(fmt[i + 2])
                i += 2
                size = 4 if ext[1] == "4" else 16
                if buf.room() < size:
                    raise BpfError(errno.ENOSPC, "printk arguments overflow their buffer")
                try:
                    raw = copy_from_kernel_nofault(env.host, arg, size)
                    yield Touch(arg, size)
                except BpfError:
                    raw = bytes(size)
                text = _ip_string(raw, ext)
                room = buf.room()
                buf.take(len(text) + 1)
                conv = Conv("pre", text[: max(room - 1, 0)])
            else:
                raise BpfError(
                    errno.EINVAL, f"unsupported pointer format %p{chr(nxt)} at offset {start}"
                )
            if conv.kind == "ptr":
                buf.align4()
                if buf.room() < 8:
                    raise BpfError(errno.ENOSPC, "printk arguments overflow their buffer")
                buf.take(8)
            skip_alnum = True
            pieces.append(conv)
            num_spec += 1
            i += 1
            continue
        if ch == "s":
            conv = yield from _capture_string(env, fmt, i, arg, "s", buf, flags, width)
            pieces.append(conv)
            num_spec += 1
            i += 1
            continue
        if ch == "c":
            if buf.room() == 0:
                raise BpfError(errno.ENOSPC, "printk arguments overflow their buffer")
            buf.take(1)
            pieces.append(Conv("char", arg & 0xFF, flags, width))
            num_spec += 1
            i += 1
            continue
        nbits = 32
        if ch == "l":
            nbits = 64
            i += 1
            if fmt[i] == ord("l"):
                i += 1
            ch = chr(fmt[i])
        if ch not in "iduxX":
            raise BpfError(
                errno.EINVAL,
                f"unsupported conversion {fmt[start : i + 1].decode(errors='replace')!r} "
                f"at offset {start}",
            )
        buf.align4()
        if buf.room() < nbits // 8:
            raise BpfError(errno.ENOSPC, "printk arguments overflow their buffer")
        buf.take(nbits // 8)
        value = arg & ((1 << nbits) - 1)
        signed = ch in "di"
        if signed and value >> (nbits - 1):
            value -= 1 << nbits
        base = 10 if ch in "diu" else 16
        pieces.append(Conv("num", value, flags, width, signed, base, ch == "X"))
        num_spec += 1
        i += 1
    if lit:
        pieces.append(bytes(lit))
    return pieces


def _capture_string(env, fmt, i, arg, ptype, buf: _ArgBuf, flags, width) -> Op:
    """The ``fmt_str`` branch: the character after ``s`` must end the conversion, and the
    string is copied into what is left of the argument buffer."""
    nxt = fmt[i + 1]
    if nxt != 0 and nxt not in _SPACE and nxt not in _PUNCT:
        raise BpfError(errno.EINVAL, f"%s followed by {chr(nxt)!r}")
    if buf.room() == 0:
        raise BpfError(errno.ENOSPC, "printk arguments overflow their buffer")
    text, used = yield from _copy_string(env, arg, ptype, buf.room())
    buf.take(used)
    return Conv("str", text, flags, width)


# ---------------------------------------------------------------------------------------------
# Rendering (lib/vsprintf.c)
# ---------------------------------------------------------------------------------------------


def _number(num: int, base: int, flags: int, width: int, signed: bool, upper: bool) -> bytes:
    """lib/vsprintf.c ``number()`` without precision or ``#`` (BPF allows neither)."""
    if flags & LEFT:
        flags &= ~ZEROPAD
    sign = b""
    if signed:
        if num < 0:
            sign, num = b"-", -num
        elif flags & PLUS:
            sign = b"+"
        elif flags & SPACE:
            sign = b" "
    digits = (f"{num:X}" if upper else f"{num:x}") if base == 16 else str(num)
    pad = width - len(sign) - len(digits)
    out = bytearray()
    if not flags & (ZEROPAD | LEFT) and pad > 0:
        out += b" " * pad
        pad = 0
    out += sign
    if not flags & LEFT and pad > 0:
        out += (b"0" if flags & ZEROPAD else b" ") * pad
        pad = 0
    out += digits.encode()
    if pad > 0:
        out += b" " * pad
    return bytes(out)


def _widen(text: bytes, flags: int, width: int) -> bytes:
    """``widen_string``: strings and characters pad with spaces, on the left unless ``-``."""
    if width <= len(text):
        return text
    fill = b" " * (width - len(text))
    return text + fill if flags & LEFT else fill + text


def _pointer_string(ptr: int, flags: int, width: int) -> bytes:
    """``pointer_string``: hex, 16 zero-padded digits unless a width was given."""
    if width == -1:
        width, flags = 16, flags | ZEROPAD
    return _number(ptr, 16, flags, width, False, False)


def _render(env: HelperEnv, piece: bytes | Conv) -> bytes:
    if isinstance(piece, bytes):
        return piece
    kind = piece.kind
    if kind == "num":
        return _number(piece.value, piece.base, piece.flags, piece.width, piece.signed, piece.upper)
    if kind == "str":
        return _widen(piece.value, piece.flags, piece.width)
    if kind == "char":
        return _widen(bytes([piece.value]), piece.flags, piece.width)
    if kind == "pre":
        return piece.value
    ptr, ext = piece.value & U64, piece.ext
    if ext == "x":
        return _pointer_string(ptr, piece.flags, piece.width)
    if ext in ("s", "S"):
        return _widen(f"0x{ptr:x}".encode(), piece.flags, piece.width)
    # %p and %pK (kptr_restrict = 0): hashed, except NULL and error pointers
    if ptr == 0 or ptr >= (1 << 64) - MAX_ERRNO:
        return _pointer_string(ptr, piece.flags, piece.width)
    return _pointer_string(env.ptr_hash(ptr), piece.flags, piece.width)


def bstr_printf(env: HelperEnv, pieces: list[bytes | Conv], size: int = MAX_BPRINTF_BUF):
    """Render prepared pieces into a ``size``-byte buffer: returns ``(text, length)`` where
    ``text`` is cut to ``size - 1`` bytes and ``length`` is the untruncated length."""
    out = b"".join(_render(env, p) for p in pieces)
    return out[: size - 1], len(out)


# ---------------------------------------------------------------------------------------------
# The helpers
# ---------------------------------------------------------------------------------------------


def _printk(env: HelperEnv, fmt_ptr: int, fmt_size: int, args: list[int]) -> Op:
    host = env.host
    if fmt_size:
        yield Touch(fmt_ptr, fmt_size)
        fmt = host.read(fmt_ptr, fmt_size)
    else:
        fmt = b""
    pieces = yield from bprintf_prepare(env, fmt, args)
    text, length = bstr_printf(env, pieces)
    host.ebpf_write_str(text.decode("utf-8", "replace"))
    return length


def trace_printk(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """6 ``bpf_trace_printk(fmt, fmt_size, arg1, arg2, arg3)``: the printed length (before the
    1023-byte cut), or -EINVAL for a bad format."""
    return (yield from _printk(env, r1, r2 & 0xFFFFFFFF, [r3, r4, r5]))


def trace_vprintk(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """177 ``bpf_trace_vprintk(fmt, fmt_size, args, data_len)``: like trace_printk with up to
    12 u64 arguments in an array; ``data_len`` must be a multiple of 8 and at most 96, and
    non-zero only with ``args`` (-EINVAL)."""
    data_len = r4 & 0xFFFFFFFF
    if data_len & 7 or data_len > MAX_BPRINTF_VARARGS * 8 or (data_len and not r3):
        raise BpfError(errno.EINVAL, f"trace_vprintk data_len {data_len} / args {r3:#x} invalid")
    args: list[int] = []
    if data_len:
        yield Touch(r3, data_len)
        raw = env.host.read(r3, data_len)
        args = [int.from_bytes(raw[k : k + 8], "little") for k in range(0, data_len, 8)]
    return (yield from _printk(env, r1, r2 & 0xFFFFFFFF, args))
