"""The syscall side of maps: BPF_MAP_LOOKUP_ELEM, UPDATE_ELEM, DELETE_ELEM, GET_NEXT_KEY,
LOOKUP_AND_DELETE_ELEM and FREEZE, as kernel/bpf/syscall.c (v6.6) runs them.

Each entry point takes the host and the command's parsed attribute (:func:`parse_elem_attr`),
finds the map behind ``map_fd`` (``host.get_unified_map_from_fd``: EBADF / EINVAL), checks the
fd's permissions (EPERM), copies key and value from user memory with ``host.copy_from_user``
(EFAULT) and results back with ``host.copy_to_user``.  Values use the user layout
(``bpf_map_value_size``): per-CPU maps take and give ``round_up(value_size, 8)`` bytes per possible
CPU.  Like the map operations they are generators of host requests, so a simulated kernel can
run them in simulated time; :func:`kbpf.host.drive` runs them at once.

They are named ``bpf_map_*`` to stay apart from the program-side operations
(``UnifiedMap.lookup_elem`` returns an address; ``bpf_map_lookup_elem`` copies bytes to user
space), as Linux keeps ``map_lookup_elem()`` apart from ``bpf_map_lookup_elem``'s helper.
"""

from __future__ import annotations

import errno

from kbpf.errors import BpfError
from kbpf.host import KernelAuxiliaryOps, Op, Work
from kbpf.linux_bpf import BPF_F_LOCK, BpfCmd, BpfMapElemAttr, BpfMapType, check_attr_tail
from kbpf.map.ops import FD_MAP_TYPES, UnifiedMap

_QUEUE_TYPES = (BpfMapType.BPF_MAP_TYPE_QUEUE, BpfMapType.BPF_MAP_TYPE_STACK)


def parse_elem_attr(cmd: BpfCmd | int, data: bytes | bytearray) -> BpfMapElemAttr:
    """The element attribute of ``cmd`` with its ``CHECK_ATTR``: non-zero bytes past the
    command's last field -> EINVAL (delete reads up to ``key``, get_next_key up to
    ``next_key``, freeze only ``map_fd``)."""
    end = BpfMapElemAttr.end_for(cmd)
    check_attr_tail(data, end, BpfCmd(cmd).name)
    return BpfMapElemAttr.unpack(bytes(data[:end]))


def bpf_map_value_size(umap: UnifiedMap) -> int:
    """``bpf_map_value_size``: the bytes a syscall value of this map holds."""
    return umap.sys_value_size


def _copy_key(host: KernelAuxiliaryOps, umap: UnifiedMap, ptr: int) -> Op:
    """``__bpf_copy_key``: ``key_size`` bytes from user space; a map without keys (queue,
    stack) wants a NULL key (EINVAL otherwise)."""
    size = umap.meta.key_size
    if not size:
        if ptr:
            raise BpfError(errno.EINVAL, f"{umap.meta.map_type.name} takes no key (pass NULL)")
        return b""
    key = host.copy_from_user(ptr, size)
    yield Work("copy_bytes", size)
    return key


def _check_lock_flag(flags: int) -> None:
    if flags & BPF_F_LOCK:
        # kbpf maps carry no BTF, so no value holds a bpf_spin_lock.
        raise BpfError(errno.EINVAL, "BPF_F_LOCK needs a bpf_spin_lock in the value")


def bpf_map_lookup_elem(host: KernelAuxiliaryOps, attr: BpfMapElemAttr) -> Op:
    """BPF_MAP_LOOKUP_ELEM (``map_lookup_elem``): flags other than BPF_F_LOCK -> EINVAL; a
    write-only fd -> EPERM; absent key -> ENOENT; the value (all CPUs for per-CPU maps) is
    written to ``attr.value``."""
    if attr.flags & ~BPF_F_LOCK:
        raise BpfError(errno.EINVAL, f"lookup flags {attr.flags:#x}: only BPF_F_LOCK allowed")
    umap: UnifiedMap = host.get_unified_map_from_fd(attr.map_fd)
    if not umap.sys_can_read():
        raise BpfError(errno.EPERM, "map fd is write-only (BPF_F_WRONLY)")
    _check_lock_flag(attr.flags)
    key = yield from _copy_key(host, umap, attr.key)
    value = yield from umap.ops.sys_lookup_elem(key, attr.flags)
    yield Work("copy_bytes", len(value))
    host.copy_to_user(attr.value, value)


