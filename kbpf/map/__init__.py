"""Maps: metadata, the operations table, the families, creation and the syscall side.

``BpfMapMeta`` (also from a packed ``bpf_attr``), ``bpf_map_create(meta, host, percpu_ops,
poll_waker=None) -> UnifiedMap``, the ``BpfMapOps`` base every family extends, and the syscall
entry points taking user pointers (``bpf_map_lookup_elem``, ``bpf_map_update_elem``,
``bpf_map_delete_elem``, ``bpf_map_get_next_key``, ``bpf_map_lookup_and_delete_elem``,
``bpf_map_freeze``).
"""

from kbpf.map.array import ArrayMap, PerCpuArrayMap
from kbpf.map.create import MAP_TYPE_OPS, bpf_map_create, map_ops_class
from kbpf.map.meta import BpfMapMeta, check_obj_name, obj_name_from_bytes
from kbpf.map.ops import ABSENT_ERRNO, BpfMapOps, UnifiedMap, round_up
from kbpf.map.syscall import (
    bpf_map_delete_elem,
    bpf_map_freeze,
    bpf_map_get_next_key,
    bpf_map_lookup_and_delete_elem,
    bpf_map_lookup_elem,
    bpf_map_update_elem,
    bpf_map_value_size,
    parse_elem_attr,
)

__all__ = [
    "ABSENT_ERRNO",
    "ArrayMap",
    "BpfMapMeta",
    "BpfMapOps",
    "MAP_TYPE_OPS",
    "PerCpuArrayMap",
    "UnifiedMap",
    "bpf_map_create",
    "bpf_map_delete_elem",
    "bpf_map_freeze",
    "bpf_map_get_next_key",
    "bpf_map_lookup_and_delete_elem",
    "bpf_map_lookup_elem",
    "bpf_map_update_elem",
    "bpf_map_value_size",
    "check_obj_name",
    "map_ops_class",
    "obj_name_from_bytes",
    "parse_elem_attr",
    "round_up",
]
