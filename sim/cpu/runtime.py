"""What compiled programs call at run time: the budget, slow memory paths, arithmetic helpers.

The generated code (:mod:`sim.cpu.codegen`) keeps its fast paths inline — registers as locals,
a per-site cache of the region an access found last — and calls into this module only when an
access misses its cache, when an operation is rare (signed division, byte swaps) or when
something is wrong (a fault, an exhausted budget, a frame too many).
"""

from __future__ import annotations

import errno
import struct

from kbpf.errors import BpfError
from sim.cpu.regions import ProgramFault, RegionSet

M64 = 0xFFFFFFFFFFFFFFFF
M32 = 0xFFFFFFFF
SIGN64 = 0x8000000000000000
SIGN32 = 0x80000000

#: Bytes of stack per frame and the deepest call chain (Linux: MAX_BPF_STACK, MAX_CALL_FRAMES).
FRAME_SIZE = 512
MAX_FRAMES = 8

_UNSIGNED = {
    1: struct.Struct("<B"),
    2: struct.Struct("<H"),
    4: struct.Struct("<I"),
    8: struct.Struct("<Q"),
}
_SIGNED = {
    1: struct.Struct("<b"),
    2: struct.Struct("<h"),
    4: struct.Struct("<i"),
    8: struct.Struct("<q"),
}
_MASK = {1: 0xFF, 2: 0xFFFF, 4: M32, 8: M64}

#: ``unpack_from``/``pack_into`` bound methods by size, for the generated code's namespace.
UNPACK = {n: s.unpack_from for n, s in _UNSIGNED.items()}
UNPACK_SIGNED = {n: s.unpack_from for n, s in _SIGNED.items()}
PACK = {n: s.pack_into for n, s in _UNSIGNED.items()}


class Budget:
    """The instruction budget of one invocation, shared with the callbacks it runs.

    ``left`` counts down as blocks execute (it may go negative by less than one block before a
    check notices); a run fails with ELOOP when it is negative at a backward jump, a call or an
    exit.  While the program is inside a helper call, ``r10`` holds the frame pointer of the
    calling frame, so that a callback the helper makes (``bpf_loop``) runs in the next frame
    down, as Linux gives callbacks a frame of their own; ``rt`` is the invocation's runtime
    (regions, stack, helpers) for such callbacks.
    """

    __slots__ = ("limit", "left", "r10", "rt")

    def __init__(self, limit: int = 1_000_000):
        self.limit = limit
        self.left = limit
        self.r10 = None
        self.rt = None

    @property
    def used(self) -> int:
        """Instructions executed so far."""
        return self.limit - self.left

    def __repr__(self) -> str:
        return f"Budget({self.used}/{self.limit} used)"


# --------------------------------------------------------------------------------------------
# Errors raised from generated code
# --------------------------------------------------------------------------------------------


def budget_exhausted(name: str, bud: Budget, pc: int):
    raise BpfError(
        errno.ELOOP, f"prog '{name}': instruction budget of {bud.limit} exhausted at insn {pc}"
    )


def too_deep(name: str, pc: int):
    raise BpfError(
        errno.E2BIG,
        f"prog '{name}': insn {pc}: call nested too deep (more than {MAX_FRAMES} frames of "
        f"{FRAME_SIZE} bytes, or more than the stack provides)",
    )


def no_helper(name: str, helper_id: int, pc: int):
    raise BpfError(errno.EINVAL, f"prog '{name}': insn {pc}: call to unknown helper {helper_id}")


def stack_fault(name: str, pc: int, addr: int, size: int, write: bool, off: int):
    kind = "write" if write else "read"
    raise ProgramFault(
        name,
        pc,
        addr & M64,
        f"{kind} of {size} bytes at {addr & M64:#x} (r10{off:+d}) outside its {FRAME_SIZE}-byte "
        "stack frame",
    )


def _fault(name: str, rs: RegionSet, pc: int, addr: int, size: int, write: bool):
    kind = "write" if write else "read"
    r = rs.containing(addr)
    if r is None:
        why = "outside any region it may touch"
    elif addr + size > r.end:
        why = f"running past the end of region {r.name!r} [{r.start:#x}, {r.end:#x})"
    else:
        why = f"into read-only region {r.name!r}"
    raise ProgramFault(name, pc, addr, f"{kind} of {size} bytes at {addr:#x} {why}")


# --------------------------------------------------------------------------------------------
# Slow memory paths (a site's cached region did not hold the address)
#
# Each returns what the access produced and the site's new cache (lo, hin, d, buf): a hit is
# ``lo <= a <= hin`` and the byte at ``a`` is ``buf[a - d]``.  Regions without a flat buffer
# are never cached (hin = -1), so every access to them comes back here.
# --------------------------------------------------------------------------------------------

_NOCACHE = (1, -1, 0, None)


def _cache(r, n: int):
    if r.buf is None:
        return _NOCACHE
    return r.start, r.end - n, r.start - r.base, r.buf


def _get(r, a: int, n: int, signed: bool) -> int:
    if r.buf is not None:
        o = r.base + a - r.start
        if signed:
            return _SIGNED[n].unpack_from(r.buf, o)[0] & M64
        return _UNSIGNED[n].unpack_from(r.buf, o)[0]
    return int.from_bytes(r.reader(a, n), "little", signed=signed) & M64


