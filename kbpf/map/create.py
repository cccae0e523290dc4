"""BPF_MAP_CREATE: the table from map type to family, and ``bpf_map_create``.

Registration is data, as in Linux's ``bpf_types.h``: one line per map type naming the ops class
that implements it.  A family implementing several types (ARRAY and PERCPU_ARRAY share most code)
appears once per type.  A type Linux knows but kbpf does not implement fails with a clear
EOPNOTSUPP; a number that is no map type at all fails with EINVAL, as ``map_create`` does.
"""

from __future__ import annotations

import errno
from importlib import import_module

from kbpf.errors import BpfError
from kbpf.host import KernelAuxiliaryOps, Lock, PerCpuVariantsOps, PollWaker
from kbpf.linux_bpf import BpfMapType
from kbpf.map.meta import BpfMapMeta
from kbpf.map.ops import MAP_LOCK_OFFSET, BpfMapOps, UnifiedMap

T = BpfMapType
#: map type -> ``"module:Class"`` of the ops class implementing it, imported on first use (so a
#: family's module loads only when a map of its type is created).  Families add lines here.
MAP_TYPE_OPS: dict[BpfMapType, str] = {
    T.BPF_MAP_TYPE_ARRAY: "kbpf.map.array:ArrayMap",
    T.BPF_MAP_TYPE_PERCPU_ARRAY: "kbpf.map.array:PerCpuArrayMap",
    T.BPF_MAP_TYPE_PERF_EVENT_ARRAY: "kbpf.map.perf_event_array:PerfEventArrayMap",
    T.BPF_MAP_TYPE_HASH: "kbpf.map.hash:HashMap",
    T.BPF_MAP_TYPE_PERCPU_HASH: "kbpf.map.hash:PerCpuHashMap",
    T.BPF_MAP_TYPE_LRU_HASH: "kbpf.map.lru:LruHashMap",
    T.BPF_MAP_TYPE_LRU_PERCPU_HASH: "kbpf.map.lru:LruPerCpuHashMap",
    T.BPF_MAP_TYPE_QUEUE: "kbpf.map.queue_stack:QueueMap",
    T.BPF_MAP_TYPE_STACK: "kbpf.map.queue_stack:StackMap",
    T.BPF_MAP_TYPE_RINGBUF: "kbpf.map.ringbuf:RingBufMap",
}
_RESOLVED: dict[BpfMapType, type[BpfMapOps]] = {}


def map_ops_class(map_type: BpfMapType | int) -> type[BpfMapOps]:
    """The family implementing ``map_type``; EINVAL for a number that is no map type,
    EOPNOTSUPP for a Linux map type kbpf does not implement."""
    try:
        kind = BpfMapType(map_type)
    except ValueError:
        raise BpfError(errno.EINVAL, f"unknown map type {map_type}") from None
    cls = _RESOLVED.get(kind)
    if cls is not None:
        return cls
    where = MAP_TYPE_OPS.get(kind)
    if where is not None:
        module, _, name = where.partition(":")
        cls = _RESOLVED[kind] = getattr(import_module(module), name)
        return cls
    if kind == BpfMapType.BPF_MAP_TYPE_UNSPEC:
        raise BpfError(errno.EINVAL, "map type 0 (BPF_MAP_TYPE_UNSPEC) has no implementation")
    raise BpfError(
        errno.EOPNOTSUPP, f"{kind.name} is a Linux map type that kbpf does not implement"
    )


def bpf_map_create(
    meta: BpfMapMeta,
    host: KernelAuxiliaryOps,
    percpu_ops: PerCpuVariantsOps,
    poll_waker: PollWaker | None = None,
) -> UnifiedMap:
    """Create a map (``map_create`` after its generic checks, which
    :meth:`BpfMapMeta.from_attr` made): the family's ``alloc_check``, the ``map_mem_usage``
    requirement, then allocation.  Returns the :class:`UnifiedMap` the host will hold."""
    cls = map_ops_class(meta.map_type)
    cls.alloc_check(meta, percpu_ops)
    if not cls.implements("map_mem_usage"):
        raise BpfError(errno.EINVAL, f"{cls.__name__} does not report its memory usage")
    ops = cls(meta, host, percpu_ops, poll_waker)
    label = meta.name or meta.map_type.short_name
    lock = Lock(ops.map_addr + MAP_LOCK_OFFSET, f"map {label}")
    return UnifiedMap(meta, ops, lock, percpu_ops.num_cpus())
