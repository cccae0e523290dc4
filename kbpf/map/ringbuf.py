"""BPF_MAP_TYPE_RINGBUF (kernel/bpf/ringbuf.c at v6.6, Documentation/bpf/ringbuf.rst).

One ring shared by every CPU: producers (programs) reserve records under one spinlock, fill them
without it and commit them in any order; one consumer (user space, through mmap) reads them in
reservation order and advances the consumer position.  kbpf-basic splits this into ``RingBuf``
(the vmap'd structure) and ``RingBufMap`` (the map); here :class:`RingBufMap` is both, and the
structure lives in simulated memory exactly where Linux puts ``struct bpf_ringbuf``:

``vmap([meta, consumer, producer, data 0..n-1, data 0..n-1])`` — one kernel virtual range:

* page 0 (:data:`RINGBUF_PGOFF` pages, not mmap-able): ``waitq``, ``irq_work``, ``mask``,
  ``pages``, ``nr_pages``, then the producer ``spinlock`` on its own cache line
  (:data:`RB_SPINLOCK_OFF`) and ``busy`` on the next.  kbpf adds one word, :data:`RB_MAP_OFF`: the
  address of the map, because a Python port cannot turn the ring's address back into the Python
  object by pointer arithmetic (``container_of``); commit reads it to find the ring a record
  belongs to, after restoring the ring's address from the record header as Linux does.
* page 1: ``consumer_pos`` (user space maps it writable and advances it);
* page 2: ``producer_pos`` (read-only to user space);
* pages 3…: the data pages, mapped *twice* back to back, so that a record which wraps past the end
  of the ring is contiguous in virtual memory, for the kernel and for user space alike.

The positions are free-running 64-bit byte counts; ``pos & mask`` is the offset in the data
area.  Both are read and written in those pages through the host (the consumer writes its
position through its own mapping of the same frame).  Records exist only in the data pages: an
8-byte header (``len`` with :data:`BPF_RINGBUF_BUSY_BIT` while reserved and
:data:`BPF_RINGBUF_DISCARD_BIT` once discarded; ``pg_off``, the header's page offset from the
ring) then the sample, the whole rounded up to 8 bytes.

A reservation fails (NULL) when ``new_prod_pos - cons_pos > mask``: the producer may never get a
whole ring ahead of the consumer, so at most ``size - 8`` bytes are ever in use.  v6.6 has no
``pending_pos`` check (a later kernel's) and takes the lock with ``spin_lock_irqsave`` (a
trylock in NMI, which kbpf never runs in).

**Reservation regions.**  Linux's verifier lets a program touch exactly the bytes of a record it
reserved until it submits or discards it.  kbpf-sim checks at run time instead, so the ring
tells its host which ranges are live: :meth:`RingBufMap.reservations` lists each live record's
``[sample, sample + size)`` (the address the reserve helper returned), and
:attr:`RingBufMap.reservation_version` changes whenever that list does (every reserve and
commit).  A host that follows reservations uses them *instead of* :meth:`program_regions`, which
gives the coarse answer (the whole double-mapped data area, writable) for hosts that do not.

Wakeups: the ring needs a :class:`kbpf.host.PollWaker` (kbpf-basic's ``bpf_map_create`` refuses a
RINGBUF without one: EINVAL); a commit calls ``wake_up()`` where Linux queues the ring's
``irq_work`` (which wakes the wait queue): always with ``BPF_RB_FORCE_WAKEUP``, never with
``BPF_RB_NO_WAKEUP``, otherwise only when the consumer has caught up to exactly this record.
"""

from __future__ import annotations

import errno
from enum import IntEnum

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.host import Acquire, KernelAuxiliaryOps, Lock, Op, Release, Touch, Work
from kbpf.linux_bpf import (
    BPF_F_NUMA_NODE,
    BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP,
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
    PAGE_SIZE,
)
from kbpf.map.meta import BpfMapMeta
from kbpf.map.ops import BPF_MAP_STRUCT_SIZE, BpfMapOps, round_up

