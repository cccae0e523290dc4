"""The basic helpers: maps, time, randomness, the current CPU and task, probe reads, loops.

Each helper is a generator function ``name(env, r1, r2, r3, r4, r5)`` over unsigned 64-bit
arguments, following its Linux v6.6 implementation (kernel/bpf/helpers.c, bpf_iter.c,
kernel/trace/bpf_trace.c, mm/maccess.c); :mod:`kbpf.helper.adapter` turns its result or
``BpfError`` into r0.  Memory the program hands in (keys, values, format strings) is read with
``host.read`` after a ``Touch``; memory the helper fills is written with ``host.write``.

Where Linux's verifier would have refused the program at load time (a write helper on a
``BPF_F_RDONLY_PROG`` map, a helper the map type does not support), the helper fails at run
time with the errno the verifier would have given.

Addresses follow the x86-64 split: user space lies below ``TASK_SIZE_MAX``; kernel reads of
anything below ``TASK_SIZE_MAX + PAGE_SIZE`` or of a non-canonical address are refused with
ERANGE (``copy_from_kernel_nofault_allowed``).
"""

from __future__ import annotations

import errno
import hashlib

from kbpf.errors import BpfError
from kbpf.host import Callback, KernelAuxiliaryOps, Op, Touch, Work
from kbpf.linux_bpf import PAGE_SIZE, TASK_SIZE_MAX

U32 = 0xFFFFFFFF
#: ``MAX_LOOPS`` of ``bpf_loop``.
BPF_MAX_LOOPS = 1 << 23
#: ``TASK_COMM_LEN``.
TASK_COMM_LEN = 16
#: The lowest canonical kernel address with 48-bit virtual addresses.
_KERNEL_CANONICAL = 0xFFFF_8000_0000_0000


class HelperEnv:
    """What helpers share for one host: the host, and the key Linux hashes ``%p`` pointers
    with (drawn from the host's random stream the first time a ``%p`` is printed)."""

    __slots__ = ("host", "_ptr_key")

    def __init__(self, host: KernelAuxiliaryOps):
        self.host = host
        self._ptr_key: bytes | None = None

    def ptr_hash(self, ptr: int) -> int:
        """``ptr_to_id``'s hashed pointer: a keyed 64-bit hash of the address, of which
        64-bit Linux prints the low 32 bits.  (Linux uses siphash with a boot-time key; kbpf a
        keyed BLAKE2b with a key from the host's seeded stream: equally unguessable, and
        reproducible per seed.)"""
        if self._ptr_key is None:
            self._ptr_key = b"".join(self.host.random_u32().to_bytes(4, "little") for _ in range(4))
        digest = hashlib.blake2b(ptr.to_bytes(8, "little"), key=self._ptr_key, digest_size=8)
        return int.from_bytes(digest.digest(), "little") & U32


# ---------------------------------------------------------------------------------------------
# Memory access with Linux's nofault rules
# ---------------------------------------------------------------------------------------------


def kernel_read_allowed(addr: int, size: int = 1) -> bool:
    """x86-64 ``copy_from_kernel_nofault_allowed``: not user space (nor the guard page above
    it) and canonical."""
    return addr >= TASK_SIZE_MAX + PAGE_SIZE and addr >= _KERNEL_CANONICAL


def user_access_ok(addr: int, size: int) -> bool:
    """``access_ok``: the whole range lies in user space."""
    return addr + size <= TASK_SIZE_MAX


def copy_from_kernel_nofault(host: KernelAuxiliaryOps, src: int, size: int) -> bytes:
    """Read kernel memory: ERANGE for an address that is not a kernel one, EFAULT for an
    unmapped one."""
    if not kernel_read_allowed(src, size):
        raise BpfError(errno.ERANGE, f"{src:#x} is not a kernel address")
    return host.read(src, size)


def copy_from_user_nofault(host: KernelAuxiliaryOps, src: int, size: int) -> bytes:
    """Read the current task's user memory: EFAULT outside user space or where unmapped (the
    idle task has no user memory)."""
    if not user_access_ok(src, size):
        raise BpfError(errno.EFAULT, f"[{src:#x}, +{size}) is not user memory")
    return host.copy_from_user(src, size) if size else b""


