"""BPF_MAP_TYPE_HASH and BPF_MAP_TYPE_PERCPU_HASH (kernel/bpf/hashtab.c at v6.6), and the
hash-table machinery the LRU hash maps build on.

The point of porting the hash table rather than wrapping a dict is that its *mechanism* is what
costs: which bucket a key hashes to (``jhash`` with the map's seed), how long the chain is that a
lookup walks, which bucket lock an update takes and how long it holds it, which per-CPU free list
an element comes from.  So kbpf lays the table out as the kernel does and reports each of those
steps to its host.

Memory, as Linux v6.6 lays it out on x86-64
-------------------------------------------

* ``struct bpf_htab`` (the map's address): the 256-byte ``struct bpf_map`` header followed by the
  hash table's own fields (:data:`HTAB_STRUCT_SIZE` bytes in all; offsets below).
* ``buckets``: ``n_buckets = roundup_pow_of_two(max_entries)`` entries of ``struct bucket`` (16
  bytes): the ``hlist_nulls_head`` pointer, then the bucket's ``raw_spinlock_t`` word.  An empty
  bucket's head holds the *nulls* marker ``(index << 1) | 1``, which is also how every chain ends,
  so a lock-free reader that followed a recycled element into another bucket notices and restarts
  (``lookup_nulls_elem_raw``).
* elements, ``struct htab_elem`` (48 bytes) followed by the key and the value::

      +0   hash_node.next   (an element, or the nulls marker of the chain's bucket)
      +8   hash_node.pprev  (address of the pointer that points here)   == fnode.next
      +16  lru_node / ptr_to_pptr (24 bytes)
      +40  hash (u32)
      +48  key[key_size], padded to 8
      +48 + round_up(key_size, 8)   value (round_up(value_size, 8) bytes), or for per-CPU maps
                                    the 8-byte per-CPU pointer

  ``elem_size = 48 + round_up(key_size, 8) + (8 if per-CPU else round_up(value_size, 8))``.
* Preallocated maps (the default) allocate ``max_entries`` elements at creation in one block —
  plus one *extra* element per CPU for HASH — and keep the unused ones on a
  :class:`kbpf.map.freelist.PcpuFreelist`.  Per-CPU maps allocate every element's values with
  ``alloc_percpu`` at creation too.
* ``BPF_F_NO_PREALLOC`` maps allocate elements as they are inserted, through ``bpf_mem_alloc``
  (per-CPU caches of free objects).  kbpf models that allocator as :class:`ElemCache`: elements
  are carved from page-sized kmalloc'd *chunks*, as a slab carves its pages; a freed element goes
  to the current CPU's cache; above the cache's high watermark the surplus goes to a map-wide
  spare list that any CPU refills from before a new chunk is allocated.  Chunks are returned only
  when the map is freed — kbpf has no RCU grace periods, and this way a value pointer a program
  still holds always points at memory, as RCU guarantees on Linux.

Which bytes are real: keys, values, per-CPU values, hash, chain links, bucket heads and the
``extra_elems`` pointers are written to simulated memory as the kernel writes them, so anything a
program or user can see (and a memory dump) is there.  The map also keeps Python-side indexes of
the same structure (chains as linked :class:`HtabElem` objects, bucket heads in a list) and walks
those for speed; every element it visits is still reported as a :class:`Touch` of the words the
kernel reads.  Kernel-private counters (``map_locked``, ``count``, the ``percpu_counter``,
``elem_count``) are Python integers at real addresses that are touched, not written.

Locks and costs reported
------------------------

* ``Work("hash_bytes", key_size)`` for every hash computed;
* ``Touch(bucket, 8)`` for reading a bucket head; per element visited on a chain,
  ``Touch(elem, 44)`` (its ``next`` pointer at +0 through its ``hash`` at +40) — or
  ``Touch(elem, 48 + key_size)`` when the hash matches and the key is compared — and
  ``Work("elem_walk", 1)``;
* updates, deletes and lookup-and-delete take the bucket's lock through ``htab_lock_bucket``: a
  per-CPU ``map_locked[hash & min(7, n_buckets - 1)]`` counter that makes a same-CPU re-entry fail
  with EBUSY (a tracing program that fires inside the locked section), then ``Acquire`` of the
  bucket's lock; lookups, ``get_next_key`` and ``for_each`` take none (RCU);
* the free-list locks are taken *inside* the bucket lock (v6.6 frees a deleted element, and pops
  a new one, while holding it);
* ``Work("copy_bytes", n)`` for keys and values copied.

For subclasses (the LRU hash maps)
----------------------------------

:class:`HashMap` is written so that ``kbpf.map.lru`` can reuse all of it:

* class attributes: ``percpu``, ``lru`` (set by the subclass; ``alloc_check`` and layout follow
  them), ``elem_class`` (subclass :class:`HtabElem` to add ``__slots__``),
  ``free_in_bucket_lock`` (v6.6 frees a deleted HASH element under the bucket lock; the LRU
  pushes it back after unlocking: set False);
* allocation: :meth:`HashMap.prealloc_init` (allocates the element block and per-CPU values, then
  calls :meth:`HashMap.init_free_pool` — the free list for HASH; an LRU overrides it to build its
  LRU lists from ``self.pool``), :meth:`HashMap.has_extra_elems`,
  :meth:`HashMap.alloc_htab_elem` / :meth:`HashMap.free_htab_elem` (generators),
  :meth:`HashMap.elem_from_addr`;
* buckets and locks: :meth:`HashMap.hash_of` (hash + its Work), :meth:`HashMap.bucket_index`,
  :meth:`HashMap.bucket_addr`, :meth:`HashMap.bucket_lock`, :meth:`HashMap.lock_bucket` /
  :meth:`HashMap.unlock_bucket` (generators; EBUSY on same-CPU re-entry);
* walks: :meth:`HashMap.lookup_nulls_elem_raw` (lock-free, restarts on a foreign nulls),
  :meth:`HashMap.lookup_elem_raw` (under the bucket lock), :meth:`HashMap.htab_lookup`
  (``__htab_map_lookup_elem``: hash, bucket, walk);
* chain edits: :meth:`HashMap.link_head` (``hlist_nulls_add_head_rcu``), :meth:`HashMap.unlink`
  (``hlist_nulls_del_rcu``);
* element layout: :data:`KEY_OFFSET`, :data:`HASH_OFFSET`, :data:`LRU_NODE_OFFSET`,
  :data:`FNODE_OFFSET`, ``self.value_off`` (= ``KEY_OFFSET + round_up(key_size, 8)``),
  :meth:`HashMap.value_addr` (the element's value, or this CPU's copy for per-CPU maps),
  ``elem.pptr`` (every CPU's value address of a per-CPU element), :meth:`HashMap.write_value`,
  :meth:`HashMap.pcpu_init_value`, :meth:`HashMap.pcpu_copy_value`;
* ``self.pool`` (every preallocated element, in address order), ``self.elems`` (its address),
  :data:`HTAB_LRU_OFFSET` (128 bytes of ``struct bpf_htab`` reserved for ``struct bpf_lru``'s
  global part), ``self.regions_version``.

Program regions and ``regions_version``
---------------------------------------

:meth:`HashMap.program_regions` lists the element block (preallocated maps; for per-CPU maps it
is read-only — programs read keys there — and the per-CPU value spans are the writable regions)
or every chunk allocated so far (``BPF_F_NO_PREALLOC``).  The regions of a preallocated map
never change.  Those of a ``BPF_F_NO_PREALLOC`` map grow when an update needs a new chunk; the
map then increments ``self.regions_version``.  A host that checks program accesses must compare
``ops.regions_version`` with the value it saw when it last read ``program_regions()`` at the end
of every helper call and syscall on the map, and re-read the regions when it changed; they only
grow while the map lives, so adding the new ones is enough.  (A new element's value can only be
reached through a lookup that completes after the update that allocated it, so checking at the
end of every helper call is early enough.)
"""

