"""BpfMapMeta: what BPF_MAP_CREATE asked for, checked the way ``map_create()`` checks it.

``BpfMapMeta.from_attr`` performs the checks Linux v6.6 makes on a map-create attribute before it
looks at the map type's own rules (kernel/bpf/syscall.c ``map_create``), in the same order:

1. ``CHECK_ATTR``: a non-zero byte past ``map_extra`` -> EINVAL;
2. BTF ids: ``btf_vmlinux_value_type_id`` only for STRUCT_OPS without key/value ids, and a key
   type id only together with a value type id -> EINVAL;
3. ``map_extra`` non-zero on anything but a BLOOM_FILTER -> EINVAL;
4. ``BPF_F_RDONLY`` together with ``BPF_F_WRONLY`` -> EINVAL (``bpf_get_file_flag``);
5. ``BPF_F_NUMA_NODE`` naming a node that is not online (this host has node 0 only) -> EINVAL;
6. an unknown map type -> EINVAL;
7. ``map_ifindex`` (device offload: there are no offload-capable devices) -> EINVAL;
8. the name: ``bpf_obj_name_cpy`` accepts only ``[A-Za-z0-9_.]`` and needs a NUL inside the 16
   bytes -> EINVAL.

Flags no map type knows (bits outside ``BPF_MAP_CREATE_FLAGS``) are EINVAL too: Linux leaves them
to each type's ``map_alloc_check``, and every type rejects them, so the answer is the same.  The
per-type rules (key and value sizes, which flags a type takes) are the map family's
``alloc_check`` (see :mod:`kbpf.map.create`).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from kbpf.errors import BpfError
from kbpf.linux_bpf import (
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_WRONLY,
    BPF_MAP_CREATE_FLAGS,
    BPF_OBJ_NAME_LEN,
    BpfMapCreateAttr,
    BpfMapType,
    check_attr_tail,
)

_NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
#: NUMA nodes a kbpf host offers: one (``nr_node_ids == 1``).
NR_NODE_IDS = 1


def obj_name_from_bytes(raw: bytes, what: str = "name") -> str:
    """``bpf_obj_name_cpy``: the name up to its NUL; EINVAL for a character other than
    ``[A-Za-z0-9_.]`` or when the ``BPF_OBJ_NAME_LEN`` bytes hold no NUL."""
    raw = bytes(raw[:BPF_OBJ_NAME_LEN]).ljust(BPF_OBJ_NAME_LEN, b"\0")
    end = raw.find(b"\0")
    if end < 0:
        raise BpfError(
            errno.EINVAL, f"{what} is not NUL-terminated within {BPF_OBJ_NAME_LEN} bytes"
        )
    name = raw[:end]
    bad = next((c for c in name if c not in _NAME_CHARS), None)
    if bad is not None:
        raise BpfError(
            errno.EINVAL, f"{what} {name!r} has character {chr(bad)!r}; only [A-Za-z0-9_.] allowed"
        )
    return name.decode("ascii")


def check_obj_name(name: str, what: str = "name") -> bytes:
    """The 16 NUL-padded bytes for ``name``, with ``bpf_obj_name_cpy``'s rules (at most 15
    characters of ``[A-Za-z0-9_.]``); EINVAL otherwise."""
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise BpfError(errno.EINVAL, f"{what} {name!r} is not ASCII") from None
    if len(raw) >= BPF_OBJ_NAME_LEN:
        raise BpfError(
            errno.EINVAL,
            f"{what} {name!r} has {len(raw)} characters; at most {BPF_OBJ_NAME_LEN - 1} fit",
        )
    obj_name_from_bytes(raw, what)
    return raw.ljust(BPF_OBJ_NAME_LEN, b"\0")


@dataclass
class BpfMapMeta:
    """A map's creation attributes (kbpf-basic's ``BpfMapMeta``).

    ``max_entries`` is what was asked; a family that adjusts it (LRU with
    ``BPF_F_NO_COMMON_LRU`` rounds it to a multiple of the CPU count) stores its own value in the
    map's ``meta`` at creation, as the kernel stores it in ``struct bpf_map``.
    """

    map_type: BpfMapType
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    map_flags: int = 0
    name: str = ""
    numa_node: int = 0
    map_extra: int = 0
    inner_map_fd: int = 0
    btf_fd: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    btf_vmlinux_value_type_id: int = 0

    def __post_init__(self) -> None:
        self.map_type = BpfMapType.parse(self.map_type)

    @classmethod
    def from_attr(cls, data: bytes | bytearray | memoryview) -> BpfMapMeta:
        """Parse a packed BPF_MAP_CREATE ``bpf_attr`` (any length up to the union's size;
        shorter input is zero-extended) with ``map_create``'s generic checks."""
        attr = BpfMapCreateAttr.unpack(data)
        check_attr_tail(
            bytes(data).ljust(BpfMapCreateAttr.END, b"\0"), BpfMapCreateAttr.END, "BPF_MAP_CREATE"
        )
        if attr.btf_vmlinux_value_type_id:
            if (
                attr.map_type != BpfMapType.BPF_MAP_TYPE_STRUCT_OPS
                or attr.btf_key_type_id
                or attr.btf_value_type_id
            ):
                raise BpfError(
                    errno.EINVAL,
                    "btf_vmlinux_value_type_id is for STRUCT_OPS maps without key/value type ids",
                )
        elif attr.btf_key_type_id and not attr.btf_value_type_id:
            raise BpfError(errno.EINVAL, "btf_key_type_id given without btf_value_type_id")
        if attr.map_type != BpfMapType.BPF_MAP_TYPE_BLOOM_FILTER and attr.map_extra:
            raise BpfError(errno.EINVAL, f"map_extra {attr.map_extra:#x} is for BLOOM_FILTER maps")
        if attr.map_flags & BPF_F_RDONLY and attr.map_flags & BPF_F_WRONLY:
            raise BpfError(errno.EINVAL, "BPF_F_RDONLY and BPF_F_WRONLY together")
        if attr.map_flags & BPF_F_NUMA_NODE and attr.numa_node >= NR_NODE_IDS:
            raise BpfError(
                errno.EINVAL,
                f"numa_node {attr.numa_node} is not online (nodes: 0..{NR_NODE_IDS - 1})",
            )
        try:
            map_type = BpfMapType(attr.map_type)
        except ValueError:
            raise BpfError(errno.EINVAL, f"unknown map type {attr.map_type}") from None
        if map_type == BpfMapType.BPF_MAP_TYPE_UNSPEC:
            raise BpfError(errno.EINVAL, "map type 0 (BPF_MAP_TYPE_UNSPEC) has no implementation")
        if attr.map_ifindex:
            raise BpfError(
                errno.EINVAL, f"map_ifindex {attr.map_ifindex}: no device can offload maps"
            )
        if attr.map_flags & ~BPF_MAP_CREATE_FLAGS:
            raise BpfError(
                errno.EINVAL,
                f"map_flags {attr.map_flags:#x} has bits no map type accepts "
                f"({attr.map_flags & ~BPF_MAP_CREATE_FLAGS:#x})",
            )
        name = obj_name_from_bytes(attr.map_name, "map_name")
        return cls(
            map_type=map_type,
            key_size=attr.key_size,
            value_size=attr.value_size,
            max_entries=attr.max_entries,
            map_flags=attr.map_flags,
            name=name,
            numa_node=attr.numa_node if attr.map_flags & BPF_F_NUMA_NODE else 0,
            map_extra=attr.map_extra,
            inner_map_fd=attr.inner_map_fd,
            btf_fd=attr.btf_fd,
            btf_key_type_id=attr.btf_key_type_id,
            btf_value_type_id=attr.btf_value_type_id,
            btf_vmlinux_value_type_id=attr.btf_vmlinux_value_type_id,
        )

    def to_attr(self) -> BpfMapCreateAttr:
        """The attribute that creates this map (what libbpf would pack); the name must obey
        ``bpf_obj_name_cpy``'s rules."""
        return BpfMapCreateAttr(
            map_type=int(self.map_type),
            key_size=self.key_size,
            value_size=self.value_size,
            max_entries=self.max_entries,
            map_flags=self.map_flags,
            inner_map_fd=self.inner_map_fd,
            numa_node=self.numa_node,
            map_name=check_obj_name(self.name, "map name"),
            btf_fd=self.btf_fd,
            btf_key_type_id=self.btf_key_type_id,
            btf_value_type_id=self.btf_value_type_id,
            btf_vmlinux_value_type_id=self.btf_vmlinux_value_type_id,
            map_extra=self.map_extra,
        )
