"""Map handles: what a user-space program holds after creating a map, as libbpf gives it.

Every call packs a ``bpf_attr`` (and its key/value buffers) into the facade process's user
memory and enters the simulated ``bpf(2)``.  Failures are :class:`kbpf.BpfError` with Linux's
errno; lookups of absent keys return None, as API.md §3 says.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kbpf import linux_bpf as uapi
from kbpf.errors import BpfError
from kbpf.linux_bpf import BPF_ANY, BpfCmd, BpfMapType

if TYPE_CHECKING:  # pragma: no cover
    from sim.machine import Machine

PERCPU_TYPES = frozenset(
    {
        BpfMapType.BPF_MAP_TYPE_PERCPU_ARRAY,
        BpfMapType.BPF_MAP_TYPE_PERCPU_HASH,
        BpfMapType.BPF_MAP_TYPE_LRU_PERCPU_HASH,
        BpfMapType.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    }
)
KEYLESS_TYPES = frozenset({BpfMapType.BPF_MAP_TYPE_QUEUE, BpfMapType.BPF_MAP_TYPE_STACK})
_PREFIX = "BPF_MAP_TYPE_"


def map_type_from(value: BpfMapType | str | int) -> BpfMapType:
    """A ``BpfMapType`` from itself, its number, or its name (``"hash"``, ``"BPF_MAP_TYPE_HASH"``)."""
    if isinstance(value, BpfMapType):
        return value
    if isinstance(value, bool):
        raise ValueError(f"map type must be a BpfMapType, a name or a number, got {value!r}")
    if isinstance(value, int):
        try:
            return BpfMapType(value)
        except ValueError:
            raise BpfError(errno.EINVAL, f"unknown map type number {value}") from None
    if isinstance(value, str):
        key = value.strip().upper()
        key = key if key.startswith(_PREFIX) else _PREFIX + key
        if key in BpfMapType.__members__:
            return BpfMapType[key]
        choices = ", ".join(n[len(_PREFIX) :].lower() for n in BpfMapType.__members__)
        raise ValueError(f"unknown map type {value!r}; choose one of: {choices}")
    raise ValueError(f"map type must be a BpfMapType, a name or a number, got {value!r}")


def _round8(n: int) -> int:
    return (n + 7) & ~7


class MapHandle:
    """A map fd in the facade process, with libbpf-like element operations."""

    def __init__(self, machine: Machine, fd: int, info: uapi.BpfMapInfo):
        self.machine = machine
        self.fd = fd
        self.map_type = BpfMapType(info.type)
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.map_flags = info.map_flags
        self.name = info.name.split(b"\0", 1)[0].decode()
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"MapHandle(fd={self.fd}, {self.map_type.name[len(_PREFIX) :].lower()}, "
            f"name={self.name!r}, key_size={self.key_size}, value_size={self.value_size}, "
            f"max_entries={self.max_entries})"
        )

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        m: Machine,
        mtype: BpfMapType,
        key_size: int,
        value_size: int,
        max_entries: int,
        map_flags: int,
        name: str,
    ) -> MapHandle:
        for label, v in (
            ("key_size", key_size),
            ("value_size", value_size),
            ("max_entries", max_entries),
            ("map_flags", map_flags),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 32:
                raise BpfError(
                    errno.EINVAL, f"{label} must be an unsigned 32-bit integer, got {v!r}"
                )
        if not isinstance(name, str):
            raise BpfError(errno.EINVAL, f"map name must be a str, got {type(name).__name__}")
        raw_name = name.encode()
        if len(raw_name) > uapi.BPF_OBJ_NAME_LEN - 1:
            raise BpfError(errno.EINVAL, f"map name {name!r} is longer than 15 bytes")
        attr = uapi.BpfMapCreateAttr(
            map_type=int(mtype),
            key_size=key_size,
            value_size=value_size,
            max_entries=max_entries,
            map_flags=map_flags,
            map_name=raw_name,
        )
        calls = m.kernel.facade_calls
        calls.begin()
        fd = calls.bpf(BpfCmd.BPF_MAP_CREATE, attr.pack())
        return cls(m, fd, obj_info(m, fd, uapi.BpfMapInfo))

    # -- helpers ----------------------------------------------------------------------------
    @property
    def percpu(self) -> bool:
        return self.map_type in PERCPU_TYPES

    @property
    def _value_len(self) -> int:
        """Bytes of one value as user space sees it: per-CPU maps use round_up(size, 8) per CPU."""
        return self.machine.ncpus * _round8(self.value_size) if self.percpu else self.value_size

    def _check(self, what: str, data, size: int) -> bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise BpfError(errno.EINVAL, f"{what} must be bytes, got {type(data).__name__}")
        if len(data) != size:
            raise BpfError(
                errno.EINVAL,
                f"{what} of map {self.name or self.fd!s} must be {size} bytes, got {len(data)}",
            )
        return bytes(data)

    def _bpf(
        self,
        cmd: BpfCmd,
        key: bytes | None,
        value_len: int = 0,
        value: bytes | None = None,
        flags: int = 0,
        next_key: bool = False,
    ) -> bytes | None:
        if self._closed:
            raise BpfError(errno.EBADF, f"map fd {self.fd} is closed")
        calls = self.machine.kernel.facade_calls
        calls.begin()
        kptr = calls.put(key) if key is not None else 0
        if value is not None:
            vptr = calls.put(value)
        elif value_len:
            vptr = calls.buffer(value_len)
        else:
            vptr = 0
        attr = uapi.BpfMapElemAttr(map_fd=self.fd, key=kptr, value=vptr, flags=flags)
        calls.bpf(cmd, attr.pack())
        return calls.get(vptr, value_len) if value is None and value_len else None

    # -- element operations ---------------------------------------------------------------------
    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        key = self._check("key", key, self.key_size)
        value = self._check("value", value, self._value_len)
        self._bpf(BpfCmd.BPF_MAP_UPDATE_ELEM, key, value=value, flags=flags)

    def lookup(self, key: bytes) -> bytes | None:
        key = self._check("key", key, self.key_size)
        try:
            return self._bpf(BpfCmd.BPF_MAP_LOOKUP_ELEM, key, self._value_len)
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return None
            raise

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        if not self.percpu:
            raise BpfError(
                errno.EINVAL, f"map {self.name or self.fd!s} ({self.map_type.name}) is not per-CPU"
            )
        raw = self.lookup(key)
        if raw is None:
            return None
        step = _round8(self.value_size)
        return [raw[i * step : i * step + self.value_size] for i in range(self.machine.ncpus)]

    def delete(self, key: bytes) -> None:
        key = self._check("key", key, self.key_size)
        self._bpf(BpfCmd.BPF_MAP_DELETE_ELEM, key)

    def get_next_key(self, key: bytes | None = None) -> bytes | None:
        if self.map_type in KEYLESS_TYPES:
            raise BpfError(errno.EINVAL, f"{self.map_type.name} has no keys")
        if key is not None:
            key = self._check("key", key, self.key_size)
        calls = self.machine.kernel.facade_calls
        calls.begin()
        kptr = calls.put(key) if key is not None else 0
        nptr = calls.buffer(self.key_size)
        attr = uapi.BpfMapElemAttr(map_fd=self.fd, key=kptr, value=nptr)
        try:
            calls.bpf(BpfCmd.BPF_MAP_GET_NEXT_KEY, attr.pack())
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        return calls.get(nptr, self.key_size)

    def keys(self) -> Iterator[bytes]:
        key = self.get_next_key(None)
        while key is not None:
            yield key
            key = self.get_next_key(key)

    def lookup_and_delete(self, key: bytes) -> bytes:
        key = self._check("key", key, self.key_size)
        return self._bpf(BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM, key, self._value_len)

    def push(self, value: bytes, flags: int = BPF_ANY) -> None:
        value = self._check("value", value, self.value_size)
        self._bpf(BpfCmd.BPF_MAP_UPDATE_ELEM, None, value=value, flags=flags)

    def pop(self) -> bytes:
        return self._bpf(BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM, None, self.value_size)

    def peek(self) -> bytes:
        return self._bpf(BpfCmd.BPF_MAP_LOOKUP_ELEM, None, self.value_size)

    def freeze(self) -> None:
        if self._closed:
            raise BpfError(errno.EBADF, f"map fd {self.fd} is closed")
        calls = self.machine.kernel.facade_calls
        calls.begin()
        calls.bpf(BpfCmd.BPF_MAP_FREEZE, self.fd.to_bytes(4, "little"))

    def close(self) -> None:
        if self._closed:
            raise BpfError(errno.EBADF, f"map fd {self.fd} is already closed")
        self.machine.kernel.close(self.machine.kernel.facade, self.fd)
        self._closed = True


def obj_info(m: Machine, fd: int, layout):
    """BPF_OBJ_GET_INFO_BY_FD into a user buffer, unpacked with ``layout``."""
    calls = m.kernel.facade_calls
    calls.begin()
    buf = calls.buffer(layout.SIZE)
    attr = uapi.BpfObjGetInfoByFdAttr(bpf_fd=fd, info_len=layout.SIZE, info=buf)
    calls.bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr.pack())
    return layout.unpack(calls.get(buf, layout.SIZE))