from __future__ import annotations

import errno
from typing import ClassVar

import numpy as np

from kbpf.errors import ENOTSUPP, BpfError
from kbpf.host import Acquire, Callback, Lock, Op, Release, Touch, Work, drive
from kbpf.linux_bpf import (
    BPF_EXIST,
    BPF_F_ACCESS_MASK,
    BPF_F_LOCK,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY_PROG,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    PAGE_SIZE,
    BpfMapType,
)
from kbpf.map.freelist import PcpuFreelist
from kbpf.map.jhash import htab_map_hash
from kbpf.map.meta import BpfMapMeta
from kbpf.map.ops import BPF_MAP_STRUCT_SIZE, BpfMapOps, round_up

# -- constants of hashtab.c and the headers it uses ------------------------------------------------

#: ``HTAB_CREATE_FLAG_MASK``.
HTAB_CREATE_FLAG_MASK = (
    BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK | BPF_F_ZERO_SEED
)
#: ``HASHTAB_MAP_LOCK_COUNT``: per-CPU re-entrancy counters, shared by buckets modulo 8.
HASHTAB_MAP_LOCK_COUNT = 8
#: ``PERCPU_COUNTER_BATCH``: maps with ``max_entries / 2 > ncpus * 32`` count elements of a
#: ``BPF_F_NO_PREALLOC`` map with a ``percpu_counter`` instead of an ``atomic_t``.
PERCPU_COUNTER_BATCH = 32
#: ``PCPU_MIN_UNIT_SIZE``: the largest per-CPU allocation, so the largest per-CPU value.
PCPU_MIN_UNIT_SIZE = 32 << 10
#: ``KMALLOC_MAX_SIZE`` on x86-64 (``1 << (MAX_ORDER + PAGE_SHIFT)``, MAX_ORDER 10 in v6.6).
KMALLOC_MAX_SIZE = 1 << 22
#: ``sizeof(struct llist_node)``: the link ``bpf_mem_alloc`` puts before every object.
LLIST_NODE_SZ = 8
U32_MAX = (1 << 32) - 1
#: ``LIST_POISON2``: what ``hlist_nulls_del_rcu`` leaves in an unlinked node's ``pprev``.
LIST_POISON2 = 0xDEAD000000000122

# -- struct bucket / struct htab_elem -------------------------------------------------------------

#: ``sizeof(struct bucket)``: ``hlist_nulls_head`` (8) + ``raw_spinlock_t`` (4), padded.
BUCKET_SIZE = 16
BUCKET_LOCK_OFFSET = 8
#: ``sizeof(struct htab_elem)`` = ``offsetof(struct htab_elem, key)``.
HTAB_ELEM_SIZE = 48
HASH_NODE_NEXT_OFFSET = 0
HASH_NODE_PPREV_OFFSET = 8
#: ``offsetof(struct htab_elem, fnode)``: the free-list node overlays ``hash_node.pprev``.
FNODE_OFFSET = 8
#: ``offsetof(struct htab_elem, lru_node)`` (``ptr_to_pptr`` shares it).
LRU_NODE_OFFSET = 16
PTR_TO_PPTR_OFFSET = 16
HASH_OFFSET = 40
KEY_OFFSET = 48
#: Bytes a chain walk reads of an element whose hash does not match: ``next`` .. ``hash``.
WALK_TOUCH = HASH_OFFSET + 4

# -- struct bpf_htab, as kbpf lays it out after the bpf_map header ---------------------------------
# [chosen: v6.6's member order with x86-64 sizes; bpf_mem_alloc 64 bytes each; the bpf_lru union
# member given 128 bytes (its common list, cache-line aligned); lockdep off; rounded to lines.]
HTAB_MA_OFFSET = BPF_MAP_STRUCT_SIZE  # struct bpf_mem_alloc ma, pcpu_ma
HTAB_BUCKETS_PTR_OFFSET = BPF_MAP_STRUCT_SIZE + 128
HTAB_ELEMS_PTR_OFFSET = BPF_MAP_STRUCT_SIZE + 136
#: The ``union { struct pcpu_freelist freelist; struct bpf_lru lru; }``: 128 bytes.
HTAB_LRU_OFFSET = BPF_MAP_STRUCT_SIZE + 192
#: ``freelist.extralist`` inside that union (after the ``freelist`` per-CPU pointer).
HTAB_EXTRALIST_OFFSET = HTAB_LRU_OFFSET + 8
HTAB_EXTRA_ELEMS_OFFSET = BPF_MAP_STRUCT_SIZE + 320
#: ``struct percpu_counter pcount``: lock word, then ``count``.
HTAB_PCOUNT_OFFSET = BPF_MAP_STRUCT_SIZE + 328
HTAB_COUNT_OFFSET = BPF_MAP_STRUCT_SIZE + 368
HTAB_N_BUCKETS_OFFSET = BPF_MAP_STRUCT_SIZE + 376
HTAB_MAP_LOCKED_OFFSET = BPF_MAP_STRUCT_SIZE + 392
#: ``sizeof(struct bpf_htab)`` as kbpf lays it out (what ``map_mem_usage`` counts for it).
HTAB_STRUCT_SIZE = BPF_MAP_STRUCT_SIZE + 512


def roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


def _nulls(bucket: int) -> int:
    """``INIT_HLIST_NULLS_HEAD(head, bucket)``: the marker that ends a bucket's chain."""
    return (bucket << 1) | 1


def check_flags(exists: bool, flags: int) -> None:
    """``check_flags``: BPF_NOEXIST on an existing key -> EEXIST; BPF_EXIST on a missing one
    -> ENOENT (BPF_F_LOCK ignored here)."""
    mode = flags & ~BPF_F_LOCK
    if exists and mode == BPF_NOEXIST:
        raise BpfError(errno.EEXIST, "BPF_NOEXIST: the key already exists")
    if not exists and mode == BPF_EXIST:
        raise BpfError(errno.ENOENT, "BPF_EXIST: no element with that key")


class HtabElem:
    """Python's handle on one ``struct htab_elem`` at ``addr``.

    ``next`` is the next element of its chain or, at the end, the int index of the bucket whose
    nulls marker ends it; ``pprev`` is the previous element, or the int bucket index when the
    element is first, or None once unlinked (``LIST_POISON2``).  Like ``hlist_nulls_del_rcu``,
    unlinking leaves ``next`` alone, so a lock-free walker standing on the element continues.
    ``pptr`` is every CPU's value address (per-CPU maps).  Subclasses add ``__slots__``.
    """

    __slots__ = ("addr", "hash", "key", "next", "pprev", "pptr")

    def __init__(self, addr: int):
        self.addr = addr
        self.hash = 0
        self.key = b""
        self.next: HtabElem | int = 0
        self.pprev: HtabElem | int | None = None
        self.pptr: list[int] | None = None

    def __repr__(self) -> str:
        return f"HtabElem({self.addr:#x}, key={self.key.hex()})"


