"""The LRU behind LRU_HASH and LRU_PERCPU_HASH: kernel/bpf/bpf_lru_list.c and .h at v6.6, and
an exact LRU with the same interface (kbpf-basic's policy, ``lru = "exact"``).

Linux does not keep a true LRU order: that would need a lock on every lookup.  It keeps an
approximation that costs a lookup one byte store (the node's *ref* bit) and batches the list work:

* Every element of a preallocated LRU map carries a ``struct bpf_lru_node`` (a ``list_head``,
  the CPU that took it, the list it is on, the ref bit).  At creation every node is on the
  global FREE list (:meth:`BpfLru.populate`).
* The global ``struct bpf_lru_list`` has three lists, ACTIVE, INACTIVE and FREE, under one
  spinlock.  Each CPU has a ``struct bpf_lru_locallist`` with its own FREE and PENDING lists
  under its own lock.  An update pops a node from its CPU's local FREE list and parks it on the
  local PENDING list (:meth:`BpfLru.pop_free`): the common case takes one uncontended per-CPU lock.
* Only when the local FREE list is empty does a CPU take the global lock
  (``bpf_lru_list_pop_free_to_local``): it flushes its PENDING nodes into ACTIVE (ref set) or
  INACTIVE, rotates the lists, and moves up to ``LOCAL_FREE_TARGET`` (128) nodes to its local
  FREE list — first from the global FREE list, then by *shrinking*: evicting unreferenced nodes
  from the INACTIVE tail, each eviction deleting the element from its hash bucket through
  ``del_from_htab`` (which takes that bucket's lock: lock order local -> global -> bucket).  A
  shrink evicts *up to 128 elements at once*: that is why small LRU maps lose keys long before
  they are full (bpftrace issue 3992).
* If that finds nothing (the nodes sit on other CPUs' local lists), the CPU *steals*: it visits
  the local lists round robin from its ``next_steal`` CPU (itself first), taking a FREE node or
  evicting the oldest PENDING one (:meth:`BpfLru._common_pop_free`).
* With ``BPF_F_NO_COMMON_LRU`` each CPU has a whole ``bpf_lru_list`` of its own
  (``percpu_lru``), holding ``max_entries / ncpus`` nodes; a CPU rotates and shrinks only its
  own list, four nodes at a time (``PERCPU_FREE_TARGET``), and never steals.

The ref bit is what makes an element *hot*: a program-side lookup sets it
(:meth:`BpfLru.node_set_ref`, no lock), and rotation gives referenced nodes another round on
ACTIVE while unreferenced ones drift to the INACTIVE tail where shrinking finds them.

:class:`ExactLru` is the policy kbpf-basic implements (a ``LruCache``): one list in true
recency order, the least recently used element evicted first, exactly one at a time, and only
when no free node is left.  Its price is a lock on every program-side lookup, which is the
contention Linux's design avoids; the two policies are selectable so that both the eviction
behaviour and the cost can be compared.

Port notes:

* Nodes and list heads are Python objects linked exactly like ``list_head``s (circular, with
  sentinels), so every kernel walk — the ``next_inactive_rotation`` cursor included — runs the
  same steps.  Each also has the kernel address it would have, and every read or write the
  kernel makes of a node or a list head is reported as a :class:`~kbpf.host.Touch` there.  The
  node's fields are not programs' or users' to see, so they live Python-side.
* Each ``raw_spinlock_t`` is a :class:`~kbpf.host.Lock` at its address (the global list's lock
  on its own cache line, as ``____cacheline_aligned_in_smp`` puts it), taken and released
  exactly where Linux does, so contention comes out of the mechanism.
* ``del_from_htab(node)`` is a request generator returning a bool (the map's
  ``htab_lru_map_delete_node``): it yields the bucket lock and the touches of the deletion.  The
  map reports each successful deletion as ``Work("lru_evict")``.
* Work reported here: ``Work("lru_rotate", n)`` for the ``n`` nodes a list walk visited
  (flush, rotation, the FREE transfer, shrinking, the PENDING scan of a steal, the exact LRU's
  tail scan) and ``Work("lru_steal")`` each time the steal loop comes back with a node.
* ``WARN_ON_ONCE`` cases (pushing a node that is already free) raise ``RuntimeError``: in
  kbpf they can only be bugs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kbpf.host import Acquire, KernelAuxiliaryOps, Lock, Op, PerCpuVariantsOps, Release, Touch, Work

# -- include/linux/bpf_lru_list.h ----------------------------------------------------------------
#: ``enum bpf_lru_list_type``.
BPF_LRU_LIST_T_ACTIVE = 0
BPF_LRU_LIST_T_INACTIVE = 1
BPF_LRU_LIST_T_FREE = 2
BPF_LRU_LOCAL_LIST_T_FREE = 3
BPF_LRU_LOCAL_LIST_T_PENDING = 4
NR_BPF_LRU_LIST_T = 3
NR_BPF_LRU_LIST_COUNT = 2
NR_BPF_LRU_LOCAL_LIST_T = 2
BPF_LOCAL_LIST_T_OFFSET = NR_BPF_LRU_LIST_T

TYPE_NAMES = {
    BPF_LRU_LIST_T_ACTIVE: "ACTIVE",
    BPF_LRU_LIST_T_INACTIVE: "INACTIVE",
    BPF_LRU_LIST_T_FREE: "FREE",
    BPF_LRU_LOCAL_LIST_T_FREE: "LOCAL_FREE",
    BPF_LRU_LOCAL_LIST_T_PENDING: "LOCAL_PENDING",
}

# -- kernel/bpf/bpf_lru_list.c -------------------------------------------------------------------
#: Nodes a CPU moves to its local FREE list per visit to the global list (v6.6: a constant; the
#: 2025 ``target_free`` change does not apply).
LOCAL_FREE_TARGET = 128
#: Nodes one rotation or shrink walk of the common LRU visits at most (``lru->nr_scans``).
LOCAL_NR_SCANS = LOCAL_FREE_TARGET
#: Nodes a per-CPU LRU shrinks at once when its FREE list is empty.
PERCPU_FREE_TARGET = 4
PERCPU_NR_SCANS = PERCPU_FREE_TARGET

# -- layouts (x86-64) ----------------------------------------------------------------------------
LIST_HEAD_SIZE = 16
#: ``struct bpf_lru_node``: ``list_head`` (16), ``u16 cpu``, ``u8 type``, ``u8 ref``, padded to 8.
LRU_NODE_SIZE = 24
LRU_NODE_REF_OFFSET = 19
#: ``struct bpf_lru_list``: ``lists[3]`` at 0, ``counts[2]`` at 48, ``next_inactive_rotation``
#: at 56, then the lock on the next cache line (``____cacheline_aligned_in_smp``).
LRU_LIST_SIZE = 128
LRU_LIST_LOCK_OFFSET = 64
#: ``struct bpf_lru_locallist``: ``lists[2]`` at 0, ``u16 next_steal`` at 32, lock at 36.
LOCALLIST_SIZE = 40
LOCALLIST_NEXT_STEAL_OFFSET = 32
LOCALLIST_LOCK_OFFSET = 36


class ListHead:
    """A ``struct list_head`` at kernel address ``addr``; a lone head points at itself."""

    __slots__ = ("next", "prev", "addr")

    def __init__(self, addr: int):
        self.next: ListHead = self
        self.prev: ListHead = self
        self.addr = addr

    def empty(self) -> bool:
        return self.next is self

    def __iter__(self) -> Iterator[LruNode]:
        """The entries from head to tail (for tests and checks; kernel walks are written out)."""
        cur = self.next
        while cur is not self:
            yield cur  # type: ignore[misc]
            cur = cur.next

    def __len__(self) -> int:
        return sum(1 for _ in self)


class LruNode(ListHead):
    """A ``struct bpf_lru_node`` inside a map element, at kernel address ``addr``.

    ``hash`` stands for the element's ``hash`` field that ``__local_list_add_pending`` writes
    through ``lru->hash_offset``; ``elem`` is the owner's element (``container_of``).
    """

    __slots__ = ("cpu", "type", "ref", "hash", "elem")

    def __init__(self, addr: int, elem: object = None):
        super().__init__(addr)
        self.cpu = 0
        self.type = BPF_LRU_LIST_T_FREE
        self.ref = 0
        self.hash = 0
        self.elem = elem

    def __repr__(self) -> str:
        return f"LruNode({self.addr:#x} {TYPE_NAMES.get(self.type, self.type)} ref={self.ref})"


def _move(node: LruNode, head: ListHead, t: list[Touch]) -> None:
    """``list_move(&node->list, head)``: unlink ``node`` and add it after ``head``; record the
    stores (the old neighbours' pointers, the head and its old first entry, the node)."""
    prev, nxt = node.prev, node.next
    prev.next = nxt
    nxt.prev = prev
    first = head.next
    first.prev = node
    node.next = first
    node.prev = head
    head.next = node
    t.append(Touch(prev.addr, 8, True))
    t.append(Touch(nxt.addr + 8, 8, True))
    t.append(Touch(head.addr, 8, True))
    t.append(Touch(first.addr + 8, 8, True))
    t.append(Touch(node.addr, LRU_NODE_SIZE, True))


def _add(node: LruNode, head: ListHead) -> None:
    """``list_add`` for a node on no list (population time: nothing to price)."""
    first = head.next
    first.prev = node
    node.next = first
    node.prev = head
    head.next = node


def _del(node: LruNode, t: list[Touch]) -> None:
    """``list_del``: unlink ``node`` (it then belongs to the caller)."""
    prev, nxt = node.prev, node.next
    prev.next = nxt
    nxt.prev = prev
    node.next = node.prev = node
    t.append(Touch(prev.addr, 8, True))
    t.append(Touch(nxt.addr + 8, 8, True))
    t.append(Touch(node.addr, LIST_HEAD_SIZE, True))


def _read(node: ListHead, t: list[Touch]) -> None:
    t.append(Touch(node.addr, LRU_NODE_SIZE, False))


def _flush(t: list[Touch]) -> Op:
    """Yield the touches gathered so far (inside the same critical section)."""
    yield from t
    t.clear()


class LruList:
    """``struct bpf_lru_list``: ACTIVE, INACTIVE and FREE, the two counts, the inactive
    rotation cursor and the lock, at kernel address ``addr``."""

    __slots__ = ("addr", "lists", "counts", "next_inactive_rotation", "lock")

    def __init__(self, addr: int, name: str):
        self.addr = addr
        self.lists = [ListHead(addr + i * LIST_HEAD_SIZE) for i in range(NR_BPF_LRU_LIST_T)]
        self.counts = [0] * NR_BPF_LRU_LIST_COUNT
        self.next_inactive_rotation: ListHead = self.lists[BPF_LRU_LIST_T_INACTIVE]
        self.lock = Lock(addr + LRU_LIST_LOCK_OFFSET, name)

    # bookkeeping moves: each also records its stores in ``t``
    def _count_inc(self, type_: int) -> None:
        if type_ < NR_BPF_LRU_LIST_COUNT:
            self.counts[type_] += 1

    def _count_dec(self, type_: int) -> None:
        if type_ < NR_BPF_LRU_LIST_COUNT:
            self.counts[type_] -= 1

    def move_to_free(self, node: LruNode, free_list: ListHead, tgt_free_type: int, t) -> None:
        """``__bpf_lru_node_move_to_free``: off ACTIVE/INACTIVE onto a (global or local) free
        list; keeps the rotation cursor valid."""
        if node.type >= BPF_LOCAL_LIST_T_OFFSET:
            raise RuntimeError(f"{node!r} is on a local list, cannot move it to free")
        if node is self.next_inactive_rotation:
            self.next_inactive_rotation = node.prev
        self._count_dec(node.type)
        node.type = tgt_free_type
        _move(node, free_list, t)

    def move_in(self, node: LruNode, tgt_type: int, t) -> None:
        """``__bpf_lru_node_move_in``: from a local list onto ACTIVE or INACTIVE."""
        if node.type < BPF_LOCAL_LIST_T_OFFSET or tgt_type >= BPF_LOCAL_LIST_T_OFFSET:
            raise RuntimeError(f"{node!r} cannot move in to list {tgt_type}")
        self._count_inc(tgt_type)
        node.type = tgt_type
        node.ref = 0
        _move(node, self.lists[tgt_type], t)

    def move(self, node: LruNode, tgt_type: int, t) -> None:
        """``__bpf_lru_node_move``: between or within ACTIVE/INACTIVE/FREE; clears ref."""
        if node.type >= BPF_LOCAL_LIST_T_OFFSET or tgt_type >= BPF_LOCAL_LIST_T_OFFSET:
            raise RuntimeError(f"{node!r} cannot move to list {tgt_type}")
        if node.type != tgt_type:
            self._count_dec(node.type)
            self._count_inc(tgt_type)
            node.type = tgt_type
        node.ref = 0
        if node is self.next_inactive_rotation:
            self.next_inactive_rotation = node.prev
        _move(node, self.lists[tgt_type], t)

    def header_touch(self, write: bool) -> Touch:
        """The list heads, counts and cursor share the structure's first cache line."""
        return Touch(self.addr, 64, write)


class LocalList:
    """``struct bpf_lru_locallist`` of CPU ``cpu``: its FREE and PENDING lists, ``next_steal``
    and its lock, at that CPU's per-CPU address ``addr``."""

    __slots__ = ("addr", "free", "pending", "next_steal", "lock")

    def __init__(self, addr: int, cpu: int, name: str):
        self.addr = addr
        self.free = ListHead(addr)
        self.pending = ListHead(addr + LIST_HEAD_SIZE)
        self.next_steal = cpu
        self.lock = Lock(addr + LOCALLIST_LOCK_OFFSET, f"{name} cpu{cpu} local")


#: ``del_from_htab``: delete the node's element from its bucket (taking the bucket lock);
#: a request generator returning True when the element was found and unlinked.
DelFromHtab = Callable[[LruNode], Op]


class _LruMemory:
    """What both policies share: the host, the CPU count, the hash offset and the memory their
    lists occupy (a kmalloc'd global list, per-CPU allocations), given back by :meth:`destroy`."""

    def __init__(
        self,
        host: KernelAuxiliaryOps,
        percpu_ops: PerCpuVariantsOps,
        percpu: bool,
        del_from_htab: DelFromHtab,
        hash_offset: int,
    ):
        self.host = host
        self.percpu_ops = percpu_ops
        self.percpu = bool(percpu)
        self.del_from_htab = del_from_htab
        self.hash_offset = hash_offset
        self.ncpus = percpu_ops.num_cpus()
        self._kmalloc = 0
        self._pcpu_addrs: list[int] = []

    def destroy(self) -> None:
        """``bpf_lru_destroy``: give the lists' memory back."""
        if self._pcpu_addrs:
            self.percpu_ops.free_percpu(self._pcpu_addrs)
            self._pcpu_addrs = []
        if self._kmalloc:
            self.host.kfree(self._kmalloc)
            self._kmalloc = 0


class BpfLru(_LruMemory):
    """``struct bpf_lru`` (``bpf_lru_init``): the common LRU with per-CPU local lists, or with
    ``percpu`` (``BPF_F_NO_COMMON_LRU``) one LRU list per CPU.

    ``hash_offset`` is where the element's hash lies relative to the node (the pop writes it
    there); ``name`` labels the locks.  Memory: the global list lives at ``list_addr`` (128
    bytes, 64-aligned: inside the map's ``struct bpf_htab``, as ``struct bpf_lru`` is embedded
    there) or, without one, in its own kmalloc'd lines; local lists and per-CPU lists come from
    ``alloc_percpu``.
    """

    #: The policy name, as the host selects it.
    policy = "linux"
    #: Whether :meth:`node_set_ref` takes a lock (then callers must not hold a bucket lock:
    #: the only allowed order is LRU lock -> bucket lock).
    set_ref_locks = False

    def __init__(
        self,
        host: KernelAuxiliaryOps,
        percpu_ops: PerCpuVariantsOps,
        percpu: bool,
        del_from_htab: DelFromHtab,
        hash_offset: int,
        name: str = "lru",
        list_addr: int | None = None,
    ):
        super().__init__(host, percpu_ops, percpu, del_from_htab, hash_offset)
        if self.percpu:
            addrs = percpu_ops.alloc_percpu(LRU_LIST_SIZE, 64)
            self._pcpu_addrs = addrs
            self.percpu_lru = percpu_ops.create(lambda cpu: LruList(addrs[cpu], f"{name} cpu{cpu}"))
            self.nr_scans = PERCPU_NR_SCANS
        else:
            if list_addr is None:
                list_addr = self._kmalloc = host.kmalloc(LRU_LIST_SIZE, 64)
            self.lru_list = LruList(list_addr, f"{name} global")
            try:
                addrs = percpu_ops.alloc_percpu(LOCALLIST_SIZE, 8)
            except BaseException:
                if self._kmalloc:
                    host.kfree(self._kmalloc)
                    self._kmalloc = 0
                raise
            self._pcpu_addrs = addrs
            self.local_list = percpu_ops.create(lambda cpu: LocalList(addrs[cpu], cpu, name))
            self.nr_scans = LOCAL_NR_SCANS
        # Hot path: bind the variant's push once instead of dispatching on every call (each
        # nested generator frame is paid again for every request the operation yields).
        self.push_free = self._percpu_push_free if self.percpu else self._common_push_free

    # -- population -------------------------------------------------------------------------------
    def populate(
        self,
        buf: int,
        node_offset: int,
        elem_size: int,
        nr_elems: int,
        elems: list[object] | None = None,
    ) -> list[LruNode]:
        """``bpf_lru_populate``: one node per element at ``buf + i * elem_size + node_offset``,
        all FREE; returns them in element order (``elems[i]`` becomes node ``i``'s owner).

        Common LRU: every node goes to the global FREE list (added at the head, so the last
        element is popped first).  Per-CPU LRU (``bpf_percpu_lru_populate``): consecutive runs
        of ``nr_elems / ncpus`` elements go to CPU 0, 1, …, each node remembering its CPU.
        """
        nodes = [
            LruNode(buf + i * elem_size + node_offset, None if elems is None else elems[i])
            for i in range(nr_elems)
        ]
        if not self.percpu:
            free = self.lru_list.lists[BPF_LRU_LIST_T_FREE]
            for node in nodes:
                _add(node, free)
            return nodes
        pcpu_entries = nr_elems // self.ncpus
        if pcpu_entries == 0:
            raise ValueError(f"{nr_elems} elements cannot give each of {self.ncpus} CPUs one")
        i = 0
        for cpu in range(self.ncpus):
            free = self.percpu_lru.force_get(cpu).lists[BPF_LRU_LIST_T_FREE]
            while True:
                node = nodes[i]
                node.cpu = cpu
                _add(node, free)
                i += 1
                if i == nr_elems or i % pcpu_entries == 0:
                    break
            if i == nr_elems:
                break
        return nodes

    # -- the ref bit ------------------------------------------------------------------------------
    def node_set_ref(self, node: LruNode, just_popped: bool = False) -> Op:
        """``bpf_lru_node_set_ref``: set the ref bit unless it is set (a read, and a store only
        when it changes, so a hot element's line is not dirtied on every lookup).  No lock:
        "ref is an approximation on access frequency"."""
        ref = node.addr + LRU_NODE_REF_OFFSET
        yield Touch(ref, 1, False)
        if not node.ref:
            node.ref = 1
            yield Touch(ref, 1, True)

    # -- pop ----------------------------------------------------------------------------------------
    def pop_free(self, hash_: int, evict: bool = True) -> Op:
        """``bpf_lru_pop_free``: a node for a new element of hash ``hash_``, or None when none
        can be found (the update then fails with ENOMEM).  Linux's LRU always may evict on the
        way (``evict=False`` is the exact policy's option only)."""
        if not evict:
            raise ValueError("the Linux LRU cannot pop without being allowed to evict")
        if self.percpu:
            return (yield from self._percpu_pop_free(hash_))
        return (yield from self._common_pop_free(hash_))

    def _rotate(self, l: LruList, t: list[Touch]) -> int:
        """``__bpf_lru_list_rotate``: rotate ACTIVE when INACTIVE runs low (fewer inactive
        than active), then always rotate INACTIVE.  Returns the nodes visited."""
        n = 0
        if l.counts[BPF_LRU_LIST_T_INACTIVE] < l.counts[BPF_LRU_LIST_T_ACTIVE]:
            n += self._rotate_active(l, t)
        return n + self._rotate_inactive(l, t)

    def _rotate_active(self, l: LruList, t: list[Touch]) -> int:
        """``__bpf_lru_list_rotate_active``: from the ACTIVE tail, referenced nodes go back to
        the ACTIVE head (ref cleared: one more chance), the others to the INACTIVE head; stops
        after ``nr_scans`` nodes or at the node that was first."""
        active = l.lists[BPF_LRU_LIST_T_ACTIVE]
        if active.empty():
            return 0
        first_node = active.next
        i = 0
        node = active.prev
        while node is not active:
            tmp = node.prev
            _read(node, t)
            if node.ref:
                l.move(node, BPF_LRU_LIST_T_ACTIVE, t)
            else:
                l.move(node, BPF_LRU_LIST_T_INACTIVE, t)
            i += 1
            if i == self.nr_scans or node is first_node:
                break
            node = tmp
        return i

    def _rotate_inactive(self, l: LruList, t: list[Touch]) -> int:
        """``__bpf_lru_list_rotate_inactive``: from the ``next_inactive_rotation`` cursor
        backwards (wrapping over the head), referenced nodes move to ACTIVE, unreferenced ones
        stay for the next shrink; at most ``nr_scans`` nodes; the cursor is left where it
        stopped so the next rotation continues there."""
        inactive = l.lists[BPF_LRU_LIST_T_INACTIVE]
        if inactive.empty():
            return 0
        last = l.next_inactive_rotation.next
        if last is inactive:
            last = last.next
        cur = l.next_inactive_rotation
        nxt: ListHead = inactive
        i = 0
        visited = 0
        while i < self.nr_scans:
            if cur is inactive:
                cur = cur.prev
                continue
            node: LruNode = cur  # type: ignore[assignment]
            nxt = cur.prev
            _read(node, t)
            visited += 1
            if node.ref:
                l.move(node, BPF_LRU_LIST_T_ACTIVE, t)
            if cur is last:
                break
            cur = nxt
            i += 1
        l.next_inactive_rotation = nxt
        return visited

    def _shrink_inactive(self, l, tgt_nshrink, free_list, tgt_free_type, t, scanned) -> Op:
        """``__bpf_lru_list_shrink_inactive``: from the INACTIVE tail, referenced nodes move to
        ACTIVE, unreferenced ones are evicted (``del_from_htab``) onto ``free_list``, until
        ``tgt_nshrink`` are freed or ``nr_scans`` visited.  Returns the number freed."""
        inactive = l.lists[BPF_LRU_LIST_T_INACTIVE]
        nshrinked = 0
        i = 0
        node = inactive.prev
        while node is not inactive:
            tmp = node.prev
            _read(node, t)
            scanned[0] += 1
            if node.ref:
                l.move(node, BPF_LRU_LIST_T_ACTIVE, t)
            else:
                yield from _flush(t)
                if (yield from self.del_from_htab(node)):
                    l.move_to_free(node, free_list, tgt_free_type, t)
                    nshrinked += 1
                    if nshrinked == tgt_nshrink:
                        break
            i += 1
            if i == self.nr_scans:
                break
            node = tmp
        return nshrinked

    def _shrink(self, l, tgt_nshrink, free_list, tgt_free_type, t, scanned) -> Op:
        """``__bpf_lru_list_shrink``: shrink INACTIVE honouring the ref bit; if that frees
        nothing, force-evict one node ignoring it, from the INACTIVE tail if INACTIVE has nodes,
        else from the ACTIVE tail."""
        nshrinked = yield from self._shrink_inactive(
            l, tgt_nshrink, free_list, tgt_free_type, t, scanned
        )
        if nshrinked:
            return nshrinked
        if not l.lists[BPF_LRU_LIST_T_INACTIVE].empty():
            force = l.lists[BPF_LRU_LIST_T_INACTIVE]
        else:
            force = l.lists[BPF_LRU_LIST_T_ACTIVE]
        node = force.prev
        while node is not force:
            tmp = node.prev
            _read(node, t)
            scanned[0] += 1
            yield from _flush(t)
            if (yield from self.del_from_htab(node)):
                l.move_to_free(node, free_list, tgt_free_type, t)
                return 1
            node = tmp
        return 0

    def _local_flush(self, l: LruList, loc: LocalList, t: list[Touch]) -> int:
        """``__local_list_flush``: the CPU's PENDING nodes, oldest first, onto ACTIVE if a
        lookup referenced them since they were added, else INACTIVE."""
        pending = loc.pending
        n = 0
        node = pending.prev
        while node is not pending:
            tmp = node.prev
            _read(node, t)
            n += 1
            if node.ref:
                l.move_in(node, BPF_LRU_LIST_T_ACTIVE, t)
            else:
                l.move_in(node, BPF_LRU_LIST_T_INACTIVE, t)
            node = tmp
        return n

    def _pop_free_to_local(self, loc: LocalList) -> Op:
        """``bpf_lru_list_pop_free_to_local`` (called with ``loc``'s lock held): under the
        global lock, flush, rotate, move up to LOCAL_FREE_TARGET FREE nodes to ``loc`` and
        shrink for the rest."""
        l = self.lru_list
        yield Acquire(l.lock)
        t: list[Touch] = [l.header_touch(True)]
        visited = self._local_flush(l, loc, t)
        visited += self._rotate(l, t)
        free = l.lists[BPF_LRU_LIST_T_FREE]
        nfree = 0
        node = free.next
        while node is not free:
            tmp = node.next
            _read(node, t)
            visited += 1
            l.move_to_free(node, loc.free, BPF_LRU_LOCAL_LIST_T_FREE, t)
            nfree += 1
            if nfree == LOCAL_FREE_TARGET:
                break
            node = tmp
        scanned = [0]
        if nfree < LOCAL_FREE_TARGET:
            yield from self._shrink(
                l, LOCAL_FREE_TARGET - nfree, loc.free, BPF_LRU_LOCAL_LIST_T_FREE, t, scanned
            )
        yield from _flush(t)
        yield Release(l.lock)
        if visited + scanned[0]:
            yield Work("lru_rotate", visited + scanned[0])

    def _local_add_pending(self, loc: LocalList, cpu: int, node: LruNode, hash_: int, t) -> None:
        """``__local_list_add_pending``: record the element's hash and CPU, clear ref, park the
        node at the head of the CPU's PENDING list."""
        node.hash = hash_
        t.append(Touch(node.addr + self.hash_offset, 4, True))
        node.cpu = cpu
        node.type = BPF_LRU_LOCAL_LIST_T_PENDING
        node.ref = 0
        _move(node, loc.pending, t)

    @staticmethod
    def _local_pop_free(loc: LocalList, t: list[Touch]) -> LruNode | None:
        """``__local_list_pop_free``: the first node of the local FREE list, unlinked."""
        t.append(Touch(loc.free.addr, LIST_HEAD_SIZE, False))
        node = loc.free.next
        if node is loc.free:
            return None
        _del(node, t)  # type: ignore[arg-type]
        return node  # type: ignore[return-value]

    def _local_pop_pending(self, loc: LocalList, t: list[Touch]) -> Op:
        """``__local_list_pop_pending``: evict the oldest PENDING node whose element can be
        deleted, first skipping referenced ones, then ignoring ref."""
        pending = loc.pending
        scanned = 0
        for force in (False, True):
            node = pending.prev
            while node is not pending:
                _read(node, t)
                scanned += 1
                if not node.ref or force:
                    yield from _flush(t)
                    if (yield from self.del_from_htab(node)):
                        _del(node, t)
                        yield Work("lru_rotate", scanned)
                        return node
                node = node.prev
        if scanned:
            yield Work("lru_rotate", scanned)
        return None

    def _common_pop_free(self, hash_: int) -> Op:
        """``bpf_common_lru_pop_free``: local FREE list; else refill from the global list; else
        steal round robin from every CPU's local lists starting at ``next_steal``."""
        cpu = self.host.current_cpu_id()
        loc = self.local_list.force_get(cpu)
        t: list[Touch] = []
        yield Acquire(loc.lock)
        node = self._local_pop_free(loc, t)
        if node is None:
            yield from _flush(t)
            yield from self._pop_free_to_local(loc)
            node = self._local_pop_free(loc, t)
        if node is not None:
            self._local_add_pending(loc, cpu, node, hash_, t)
        yield from _flush(t)
        yield Release(loc.lock)
        if node is not None:
            return node

        # Nothing free locally nor globally: steal from the local free/pending lists of this
        # CPU and the others, round robin from loc->next_steal.
        yield Touch(loc.addr + LOCALLIST_NEXT_STEAL_OFFSET, 2, False)
        first_steal = steal = loc.next_steal
        while True:
            steal_loc = self.local_list.force_get(steal)
            yield Acquire(steal_loc.lock)
            node = self._local_pop_free(steal_loc, t)
            if node is None:
                node = yield from self._local_pop_pending(steal_loc, t)
            yield from _flush(t)
            yield Release(steal_loc.lock)
            steal = (steal + 1) % self.ncpus  # get_next_cpu over cpu_possible_mask
            if node is not None or steal == first_steal:
                break
        loc.next_steal = steal
        yield Touch(loc.addr + LOCALLIST_NEXT_STEAL_OFFSET, 2, True)
        if node is not None:
            yield Work("lru_steal")
            yield Acquire(loc.lock)
            self._local_add_pending(loc, cpu, node, hash_, t)
            yield from _flush(t)
            yield Release(loc.lock)
        return node

    def _percpu_pop_free(self, hash_: int) -> Op:
        """``bpf_percpu_lru_pop_free``: under this CPU's list lock, rotate; if FREE is empty
        shrink up to PERCPU_FREE_TARGET nodes; take the first FREE node onto INACTIVE."""
        cpu = self.host.current_cpu_id()
        l = self.percpu_lru.force_get(cpu)
        yield Acquire(l.lock)
        t: list[Touch] = [l.header_touch(True)]
        visited = self._rotate(l, t)
        free = l.lists[BPF_LRU_LIST_T_FREE]
        scanned = [0]
        if free.empty():
            yield from self._shrink(l, PERCPU_FREE_TARGET, free, BPF_LRU_LIST_T_FREE, t, scanned)
        node = None
        if not free.empty():
            node = free.next
            node.hash = hash_
            t.append(Touch(node.addr + self.hash_offset, 4, True))
            node.ref = 0
            l.move(node, BPF_LRU_LIST_T_INACTIVE, t)
        yield from _flush(t)
        yield Release(l.lock)
        if visited + scanned[0]:
            yield Work("lru_rotate", visited + scanned[0])
        return node

    # -- push ---------------------------------------------------------------------------------------
    def push_free(self, node: LruNode) -> Op:
        """``bpf_lru_push_free``: give a node back (its element was deleted, replaced, or never
        inserted)."""
        if self.percpu:
            yield from self._percpu_push_free(node)
        else:
            yield from self._common_push_free(node)

    def _common_push_free(self, node: LruNode) -> Op:
        """``bpf_common_lru_push_free``: a node still PENDING goes back to the FREE list of the
        CPU that took it (under that CPU's lock, rechecking the type, which a concurrent flush
        may have changed); any other goes to the global FREE list under the global lock."""
        if node.type in (BPF_LRU_LIST_T_FREE, BPF_LRU_LOCAL_LIST_T_FREE):
            raise RuntimeError(f"{node!r} pushed free twice")
        t: list[Touch] = []
        if node.type == BPF_LRU_LOCAL_LIST_T_PENDING:
            loc = self.local_list.force_get(node.cpu)
            yield Acquire(loc.lock)
            if node.type == BPF_LRU_LOCAL_LIST_T_PENDING:
                node.type = BPF_LRU_LOCAL_LIST_T_FREE
                node.ref = 0
                _move(node, loc.free, t)
                yield from _flush(t)
                yield Release(loc.lock)
                return
            yield Release(loc.lock)
        # bpf_lru_list_push_free
        l = self.lru_list
        if node.type >= BPF_LOCAL_LIST_T_OFFSET:
            raise RuntimeError(f"{node!r} is on a local list, cannot push it to the global list")
        yield Acquire(l.lock)
        t.append(l.header_touch(True))
        l.move(node, BPF_LRU_LIST_T_FREE, t)
        yield from _flush(t)
        yield Release(l.lock)

    def _percpu_push_free(self, node: LruNode) -> Op:
        """``bpf_percpu_lru_push_free``: back to the FREE list of the node's own CPU."""
        if node.type == BPF_LRU_LIST_T_FREE:
            raise RuntimeError(f"{node!r} pushed free twice")
        l = self.percpu_lru.force_get(node.cpu)
        t: list[Touch] = []
        yield Acquire(l.lock)
        t.append(l.header_touch(True))
        l.move(node, BPF_LRU_LIST_T_FREE, t)
        yield from _flush(t)
        yield Release(l.lock)

    # -- checks -------------------------------------------------------------------------------------
    def lists(self) -> Iterator[tuple[str, int, ListHead, int]]:
        """Every list as ``(owner, cpu, head, expected node type)`` (for checks and tests)."""
        if self.percpu:
            for cpu in range(self.ncpus):
                l = self.percpu_lru.force_get(cpu)
                for type_, head in enumerate(l.lists):
                    yield "percpu", cpu, head, type_
        else:
            for type_, head in enumerate(self.lru_list.lists):
                yield "global", -1, head, type_
            for cpu in range(self.ncpus):
                loc = self.local_list.force_get(cpu)
                yield "local", cpu, loc.free, BPF_LRU_LOCAL_LIST_T_FREE
                yield "local", cpu, loc.pending, BPF_LRU_LOCAL_LIST_T_PENDING

    def check(self, nodes: list[LruNode]) -> None:
        """Assert the structure is sound: every list doubly linked, every node on exactly one
        list of its type (per-CPU: of its own CPU), the counts right.  Nodes an operation holds
        between pop and push (none, between operations) would be reported missing."""
        seen: dict[int, LruNode] = {}
        lists = (
            [self.percpu_lru.force_get(c) for c in range(self.ncpus)]
            if self.percpu
            else [self.lru_list]
        )
        for owner, cpu, head, type_ in self.lists():
            cur = head
            while True:
                if cur.next.prev is not cur:
                    raise AssertionError(f"{owner} list {type_} of cpu {cpu} is broken at {cur!r}")
                cur = cur.next
                if cur is head:
                    break
                if cur.type != type_:
                    raise AssertionError(f"{cur!r} on {owner} list {TYPE_NAMES[type_]}")
                if self.percpu and cur.cpu != cpu:
                    raise AssertionError(f"{cur!r} of cpu {cur.cpu} on cpu {cpu}'s list")
                if id(cur) in seen:
                    raise AssertionError(f"{cur!r} on two lists")
                seen[id(cur)] = cur
        for l in lists:
            for type_ in range(NR_BPF_LRU_LIST_COUNT):
                if l.counts[type_] != len(l.lists[type_]):
                    raise AssertionError(
                        f"count of {TYPE_NAMES[type_]} is {l.counts[type_]}, "
                        f"list holds {len(l.lists[type_])}"
                    )
            nir = l.next_inactive_rotation
            inactive = l.lists[BPF_LRU_LIST_T_INACTIVE]
            if nir is not inactive and (id(nir) not in seen or nir.type != BPF_LRU_LIST_T_INACTIVE):
                raise AssertionError("next_inactive_rotation points off the INACTIVE list")
        missing = [n for n in nodes if id(n) not in seen]
        if missing:
            raise AssertionError(f"{len(missing)} nodes on no list, e.g. {missing[0]!r}")


class ExactLru(_LruMemory):
    """A true LRU with :class:`BpfLru`'s interface: kbpf-basic's policy (``lru = "exact"``).

    One list in recency order (most recent at the head) and one FREE list, under one lock; with
    ``percpu`` (``BPF_F_NO_COMMON_LRU``) one such pair per CPU, populated as Linux populates its
    per-CPU lists, so each CPU evicts only among its own elements.  A pop takes a FREE node if
    there is one and otherwise evicts exactly one element, the least recently used one whose
    bucket deletion succeeds; the popped node becomes the most recent.  Every program-side use
    (:meth:`node_set_ref`) moves its node to the head under the lock.  Structures reuse
    ``struct bpf_lru_list``'s layout: ACTIVE is the recency list, FREE the free list, the lock on
    its own cache line.
    """

    policy = "exact"
    set_ref_locks = True

    def __init__(
        self,
        host: KernelAuxiliaryOps,
        percpu_ops: PerCpuVariantsOps,
        percpu: bool,
        del_from_htab: DelFromHtab,
        hash_offset: int,
        name: str = "lru",
        list_addr: int | None = None,
    ):
        super().__init__(host, percpu_ops, percpu, del_from_htab, hash_offset)
        if self.percpu:
            addrs = percpu_ops.alloc_percpu(LRU_LIST_SIZE, 64)
            self._pcpu_addrs = addrs
            self._lists = [LruList(addrs[c], f"{name} cpu{c} exact") for c in range(self.ncpus)]
        else:
            if list_addr is None:
                list_addr = self._kmalloc = host.kmalloc(LRU_LIST_SIZE, 64)
            self._lists = [LruList(list_addr, f"{name} exact")]

    def _list_of(self, cpu: int) -> LruList:
        return self._lists[cpu] if self.percpu else self._lists[0]

    def populate(self, buf, node_offset, elem_size, nr_elems, elems=None) -> list[LruNode]:
        """As :meth:`BpfLru.populate`: all FREE; per-CPU runs of ``nr_elems / ncpus``."""
        nodes = [
            LruNode(buf + i * elem_size + node_offset, None if elems is None else elems[i])
            for i in range(nr_elems)
        ]
        per = nr_elems // self.ncpus if self.percpu else nr_elems
        if per == 0:
            raise ValueError(f"{nr_elems} elements cannot give each of {self.ncpus} CPUs one")
        for i, node in enumerate(nodes):
            node.cpu = min(i // per, self.ncpus - 1) if self.percpu else 0
            _add(node, self._list_of(node.cpu).lists[BPF_LRU_LIST_T_FREE])
        return nodes

    def recency(self, cpu: int = 0) -> list[LruNode]:
        """The in-use nodes, most recently used first (CPU ``cpu``'s list when per-CPU)."""
        return list(self._list_of(cpu).lists[BPF_LRU_LIST_T_ACTIVE])

    def node_set_ref(self, node: LruNode, just_popped: bool = False) -> Op:
        """A use: move the node to the head of its recency list under the list lock.  A node
        this CPU has just popped is at the head already (no lock taken); a node freed since the
        caller found it is left alone."""
        if just_popped:
            return
        l = self._list_of(node.cpu)
        yield Acquire(l.lock)
        t: list[Touch] = [l.header_touch(False)]
        used = l.lists[BPF_LRU_LIST_T_ACTIVE]
        if node.type == BPF_LRU_LIST_T_ACTIVE and used.next is not node:
            node.ref = 1
            _move(node, used, t)
        yield from _flush(t)
        yield Release(l.lock)

    def pop_free(self, hash_: int, evict: bool = True) -> Op:
        """A FREE node, or else (when ``evict``) the least recently used element evicted:
        exactly one, and only when the list has no free node.  None when there is nothing to
        take (with ``evict`` False: no free node)."""
        cpu = self.host.current_cpu_id()
        l = self._list_of(cpu)
        yield Acquire(l.lock)
        t: list[Touch] = [l.header_touch(True)]
        free = l.lists[BPF_LRU_LIST_T_FREE]
        used = l.lists[BPF_LRU_LIST_T_ACTIVE]
        node: LruNode | None = None
        if not free.empty():
            node = free.next  # type: ignore[assignment]
        elif evict:
            scanned = 0
            cur = used.prev
            while cur is not used:
                _read(cur, t)
                scanned += 1
                yield from _flush(t)
                if (yield from self.del_from_htab(cur)):
                    node = cur  # type: ignore[assignment]
                    break
                cur = cur.prev
            if scanned:
                yield Work("lru_rotate", scanned)
        if node is not None:
            node.hash = hash_
            t.append(Touch(node.addr + self.hash_offset, 4, True))
            node.ref = 0
            if node.type != BPF_LRU_LIST_T_ACTIVE:
                l.counts[BPF_LRU_LIST_T_ACTIVE] += 1
                node.type = BPF_LRU_LIST_T_ACTIVE
            _move(node, used, t)
        yield from _flush(t)
        yield Release(l.lock)
        return node

    def push_free(self, node: LruNode) -> Op:
        """Back to the FREE list of its list."""
        if node.type == BPF_LRU_LIST_T_FREE:
            raise RuntimeError(f"{node!r} pushed free twice")
        l = self._list_of(node.cpu)
        t: list[Touch] = []
        yield Acquire(l.lock)
        t.append(l.header_touch(True))
        l.counts[BPF_LRU_LIST_T_ACTIVE] -= 1
        node.type = BPF_LRU_LIST_T_FREE
        node.ref = 0
        _move(node, l.lists[BPF_LRU_LIST_T_FREE], t)
        yield from _flush(t)
        yield Release(l.lock)

    def lists(self) -> Iterator[tuple[str, int, ListHead, int]]:
        for cpu, l in enumerate(self._lists):
            owner = "percpu" if self.percpu else "exact"
            yield owner, cpu if self.percpu else -1, l.lists[BPF_LRU_LIST_T_ACTIVE], 0
            yield owner, cpu if self.percpu else -1, l.lists[BPF_LRU_LIST_T_FREE], 2

    def check(self, nodes: list[LruNode]) -> None:
        """As :meth:`BpfLru.check`."""
        seen: set[int] = set()
        for owner, cpu, head, type_ in self.lists():
            cur = head
            while True:
                if cur.next.prev is not cur:
                    raise AssertionError(f"{owner} list {type_} of cpu {cpu} is broken")
                cur = cur.next
                if cur is head:
                    break
                if cur.type != type_ or id(cur) in seen:
                    raise AssertionError(f"{cur!r} misplaced")
                if self.percpu and cur.cpu != cpu:
                    raise AssertionError(f"{cur!r} of cpu {cur.cpu} on cpu {cpu}'s list")
                seen.add(id(cur))
        for l in self._lists:
            if l.counts[BPF_LRU_LIST_T_ACTIVE] != len(l.lists[BPF_LRU_LIST_T_ACTIVE]):
                raise AssertionError("in-use count differs from the recency list")
        missing = [n for n in nodes if id(n) not in seen]
        if missing:
            raise AssertionError(f"{len(missing)} nodes on no list, e.g. {missing[0]!r}")


#: The policies a host may select (``host.lru_policy``) and the class implementing each.
LRU_POLICIES: dict[str, type[BpfLru] | type[ExactLru]] = {"linux": BpfLru, "exact": ExactLru}


def bpf_lru_init(
    host: KernelAuxiliaryOps,
    percpu_ops: PerCpuVariantsOps,
    percpu: bool,
    del_from_htab: DelFromHtab,
    hash_offset: int,
    name: str = "lru",
    policy: str = "linux",
    list_addr: int | None = None,
) -> BpfLru | ExactLru:
    """``bpf_lru_init``: the LRU of the chosen ``policy`` (``"linux"`` or ``"exact"``)."""
    try:
        cls = LRU_POLICIES[policy]
    except KeyError:
        raise ValueError(f"lru policy must be 'linux' or 'exact', got {policy!r}") from None
    return cls(host, percpu_ops, percpu, del_from_htab, hash_offset, name, list_addr)