def bpf_map_update_elem(host: KernelAuxiliaryOps, attr: BpfMapElemAttr) -> Op:
    """BPF_MAP_UPDATE_ELEM (``map_update_elem``): read-only fd or frozen map -> EPERM;
    BPF_F_LOCK -> EINVAL; then the family's checks (flags, range, existence)."""
    umap: UnifiedMap = host.get_unified_map_from_fd(attr.map_fd)
    umap.write_active += 1
    try:
        if not umap.sys_can_write():
            why = "frozen" if umap.frozen else "read-only (BPF_F_RDONLY)"
            raise BpfError(errno.EPERM, f"map is {why}: syscall writes refused")
        _check_lock_flag(attr.flags)
        key = yield from _copy_key(host, umap, attr.key)
        size = umap.sys_value_size
        value = host.copy_from_user(attr.value, size)
        yield Work("copy_bytes", size)
        if umap.meta.map_type in FD_MAP_TYPES:
            # fd maps remember the open map file an entry came through (perf_event_fd_array).
            map_file = host.get_map_file_from_fd(attr.map_fd)
            yield from umap.ops.sys_update_elem(key, value, attr.flags, map_file=map_file)
        else:
            yield from umap.ops.sys_update_elem(key, value, attr.flags)
    finally:
        umap.write_active -= 1


def bpf_map_delete_elem(host: KernelAuxiliaryOps, attr: BpfMapElemAttr) -> Op:
    """BPF_MAP_DELETE_ELEM (``map_delete_elem``): read-only fd or frozen map -> EPERM; then
    the family's delete (arrays: EINVAL)."""
    umap: UnifiedMap = host.get_unified_map_from_fd(attr.map_fd)
    umap.write_active += 1
    try:
        if not umap.sys_can_write():
            why = "frozen" if umap.frozen else "read-only (BPF_F_RDONLY)"
            raise BpfError(errno.EPERM, f"map is {why}: syscall writes refused")
        key = yield from _copy_key(host, umap, attr.key)
        yield from umap.ops.delete_elem(key)
    finally:
        umap.write_active -= 1


def bpf_map_get_next_key(host: KernelAuxiliaryOps, attr: BpfMapElemAttr) -> Op:
    """BPF_MAP_GET_NEXT_KEY (``map_get_next_key``): a NULL ``key`` asks for the first key;
    the next key is written to ``attr.next_key``; ENOENT after the last."""
    umap: UnifiedMap = host.get_unified_map_from_fd(attr.map_fd)
    if not umap.sys_can_read():
        raise BpfError(errno.EPERM, "map fd is write-only (BPF_F_WRONLY)")
    key = (yield from _copy_key(host, umap, attr.key)) if attr.key else None
    next_key = yield from umap.ops.get_next_key(key)
    host.copy_to_user(attr.next_key, next_key)
    yield Work("copy_bytes", len(next_key))


def bpf_map_lookup_and_delete_elem(host: KernelAuxiliaryOps, attr: BpfMapElemAttr) -> Op:
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM (``map_lookup_and_delete_elem``): flags other than
    BPF_F_LOCK -> EINVAL; the fd must read and write (EPERM); queues and stacks pop (and take
    no flags); hash maps delete the key; every other type -> ENOTSUPP."""
    if attr.flags & ~BPF_F_LOCK:
        raise BpfError(errno.EINVAL, f"flags {attr.flags:#x}: only BPF_F_LOCK allowed")
    umap: UnifiedMap = host.get_unified_map_from_fd(attr.map_fd)
    umap.write_active += 1
    try:
        if not (umap.sys_can_read() and umap.sys_can_write()):
            raise BpfError(errno.EPERM, "map fd must allow reading and writing")
        is_queue = umap.meta.map_type in _QUEUE_TYPES
        if attr.flags and is_queue:
            raise BpfError(errno.EINVAL, "queue/stack lookup_and_delete takes no flags")
        _check_lock_flag(attr.flags)
        key = yield from _copy_key(host, umap, attr.key)
        if is_queue:
            value = yield from umap.ops.pop_elem()
        else:
            value = yield from umap.ops.lookup_and_delete_elem(key, attr.flags)
        host.copy_to_user(attr.value, value)
        yield Work("copy_bytes", len(value))
    finally:
        umap.write_active -= 1


def bpf_map_freeze(host: KernelAuxiliaryOps, attr: BpfMapElemAttr) -> Op:
    """BPF_MAP_FREEZE (``map_freeze``): see :meth:`UnifiedMap.freeze`."""
    umap: UnifiedMap = host.get_unified_map_from_fd(attr.map_fd)
    yield from umap.freeze()