def _chunks(addr: int, count: int):
    """Page-bounded pieces of ``[addr, addr + count)``."""
    while count > 0:
        n = min(count, PAGE_SIZE - addr % PAGE_SIZE)
        yield addr, n
        addr += n
        count -= n


def strncpy_from_kernel_nofault(
    host: KernelAuxiliaryOps, src: int, count: int
) -> tuple[int, bytes]:
    """mm/maccess.c: copy a NUL-terminated kernel string into a ``count``-byte buffer.

    Returns ``(ret, data)``: ``ret`` is the length including the NUL, or ``count`` when the
    string was cut (``data`` then ends in a NUL at ``count - 1``), 0 for ``count == 0``, or a
    negative errno (ERANGE, EFAULT); ``data`` is what lands in the buffer."""
    if count <= 0:
        return 0, b""
    if not kernel_read_allowed(src, count):
        return -errno.ERANGE, b""
    out = bytearray()
    for addr, n in _chunks(src, count):
        try:
            piece = host.read(addr, n)
        except BpfError:
            return -errno.EFAULT, bytes(out) + b"\0"
        nul = piece.find(b"\0")
        if nul >= 0:
            out += piece[: nul + 1]
            return len(out), bytes(out)
        out += piece
    out[-1] = 0
    return count, bytes(out)


def strncpy_from_user_nofault(host: KernelAuxiliaryOps, src: int, count: int) -> tuple[int, bytes]:
    """mm/maccess.c: the user-space twin of :func:`strncpy_from_kernel_nofault`, with its
    quirk: the length returned includes the NUL except for the empty string, which gives 0
    (``strncpy_from_user`` returns 0 and only positive results are incremented)."""
    if count <= 0:
        return 0, b""
    if src >= TASK_SIZE_MAX:
        return -errno.EFAULT, b""
    out = bytearray()
    for addr, n in _chunks(src, min(count, TASK_SIZE_MAX - src)):
        try:
            piece = host.copy_from_user(addr, n)
        except BpfError:
            return -errno.EFAULT, b""
        nul = piece.find(b"\0")
        if nul >= 0:
            out += piece[: nul + 1]
            length = len(out) - 1
            return (length + 1 if length > 0 else 0), bytes(out)
        out += piece
    if len(out) < count:  # ran into the end of user space without a NUL
        return -errno.EFAULT, b""
    out[-1] = 0
    return count, bytes(out)


def _write_dst(host: KernelAuxiliaryOps, dst: int, data: bytes) -> Op:
    if data:
        yield Touch(dst, len(data), True)
        host.write(dst, data)


# ---------------------------------------------------------------------------------------------
# Map helpers
# ---------------------------------------------------------------------------------------------


def _read_key(host: KernelAuxiliaryOps, umap, key_ptr: int) -> Op:
    size = umap.meta.key_size
    yield Touch(key_ptr, size)
    return host.read(key_ptr, size)


