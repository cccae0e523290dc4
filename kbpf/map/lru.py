"""BPF_MAP_TYPE_LRU_HASH and BPF_MAP_TYPE_LRU_PERCPU_HASH (kernel/bpf/hashtab.c at v6.6): the
hash table of :mod:`kbpf.map.hash`, with elements coming from the LRU of
:mod:`kbpf.map.lru_list` instead of a free list.

What the LRU changes in the hash table:

* An LRU map is always preallocated (``BPF_F_NO_PREALLOC`` is ENOTSUPP, in
  ``htab_map_alloc_check``) and has no per-CPU extra elements: "lru itself can remove the least
  used element".  Every element's ``bpf_lru_node`` starts on the LRU's free list
  (``prealloc_init`` -> ``bpf_lru_init`` + ``bpf_lru_populate``).  The common LRU's global list
  lives inside ``struct bpf_htab`` (at ``HTAB_LRU_OFFSET``).
* ``BPF_F_NO_COMMON_LRU`` gives each CPU its own LRU list; ``htab_map_alloc`` rounds
  ``max_entries`` up to a multiple of the CPU count so every list holds the same number of
  elements, and the map stores the rounded value (``bpf_map.max_entries``): kbpf's
  :class:`~kbpf.map.hash.HashMap` does that rounding for the LRU types and writes it to
  ``meta.max_entries``.
* An update never fails for lack of room: it pops a node *first*
  (:meth:`LruHashMap.prealloc_lru_pop`) — which may evict older elements, each deletion taking
  the victim's bucket lock (:meth:`LruHashMap.htab_lru_map_delete_node`, reported as
  ``Work("lru_evict")``) — and only then takes its own bucket lock.  Linux orders the locks
  LRU -> bucket and never the other way, so the pop must come before the bucket lock; if the
  update then fails its flag check, the node goes back (``htab_lru_push_free``).  Replacing an
  existing key takes a new node too (its ref bit set, since the key was in use) and frees the
  old one after unlocking.  A pop can only fail when no element at all can be evicted (ENOMEM).
* A program-side lookup marks the element referenced (``bpf_lru_node_set_ref``: the inlined
  ``htab_lru_map_gen_lookup`` stores the ref byte); a syscall lookup does not
  (``map_lookup_elem_sys_only``: "in order to not mess up eviction heuristics when user space
  does a map walk"), nor do ``get_next_key`` and ``for_each``.
* Deleted elements go back to the LRU after the bucket lock is released.

The eviction policy is the host's choice: ``host.lru_policy`` (``"linux"``, the default, or
``"exact"``, kbpf-basic's true LRU — see :class:`kbpf.map.lru_list.ExactLru`), read once when
the map is created; ``LruHashMap(meta, host, percpu_ops, policy="exact")`` overrides it.  Both
policies share every hash-table path; only the node lists and the cost of a reference differ.
"""

from __future__ import annotations

import errno
from typing import ClassVar

from kbpf.errors import BpfError
from kbpf.host import Op, Touch, Work
from kbpf.linux_bpf import BPF_EXIST, BPF_F_NO_COMMON_LRU
from kbpf.map.hash import (
    HASH_OFFSET,
    HTAB_LRU_OFFSET,
    KEY_OFFSET,
    LRU_NODE_OFFSET,
    HashMap,
    HtabElem,
    PerCpuHashMap,
    check_flags,
)
from kbpf.map.lru_list import LRU_POLICIES, BpfLru, ExactLru, LruNode, bpf_lru_init

#: The policy used when neither the constructor nor the host names one.
DEFAULT_LRU_POLICY = "linux"


class LruElem(HtabElem):
    """A ``struct htab_elem`` of an LRU map: ``node`` is its ``bpf_lru_node`` (``lru_node``)."""

    __slots__ = ("node",)

    def __init__(self, addr: int):
        super().__init__(addr)
        self.node: LruNode | None = None