PAGE_SHIFT = 12
#: ``RINGBUF_CREATE_FLAG_MASK``.
RINGBUF_CREATE_FLAG_MASK = BPF_F_NUMA_NODE
#: ``RINGBUF_PGOFF``: pages of ``struct bpf_ringbuf`` before ``consumer_pos`` (not mmap-able).
RINGBUF_PGOFF = 1
#: ``RINGBUF_POS_PAGES``: the consumer page and the producer page.
RINGBUF_POS_PAGES = 2
#: ``RINGBUF_NR_META_PAGES``.
RINGBUF_NR_META_PAGES = RINGBUF_PGOFF + RINGBUF_POS_PAGES
#: ``RINGBUF_MAX_RECORD_SZ``: the largest sample a reservation may ask for.
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF // 4
#: ``RINGBUF_MAX_DATA_SZ``: ``pg_off`` is 24 bits of pages, less the meta pages.
RINGBUF_MAX_DATA_SZ = ((1 << 24) - RINGBUF_POS_PAGES - RINGBUF_PGOFF) * PAGE_SIZE

# Fields of ``struct bpf_ringbuf`` in its first page (x86-64 v6.6 layout, rounded):
#: ``u64 mask``.
RB_MASK_OFF = 56
#: ``struct page **pages`` (kbpf: the address of the page array).
RB_PAGES_OFF = 64
#: ``int nr_pages``.
RB_NR_PAGES_OFF = 72
#: kbpf's addition: the address of the map (``struct bpf_ringbuf_map``) owning the ring.
RB_MAP_OFF = 80
#: ``spinlock_t spinlock ____cacheline_aligned_in_smp``.
RB_SPINLOCK_OFF = 128
#: ``atomic_t busy ____cacheline_aligned_in_smp`` (user ring buffers; unused by kernel producers).
RB_BUSY_OFF = 192
#: ``consumer_pos``, ``producer_pos`` and ``data``, each page-aligned.
RB_CONSUMER_POS_OFF = RINGBUF_PGOFF * PAGE_SIZE
RB_PRODUCER_POS_OFF = RB_CONSUMER_POS_OFF + PAGE_SIZE
RB_DATA_OFF = RB_PRODUCER_POS_OFF + PAGE_SIZE
#: ``sizeof(struct bpf_ringbuf_map)``: the map header and the ``rb`` pointer.
RINGBUF_MAP_STRUCT_SIZE = BPF_MAP_STRUCT_SIZE + 8

_LEN_MASK = ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) & 0xFFFFFFFF
_U64 = (1 << 64) - 1


def _u64(addr: int) -> bytes:
    return (addr & _U64).to_bytes(8, "little")


class BpfRingBufHdr:
    """``struct bpf_ringbuf_hdr``: ``u32 len`` (with the busy and discard bits), ``u32 pg_off``."""

    __slots__ = ("len", "pg_off")
    SIZE = BPF_RINGBUF_HDR_SZ

    def __init__(self, len: int, pg_off: int):  # noqa: A002 - the kernel's field name
        self.len = len
        self.pg_off = pg_off

    @classmethod
    def unpack(cls, raw: bytes) -> BpfRingBufHdr:
        return cls(int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:8], "little"))

    def pack(self) -> bytes:
        return self.len.to_bytes(4, "little") + self.pg_off.to_bytes(4, "little")

    @property
    def busy(self) -> bool:
        return bool(self.len & BPF_RINGBUF_BUSY_BIT)

    @property
    def discarded(self) -> bool:
        return bool(self.len & BPF_RINGBUF_DISCARD_BIT)

    @property
    def sample_len(self) -> int:
        """The sample's length without the flag bits."""
        return self.len & _LEN_MASK


def record_len(sample_size: int) -> int:
    """Bytes a record of ``sample_size`` occupies: header and sample rounded up to 8."""
    return round_up(sample_size + BPF_RINGBUF_HDR_SZ, 8)