def map_lookup_elem(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """1 ``bpf_map_lookup_elem(map, key)``: the value's address, or NULL."""
    host = env.host
    umap = host.get_unified_map_from_ptr(r1)
    size = umap.meta.key_size
    yield Touch(r2, size)
    return (yield from umap.ops.lookup_elem(host.read(r2, size)))


def map_update_elem(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """2 ``bpf_map_update_elem(map, key, value, flags)``: 0 or a negative errno.  A map created
    ``BPF_F_RDONLY_PROG`` refuses with EACCES ("write into map forbidden")."""
    host = env.host
    umap = host.get_unified_map_from_ptr(r1)
    if not umap.prog_can_write():
        raise BpfError(errno.EACCES, "write into map forbidden (BPF_F_RDONLY_PROG)")
    key = yield from _read_key(host, umap, r2)
    size = umap.meta.value_size
    yield Touch(r3, size)
    yield from umap.ops.update_elem(key, host.read(r3, size), r4)
    return 0


def map_delete_elem(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """3 ``bpf_map_delete_elem(map, key)``: 0 or a negative errno (arrays: EINVAL)."""
    host = env.host
    umap = host.get_unified_map_from_ptr(r1)
    if not umap.prog_can_write():
        raise BpfError(errno.EACCES, "write into map forbidden (BPF_F_RDONLY_PROG)")
    key = yield from _read_key(host, umap, r2)
    yield from umap.ops.delete_elem(key)
    return 0


def map_lookup_percpu_elem(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """195 ``bpf_map_lookup_percpu_elem(map, key, cpu)``: CPU ``cpu``'s value, or NULL."""
    host = env.host
    umap = host.get_unified_map_from_ptr(r1)
    key = yield from _read_key(host, umap, r2)
    return (yield from umap.ops.lookup_percpu_elem(key, r3 & U32))


def map_push_elem(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """87 ``bpf_map_push_elem(map, value, flags)``: 0 or a negative errno."""
    host = env.host
    umap = host.get_unified_map_from_ptr(r1)
    if not umap.prog_can_write():
        raise BpfError(errno.EACCES, "write into map forbidden (BPF_F_RDONLY_PROG)")
    size = umap.meta.value_size
    yield Touch(r2, size)
    yield from umap.ops.push_elem(host.read(r2, size), r3)
    return 0


def _take_elem(env: HelperEnv, r1: int, r2: int, pop: bool) -> Op:
    host = env.host
    umap = host.get_unified_map_from_ptr(r1)
    if pop and not umap.prog_can_write():
        raise BpfError(errno.EACCES, "write into map forbidden (BPF_F_RDONLY_PROG)")
    try:
        value = yield from (umap.ops.pop_elem() if pop else umap.ops.peek_elem())
    except BpfError as e:
        if e.errno == errno.ENOENT:
            # __queue_map_get zeroes the program's buffer when the map is empty.
            yield from _write_dst(host, r2, bytes(umap.meta.value_size))
        raise
    yield from _write_dst(host, r2, value[: umap.meta.value_size])
    return 0


def map_pop_elem(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """88 ``bpf_map_pop_elem(map, value)``: 0 or a negative errno (empty: ENOENT)."""
    return (yield from _take_elem(env, r1, r2, True))


def map_peek_elem(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """89 ``bpf_map_peek_elem(map, value)``: 0 or a negative errno (empty: ENOENT)."""
    return (yield from _take_elem(env, r1, r2, False))


def for_each_map_elem(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """164 ``bpf_for_each_map_elem(map, callback_fn, callback_ctx, flags)``: the number of
    elements visited, or a negative errno (flags != 0: EINVAL)."""
    umap = env.host.get_unified_map_from_ptr(r1)
    return (yield from umap.ops.for_each_elem(r2, r3, r4))


def loop(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """181 ``bpf_loop(nr_loops, callback_fn, callback_ctx, flags)``: call
    ``callback_fn(i, callback_ctx)`` for i = 0 … nr_loops-1 until it returns non-zero; returns
    the number of calls made.  flags != 0: EINVAL; nr_loops > 1 << 23: E2BIG."""
    nr_loops = r1 & U32
    if r4:
        raise BpfError(errno.EINVAL, f"bpf_loop flags {r4:#x} must be 0")
    if nr_loops > BPF_MAX_LOOPS:
        raise BpfError(errno.E2BIG, f"bpf_loop of {nr_loops} iterations exceeds {BPF_MAX_LOOPS}")
    for i in range(nr_loops):
        ret = yield Callback(r2, (i, r3, 0, 0, 0))
        if ret:
            return i + 1
    return nr_loops


# ---------------------------------------------------------------------------------------------
# Time, randomness, CPU, task
# ---------------------------------------------------------------------------------------------


def ktime_get_ns(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """5 ``bpf_ktime_get_ns()``: CLOCK_MONOTONIC in ns."""
    return env.host.ebpf_time_ns()
    yield


def ktime_get_boot_ns(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """125 ``bpf_ktime_get_boot_ns()``: CLOCK_BOOTTIME in ns; a host that never suspends has it
    equal to the monotonic clock."""
    return env.host.ebpf_time_ns()
    yield


def get_prandom_u32(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """7 ``bpf_get_prandom_u32()``: the next value of the host's seeded stream."""
    return env.host.random_u32() & U32
    yield


def get_smp_processor_id(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """8 ``bpf_get_smp_processor_id()``."""
    return env.host.current_cpu_id()
    yield


def get_current_pid_tgid(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """14 ``bpf_get_current_pid_tgid()``: ``tgid << 32 | pid`` (0 on an idle CPU)."""
    task = env.host.current_task()
    return (task.tgid & U32) << 32 | (task.pid & U32)
    yield


def get_current_comm(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """16 ``bpf_get_current_comm(buf, size)``: ``strscpy_pad`` of the task's name (at most
    ``TASK_COMM_LEN - 1`` characters) into ``size`` bytes: NUL-terminated, zero-padded."""
    size = r2 & U32
    if not size:
        return 0
    comm = env.host.current_task().comm.encode("utf-8", "replace")[: TASK_COMM_LEN - 1]
    data = comm[: size - 1].ljust(size, b"\0")
    yield from _write_dst(env.host, r1, data)
    return 0


# ---------------------------------------------------------------------------------------------
# probe_read_*
# ---------------------------------------------------------------------------------------------


def _probe_read(env: HelperEnv, dst: int, size: int, src: int, user: bool) -> Op:
    """``bpf_probe_read_{user,kernel}_common``: copy, or zero ``dst`` and fail."""
    host = env.host
    try:
        if user:
            data = copy_from_user_nofault(host, src, size)
            yield Work("copy_bytes", size)
        else:
            data = copy_from_kernel_nofault(host, src, size)
            yield Touch(src, size)
    except BpfError:
        yield from _write_dst(host, dst, bytes(size))
        raise
    yield from _write_dst(host, dst, data)
    return 0


def _probe_read_str(env: HelperEnv, dst: int, size: int, src: int, user: bool) -> Op:
    """``bpf_probe_read_{user,kernel}_str_common``: copy a string, or zero ``dst`` and fail."""
    host = env.host
    if user:
        ret, data = strncpy_from_user_nofault(host, src, size)
    else:
        ret, data = strncpy_from_kernel_nofault(host, src, size)
        if data:
            yield Touch(src, len(data))
    if ret < 0:
        yield from _write_dst(host, dst, bytes(size))
        raise BpfError(-ret, f"probe_read_{'user' if user else 'kernel'}_str at {src:#x}")
    yield Work("copy_bytes", len(data))
    yield from _write_dst(host, dst, data)
    return ret


def probe_read_user(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """112 ``bpf_probe_read_user(dst, size, unsafe_ptr)``: 0, or -EFAULT with ``dst`` zeroed."""
    return (yield from _probe_read(env, r1, r2 & U32, r3, True))


def probe_read_kernel(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """113 ``bpf_probe_read_kernel(dst, size, unsafe_ptr)``: 0, or -EFAULT/-ERANGE with
    ``dst`` zeroed."""
    return (yield from _probe_read(env, r1, r2 & U32, r3, False))


def probe_read_user_str(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """114 ``bpf_probe_read_user_str(dst, size, unsafe_ptr)``: the length including the NUL
    (0 for an empty string, Linux's quirk), ``size`` when cut, or -EFAULT with ``dst`` zeroed."""
    return (yield from _probe_read_str(env, r1, r2 & U32, r3, True))


def probe_read_kernel_str(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """115 ``bpf_probe_read_kernel_str(dst, size, unsafe_ptr)``: the length including the NUL,
    ``size`` when cut, or -EFAULT/-ERANGE with ``dst`` zeroed."""
    return (yield from _probe_read_str(env, r1, r2 & U32, r3, False))


def probe_read(env: HelperEnv, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """4 ``bpf_probe_read(dst, size, unsafe_ptr)`` (kbpf-basic's helper): on x86-64 Linux's
    ``bpf_probe_read_compat`` reads user memory below ``TASK_SIZE``, kernel memory above."""
    return (yield from _probe_read(env, r1, r2 & U32, r3, r3 < TASK_SIZE_MAX))