class LruHashMap(HashMap):
    """BPF_MAP_TYPE_LRU_HASH (``htab_lru_map_ops``); the shared code of LRU_PERCPU_HASH."""

    lru: ClassVar[bool] = True
    elem_class: ClassVar[type[HtabElem]] = LruElem
    free_in_bucket_lock: ClassVar[bool] = False
    #: The map's LRU (set by :meth:`init_free_pool`).
    bpf_lru: BpfLru | ExactLru | None = None

    def __init__(self, meta, host, percpu_ops, poll_waker=None, *, policy: str | None = None):
        """``htab_map_alloc`` for an LRU type; ``policy`` (else ``host.lru_policy``, else
        ``"linux"``) picks the eviction policy."""
        if policy is None:
            policy = getattr(host, "lru_policy", None) or DEFAULT_LRU_POLICY
        if policy not in LRU_POLICIES:
            raise ValueError(f"lru policy must be 'linux' or 'exact', got {policy!r}")
        self.policy = policy
        super().__init__(meta, host, percpu_ops, poll_waker)

    # -- allocation ---------------------------------------------------------------------------
    def init_free_pool(self) -> None:
        """``bpf_lru_init`` + ``bpf_lru_populate`` over the element block: the nodes sit at
        ``LRU_NODE_OFFSET`` of each element, the hash ``HASH_OFFSET - LRU_NODE_OFFSET`` after
        the node; ``BPF_F_NO_COMMON_LRU`` makes the lists per-CPU."""
        self.bpf_lru = bpf_lru_init(
            self.host,
            self.percpu_ops,
            bool(self.meta.map_flags & BPF_F_NO_COMMON_LRU),
            self.htab_lru_map_delete_node,
            HASH_OFFSET - LRU_NODE_OFFSET,
            self._label,
            self.policy,
            self.map_addr + HTAB_LRU_OFFSET,
        )
        nodes = self.bpf_lru.populate(
            self.elems, LRU_NODE_OFFSET, self.elem_size, len(self.pool), self.pool
        )
        for elem, node in zip(self.pool, nodes, strict=True):
            elem.node = node

    def map_free(self) -> None:
        """``prealloc_destroy`` frees the LRU (``bpf_lru_destroy``) with the elements."""
        if self.bpf_lru is not None:
            self.bpf_lru.destroy()
            self.bpf_lru = None
        super().map_free()

    def element_count(self) -> int:
        """Elements linked in the table now (Python's view; no requests)."""
        return sum(1 for elem in self.pool if elem.pprev is not None)

    # -- the LRU's side of the table ----------------------------------------------------------
    def prealloc_lru_pop(self, key: bytes, hash_: int, evict: bool = True) -> Op:
        """``prealloc_lru_pop``: a node from the LRU (which may evict), then the key copied
        into its element; None when nothing could be freed.  ``evict`` False (exact policy
        only) takes a free node or nothing."""
        node = yield from self.bpf_lru.pop_free(hash_, evict)
        if node is None:
            return None
        yield self._touch_elem_count()  # bpf_map_inc_elem_count
        elem: LruElem = node.elem
        # the pop wrote the hash through lru->hash_offset (and reported the store)
        elem.hash = hash_
        self.host.write(elem.addr + HASH_OFFSET, hash_.to_bytes(4, "little"))
        self.host.write(elem.addr + KEY_OFFSET, key)
        elem.key = key
        yield Touch(elem.addr + KEY_OFFSET, self.key_size, True)
        yield Work("copy_bytes", self.key_size)
        return elem

    def _pop_for_update(
        self, key: bytes, hash_: int, index: int, flags: int, in_place: bool = False
    ) -> Op:
        """The node an update starts with (or None).  Linux pops one whatever the key and the
        flags, and may evict for it.  A true LRU evicts only to make room for a *new* key, so
        the exact policy first looks the key up (lock-free): when it is there, or when the
        update is BPF_EXIST (it can only replace), it takes a node only if one is free — or
        none at all when the update is made in place (``in_place``, per-CPU maps)."""
        evict = True
        if self.policy == "exact":
            found = (yield from self.lookup_nulls_elem_raw(index, hash_, key)) is not None
            evict = not found and flags != BPF_EXIST
            if found and in_place:
                return None
        new = yield from self.prealloc_lru_pop(key, hash_, evict)
        if new is None and evict:
            raise BpfError(errno.ENOMEM, "LRU found no element it could free")
        return new

    def htab_lru_map_delete_node(self, node: LruNode) -> Op:
        """``htab_lru_map_delete_node``, the LRU's ``del_from_htab``: lock the bucket of the
        element's hash, unlink the element if it is still on that chain (it may already be
        deleted, or be a node popped for an element not yet inserted), unlock.  A bucket this
        CPU already holds (``htab_lock_bucket``'s EBUSY) means "cannot delete".  An eviction is
        reported as ``Work("lru_evict")``."""
        target: LruElem = node.elem
        yield Touch(target.addr + HASH_OFFSET, 4)  # tgt_l->hash
        hash_ = target.hash
        index = hash_ & self._mask
        try:
            yield from self.lock_bucket(index, hash_)
        except BpfError:
            return False
        yield Touch(self.bucket_addr(index), 8)
        n = self.heads[index]
        found = False
        while not isinstance(n, int):
            yield Touch(n.addr, 8)
            yield Work("elem_walk", 1)
            if n is target:
                yield from self.unlink(n)
                yield self._touch_elem_count()  # bpf_map_dec_elem_count
                found = True
                break
            n = n.next
        yield from self.unlock_bucket(index, hash_)
        if found:
            yield Work("lru_evict")
        return found

    def free_htab_elem(self, elem: LruElem) -> Op:
        """``htab_lru_push_free``: the element's node back to the LRU (called after the bucket
        lock is released)."""
        yield self._touch_elem_count()  # bpf_map_dec_elem_count
        yield from self.bpf_lru.push_free(elem.node)

    def _set_ref(self, elem: LruElem, just_popped: bool = False) -> Op:
        return self.bpf_lru.node_set_ref(elem.node, just_popped)

    # -- program-side operations --------------------------------------------------------------
    def lookup_elem(self, key: bytes) -> Op:
        """``htab_lru_map_lookup_elem`` (as ``htab_lru_map_gen_lookup`` inlines it): the
        lock-free walk, then the element marked referenced."""
        elem = yield from self.htab_lookup(bytes(key))
        if elem is None:
            return 0
        yield from self._set_ref(elem)
        return elem.addr + self.value_off

    def update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """``htab_lru_map_update_elem``: flags above BPF_EXIST (BPF_F_LOCK included) ->
        EINVAL; pop a node and fill it *before* taking the bucket lock (ENOMEM if none); under
        the lock check BPF_NOEXIST/BPF_EXIST (EEXIST/ENOENT), link the new element at the head,
        and unlink the old one (the new one marked referenced); after unlocking push back the
        old element — or, on failure, the new one.

        Exact policy: only an insert of a new key may evict.  An existing key (or a BPF_EXIST
        update) takes a node only if one is free; in a full map the existing element is
        overwritten in place and becomes the most recent.  If the key vanished between the
        lock-free look and the bucket lock, the update starts again, now allowed to evict."""
        if flags > BPF_EXIST:
            raise BpfError(errno.EINVAL, f"update flags {flags:#x}: unknown bits")
        key = bytes(key)
        hash_ = yield from self.hash_of(key)
        index = hash_ & self._mask
        while True:
            new = yield from self._pop_for_update(key, hash_, index, flags)
            if new is not None:
                yield from self.write_value(new, value)
            try:
                yield from self.lock_bucket(index, hash_)
            except BpfError:
                if new is not None:
                    yield from self.free_htab_elem(new)
                raise
            try:
                old = yield from self.lookup_elem_raw(index, hash_, key)
                check_flags(old is not None, flags)
                if new is None and old is None:
                    yield from self.unlock_bucket(index, hash_)
                    continue
                if new is None:
                    yield from self.write_value(old, value)
                else:
                    yield from self.link_head(index, new)
                    if old is not None:
                        yield from self._set_ref(new, just_popped=True)
                        yield from self.unlink(old)
            except BpfError:
                yield from self.unlock_bucket(index, hash_)
                if new is not None:
                    yield from self.free_htab_elem(new)
                raise
            yield from self.unlock_bucket(index, hash_)
            if new is None:
                yield from self._set_ref(old)
            elif old is not None:
                yield from self.free_htab_elem(old)
            return

    # -- syscall side -------------------------------------------------------------------------
    def sys_lookup_elem(self, key: bytes, flags: int) -> Op:
        """``htab_lru_map_lookup_elem_sys`` (``map_lookup_elem_sys_only``): the value, without
        marking the element; ENOENT when absent."""
        elem = yield from self.htab_lookup(bytes(key))
        if elem is None:
            raise BpfError(errno.ENOENT, "no element with that key")
        return (yield from self._read_values(elem))