class RingBufMap(BpfMapOps):
    """BPF_MAP_TYPE_RINGBUF (``ringbuf_map_ops``): ``struct bpf_ringbuf_map`` with its ring."""

    # -- allocation ---------------------------------------------------------------------------
    @classmethod
    def alloc_check(cls, meta: BpfMapMeta, percpu_ops) -> None:
        """``ringbuf_map_alloc``'s checks (v6.6 has no ``map_alloc_check`` for the ring)."""
        flags = meta.map_flags
        if flags & ~RINGBUF_CREATE_FLAG_MASK:
            raise BpfError(
                errno.EINVAL,
                f"map_flags {flags & ~RINGBUF_CREATE_FLAG_MASK:#x} not valid for a ring buffer "
                "(only BPF_F_NUMA_NODE)",
            )
        if meta.key_size or meta.value_size:
            raise BpfError(
                errno.EINVAL,
                f"ring buffer key_size {meta.key_size} / value_size {meta.value_size}, expected 0",
            )
        size = meta.max_entries
        if size == 0 or size & (size - 1):
            raise BpfError(errno.EINVAL, f"ring buffer max_entries {size} is not a power of 2")
        if size % PAGE_SIZE:
            raise BpfError(
                errno.EINVAL, f"ring buffer max_entries {size} is not a multiple of {PAGE_SIZE}"
            )
        if size > RINGBUF_MAX_DATA_SZ:
            raise BpfError(
                errno.E2BIG, f"ring buffer of {size} bytes exceeds {RINGBUF_MAX_DATA_SZ}"
            )

    def __init__(self, meta, host, percpu_ops, poll_waker=None):
        """``ringbuf_map_alloc`` / ``bpf_ringbuf_alloc``: the map structure, the page array,
        the pages, and the double mapping."""
        if poll_waker is None:
            raise BpfError(errno.EINVAL, "a ring buffer needs a poll waker for its consumers")
        super().__init__(meta, host, percpu_ops, poll_waker)
        self.mask = meta.max_entries - 1
        nr_data_pages = meta.max_entries >> PAGE_SHIFT
        nr_pages = RINGBUF_NR_META_PAGES + nr_data_pages
        #: Frames in allocation order (meta, consumer, producer, data…).
        self.pages: list[int] = []
        #: Frames as mapped: the data frames appear twice (``rb->pages`` of Linux).
        self.phys_addrs: list[int] = []
        self.nr_pages = nr_pages
        self.map_addr = host.kmalloc(RINGBUF_MAP_STRUCT_SIZE, 64)
        self._pages_array = 0
        self.rb = 0
        try:
            self._pages_array = host.kmalloc(8 * (RINGBUF_NR_META_PAGES + 2 * nr_data_pages), 8)
            for _ in range(nr_pages):
                self.pages.append(host.alloc_page())
            self.phys_addrs = self.pages + self.pages[RINGBUF_NR_META_PAGES:]
            self.rb = host.vmap(self.phys_addrs)
        except BpfError:
            self._release()
            raise
        rb = self.rb
        host.write(self._pages_array, b"".join(_u64(p) for p in self.phys_addrs))
        host.write(self.map_addr + BPF_MAP_STRUCT_SIZE, _u64(rb))
        host.write(rb + RB_MASK_OFF, _u64(self.mask))
        host.write(rb + RB_PAGES_OFF, _u64(self._pages_array))
        host.write(rb + RB_NR_PAGES_OFF, nr_pages.to_bytes(4, "little"))
        host.write(rb + RB_MAP_OFF, _u64(self.map_addr))
        self.consumer_pos_addr = rb + RB_CONSUMER_POS_OFF
        self.producer_pos_addr = rb + RB_PRODUCER_POS_OFF
        #: The data area's first mapping; ``data + size …`` is the second.
        self.data = rb + RB_DATA_OFF
        label = meta.name or "ringbuf"
        #: ``rb->spinlock``: serialises producers' reservations.
        self.spinlock = Lock(rb + RB_SPINLOCK_OFF, f"ringbuf {label}")
        #: Live reservations: sample address -> sample size, in reservation order.
        self._reserved: dict[int, int] = {}
        #: Changes whenever :meth:`reservations` does.
        self.reservation_version = 0

    def _release(self) -> None:
        if self.rb:
            self.host.unmap(self.rb)
            self.rb = 0
        for phys in self.pages:
            self.host.free_page(phys)
        self.pages = []
        self.phys_addrs = []
        if self._pages_array:
            self.host.kfree(self._pages_array)
            self._pages_array = 0
        if self.map_addr:
            self.host.kfree(self.map_addr)
            self.map_addr = 0

    def map_free(self) -> None:
        """``ringbuf_map_free``: unmap, free the pages, the page array and the map."""
        self._release()

    # -- positions ------------------------------------------------------------------------------
    def total_data_size(self) -> int:
        """``ringbuf_total_data_sz``."""
        return self.mask + 1

    def consumer_pos(self) -> int:
        """``smp_load_acquire(&rb->consumer_pos)`` (as user space last stored it)."""
        return int.from_bytes(self.host.read(self.consumer_pos_addr, 8), "little")

    def producer_pos(self) -> int:
        """``smp_load_acquire(&rb->producer_pos)``."""
        return int.from_bytes(self.host.read(self.producer_pos_addr, 8), "little")

    def avail_data_size(self) -> int:
        """``ringbuf_avail_data_sz``: bytes reserved and not consumed (busy records too)."""
        return (self.producer_pos() - self.consumer_pos()) & _U64

    def bpf_ringbuf_rec_pg_off(self, hdr: int) -> int:
        """The header's page offset from the ring (stored in the header)."""
        return (hdr - self.rb) >> PAGE_SHIFT

    # -- producing ------------------------------------------------------------------------------
    def reserve(self, size: int) -> Op:
        """``__bpf_ringbuf_reserve``: the sample address of a new busy record of ``size``
        bytes, or 0 when it cannot be had (too large, or not enough room: a dropped record,
        reported as ``Work("ringbuf_drop")``)."""
        if size > RINGBUF_MAX_RECORD_SZ:
            yield Work("ringbuf_drop")
            return 0
        length = record_len(size)
        yield Touch(self.rb + RB_MASK_OFF, 8)
        if length > self.total_data_size():
            yield Work("ringbuf_drop")
            return 0
        yield Touch(self.consumer_pos_addr, 8)
        cons_pos = self.consumer_pos()
        yield Acquire(self.spinlock)
        yield Touch(self.producer_pos_addr, 8)
        prod_pos = self.producer_pos()
        new_prod_pos = prod_pos + length
        # out of space: the producer may not get more than (size - 1) bytes ahead
        if ((new_prod_pos - cons_pos) & _U64) > self.mask:
            yield Release(self.spinlock)
            yield Work("ringbuf_drop")
            return 0
        hdr = self.data + (prod_pos & self.mask)
        yield Touch(hdr, BPF_RINGBUF_HDR_SZ, True)
        self.host.write(
            hdr, BpfRingBufHdr(size | BPF_RINGBUF_BUSY_BIT, self.bpf_ringbuf_rec_pg_off(hdr)).pack()
        )
        yield Touch(self.producer_pos_addr, 8, True)
        self.host.write(self.producer_pos_addr, _u64(new_prod_pos))
        sample = hdr + BPF_RINGBUF_HDR_SZ
        self._reserved[sample] = size
        self.reservation_version += 1
        yield Release(self.spinlock)
        return sample

    @staticmethod
    def bpf_ringbuf_restore_from_rec(host: KernelAuxiliaryOps, sample: int) -> Op:
        """The ring owning the record whose sample is at ``sample``: restore the ring's address
        from the header's ``pg_off`` as Linux does, then find the map through kbpf's
        back-pointer.  A pointer that is no live reservation (never reserved, already
        committed, forged) is ``BpfError(EFAULT)``: the verifier would have rejected the program
        that passed it."""
        hdr = sample - BPF_RINGBUF_HDR_SZ
        try:
            yield Touch(hdr, BPF_RINGBUF_HDR_SZ)
            header = BpfRingBufHdr.unpack(host.read(hdr, BPF_RINGBUF_HDR_SZ))
            rb = (hdr & ~(PAGE_SIZE - 1)) - (header.pg_off << PAGE_SHIFT)
            yield Touch(rb + RB_MAP_OFF, 8)
            map_ptr = int.from_bytes(host.read(rb + RB_MAP_OFF, 8), "little")
            ops = host.get_unified_map_from_ptr(map_ptr).ops
        except BpfError:
            ops = None
        if not isinstance(ops, RingBufMap) or ops.rb != rb or sample not in ops._reserved:
            raise BpfError(errno.EFAULT, f"{sample:#x} is not a reserved ring buffer record")
        return ops

    def commit(self, sample: int, flags: int, discard: bool) -> Op:
        """``bpf_ringbuf_commit``: clear the busy bit (and set the discard bit for a discard)
        with one exchange, then wake the consumer per the flags and the caught-up rule.
        Flags other than the two wakeup bits are ignored, as Linux ignores them.  Returns
        whether a wakeup was issued."""
        size = self._reserved.pop(sample, None)
        if size is None:
            raise BpfError(errno.EFAULT, f"{sample:#x} is not a reserved ring buffer record")
        self.reservation_version += 1
        hdr = sample - BPF_RINGBUF_HDR_SZ
        new_len = int.from_bytes(self.host.read(hdr, 4), "little") ^ BPF_RINGBUF_BUSY_BIT
        if discard:
            new_len |= BPF_RINGBUF_DISCARD_BIT
        yield Touch(hdr, 4, True)  # xchg(&hdr->len, new_len)
        self.host.write(hdr, new_len.to_bytes(4, "little"))
        rec_pos = hdr - self.data
        yield Touch(self.consumer_pos_addr, 8)
        cons_pos = self.consumer_pos() & self.mask
        if flags & BPF_RB_FORCE_WAKEUP or (cons_pos == rec_pos and not flags & BPF_RB_NO_WAKEUP):
            # Linux queues irq_work whose handler wakes the wait queue on this CPU: the producer
            # pays for the wake-up (reported, for the host to price).
            yield Work("ringbuf_wakeup")
            self.poll_waker.wake_up()
            return True
        return False

    def reservations(self) -> list[tuple[int, int]]:
        """``[sample, sample + size)`` of every live reservation, in reservation order (a
        zero-size reservation gives an empty range)."""
        return [(s, s + n) for s, n in self._reserved.items()]

    def query(self, flags: int) -> Op:
        """``bpf_ringbuf_query``: AVAIL_DATA, RING_SIZE, CONS_POS or PROD_POS; 0 for any other
        flag.  Momentary snapshots, as in Linux."""
        if flags == 0:  # BPF_RB_AVAIL_DATA
            yield Touch(self.consumer_pos_addr, 8)
            yield Touch(self.producer_pos_addr, 8)
            return self.avail_data_size()
        if flags == 1:  # BPF_RB_RING_SIZE
            yield Touch(self.rb + RB_MASK_OFF, 8)
            return self.total_data_size()
        if flags == 2:  # BPF_RB_CONS_POS
            yield Touch(self.consumer_pos_addr, 8)
            return self.consumer_pos()
        if flags == 3:  # BPF_RB_PROD_POS
            yield Touch(self.producer_pos_addr, 8)
            return self.producer_pos()
        return 0

    # -- the map operations ---------------------------------------------------------------------
    def lookup_elem(self, key: bytes) -> Op:
        """``ringbuf_map_lookup_elem``: ENOTSUPP (records are not elements)."""
        raise BpfError(ENOTSUPP, "ring buffers have no elements to look up")
        yield

    def update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        raise BpfError(ENOTSUPP, "ring buffers have no elements to update")
        yield

    def delete_elem(self, key: bytes) -> Op:
        raise BpfError(ENOTSUPP, "ring buffers have no elements to delete")
        yield

    def get_next_key(self, key: bytes | None) -> Op:
        raise BpfError(ENOTSUPP, "ring buffers have no keys")
        yield

    # -- queries ------------------------------------------------------------------------------
    def map_mem_usage(self) -> int:
        """``ringbuf_map_mem_usage``: the map structure, the pages, and the page array (with the
        data pages counted twice, as they are mapped)."""
        nr_data_pages = (self.mask + 1) >> PAGE_SHIFT
        return (
            RINGBUF_MAP_STRUCT_SIZE
            + (self.nr_pages << PAGE_SHIFT)
            + (RINGBUF_NR_META_PAGES + 2 * nr_data_pages) * 8
        )

    def map_mmap(self, offset: int, size: int, read: bool, write: bool) -> list[int]:
        """``ringbuf_map_mmap_kern``: the frames behind ``[offset, offset + size)`` of the
        user-visible layout ``consumer page | producer page | data | data``, as
        ``remap_vmalloc_range`` maps them from page ``RINGBUF_PGOFF`` of the ring.

        Permissions come per mapping, as libbpf makes two: a writable mapping must be exactly
        the consumer page (EPERM otherwise); everything else is mapped read-only (the host
        must not let it become writable: Linux clears ``VM_MAYWRITE``).  A range past the end
        of the double-mapped area is EINVAL."""
        if offset < 0 or offset % PAGE_SIZE or size <= 0:
            raise BpfError(errno.EINVAL, f"mmap offset {offset} / size {size} not page-aligned")
        npages = -(-size // PAGE_SIZE)
        if write and (offset != 0 or npages != 1):
            raise BpfError(errno.EPERM, "only the consumer position page may be mapped writable")
        first = RINGBUF_PGOFF + offset // PAGE_SIZE
        if first + npages > len(self.phys_addrs):
            raise BpfError(
                errno.EINVAL,
                f"mmap of [{offset}, {offset + npages * PAGE_SIZE}) beyond the ring's "
                f"{(len(self.phys_addrs) - RINGBUF_PGOFF) * PAGE_SIZE} mappable bytes",
            )
        return self.phys_addrs[first : first + npages]

    def readable(self) -> bool:
        """``ringbuf_map_poll_kern``: EPOLLIN while data is available (records reserved and not
        consumed, busy ones included)."""
        return self.producer_pos() != self.consumer_pos()

    def program_regions(self) -> list[tuple[int, int, bool]]:
        """The coarse answer: both mappings of the data area, writable.  Exact hosts use
        :meth:`reservations` instead (see the module docstring)."""
        return [(self.data, self.data + 2 * self.total_data_size(), True)]


# ---------------------------------------------------------------------------------------------
# struct bpf_dynptr_kern (include/linux/bpf.h at v6.6)
# ---------------------------------------------------------------------------------------------


class BpfDynptrType(IntEnum):
    """``enum bpf_dynptr_type``."""

    BPF_DYNPTR_TYPE_INVALID = 0
    BPF_DYNPTR_TYPE_LOCAL = 1
    BPF_DYNPTR_TYPE_RINGBUF = 2
    BPF_DYNPTR_TYPE_SKB = 3
    BPF_DYNPTR_TYPE_XDP = 4


#: ``DYNPTR_MAX_SIZE``: the upper 8 bits of ``size`` hold the type and the read-only bit.
DYNPTR_MAX_SIZE = (1 << 24) - 1
DYNPTR_TYPE_SHIFT = 28
DYNPTR_SIZE_MASK = 0xFFFFFF
DYNPTR_RDONLY_BIT = 1 << 31
#: ``sizeof(struct bpf_dynptr_kern)``: ``void *data; u32 size; u32 offset;``.
BPF_DYNPTR_SIZE = 16


class BpfDynPtr:
    """``struct bpf_dynptr_kern`` as it lies in program memory: ``data`` (8 bytes), ``size``
    (bits 0-23 the size, 28-30 the type, 31 read-only), ``offset``."""

    __slots__ = ("data", "size", "offset")

    def __init__(self, data: int = 0, size: int = 0, offset: int = 0):
        self.data = data
        self.size = size
        self.offset = offset

    @classmethod
    def unpack(cls, raw: bytes) -> BpfDynPtr:
        return cls(
            int.from_bytes(raw[0:8], "little"),
            int.from_bytes(raw[8:12], "little"),
            int.from_bytes(raw[12:16], "little"),
        )

    def pack(self) -> bytes:
        return (
            _u64(self.data)
            + (self.size & 0xFFFFFFFF).to_bytes(4, "little")
            + (self.offset & 0xFFFFFFFF).to_bytes(4, "little")
        )

    @staticmethod
    def check_size(size: int) -> None:
        """``bpf_dynptr_check_size``: E2BIG above ``DYNPTR_MAX_SIZE``."""
        if size > DYNPTR_MAX_SIZE:
            raise BpfError(
                errno.E2BIG, f"dynptr size {size} exceeds DYNPTR_MAX_SIZE ({DYNPTR_MAX_SIZE})"
            )

    @classmethod
    def init(cls, data: int, dynptr_type: BpfDynptrType, offset: int, size: int) -> BpfDynPtr:
        """``bpf_dynptr_init``."""
        return cls(data, size | int(dynptr_type) << DYNPTR_TYPE_SHIFT, offset)

    @property
    def is_null(self) -> bool:
        return self.data == 0

    @property
    def rdonly(self) -> bool:
        """``__bpf_dynptr_is_rdonly``."""
        return bool(self.size & DYNPTR_RDONLY_BIT)

    @property
    def dynptr_type(self) -> int:
        """``bpf_dynptr_get_type``."""
        return (self.size & ~DYNPTR_RDONLY_BIT & 0xFFFFFFFF) >> DYNPTR_TYPE_SHIFT

    @property
    def usable_size(self) -> int:
        """``__bpf_dynptr_size``."""
        return self.size & DYNPTR_SIZE_MASK

    def check_off_len(self, offset: int, length: int) -> None:
        """``bpf_dynptr_check_off_len``: E2BIG unless ``[offset, offset + length)`` lies within
        the usable size."""
        size = self.usable_size
        if length > size or offset > size - length:
            raise BpfError(
                errno.E2BIG, f"dynptr access of {length} bytes at {offset} beyond its {size} bytes"
            )
