"""Ring buffer and dynptr helpers (kernel/bpf/ringbuf.c and the dynptr part of
kernel/bpf/helpers.c at v6.6); kbpf-basic's src/helper/ringbuf.rs.

Each helper is a generator ``name(env, r1, r2, r3, r4, r5)`` like those of
:mod:`kbpf.helper.basic`; ``HELPERS`` lists them with their return conventions and
:func:`kbpf.helper.all_helper_specs` picks the list up.

Linux's verifier guarantees what these helpers receive: a RINGBUF map where one is expected, a
sample pointer that is a live reservation of this program, a dynptr the program initialised
through a helper.  kbpf-sim has no verifier, so the helpers check what they can at run time:

* submit/discard of a pointer that is no live reservation (never reserved, already committed)
  raises ``BpfError(EFAULT)`` out of the helper, which the host reports as a program fault;
* a RINGBUF dynptr whose record is no longer live (a copy of one already submitted) counts as
  invalid: read/write fail with EINVAL and ``dynptr_data`` gives NULL, as for a NULL dynptr;
* a LOCAL dynptr's memory is trusted, as the verifier proved it when the dynptr was made;
* SKB and XDP dynptrs cannot be made here; a dynptr of any type but LOCAL and RINGBUF takes the
  kernel's "unknown dynptr type" path (EFAULT, or NULL for ``dynptr_data``).
"""

from __future__ import annotations

import errno

from kbpf.errors import BpfError
from kbpf.helper.adapter import HelperSpec, Ret
from kbpf.host import Op, Touch, Work
from kbpf.linux_bpf import BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BpfFuncId
from kbpf.map.ringbuf import (
    BPF_DYNPTR_SIZE,
    BpfDynPtr,
    BpfDynptrType,
    RingBufMap,
)

U32 = 0xFFFFFFFF
_LOCAL = BpfDynptrType.BPF_DYNPTR_TYPE_LOCAL
_RINGBUF = BpfDynptrType.BPF_DYNPTR_TYPE_RINGBUF


def _ringbuf(env, map_ptr: int) -> RingBufMap:
    """The ring behind a map pointer; EINVAL for any other map (the verifier's
    ``check_map_func_compatibility``)."""
    ops = env.host.get_unified_map_from_ptr(map_ptr).ops
    if not isinstance(ops, RingBufMap):
        raise BpfError(errno.EINVAL, f"map at {map_ptr:#x} is not a ring buffer")
    return ops


def _commit(env, sample: int, flags: int, discard: bool) -> Op:
    ring = yield from RingBufMap.bpf_ringbuf_restore_from_rec(env.host, sample)
    return (yield from ring.commit(sample, flags, discard))


# ---------------------------------------------------------------------------------------------
# The ring buffer helpers
# ---------------------------------------------------------------------------------------------