class PercpuCounter:
    """``struct percpu_counter`` (lib/percpu_counter.c): a shared count under a raw spinlock
    plus a per-CPU delta folded in when it reaches ``batch``.

    A ``BPF_F_NO_PREALLOC`` hash map with ``max_entries / 2 > ncpus * PERCPU_COUNTER_BATCH``
    counts its elements this way so that inserts on different CPUs do not share a cache line;
    near the limit :meth:`compare` has to sum every CPU's delta under the lock.
    """

    def __init__(self, host, percpu_ops, addr: int, name: str):
        self.host = host
        self.ncpus = percpu_ops.num_cpus()
        self.addr = addr  # lock word at +0, s64 count at +8
        self.lock = Lock(addr, f"{name} pcount")
        self.counters = percpu_ops.alloc_percpu(4, 4)
        self.count = 0
        self.local = [0] * self.ncpus

    def add_batch(self, amount: int, batch: int) -> Op:
        """``percpu_counter_add_batch``."""
        cpu = self.host.current_cpu_id()
        yield Touch(self.counters[cpu], 4)
        if abs(self.local[cpu] + amount) >= batch:
            yield Acquire(self.lock)
            count = self.local[cpu] + amount
            yield Touch(self.addr + 8, 8, True)
            self.count += count
            self.local[cpu] = 0
            yield Touch(self.counters[cpu], 4, True)
            yield Release(self.lock)
        else:
            self.local[cpu] += amount
            yield Touch(self.counters[cpu], 4, True)

    def sum(self) -> Op:
        """``percpu_counter_sum``: the exact value, every CPU's delta read under the lock."""
        yield Acquire(self.lock)
        yield Touch(self.addr + 8, 8)
        total = self.count
        for cpu in range(self.ncpus):
            yield Touch(self.counters[cpu], 4)
            total += self.local[cpu]
        yield Release(self.lock)
        return total

    def compare(self, rhs: int, batch: int) -> Op:
        """``__percpu_counter_compare``: the shared count decides when it is farther than
        ``batch * ncpus`` from ``rhs``; otherwise the exact sum does."""
        yield Touch(self.addr + 8, 8)
        count = self.count
        if abs(count - rhs) > batch * self.ncpus:
            return 1 if count > rhs else -1
        count = yield from self.sum()
        return (count > rhs) - (count < rhs)

    def exact(self) -> int:
        return self.count + sum(self.local)

    def destroy(self, percpu_ops) -> None:
        if self.counters:
            percpu_ops.free_percpu(self.counters)
            self.counters = []