def _put(r, a: int, n: int, v: int) -> None:
    if r.buf is not None:
        _UNSIGNED[n].pack_into(r.buf, r.base + a - r.start, v & _MASK[n])
    else:
        r.write(a, (v & _MASK[n]).to_bytes(n, "little"))


def _atomic(r, a: int, n: int, op: int, v: int, r0: int) -> int:
    """Apply atomic ``op`` (the instruction's imm) of width ``n`` at ``a``; return the old value."""
    mask = _MASK[n]
    old = _get(r, a, n, False)
    v &= mask
    code = op & ~0x01
    if code == 0x00:
        new = (old + v) & mask
    elif code == 0x40:
        new = old | v
    elif code == 0x50:
        new = old & v
    elif code == 0xA0:
        new = old ^ v
    elif code == 0xE0:
        new = v
    elif code == 0xF0:
        if old != r0 & mask:
            return old
        new = v
    else:  # pragma: no cover - the load-time checks reject other operations
        raise BpfError(errno.EINVAL, f"invalid atomic operation {op:#x}")
    _put(r, a, n, new)
    return old


def load(name, rs, a, n, signed, pc):
    a &= M64
    r = rs.find(a, n, False)
    if r is None:
        _fault(name, rs, pc, a, n, False)
    return (_get(r, a, n, signed), *_cache(r, n))


def store(name, rs, a, n, v, pc):
    a &= M64
    r = rs.find(a, n, True)
    if r is None:
        _fault(name, rs, pc, a, n, True)
    _put(r, a, n, v)
    return _cache(r, n)


def atomic(name, rs, a, n, op, v, r0, pc):
    a &= M64
    r = rs.find(a, n, True)
    if r is None:
        _fault(name, rs, pc, a, n, True)
    return (_atomic(r, a, n, op, v, r0), *_cache(r, n))


# Timed forms: the same, meeting the clock first when the region is shared.  They are
# generators used with ``yield from``; each returns the access's result, the new local time
# and horizon, and the site's new cache with its ``shared`` flag.


def load_t(name, rs, access, a, n, signed, pc, t, horizon, private_ps):
    a &= M64
    r = rs.find(a, n, False)
    if r is None:
        _fault(name, rs, pc, a, n, False)
    if r.shared:
        if t > horizon:
            horizon = yield t
        t += access(a, n, False, t)
    else:
        t += private_ps
    return (_get(r, a, n, signed), t, horizon, *_cache(r, n), r.shared)


def store_t(name, rs, access, a, n, v, pc, t, horizon, private_ps):
    a &= M64
    r = rs.find(a, n, True)
    if r is None:
        _fault(name, rs, pc, a, n, True)
    if r.shared:
        if t > horizon:
            horizon = yield t
        t += access(a, n, True, t)
    else:
        t += private_ps
    _put(r, a, n, v)
    return (t, horizon, *_cache(r, n), r.shared)


def atomic_t(name, rs, access, a, n, op, v, r0, pc, t, horizon):
    a &= M64
    r = rs.find(a, n, True)
    if r is None:
        _fault(name, rs, pc, a, n, True)
    if r.shared:
        if t > horizon:
            horizon = yield t
        t += access(a, n, True, t)
    return (_atomic(r, a, n, op, v, r0), t, horizon, *_cache(r, n), r.shared)


# --------------------------------------------------------------------------------------------
# Arithmetic that is rare enough to be a call
# --------------------------------------------------------------------------------------------


def sdiv64(a: int, b: int) -> int:
    """Signed 64-bit division truncating toward zero; x / 0 = 0; INT_MIN / -1 = INT_MIN."""
    if not b:
        return 0
    a -= (a & SIGN64) << 1
    b -= (b & SIGN64) << 1
    q = abs(a) // abs(b)
    return (-q if (a < 0) != (b < 0) else q) & M64


def smod64(a: int, b: int) -> int:
    """Signed 64-bit remainder with the dividend's sign (C); x % 0 = x; INT_MIN % -1 = 0."""
    if not b:
        return a
    sa = a - ((a & SIGN64) << 1)
    sb = b - ((b & SIGN64) << 1)
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & M64


def sdiv32(a: int, b: int) -> int:
    """Signed 32-bit division of the low halves, zero-extended; x / 0 = 0."""
    a &= M32
    b &= M32
    if not b:
        return 0
    a -= (a & SIGN32) << 1
    b -= (b & SIGN32) << 1
    q = abs(a) // abs(b)
    return (-q if (a < 0) != (b < 0) else q) & M32


def smod32(a: int, b: int) -> int:
    """Signed 32-bit remainder of the low halves, zero-extended; x % 0 = (u32)x."""
    a &= M32
    b &= M32
    if not b:
        return a
    sa = a - ((a & SIGN32) << 1)
    sb = b - ((b & SIGN32) << 1)
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & M32


def bswap16(v: int) -> int:
    return ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)


def bswap32(v: int) -> int:
    return int.from_bytes((v & M32).to_bytes(4, "little"), "big")


def bswap64(v: int) -> int:
    return int.from_bytes(v.to_bytes(8, "little"), "big")
