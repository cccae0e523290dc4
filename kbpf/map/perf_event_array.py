"""BPF_MAP_TYPE_PERF_EVENT_ARRAY (``perf_event_array_map_ops`` of kernel/bpf/arraymap.c and
``__bpf_perf_event_output`` of kernel/trace/bpf_trace.c, v6.6; kbpf-basic's
``PerfEventArrayMap``).

An fd array: keys are u32 indices ``0 .. max_entries-1`` (usually one per CPU); on the syscall
side a value is a perf event fd (4 bytes), in the kernel a slot holds a pointer to a ``struct
bpf_event_entry`` ``{event, perf_file, map_file}`` or NULL.  Layout as ``array_map_alloc``
makes it for a non-per-CPU array: the ``struct bpf_array`` header (the map's address) followed by
``ptrs[max_entries]``, 8 bytes each (``elem_size = round_up(4, 8)``).

Operations, as Linux has them:

* create (``fd_array_map_alloc_check``): ``value_size`` must be 4 and BPF_F_RDONLY_PROG /
  BPF_F_WRONLY_PROG are refused (EINVAL), then the array rules (BPF_F_PRESERVE_ELEMS is allowed
  here and only here);
* syscall update (``bpf_fd_array_map_update_elem``): flags other than BPF_ANY -> EINVAL, index
  out of range -> E2BIG, an fd that is no perf event -> EBADF, an inheriting event -> EOPNOTSUPP;
  the entry replaces the old one, whose event reference is dropped;
* delete (``fd_array_map_delete_elem``): out of range -> E2BIG, empty -> ENOENT;
* syscall lookup: ENOTSUPP (perf event arrays have no ``map_fd_sys_lookup_elem``); the
  program-side lookup is ``fd_array_map_lookup_elem``'s EOPNOTSUPP (the verifier forbids it);
  there is no program-side update (ENOTSUPP, centrally);
* get_next_key: as arrays;
* release (``perf_event_fd_array_release``): when a map file is closed, the entries it inserted
  go, unless the map was created BPF_F_PRESERVE_ELEMS; freeing a BPF_F_PRESERVE_ELEMS map clears
  what is left;
* :meth:`PerfEventArrayMap.event_output`: the map half of ``bpf_perf_event_output``.

No locks: slots change by ``xchg`` and readers use RCU.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.host import Op, Touch
from kbpf.linux_bpf import (
    BPF_ANY,
    BPF_F_CURRENT_CPU,
    BPF_F_INDEX_MASK,
    BPF_F_PRESERVE_ELEMS,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY_PROG,
)
from kbpf.map.array import ARRAY_VALUE_OFFSET, U32_MAX, ArrayMap
from kbpf.map.meta import BpfMapMeta
from kbpf.map.ops import BpfMapOps
from kbpf.perf.event import EV_ATTR, EV_STATE, BpfPerfEvent

#: ``sizeof(struct bpf_event_entry)``: event, perf_file, map_file, rcu_head.
BPF_EVENT_ENTRY_SIZE = 40
#: ``offsetof(struct bpf_map, max_entries)`` (ops, inner_map_meta, security, map_type,
#: key_size, value_size, max_entries).
MAP_MAX_ENTRIES_OFFSET = 36


@dataclass(eq=False)
class EventEntry:
    """``struct bpf_event_entry``: a slot's event, the map file that inserted it (what release
    compares) and the kernel address of the entry."""

    addr: int
    event: BpfPerfEvent
    map_file: object


def _index(key: bytes) -> int:
    return int.from_bytes(key[:4], "little")


class PerfEventArrayMap(BpfMapOps):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY (see the module docstring)."""

    @classmethod
    def alloc_check(cls, meta: BpfMapMeta, percpu_ops) -> None:
        """``fd_array_map_alloc_check``, then ``array_map_alloc_check``."""
        if meta.value_size != 4:
            raise BpfError(
                errno.EINVAL, f"PERF_EVENT_ARRAY value_size {meta.value_size}, expected 4 (an fd)"
            )
        if meta.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
            raise BpfError(
                errno.EINVAL, "BPF_F_RDONLY_PROG/BPF_F_WRONLY_PROG are not for PERF_EVENT_ARRAY"
            )
        ArrayMap.alloc_check(meta, percpu_ops)

    def __init__(self, meta, host, percpu_ops, poll_waker=None):
        """``array_map_alloc``: the header and a zeroed ``ptrs[]`` array."""
        super().__init__(meta, host, percpu_ops, poll_waker)
        self.max_entries = meta.max_entries
        self.map_addr = host.kmalloc(ARRAY_VALUE_OFFSET + 8 * self.max_entries, 64)
        #: Kernel address of ``ptrs[0]``.
        self.slots = self.map_addr + ARRAY_VALUE_OFFSET
        self.entries: dict[int, EventEntry] = {}

    def map_free(self) -> None:
        """``perf_event_fd_array_map_free``: a BPF_F_PRESERVE_ELEMS map clears its entries now;
        any other map had them removed when its files were released (kbpf clears what is left
        either way, so no event reference outlives the map)."""
        for index in sorted(self.entries):
            self._remove(index)
        if self.map_addr:
            self.host.kfree(self.map_addr)
            self.map_addr = 0

    # -- slots ------------------------------------------------------------------------------------
    def _slot(self, index: int) -> int:
        return self.slots + 8 * index

    def _remove(self, index: int) -> EventEntry | None:
        """``xchg(ptrs + index, NULL)`` and ``perf_event_fd_array_put_ptr``: the entry is freed
        after an RCU grace period, dropping its event reference (kbpf frees it at once: a reader
        keeps its own reference to the event)."""
        entry = self.entries.pop(index, None)
        self.host.write(self._slot(index), bytes(8))
        if entry is not None:
            self.host.kfree(entry.addr)
            entry.event.put()
        return entry

    def event_at(self, index: int) -> BpfPerfEvent | None:
        """The event in slot ``index`` (None when empty)."""
        entry = self.entries.get(index)
        return None if entry is None else entry.event

    # -- operations ------------------------------------------------------------------------------
    def lookup_elem(self, key: bytes) -> Op:
        """``fd_array_map_lookup_elem``: programs cannot look into an fd array."""
        raise BpfError(errno.EOPNOTSUPP, "PERF_EVENT_ARRAY elements cannot be looked up")
        yield

    def sys_lookup_elem(self, key: bytes, flags: int) -> Op:
        """``bpf_fd_array_map_lookup_elem``: perf event arrays have no
        ``map_fd_sys_lookup_elem``, so every syscall lookup is ENOTSUPP."""
        raise BpfError(ENOTSUPP, "PERF_EVENT_ARRAY has no syscall lookup")
        yield

    def sys_update_elem(self, key: bytes, value: bytes, flags: int, map_file: object = None) -> Op:
        """``bpf_fd_array_map_update_elem`` with ``perf_event_fd_array_get_ptr``: store the perf
        event behind the fd in ``value`` at index ``key``.  ``map_file`` is the open file of the
        map the update came through (what :meth:`map_release` later compares); the host passes
        it."""
        if flags != BPF_ANY:
            raise BpfError(errno.EINVAL, f"fd array update flags {flags:#x}: only BPF_ANY")
        index = _index(key)
        if index >= self.max_entries:
            raise BpfError(
                errno.E2BIG, f"index {index} out of range (max_entries {self.max_entries})"
            )
        fd = int.from_bytes(value[:4], "little", signed=True)
        event = self.host.get_perf_event_from_fd(fd)
        event.check_read_local()
        addr = self.host.kmalloc(BPF_EVENT_ENTRY_SIZE, 8)
        self.host.write(addr, event.addr.to_bytes(8, "little"))
        yield Touch(addr, BPF_EVENT_ENTRY_SIZE, True)
        event.get()
        slot = self._slot(index)
        yield Touch(slot, 8, True)
        old = self.entries.get(index)
        self.host.write(slot, addr.to_bytes(8, "little"))
        self.entries[index] = EventEntry(addr, event, map_file)
        if old is not None:
            self.host.kfree(old.addr)
            old.event.put()

    def delete_elem(self, key: bytes) -> Op:
        """``fd_array_map_delete_elem``: E2BIG out of range, ENOENT for an empty slot."""
        index = _index(key)
        if index >= self.max_entries:
            raise BpfError(
                errno.E2BIG, f"index {index} out of range (max_entries {self.max_entries})"
            )
        yield Touch(self._slot(index), 8, True)
        if self._remove(index) is None:
            raise BpfError(errno.ENOENT, f"slot {index} holds no perf event")

    def get_next_key(self, key: bytes | None) -> Op:
        """``array_map_get_next_key``: every index counts, empty or not."""
        index = U32_MAX if key is None else _index(key)
        if index >= self.max_entries:
            return (0).to_bytes(4, "little")
        if index == self.max_entries - 1:
            raise BpfError(errno.ENOENT, "no key after the last index")
        return (index + 1).to_bytes(4, "little")
        yield

    def map_release(self, map_file: object) -> Op:
        """``perf_event_fd_array_release``, run by the host when an open file of this map is
        released (its last fd closed): the entries inserted through ``map_file`` are deleted,
        unless the map was created BPF_F_PRESERVE_ELEMS.  Returns how many went."""
        if self.meta.map_flags & BPF_F_PRESERVE_ELEMS:
            return 0
        removed = 0
        yield Touch(self.slots, 8 * self.max_entries)  # READ_ONCE(ptrs[i]) for every i
        for index in range(self.max_entries):
            entry = self.entries.get(index)
            if entry is not None and entry.map_file is map_file:
                yield Touch(entry.addr, 24)
                yield Touch(self._slot(index), 8, True)
                self._remove(index)
                removed += 1
        return removed

    # -- bpf_perf_event_output ---------------------------------------------------------------------
    def event_output(self, flags: int, data_ptr: int, size: int) -> Op:
        """``__bpf_perf_event_output``: pick the slot (``flags & BPF_F_INDEX_MASK``, or the
        current CPU's for BPF_F_CURRENT_CPU), check it (E2BIG beyond max_entries, ENOENT when
        empty, EINVAL unless a software BPF_OUTPUT event, EOPNOTSUPP unless the event runs on
        this CPU), then write ``size`` bytes of program memory at ``data_ptr`` as one sample.
        Returns 0; a full ring or a missing one raise ENOSPC."""
        host = self.host
        cpu = host.current_cpu_id()
        index = flags & BPF_F_INDEX_MASK
        if index == BPF_F_CURRENT_CPU:
            index = cpu
        yield Touch(self.map_addr + MAP_MAX_ENTRIES_OFFSET, 4)
        if index >= self.max_entries:
            raise BpfError(
                errno.E2BIG, f"perf index {index} out of range (max_entries {self.max_entries})"
            )
        yield Touch(self._slot(index), 8)
        entry = self.entries.get(index)
        if entry is None:
            raise BpfError(errno.ENOENT, f"PERF_EVENT_ARRAY slot {index} is empty")
        event = entry.event
        yield Touch(entry.addr, 8)
        yield Touch(event.addr + EV_ATTR, 16)
        if not event.is_bpf_output:
            raise BpfError(
                errno.EINVAL, f"slot {index} holds no PERF_COUNT_SW_BPF_OUTPUT software event"
            )
        yield Touch(event.addr + EV_STATE, 8)
        if event.oncpu != cpu:
            raise BpfError(
                errno.EOPNOTSUPP,
                f"perf event of slot {index} runs on CPU {event.oncpu}, not on CPU {cpu}",
            )
        if size > 0xFFFF:  # could never fit perf_event_header.size (see BpfPerfEvent.write_event)
            raise BpfError(errno.E2BIG, f"perf_event_output of {size} bytes exceeds a u16 record")
        data = b""
        if size:
            yield Touch(data_ptr, size)
            data = host.read(data_ptr, size)
        return (yield from event.write_event(data))

    # -- queries ----------------------------------------------------------------------------------
    def map_mem_usage(self) -> int:
        """``array_map_mem_usage``: the header and 8 bytes per slot."""
        return ARRAY_VALUE_OFFSET + 8 * self.max_entries