class LruPerCpuHashMap(LruHashMap, PerCpuHashMap):
    """BPF_MAP_TYPE_LRU_PERCPU_HASH (``htab_lru_percpu_map_ops``): LRU elements whose values are
    per-CPU.  An existing key is updated in place (marked referenced); a BPF_EXIST update pops
    no node; the syscall side copies every CPU's value, without marking."""

    percpu: ClassVar[bool] = True

    def lookup_elem(self, key: bytes) -> Op:
        """``htab_lru_percpu_map_lookup_elem``: mark, then this CPU's copy."""
        elem = yield from self.htab_lookup(bytes(key))
        if elem is None:
            return 0
        yield from self._set_ref(elem)
        yield Touch(elem.addr + self.value_off, 8)
        return elem.pptr[self.host.current_cpu_id()]

    def lookup_percpu_elem(self, key: bytes, cpu: int) -> Op:
        """``htab_lru_percpu_map_lookup_percpu_elem``: CPU ``cpu``'s copy, marking the element;
        NULL for a CPU that does not exist or an absent key."""
        if cpu >= self.ncpus:
            return 0
        elem = yield from self.htab_lookup(bytes(key))
        if elem is None:
            return 0
        yield from self._set_ref(elem)
        yield Touch(elem.addr + self.value_off, 8)
        return elem.pptr[cpu]

    def _lru_percpu_update(self, key: bytes, value: bytes, flags: int, onallcpus: bool) -> Op:
        """``__htab_lru_percpu_map_update_elem``: flags above BPF_EXIST -> EINVAL; unless the
        update is BPF_EXIST, pop a node first (ENOMEM if none); under the bucket lock, an
        existing key is marked and its copies overwritten in place, a new key's node gets the
        value (other CPUs' copies zeroed from a program) and is linked; a node popped but not
        used goes back after unlocking.

        Exact policy: an existing key pops no node (the update is in place anyway), and the
        mark, which takes the LRU lock, is made after the bucket lock is released (LRU -> bucket
        is the only lock order)."""
        if flags > BPF_EXIST:
            raise BpfError(errno.EINVAL, f"per-CPU update flags {flags:#x}: unknown bits")
        key = bytes(key)
        hash_ = yield from self.hash_of(key)
        index = hash_ & self._mask
        while True:
            new = None
            if flags != BPF_EXIST:
                new = yield from self._pop_for_update(key, hash_, index, flags, True)
            try:
                yield from self.lock_bucket(index, hash_)
            except BpfError:
                if new is not None:
                    yield from self.free_htab_elem(new)
                raise
            mark_after = None
            try:
                old = yield from self.lookup_elem_raw(index, hash_, key)
                check_flags(old is not None, flags)
                if old is not None:
                    if self.bpf_lru.set_ref_locks:
                        mark_after = old
                    else:
                        yield from self._set_ref(old)
                    yield Touch(old.addr + self.value_off, 8)
                    yield from self.pcpu_copy_value(old, value, onallcpus)
                elif new is None:  # exact: the key vanished since the lock-free look
                    yield from self.unlock_bucket(index, hash_)
                    continue
                else:
                    yield Touch(new.addr + self.value_off, 8)
                    yield from self.pcpu_init_value(new, value, onallcpus)
                    yield from self.link_head(index, new)
                    new = None
            except BpfError:
                yield from self.unlock_bucket(index, hash_)
                if new is not None:
                    yield from self.free_htab_elem(new)
                raise
            yield from self.unlock_bucket(index, hash_)
            if mark_after is not None:
                yield from self._set_ref(mark_after)
            if new is not None:
                yield from self.free_htab_elem(new)
            return

    def update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """``htab_lru_percpu_map_update_elem``: this CPU's copy."""
        return (yield from self._lru_percpu_update(key, value, flags, False))

    def sys_update_elem(self, key: bytes, value: bytes, flags: int) -> Op:
        """``bpf_percpu_hash_update`` for an LRU map: every CPU's copy."""
        return (yield from self._lru_percpu_update(key, value, flags, True))

    def sys_lookup_elem(self, key: bytes, flags: int) -> Op:
        """``bpf_percpu_hash_copy``: every CPU's copy, without marking the element."""
        return (yield from PerCpuHashMap.sys_lookup_elem(self, key, flags))