class ElemCache:
    """``bpf_mem_alloc`` for the elements of a ``BPF_F_NO_PREALLOC`` map (``htab->ma``, and
    ``htab->pcpu_ma`` for per-CPU values, paired here with their element).

    Each object is a ``unit_size = LLIST_NODE_SZ + elem_size`` unit (the allocator's link, then
    the element).  Allocation pops the current CPU's cache (no lock: the kernel disables
    interrupts and uses a per-CPU ``active`` counter), else the map-wide spare list, else carves a
    new page-sized chunk [chosen: slab-like pages, as kmalloc caches carve theirs]; the kernel
    refills a CPU's cache asynchronously from irq_work, which kbpf does at once.  A free goes to
    the current CPU's cache; above ``high_watermark`` the cache sheds down to the middle of its
    watermarks (``free_bulk``) onto the spare list, which stands for the slab the kernel returns
    them to.
    """

    def __init__(self, owner: HashMap):
        self.owner = owner
        self.host = owner.host
        self.ncpus = owner.ncpus
        self.unit_size = LLIST_NODE_SZ + owner.elem_size
        # init_refill_target()
        self.low_watermark = max(32 * 256 // self.unit_size, 1)
        self.high_watermark = max(96 * 256 // self.unit_size, 3)
        self.per_chunk = max(1, PAGE_SIZE // self.unit_size)
        self.free: list[list[HtabElem]] = [[] for _ in range(self.ncpus)]
        self.spare: list[HtabElem] = []
        #: kmalloc'd chunks: (address, bytes); per-CPU value chunks: per-CPU address lists
        self.chunks: list[tuple[int, int]] = []
        self.pcpu_chunks: list[tuple[list[int], int]] = []

    def _new_chunk(self) -> None:
        owner = self.owner
        size = self.per_chunk * self.unit_size
        base = self.host.kmalloc(size, 64)
        pcpu = None
        if owner.percpu:
            stride = owner.pcpu_value_size
            try:
                pcpu = owner.percpu_ops.alloc_percpu(self.per_chunk * stride, 8)
            except BpfError:
                self.host.kfree(base)
                raise
            self.pcpu_chunks.append((pcpu, self.per_chunk * stride))
        self.chunks.append((base, size))
        elems = []
        for i in range(self.per_chunk):
            elem = owner.elem_class(base + i * self.unit_size + LLIST_NODE_SZ)
            if pcpu is not None:
                off = i * owner.pcpu_value_size
                elem.pptr = [a + off for a in pcpu]
            elems.append(elem)
        elems.reverse()  # hand out the chunk in address order
        self.spare.extend(elems)
        owner.regions_version += 1

    def alloc(self) -> Op:
        """``bpf_mem_cache_alloc``: an element, or ENOMEM when no memory is left."""
        cache = self.free[self.host.current_cpu_id()]
        if not cache:
            if not self.spare:
                self._new_chunk()
            cache.append(self.spare.pop())
        elem = cache.pop()
        yield Touch(elem.addr - LLIST_NODE_SZ, 8)  # __llist_del_first(&c->free_llist)
        return elem

    def free_elem(self, elem: HtabElem) -> Op:
        """``bpf_mem_cache_free``: onto the current CPU's cache; shed above the watermark."""
        cache = self.free[self.host.current_cpu_id()]
        yield Touch(elem.addr - LLIST_NODE_SZ, 8, True)  # __llist_add(llnode, &c->free_llist)
        cache.append(elem)
        if len(cache) > self.high_watermark:
            keep = (self.high_watermark + self.low_watermark) // 2
            while len(cache) > keep:
                self.spare.append(cache.pop())

    def release(self) -> None:
        """``bpf_mem_alloc_destroy``: every chunk back to the host."""
        for base, _ in self.chunks:
            self.host.kfree(base)
        for addrs, _ in self.pcpu_chunks:
            self.owner.percpu_ops.free_percpu(addrs)
        self.chunks, self.pcpu_chunks = [], []
        self.free = [[] for _ in range(self.ncpus)]
        self.spare = []


class HashMap(BpfMapOps):
    """BPF_MAP_TYPE_HASH (``htab_map_ops``) and the shared code of the hash-map family."""

    percpu: ClassVar[bool] = False
    lru: ClassVar[bool] = False
    elem_class: ClassVar[type[HtabElem]] = HtabElem
    #: v6.6 frees a deleted element while still holding the bucket lock (the free list's lock
    #: nests inside it); the LRU maps push theirs back after unlocking.
    free_in_bucket_lock: ClassVar[bool] = True

    # -- creation -----------------------------------------------------------------------------
    @classmethod
    def alloc_check(cls, meta: BpfMapMeta, percpu_ops) -> None:
        """``htab_map_alloc_check``, in its order.  kbpf-sim runs as root, so BPF_F_ZERO_SEED
        (CAP_SYS_ADMIN) is allowed."""
        t = meta.map_type
        percpu = t in (BpfMapType.BPF_MAP_TYPE_PERCPU_HASH, BpfMapType.BPF_MAP_TYPE_LRU_PERCPU_HASH)
        lru = t in (BpfMapType.BPF_MAP_TYPE_LRU_HASH, BpfMapType.BPF_MAP_TYPE_LRU_PERCPU_HASH)
        flags = meta.map_flags
        percpu_lru = bool(flags & BPF_F_NO_COMMON_LRU)
        prealloc = not flags & BPF_F_NO_PREALLOC
        if flags & ~HTAB_CREATE_FLAG_MASK:
            raise BpfError(
                errno.EINVAL,
                f"map_flags {flags & ~HTAB_CREATE_FLAG_MASK:#x} not valid for hash maps",
            )
        if flags & BPF_F_RDONLY_PROG and flags & BPF_F_WRONLY_PROG:
            raise BpfError(errno.EINVAL, "BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG together")
        if not lru and percpu_lru:
            raise BpfError(errno.EINVAL, "BPF_F_NO_COMMON_LRU is for LRU hash maps only")
        if lru and not prealloc:
            raise BpfError(ENOTSUPP, "LRU hash maps are always preallocated (BPF_F_NO_PREALLOC)")
        if flags & BPF_F_NUMA_NODE and (percpu or percpu_lru):
            raise BpfError(errno.EINVAL, "per-CPU hash maps cannot be placed on a NUMA node")
        if meta.max_entries == 0 or meta.key_size == 0 or meta.value_size == 0:
            raise BpfError(
                errno.EINVAL,
                f"hash maps need max_entries, key_size and value_size of at least 1 (got "
                f"{meta.max_entries}, {meta.key_size}, {meta.value_size})",
            )
        if meta.key_size + meta.value_size >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE:
            raise BpfError(
                errno.E2BIG,
                f"key_size + value_size = {meta.key_size + meta.value_size} must be below "
                f"KMALLOC_MAX_SIZE - {HTAB_ELEM_SIZE} ({KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE})",
            )
        if percpu and round_up(meta.value_size, 8) > PCPU_MIN_UNIT_SIZE:
            raise BpfError(
                errno.E2BIG,
                f"per-CPU value of {round_up(meta.value_size, 8)} bytes exceeds "
                f"PCPU_MIN_UNIT_SIZE ({PCPU_MIN_UNIT_SIZE})",
            )

    def __init__(self, meta, host, percpu_ops, poll_waker=None):
        """``htab_map_alloc``."""
        super().__init__(meta, host, percpu_ops, poll_waker)
        self.ncpus = ncpus = percpu_ops.num_cpus()
        flags = meta.map_flags
        self.prealloc = not flags & BPF_F_NO_PREALLOC
        max_entries = meta.max_entries
        if flags & BPF_F_NO_COMMON_LRU:
            # Each CPU's LRU list gets the same number of elements, at least one.
            rounded = round_up(max_entries, ncpus)
            max_entries = rounded if rounded <= U32_MAX else max_entries // ncpus * ncpus
            meta.max_entries = max_entries
        if max_entries > 1 << 31:
            raise BpfError(errno.E2BIG, f"max_entries {max_entries} exceeds 2^31")
        self.max_entries = max_entries
        self.n_buckets = roundup_pow_of_two(max_entries)
        if self.n_buckets > U32_MAX // BUCKET_SIZE:
            raise BpfError(
                errno.E2BIG,
                f"{self.n_buckets} buckets of {BUCKET_SIZE} bytes overflow u32 "
                f"(max_entries {max_entries})",
            )
        self.key_size = meta.key_size
        self.value_size = meta.value_size
        self.pcpu_value_size = round_up(meta.value_size, 8)
        self.value_off = KEY_OFFSET + round_up(meta.key_size, 8)
        self.elem_size = self.value_off + (8 if self.percpu else self.pcpu_value_size)
        self._mask = self.n_buckets - 1
        self._lock_mask = min(HASHTAB_MAP_LOCK_COUNT - 1, self.n_buckets - 1)
        self.regions_version = 0
        label = meta.name or meta.map_type.short_name
        self._label = label
        # Everything that may need freeing, so a failed creation can undo itself.
        self.buckets = 0
        self.elems = 0
        self.pool: list[HtabElem] = []
        self._pcpu_values: list[list[int]] = []
        self.freelist: PcpuFreelist | None = None
        self._extra: list[HtabElem] = []
        self._extra_addrs: list[int] = []
        self._map_locked_addrs: list[list[int]] = []
        self._elem_count_addrs: list[int] = []
        self.pcount: PercpuCounter | None = None
        self.cache: ElemCache | None = None
        try:
            self._alloc(meta)
        except BpfError:
            self.map_free()
            raise

    def _alloc(self, meta) -> None:
        host, pops = self.host, self.percpu_ops
        self.map_addr = host.kmalloc(HTAB_STRUCT_SIZE, 64)
        self._elem_count_addrs = pops.alloc_percpu(8, 8)  # bpf_map_init_elem_count
        self.buckets = host.kmalloc(self.n_buckets * BUCKET_SIZE, 64)
        self._map_locked_addrs = [pops.alloc_percpu(4, 4) for _ in range(HASHTAB_MAP_LOCK_COUNT)]
        self._map_locked = [[0] * self.ncpus for _ in range(HASHTAB_MAP_LOCK_COUNT)]
        self.hashrnd = 0 if meta.map_flags & BPF_F_ZERO_SEED else host.random_u32() & U32_MAX
        self._init_buckets()
        self.use_percpu_counter = meta.max_entries // 2 > self.ncpus * PERCPU_COUNTER_BATCH
        if self.use_percpu_counter:
            self.pcount = PercpuCounter(
                host, pops, self.map_addr + HTAB_PCOUNT_OFFSET, f"{self._label}"
            )
        self._count = 0  # the atomic_t count of a BPF_F_NO_PREALLOC map
        if self.prealloc:
            self.prealloc_init()
            if self.has_extra_elems():
                self.alloc_extra_elems()
        else:
            self.cache = ElemCache(self)
        host.write(
            self.map_addr + HTAB_BUCKETS_PTR_OFFSET,
            self.buckets.to_bytes(8, "little") + self.elems.to_bytes(8, "little"),
        )
        if self._extra_addrs:
            host.write(
                self.map_addr + HTAB_EXTRA_ELEMS_OFFSET, self._extra_addrs[0].to_bytes(8, "little")
            )
        host.write(
            self.map_addr + HTAB_MAP_LOCKED_OFFSET,
            b"".join(addrs[0].to_bytes(8, "little") for addrs in self._map_locked_addrs),
        )
        host.write(
            self.map_addr + HTAB_N_BUCKETS_OFFSET,
            b"".join(
                v.to_bytes(4, "little") for v in (self.n_buckets, self.elem_size, self.hashrnd)
            ),
        )

    def _init_buckets(self) -> None:
        """``htab_init_buckets``: every head holds its bucket's nulls marker, every lock word
        is zero."""
        n = self.n_buckets
        words = np.zeros(2 * n, dtype="<u8")
        words[0::2] = np.arange(n, dtype="<u8") * 2 + 1
        self.host.write(self.buckets, words.tobytes())
        #: Python's view of each bucket head: an element, or the bucket's own index (nulls)
        self.heads: list[HtabElem | int] = list(range(n))
        self._locks: dict[int, Lock] = {}

    def has_extra_elems(self) -> bool:
        """``htab_has_extra_elems``: plain HASH keeps one spare element per CPU so that
        replacing an existing key never needs the free list (and never fails)."""
        return not self.percpu and not self.lru

    def prealloc_init(self) -> None:
        """``prealloc_init``: the element block (``max_entries`` elements, plus one per CPU when
        :meth:`has_extra_elems`), every per-CPU element's values, then the free pool."""
        num = self.max_entries + (self.ncpus if self.has_extra_elems() else 0)
        size = self.elem_size
        self.elems = base = self.host.kmalloc(size * num, 64)
        make = self.elem_class
        self.pool = [make(base + i * size) for i in range(num)]
        if self.percpu:
            for elem in self.pool:
                addrs = self.percpu_ops.alloc_percpu(self.pcpu_value_size, 8)
                self._pcpu_values.append(addrs)
                elem.pptr = addrs
            # htab_elem_set_ptr: each element records its per-CPU pointer (CPU 0's address)
            slot = np.zeros(num * size // 8, dtype="<u8")
            stride, off = size // 8, self.value_off // 8
            slot[off::stride] = [addrs[0] for addrs in self._pcpu_values]
            self.host.write(base, slot.tobytes())
        self.init_free_pool()

    def init_free_pool(self) -> None:
        """``pcpu_freelist_init`` + ``pcpu_freelist_populate`` over the element block (the LRU
        maps override this with ``bpf_lru_init`` + ``bpf_lru_populate``)."""
        self.freelist = PcpuFreelist(
            self.host, self.percpu_ops, self.map_addr + HTAB_EXTRALIST_OFFSET, self._label
        )
        self.freelist.populate([e.addr + FNODE_OFFSET for e in self.pool])

    def alloc_extra_elems(self) -> None:
        """``alloc_extra_elems``: one element per CPU popped from the free list (on the CPU
        creating the map, wrapping around the others) and recorded in a per-CPU pointer."""
        self._extra_addrs = self.percpu_ops.alloc_percpu(8, 8)
        for cpu in range(self.ncpus):
            node = drive(self.freelist.pop(), self.host)
            elem = self.elem_from_addr(node - FNODE_OFFSET)
            self._extra.append(elem)
            self.host.write(self._extra_addrs[cpu], elem.addr.to_bytes(8, "little"))

    def elem_from_addr(self, addr: int) -> HtabElem:
        """The preallocated element at ``addr`` (``container_of`` a free-list or LRU node)."""
        return self.pool[(addr - self.elems) // self.elem_size]

    def map_free(self) -> None:
        """``htab_map_free``: every element, the buckets, the counters, the structure."""
        host, pops = self.host, self.percpu_ops
        if self.cache is not None:
            self.cache.release()
            self.cache = None
        for addrs in self._pcpu_values:
            pops.free_percpu(addrs)
        self._pcpu_values = []
        if self.freelist is not None:
            self.freelist.destroy()
            self.freelist = None
        if self.elems:
            host.kfree(self.elems)
            self.elems = 0
        self.pool = []
        if self._extra_addrs:
            pops.free_percpu(self._extra_addrs)
            self._extra_addrs, self._extra = [], []
        if self.pcount is not None:
            self.pcount.destroy(pops)
            self.pcount = None
        for addrs in self._map_locked_addrs:
            pops.free_percpu(addrs)
        self._map_locked_addrs = []
        if self._elem_count_addrs:
            pops.free_percpu(self._elem_count_addrs)
            self._elem_count_addrs = []
        if self.buckets:
            host.kfree(self.buckets)
            self.buckets = 0
        super().map_free()

    # -- buckets and their locks --------------------------------------------------------------
    def hash_of(self, key: bytes) -> Op:
        """``htab_map_hash(key, key_size, hashrnd)``, reporting the bytes hashed."""
        yield Work("hash_bytes", self.key_size)
        return htab_map_hash(key, self.hashrnd)

    def bucket_index(self, hash_: int) -> int:
        return hash_ & self._mask

    def bucket_addr(self, index: int) -> int:
        return self.buckets + index * BUCKET_SIZE

    def bucket_lock(self, index: int) -> Lock:
        """The bucket's ``raw_spinlock_t`` (created on first use: most buckets of a large map
        are never locked)."""
        lock = self._locks.get(index)
        if lock is None:
            lock = self._locks[index] = Lock(
                self.buckets + index * BUCKET_SIZE + BUCKET_LOCK_OFFSET,
                f"{self._label} bucket {index}",
            )
        return lock

    def lock_bucket(self, index: int, hash_: int) -> Op:
        """``htab_lock_bucket``: bump this CPU's ``map_locked[hash & min(7, n_buckets-1)]``;
        if it was already held on this CPU (the operation re-entered the map, e.g. from a
        program that fired inside the locked section), undo and fail with EBUSY; else take the
        bucket lock."""
        cpu = self.host.current_cpu_id()
        slot = hash_ & self._lock_mask
        counters = self._map_locked[slot]
        yield Touch(self._map_locked_addrs[slot][cpu], 4, True)
        if counters[cpu]:
            raise BpfError(
                errno.EBUSY, f"bucket lock class {slot} already held on CPU {cpu} (re-entry)"
            )
        counters[cpu] = 1
        yield Acquire(self.bucket_lock(index))

    def unlock_bucket(self, index: int, hash_: int) -> Op:
        """``htab_unlock_bucket``."""
        cpu = self.host.current_cpu_id()
        slot = hash_ & self._lock_mask
        yield Release(self.bucket_lock(index))
        self._map_locked[slot][cpu] = 0
        yield Touch(self._map_locked_addrs[slot][cpu], 4, True)

    # -- chain walks --------------------------------------------------------------------------
    def lookup_elem_raw(self, index: int, hash_: int, key: bytes) -> Op:
        """``lookup_elem_raw``: walk bucket ``index`` (its lock held); the element or None."""
        yield Touch(self.buckets + index * BUCKET_SIZE, 8)
        n = self.heads[index]
        match_touch = KEY_OFFSET + self.key_size
        while not isinstance(n, int):
            if n.hash == hash_:
                yield Touch(n.addr, match_touch)
                yield Work("elem_walk", 1)
                if n.key == key:
                    return n
            else:
                yield Touch(n.addr, WALK_TOUCH)
                yield Work("elem_walk", 1)
            n = n.next
        return None

    def lookup_nulls_elem_raw(self, index: int, hash_: int, key: bytes) -> Op:
        """``lookup_nulls_elem_raw``: the lock-free walk.  A chain that ends in another
        bucket's nulls marker means the walk followed an element that was deleted and reused
        elsewhere meanwhile: start again from the bucket head."""
        head_addr = self.buckets + index * BUCKET_SIZE
        match_touch = KEY_OFFSET + self.key_size
        while True:
            yield Touch(head_addr, 8)
            n = self.heads[index]
            while not isinstance(n, int):
                if n.hash == hash_:
                    yield Touch(n.addr, match_touch)
                    yield Work("elem_walk", 1)
                    if n.key == key:
                        return n
                else:
                    yield Touch(n.addr, WALK_TOUCH)
                    yield Work("elem_walk", 1)
                n = n.next
            if n == index:
                return None

    def htab_lookup(self, key: bytes) -> Op:
        """``__htab_map_lookup_elem``: hash, bucket, lock-free walk; the element or None."""
        hash_ = yield from self.hash_of(key)
        return (yield from self.lookup_nulls_elem_raw(hash_ & self._mask, hash_, key))

    # -- chain edits --------------------------------------------------------------------------
    def _ptr_bytes(self, target: HtabElem | int) -> bytes:
        """The 8 bytes of a chain pointer: an element's address or a bucket's nulls marker."""
        v = _nulls(target) if isinstance(target, int) else target.addr
        return v.to_bytes(8, "little")

    def link_head(self, index: int, elem: HtabElem) -> Op:
        """``hlist_nulls_add_head_rcu``: ``elem`` becomes the first of bucket ``index``, so a
        concurrent lookup finds it before an old element with the same key."""
        write = self.host.write
        head_addr = self.buckets + index * BUCKET_SIZE
        first = self.heads[index]
        elem.next = first
        elem.pprev = index
        write(elem.addr, self._ptr_bytes(first) + head_addr.to_bytes(8, "little"))
        yield Touch(elem.addr, 16, True)
        self.heads[index] = elem  # rcu_assign_pointer: published
        write(head_addr, elem.addr.to_bytes(8, "little"))
        yield Touch(head_addr, 8, True)
        if not isinstance(first, int):
            first.pprev = elem
            write(first.addr + HASH_NODE_PPREV_OFFSET, elem.addr.to_bytes(8, "little"))
            yield Touch(first.addr + HASH_NODE_PPREV_OFFSET, 8, True)

    def unlink(self, elem: HtabElem) -> Op:
        """``hlist_nulls_del_rcu``: bypass ``elem``; its ``next`` stays for walkers on it, its
        ``pprev`` becomes LIST_POISON2."""
        write = self.host.write
        nxt, pprev = elem.next, elem.pprev
        if pprev is None:
            raise RuntimeError(f"{elem!r} is not linked")
        if isinstance(pprev, int):
            self.heads[pprev] = nxt
            where = self.buckets + pprev * BUCKET_SIZE
        else:
            pprev.next = nxt
            where = pprev.addr + HASH_NODE_NEXT_OFFSET
        write(where, self._ptr_bytes(nxt))
        yield Touch(where, 8, True)
        if not isinstance(nxt, int):
            nxt.pprev = pprev
            write(nxt.addr + HASH_NODE_PPREV_OFFSET, where.to_bytes(8, "little"))
            yield Touch(nxt.addr + HASH_NODE_PPREV_OFFSET, 8, True)
        elem.pprev = None
        write(elem.addr + HASH_NODE_PPREV_OFFSET, LIST_POISON2.to_bytes(8, "little"))
        yield Touch(elem.addr + HASH_NODE_PPREV_OFFSET, 8, True)

    # -- element counting ---------------------------------------------------------------------
    def _touch_elem_count(self) -> Touch:
        """``bpf_map_inc/dec_elem_count``: this CPU's ``elem_count``."""
        return Touch(self._elem_count_addrs[self.host.current_cpu_id()], 8, True)

    def is_map_full(self) -> Op:
        """``is_map_full`` (``BPF_F_NO_PREALLOC`` maps)."""
        if self.pcount is not None:
            cmp = yield from self.pcount.compare(self.max_entries, PERCPU_COUNTER_BATCH)
            return cmp >= 0
        yield Touch(self.map_addr + HTAB_COUNT_OFFSET, 4)
        return self._count >= self.max_entries

    def inc_elem_count(self) -> Op:
        yield self._touch_elem_count()
        if self.pcount is not None:
            yield from self.pcount.add_batch(1, PERCPU_COUNTER_BATCH)
        else:
            self._count += 1
            yield Touch(self.map_addr + HTAB_COUNT_OFFSET, 4, True)

    def dec_elem_count(self) -> Op:
        yield self._touch_elem_count()
        if self.pcount is not None:
            yield from self.pcount.add_batch(-1, PERCPU_COUNTER_BATCH)
        else:
            self._count -= 1
            yield Touch(self.map_addr + HTAB_COUNT_OFFSET, 4, True)

    def element_count(self) -> int:
        """Elements in the map now (Python's count; no requests)."""
        if self.prealloc:
            free = len(self.freelist) if self.freelist is not None else 0
            return len(self.pool) - free - len(self._extra)
        return self.pcount.exact() if self.pcount is not None else self._count

    # -- values -------------------------------------------------------------------------------
    def value_addr(self, elem: HtabElem) -> int:
        """The value a lookup hands out: in the element, or this CPU's per-CPU copy."""
        if self.percpu:
            return elem.pptr[self.host.current_cpu_id()]
        return elem.addr + self.value_off

    def write_value(self, elem: HtabElem, value: bytes) -> Op:
        """``copy_map_value`` into the element: ``value_size`` bytes."""
        size = self.value_size
        addr = elem.addr + self.value_off
        self.host.write(addr, bytes(value[:size]))
        yield Touch(addr, size, True)
        yield Work("copy_bytes", size)

    def pcpu_init_value(self, elem: HtabElem, value: bytes, onallcpus: bool) -> Op:
        """``pcpu_init_value``: from a program (``onallcpus`` False) this CPU's copy gets the
        value and every other CPU's is zeroed, so a program never finds stale data on another
        CPU; from the syscall every CPU gets its slice."""
        if onallcpus:
            yield from self.pcpu_copy_value(elem, value, True)
            return
        me = self.host.current_cpu_id()
        size, vsize = self.pcpu_value_size, self.value_size
        write = self.host.write
        mine = bytes(value[:vsize]).ljust(size, b"\0")
        for cpu, addr in enumerate(elem.pptr):
            if cpu == me:
                write(addr, mine)  # copy_map_value_long
                yield Touch(addr, size, True)
            else:
                write(addr, bytes(vsize))  # zero_map_value
                yield Touch(addr, vsize, True)
        yield Work("copy_bytes", size)

    def pcpu_copy_value(self, elem: HtabElem, value: bytes, onallcpus: bool) -> Op:
        """``pcpu_copy_value``: this CPU's ``value_size`` bytes, or (syscall) every CPU's
        ``round_up(value_size, 8)``-byte slice of ``value``."""
        write = self.host.write
        if not onallcpus:
            addr = elem.pptr[self.host.current_cpu_id()]
            write(addr, bytes(value[: self.value_size]))
            yield Touch(addr, self.value_size, True)
            yield Work("copy_bytes", self.value_size)
            return
        size = self.pcpu_value_size
        for cpu, addr in enumerate(elem.pptr):
            write(addr, bytes(value[cpu * size : (cpu + 1) * size]).ljust(size, b"\0"))
            yield Touch(addr, size, True)
        yield Work("copy_bytes", size * self.ncpus)

    # -- allocation ---------------------------------------------------------------------------
    def alloc_htab_elem(
        self,
        key: bytes,
        value: bytes,
        hash_: int,
        percpu: bool,
        onallcpus: bool,
        old: HtabElem | None,
    ) -> Op:
        """``alloc_htab_elem`` (bucket lock held): an element holding ``key``, ``value`` and
        ``hash_``, not yet linked.

        Preallocated: replacing ``old`` swaps in this CPU's extra element (``old`` becomes the
        CPU's extra), so it cannot fail; a new key pops the free list, and an empty free list is
        E2BIG.  ``BPF_F_NO_PREALLOC``: a full map refuses a new key with E2BIG (a replacement is
        allowed: the old element is freed at once), then the element comes from the cache."""
        if self.prealloc:
            if old is not None:
                cpu = self.host.current_cpu_id()
                slot = self._extra_addrs[cpu]
                yield Touch(slot, 8)
                new = self._extra[cpu]
                self._extra[cpu] = old
                self.host.write(slot, old.addr.to_bytes(8, "little"))
                yield Touch(slot, 8, True)
            else:
                node = yield from self.freelist.pop()
                if not node:
                    raise BpfError(
                        errno.E2BIG, f"map is full: all {self.max_entries} elements in use"
                    )
                new = self.elem_from_addr(node - FNODE_OFFSET)
                yield self._touch_elem_count()
        else:
            if old is None:
                full = yield from self.is_map_full()
                if full:
                    raise BpfError(errno.E2BIG, f"map is full: {self.max_entries} elements in use")
            yield from self.inc_elem_count()
            try:
                new = yield from self.cache.alloc()
            except BpfError:
                yield from self.dec_elem_count()
                raise
        # memcpy(l_new->key, key, key_size); then the value; then l_new->hash = hash.  The bytes
        # go to memory in one write (hash, key, value or per-CPU pointer are contiguous); the
        # touches report each store as the kernel makes it.
        key_size, value_off = self.key_size, self.value_off
        blob = (hash_.to_bytes(8, "little") + key).ljust(value_off - HASH_OFFSET, b"\0")
        if not percpu:
            blob += bytes(value[: self.value_size])
        elif not self.prealloc:
            blob += new.pptr[0].to_bytes(8, "little")  # htab_elem_set_ptr
        self.host.write(new.addr + HASH_OFFSET, blob)
        new.key = key
        yield Touch(new.addr + KEY_OFFSET, key_size, True)
        yield Work("copy_bytes", key_size)
        if percpu:
            # prealloc: htab_elem_get_ptr reads the pointer; otherwise it was just stored
            yield Touch(new.addr + value_off, 8, not self.prealloc)
            yield from self.pcpu_init_value(new, value, onallcpus)
        else:
            yield Touch(new.addr + value_off, self.value_size, True)
            yield Work("copy_bytes", self.value_size)
        new.hash = hash_
        yield Touch(new.addr + HASH_OFFSET, 4, True)
        return new

    def free_htab_elem(self, elem: HtabElem) -> Op:
        """``free_htab_elem``: back on this CPU's free list, or to the element cache."""
        if self.prealloc:
            yield self._touch_elem_count()
            yield from self.freelist.push(elem.addr + FNODE_OFFSET)
        else:
            yield from self.dec_elem_count()
            yield from self.cache.free_elem(elem)

    # -- program-side operations --------------------------------------------------------------
    def lookup_elem(self, key: bytes) -> Op:
        """``htab_map_lookup_elem``: lock-free; the value's address or 0."""
        elem = yield from self.htab_lookup(key)
        return 0 if elem is None else elem.addr + self.value_off

    def update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """``htab_map_update_elem``: flags above BPF_EXIST -> EINVAL; BPF_F_LOCK -> EINVAL (no
        value carries a ``bpf_spin_lock``: kbpf maps have no BTF); under the bucket lock the
        key's element is looked up, BPF_NOEXIST/BPF_EXIST checked (EEXIST/ENOENT), a new
        element allocated (E2BIG when full), linked at the head of the chain, and the old one
        unlinked (and, ``BPF_F_NO_PREALLOC``, freed)."""
        if (flags & ~BPF_F_LOCK) > BPF_EXIST:
            raise BpfError(errno.EINVAL, f"update flags {flags:#x}: unknown bits")
        key = bytes(key)
        hash_ = yield from self.hash_of(key)
        index = hash_ & self._mask
        if flags & BPF_F_LOCK:
            raise BpfError(errno.EINVAL, "BPF_F_LOCK needs a bpf_spin_lock in the value")
        yield from self.lock_bucket(index, hash_)
        try:
            old = yield from self.lookup_elem_raw(index, hash_, key)
            check_flags(old is not None, flags)
            new = yield from self.alloc_htab_elem(key, value, hash_, False, False, old)
            yield from self.link_head(index, new)
            if old is not None:
                yield from self.unlink(old)
                if not self.prealloc:
                    yield from self.free_htab_elem(old)
        except BpfError:
            yield from self.unlock_bucket(index, hash_)
            raise
        yield from self.unlock_bucket(index, hash_)

    def delete_elem(self, key: bytes) -> Op:
        """``htab_map_delete_elem``: under the bucket lock; ENOENT when absent.  The element is
        freed before the lock is released, as v6.6 does."""
        key = bytes(key)
        hash_ = yield from self.hash_of(key)
        index = hash_ & self._mask
        yield from self.lock_bucket(index, hash_)
        try:
            elem = yield from self.lookup_elem_raw(index, hash_, key)
            if elem is None:
                raise BpfError(errno.ENOENT, "no element with that key")
            yield from self.unlink(elem)
            if self.free_in_bucket_lock:
                yield from self.free_htab_elem(elem)
        except BpfError:
            yield from self.unlock_bucket(index, hash_)
            raise
        yield from self.unlock_bucket(index, hash_)
        if not self.free_in_bucket_lock:
            yield from self.free_htab_elem(elem)

    def _read_key(self, elem: HtabElem) -> Op:
        """``memcpy(next_key, l->key, key_size)``: the key bytes from the element."""
        addr = elem.addr + KEY_OFFSET
        yield Touch(addr, self.key_size)
        return self.host.read(addr, self.key_size)

    def _first_nonempty(self, start: int) -> Op:
        """Scan bucket heads from ``start`` for the first non-empty bucket; the heads read are
        one contiguous range of the bucket array, reported as one Touch.  Returns the index, or
        ``n_buckets`` when every remaining bucket is empty."""
        heads, n = self.heads, self.n_buckets
        i = start
        while i < n and isinstance(heads[i], int):
            i += 1
        last = min(i, n - 1)
        if start < n:
            yield Touch(self.buckets + start * BUCKET_SIZE, (last - start) * BUCKET_SIZE + 8)
        return i

    def get_next_key(self, key: bytes | None) -> Op:
        """``htab_map_get_next_key``: the element after ``key`` in its chain, else the first
        element of the next non-empty bucket; no key — or a key that is not in the map — starts
        from the first bucket, as Linux does; ENOENT after the last element."""
        start = 0
        if key is not None:
            key = bytes(key)
            hash_ = yield from self.hash_of(key)
            index = hash_ & self._mask
            elem = yield from self.lookup_nulls_elem_raw(index, hash_, key)
            if elem is not None:
                nxt = elem.next
                if not isinstance(nxt, int):
                    return (yield from self._read_key(nxt))
                start = index + 1
        i = yield from self._first_nonempty(start)
        if i >= self.n_buckets:
            raise BpfError(errno.ENOENT, "no key after that one")
        return (yield from self._read_key(self.heads[i]))

    def for_each_elem(self, func: int, ctx: int, flags: int) -> Op:
        """``bpf_for_each_hash_elem``: call ``func(map, &key, &value, ctx, 0)`` for every
        element in bucket order, each chain from its head (RCU, no lock); a non-zero return
        stops the walk.  Returns the number of elements visited, the stopping one included.
        Per-CPU maps pass this CPU's value.  The callback may update or delete elements,
        including the one it was handed: the walk continues from that element's ``next``."""
        if flags:
            raise BpfError(errno.EINVAL, f"for_each flags {flags:#x} must be 0")
        cpu = self.host.current_cpu_id()
        percpu = self.percpu
        value_off = self.value_off
        heads = self.heads
        num = 0
        i = 0
        while True:
            i = yield from self._first_nonempty(i)
            if i >= self.n_buckets:
                return num
            n = heads[i]
            while not isinstance(n, int):
                if percpu:
                    yield Touch(n.addr + value_off, 8)
                    val = n.pptr[cpu]
                else:
                    val = n.addr + value_off
                num += 1
                ret = yield Callback(func, (self.map_addr, n.addr + KEY_OFFSET, val, ctx, 0))
                if ret:
                    return num
                yield Touch(n.addr, 8)  # pos->next
                n = n.next
            i += 1

    # -- syscall-side operations --------------------------------------------------------------
    def _read_values(self, elem: HtabElem) -> Op:
        """The value in the syscall layout: ``value_size`` bytes, or every CPU's rounded copy."""
        if self.percpu:
            size = self.pcpu_value_size
            out = []
            for addr in elem.pptr:
                yield Touch(addr, size)
                out.append(self.host.read(addr, size))
            yield Work("copy_bytes", size * self.ncpus)
            return b"".join(out)
        addr = elem.addr + self.value_off
        yield Touch(addr, self.value_size)
        yield Work("copy_bytes", self.value_size)
        return self.host.read(addr, self.value_size)

    def lookup_and_delete_elem(self, key: bytes, flags: int) -> Op:
        """``__htab_map_lookup_and_delete_elem``: under the bucket lock, copy the value (every
        CPU's for per-CPU maps) and unlink the element; ENOENT when absent.  BPF_F_LOCK is
        EINVAL (no ``bpf_spin_lock`` in kbpf values), as ``map_lookup_and_delete_elem`` says."""
        if flags & ~BPF_F_LOCK:
            raise BpfError(errno.EINVAL, f"flags {flags:#x}: only BPF_F_LOCK allowed")
        if flags & BPF_F_LOCK:
            raise BpfError(errno.EINVAL, "BPF_F_LOCK needs a bpf_spin_lock in the value")
        key = bytes(key)
        hash_ = yield from self.hash_of(key)
        index = hash_ & self._mask
        yield from self.lock_bucket(index, hash_)
        try:
            elem = yield from self.lookup_elem_raw(index, hash_, key)
            if elem is None:
                raise BpfError(errno.ENOENT, "no element with that key")
            value = yield from self._read_values(elem)
            yield from self.unlink(elem)
            if self.free_in_bucket_lock:
                yield from self.free_htab_elem(elem)
        except BpfError:
            yield from self.unlock_bucket(index, hash_)
            raise
        yield from self.unlock_bucket(index, hash_)
        if not self.free_in_bucket_lock:
            yield from self.free_htab_elem(elem)
        return value

    # -- queries ------------------------------------------------------------------------------
    def map_mem_usage(self) -> int:
        """``htab_map_mem_usage``."""
        ncpus = self.ncpus
        value_size = self.pcpu_value_size
        usage = HTAB_STRUCT_SIZE + BUCKET_SIZE * self.n_buckets
        usage += 4 * ncpus * HASHTAB_MAP_LOCK_COUNT
        if self.prealloc:
            num = self.max_entries + (ncpus if self.has_extra_elems() else 0)
            usage += self.elem_size * num
            if self.percpu:
                usage += value_size * ncpus * num
            elif not self.lru:
                usage += 8 * ncpus
        else:
            num = self.element_count()
            usage += (self.elem_size + LLIST_NODE_SZ) * num
            if self.percpu:
                usage += (LLIST_NODE_SZ + 8) * num
                usage += value_size * ncpus * num
        return usage

    def program_regions(self) -> list[tuple[int, int, bool]]:
        """What programs may touch: see "Program regions" in the module docstring."""
        writable = not self.meta.map_flags & BPF_F_RDONLY_PROG
        if self.prealloc:
            regions = [
                (
                    self.elems,
                    self.elems + len(self.pool) * self.elem_size,
                    writable and not self.percpu,
                )
            ]
            spans = [(addrs, self.pcpu_value_size) for addrs in self._pcpu_values]
        else:
            regions = [
                (base, base + size, writable and not self.percpu)
                for base, size in self.cache.chunks
            ]
            spans = self.cache.pcpu_chunks
        if self.percpu:
            starts = sorted((a, size) for addrs, size in spans for a in addrs)
            merged: list[tuple[int, int, bool]] = []
            for start, size in starts:
                if merged and merged[-1][1] == start:
                    merged[-1] = (merged[-1][0], start + size, writable)
                else:
                    merged.append((start, start + size, writable))
            regions += merged
        return regions


class PerCpuHashMap(HashMap):
    """BPF_MAP_TYPE_PERCPU_HASH (``htab_percpu_map_ops``): every element's value is per-CPU.

    A program sees and updates its own CPU's copy; an existing key is updated *in place*
    (no new element), a new key's other-CPU copies are zeroed; the syscall side reads and writes
    every CPU's copy, ``round_up(value_size, 8)`` bytes each, in CPU order.
    """

    percpu: ClassVar[bool] = True

    def lookup_elem(self, key: bytes) -> Op:
        """``htab_percpu_map_lookup_elem``: ``this_cpu_ptr`` of the element's per-CPU pointer."""
        elem = yield from self.htab_lookup(key)
        if elem is None:
            return 0
        yield Touch(elem.addr + self.value_off, 8)
        return elem.pptr[self.host.current_cpu_id()]

    def lookup_percpu_elem(self, key: bytes, cpu: int) -> Op:
        """``htab_percpu_map_lookup_percpu_elem``: CPU ``cpu``'s copy; NULL for a CPU that does
        not exist (checked before hashing) or an absent key."""
        if cpu >= self.ncpus:
            return 0
        elem = yield from self.htab_lookup(key)
        if elem is None:
            return 0
        yield Touch(elem.addr + self.value_off, 8)
        return elem.pptr[cpu]

    def _percpu_update(self, key: bytes, value: bytes, flags: int, onallcpus: bool) -> Op:
        """``__htab_percpu_map_update_elem``: flags above BPF_EXIST (BPF_F_LOCK included) ->
        EINVAL; under the bucket lock, an existing key's copies are overwritten in place, a new
        key gets a new element (E2BIG when full)."""
        if flags > BPF_EXIST:
            raise BpfError(errno.EINVAL, f"per-CPU update flags {flags:#x}: unknown bits")
        key = bytes(key)
        hash_ = yield from self.hash_of(key)
        index = hash_ & self._mask
        yield from self.lock_bucket(index, hash_)
        try:
            old = yield from self.lookup_elem_raw(index, hash_, key)
            check_flags(old is not None, flags)
            if old is not None:
                yield Touch(old.addr + self.value_off, 8)
                yield from self.pcpu_copy_value(old, value, onallcpus)
            else:
                new = yield from self.alloc_htab_elem(key, value, hash_, True, onallcpus, None)
                yield from self.link_head(index, new)
        except BpfError:
            yield from self.unlock_bucket(index, hash_)
            raise
        yield from self.unlock_bucket(index, hash_)

    def update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """``htab_percpu_map_update_elem``: this CPU's copy."""
        return (yield from self._percpu_update(key, value, flags, False))

    def sys_update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """``bpf_percpu_hash_update``: every CPU's copy from the user's per-CPU layout."""
        return (yield from self._percpu_update(key, value, flags, True))

    def sys_lookup_elem(self, key: bytes, flags: int) -> Op:
        """``bpf_percpu_hash_copy``: every CPU's copy, ``round_up(value_size, 8)`` bytes each,
        in CPU order; ENOENT when absent."""
        elem = yield from self.htab_lookup(bytes(key))
        if elem is None:
            raise BpfError(errno.ENOENT, "no element with that key")
        yield Touch(elem.addr + self.value_off, 8)
        return (yield from self._read_values(elem))