def ringbuf_output(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """130 ``bpf_ringbuf_output(ringbuf, data, size, flags)``: reserve, copy, submit.  Flags
    other than the two wakeup bits: -EINVAL; no room: -EAGAIN."""
    if r4 & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
        raise BpfError(errno.EINVAL, f"ringbuf_output flags {r4:#x}: only the wakeup bits")
    ring = _ringbuf(env, r1)
    host = env.host
    # The source is read before reserving so that a bad pointer (which the verifier would have
    # rejected) cannot leave a busy record behind; the touches keep Linux's order.
    data = host.read(r2, r3) if 0 < r3 <= ring.total_data_size() else b""
    rec = yield from ring.reserve(r3)
    if not rec:
        raise BpfError(errno.EAGAIN, f"no room for a {r3}-byte record")
    if r3:
        yield Touch(r2, r3)
        yield Touch(rec, r3, True)
        yield Work("copy_bytes", r3)
        host.write(rec, data)
    yield from ring.commit(rec, r4, False)
    return 0


def ringbuf_reserve(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """131 ``bpf_ringbuf_reserve(ringbuf, size, flags)``: the sample's address, or NULL (flags
    must be 0; the record must fit)."""
    if r3:
        return 0
    ring = _ringbuf(env, r1)
    return (yield from ring.reserve(r2))


def ringbuf_submit(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """132 ``bpf_ringbuf_submit(data, flags)``: commit the record; wake per the flags."""
    yield from _commit(env, r1, r2, False)


def ringbuf_discard(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """133 ``bpf_ringbuf_discard(data, flags)``: commit the record as discarded (the consumer
    skips it); wake per the flags."""
    yield from _commit(env, r1, r2, True)


def ringbuf_query(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """134 ``bpf_ringbuf_query(ringbuf, flags)``: available data, ring size, consumer or
    producer position; 0 for any other flag."""
    return (yield from _ringbuf(env, r1).query(r2))


# ---------------------------------------------------------------------------------------------
# Dynptrs
# ---------------------------------------------------------------------------------------------


def _write_dynptr(env, ptr: int, dynptr: BpfDynPtr) -> Op:
    yield Touch(ptr, BPF_DYNPTR_SIZE, True)
    env.host.write(ptr, dynptr.pack())


def _read_dynptr(env, ptr: int) -> Op:
    yield Touch(ptr, BPF_DYNPTR_SIZE)
    return BpfDynPtr.unpack(env.host.read(ptr, BPF_DYNPTR_SIZE))


def _set_null(env, ptr: int) -> Op:
    """``bpf_dynptr_set_null``: zero the whole structure."""
    yield from _write_dynptr(env, ptr, BpfDynPtr())


def _live(env, dynptr: BpfDynPtr) -> Op:
    """Whether the dynptr may be used: not NULL, and for a RINGBUF one, its record still
    reserved (the verifier's tracking, checked at run time)."""
    if dynptr.is_null:
        return False
    if dynptr.dynptr_type == _RINGBUF:
        try:
            yield from RingBufMap.bpf_ringbuf_restore_from_rec(env.host, dynptr.data)
        except BpfError:
            return False
    return True


def dynptr_from_mem(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """197 ``bpf_dynptr_from_mem(data, size, flags, ptr)``: a LOCAL dynptr over the program's
    memory.  Size above 2^24-1: -E2BIG; flags: -EINVAL; either way ``ptr`` is set NULL."""
    size = r2 & U32
    try:
        BpfDynPtr.check_size(size)
        if r3:
            raise BpfError(errno.EINVAL, f"dynptr_from_mem flags {r3:#x} must be 0")
    except BpfError:
        yield from _set_null(env, r4)
        raise
    yield from _write_dynptr(env, r4, BpfDynPtr.init(r1, _LOCAL, 0, size))
    return 0


def ringbuf_reserve_dynptr(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """198 ``bpf_ringbuf_reserve_dynptr(ringbuf, size, flags, ptr)``: reserve a record and
    describe it by a RINGBUF dynptr at ``ptr``.  Flags: -EINVAL; size above 2^24-1: -E2BIG; no
    room: -EINVAL; on failure ``ptr`` is set NULL (and must still be submitted or discarded)."""
    size = r2 & U32
    try:
        if r3:
            raise BpfError(errno.EINVAL, f"ringbuf_reserve_dynptr flags {r3:#x} must be 0")
        BpfDynPtr.check_size(size)
        ring = _ringbuf(env, r1)
        sample = yield from ring.reserve(size)
        if not sample:
            raise BpfError(errno.EINVAL, f"no room for a {size}-byte record")
    except BpfError:
        yield from _set_null(env, r4)
        raise
    yield from _write_dynptr(env, r4, BpfDynPtr.init(sample, _RINGBUF, 0, size))
    return 0


def _commit_dynptr(env, ptr: int, flags: int, discard: bool) -> Op:
    dynptr = yield from _read_dynptr(env, ptr)
    if dynptr.is_null:
        return
    yield from _commit(env, dynptr.data, flags, discard)
    yield from _set_null(env, ptr)


def ringbuf_submit_dynptr(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """199 ``bpf_ringbuf_submit_dynptr(ptr, flags)``: submit the dynptr's record and set it
    NULL; a NULL dynptr is a no-op."""
    yield from _commit_dynptr(env, r1, r2, False)


def ringbuf_discard_dynptr(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """200 ``bpf_ringbuf_discard_dynptr(ptr, flags)``: discard the dynptr's record and set it
    NULL; a NULL dynptr is a no-op."""
    yield from _commit_dynptr(env, r1, r2, True)


def dynptr_read(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """201 ``bpf_dynptr_read(dst, len, src, offset, flags)``: copy ``len`` bytes from the
    dynptr at ``offset``.  NULL dynptr or flags: -EINVAL; out of bounds: -E2BIG."""
    length, offset = r2 & U32, r4 & U32
    src = yield from _read_dynptr(env, r3)
    if r5 or not (yield from _live(env, src)):
        raise BpfError(errno.EINVAL, "dynptr_read of a NULL dynptr or with flags")
    src.check_off_len(offset, length)
    if src.dynptr_type not in (_LOCAL, _RINGBUF):
        raise BpfError(errno.EFAULT, f"dynptr_read: unknown dynptr type {src.dynptr_type}")
    if length:
        host = env.host
        addr = src.data + src.offset + offset
        yield Touch(addr, length)
        data = host.read(addr, length)  # read all, then write: memmove
        yield Touch(r1, length, True)
        yield Work("copy_bytes", length)
        host.write(r1, data)
    return 0


def dynptr_write(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """202 ``bpf_dynptr_write(dst, offset, src, len, flags)``: copy ``len`` bytes into the
    dynptr at ``offset``.  NULL or read-only dynptr: -EINVAL; out of bounds: -E2BIG; flags:
    -EINVAL (checked after the bounds, as Linux does for LOCAL and RINGBUF)."""
    offset, length = r2 & U32, r4 & U32
    dst = yield from _read_dynptr(env, r1)
    if not (yield from _live(env, dst)) or dst.rdonly:
        raise BpfError(errno.EINVAL, "dynptr_write to a NULL or read-only dynptr")
    dst.check_off_len(offset, length)
    if dst.dynptr_type not in (_LOCAL, _RINGBUF):
        raise BpfError(errno.EFAULT, f"dynptr_write: unknown dynptr type {dst.dynptr_type}")
    if r5:
        raise BpfError(errno.EINVAL, f"dynptr_write flags {r5:#x} must be 0")
    if length:
        host = env.host
        yield Touch(r3, length)
        data = host.read(r3, length)
        addr = dst.data + dst.offset + offset
        yield Touch(addr, length, True)
        yield Work("copy_bytes", length)
        host.write(addr, data)
    return 0


def dynptr_data(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """203 ``bpf_dynptr_data(ptr, offset, len)``: a pointer to ``len`` bytes at ``offset`` of
    the dynptr's memory, or NULL (NULL dynptr, out of bounds, read-only, unknown type)."""
    offset, length = r2 & U32, r3 & U32
    dynptr = yield from _read_dynptr(env, r1)
    if not (yield from _live(env, dynptr)):
        return 0
    try:
        dynptr.check_off_len(offset, length)
    except BpfError:
        return 0
    if dynptr.rdonly or dynptr.dynptr_type not in (_LOCAL, _RINGBUF):
        return 0
    return dynptr.data + dynptr.offset + offset


F = BpfFuncId

#: The ring buffer family's helpers, with their return conventions.
HELPERS: list[HelperSpec] = [
    HelperSpec(F.BPF_FUNC_ringbuf_output, ringbuf_output, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_ringbuf_reserve, ringbuf_reserve, Ret.POINTER),
    HelperSpec(F.BPF_FUNC_ringbuf_submit, ringbuf_submit, Ret.VOID),
    HelperSpec(F.BPF_FUNC_ringbuf_discard, ringbuf_discard, Ret.VOID),
    HelperSpec(F.BPF_FUNC_ringbuf_query, ringbuf_query, Ret.VALUE),
    HelperSpec(F.BPF_FUNC_dynptr_from_mem, dynptr_from_mem, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_ringbuf_reserve_dynptr, ringbuf_reserve_dynptr, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_ringbuf_submit_dynptr, ringbuf_submit_dynptr, Ret.VOID),
    HelperSpec(F.BPF_FUNC_ringbuf_discard_dynptr, ringbuf_discard_dynptr, Ret.VOID),
    HelperSpec(F.BPF_FUNC_dynptr_read, dynptr_read, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_dynptr_write, dynptr_write, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_dynptr_data, dynptr_data, Ret.POINTER),
]
