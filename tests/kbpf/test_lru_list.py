"""The LRU lists behind LRU_HASH (kernel/bpf/bpf_lru_list.c at v6.6) and the exact policy,
driven directly: nodes, lists, locks, rotations, shrinking, stealing.

A small stand-in for the hash table plays ``del_from_htab``: it knows which nodes hold an
element, takes the element's bucket lock to delete one, and says whether it found it — which is
all ``htab_lru_map_delete_node`` tells the LRU.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kbpf.host import Acquire, Lock, Release, Touch, Work, drive, recorded
from kbpf.map.lru_list import (
    BPF_LRU_LIST_T_ACTIVE,
    BPF_LRU_LIST_T_FREE,
    BPF_LRU_LIST_T_INACTIVE,
    BPF_LRU_LOCAL_LIST_T_FREE,
    BPF_LRU_LOCAL_LIST_T_PENDING,
    LOCAL_FREE_TARGET,
    LOCAL_NR_SCANS,
    LRU_LIST_LOCK_OFFSET,
    PERCPU_FREE_TARGET,
    PERCPU_NR_SCANS,
    ExactLru,
    LruNode,
    bpf_lru_init,
)
from tests.kbpf.testhost import TestHost

ELEM_SIZE = 64
NODE_OFFSET = 16  # offsetof(struct htab_elem, lru_node)
HASH_OFFSET = 24  # offsetof(htab_elem, hash) - offsetof(htab_elem, lru_node)


def _h(key) -> int:
    """A stable stand-in for the element hash (Python's ``hash`` of a str varies per run)."""
    return zlib.crc32(repr(key).encode())


def bucket(key) -> str:
    return f"bucket {_h(key) % 4}"


class Table:
    """The hash table's side: which nodes hold an element, and a lock per bucket."""

    def __init__(self, host: TestHost, nbuckets: int = 4):
        self.host = host
        base = host.kmalloc(16 * nbuckets, 64)
        self.buckets = [Lock(base + 16 * i, f"bucket {i}") for i in range(nbuckets)]
        self.present: dict[int, object] = {}  # id(node) -> key
        self.evicted: list[object] = []
        self.refuse: set[int] = set()  # nodes whose bucket lock "fails" (htab_lock_bucket EBUSY)

    def insert(self, node: LruNode, key) -> None:
        self.present[id(node)] = key

    def remove(self, node: LruNode):
        return self.present.pop(id(node))

    def del_from_htab(self, node: LruNode):
        """``htab_lru_map_delete_node``: lock the bucket of the node's hash, unlink if there."""
        if id(node) in self.refuse:
            return False
        lock = self.buckets[node.hash % len(self.buckets)]
        yield Acquire(lock)
        yield Touch(lock.addr, 8, False)
        key = self.present.pop(id(node), None)
        yield Release(lock)
        if key is None:
            return False
        self.evicted.append(key)
        yield Work("lru_evict")
        return True


def run(op, host, log=None):
    return drive(recorded(op, log if log is not None else []), host)


def locks_taken(log) -> list[str]:
    return [r.lock.name for r in log if isinstance(r, Acquire)]


def work(log, kind) -> int:
    return sum(r.units for r in log if isinstance(r, Work) and r.kind == kind)


def make(ncpus=1, nr=4, percpu=False, policy="linux"):
    host = TestHost(ncpus=ncpus)
    table = Table(host)
    lru = bpf_lru_init(host, host, percpu, table.del_from_htab, HASH_OFFSET, "m", policy)
    buf = host.kmalloc(ELEM_SIZE * nr, 64)
    nodes = lru.populate(buf, NODE_OFFSET, ELEM_SIZE, nr)
    return host, table, lru, nodes


def insert(host, table, lru, key, cpu=0, log=None):
    """What an update of a new key does with the LRU: pop a node, then link it in the table."""
    host.cpu = cpu
    node = run(lru.pop_free(_h(key)), host, log)
    if node is not None:
        table.insert(node, key)
    return node


# -------------------------------------------------------------------------------------------------
# Constants and population
# -------------------------------------------------------------------------------------------------


def test_v6_6_constants():
    """v6.6 moves 128 nodes per visit to the global list and scans as many; a per-CPU LRU
    frees 4 at a time (no ``target_free``: that is a 2025 change)."""
    assert (LOCAL_FREE_TARGET, LOCAL_NR_SCANS) == (128, 128)
    assert (PERCPU_FREE_TARGET, PERCPU_NR_SCANS) == (4, 4)


def test_populate_puts_every_node_on_the_global_free_list():
    host, table, lru, nodes = make(ncpus=2, nr=5)
    free = lru.lru_list.lists[BPF_LRU_LIST_T_FREE]
    assert list(free) == nodes[::-1]  # list_add at the head: the last element comes first
    assert [n.addr for n in nodes] == [nodes[0].addr + i * ELEM_SIZE for i in range(5)]
    lru.check(nodes)


def test_percpu_populate_gives_each_cpu_a_run_of_elements():
    """``bpf_percpu_lru_populate``: ``nr_elems / ncpus`` consecutive elements per CPU."""
    host, table, lru, nodes = make(ncpus=3, nr=6, percpu=True)
    for cpu in range(3):
        free = lru.percpu_lru.force_get(cpu).lists[BPF_LRU_LIST_T_FREE]
        assert set(map(id, free)) == {id(nodes[2 * cpu]), id(nodes[2 * cpu + 1])}
        assert all(n.cpu == cpu for n in free)
    lru.check(nodes)


def test_lock_words_have_their_own_cache_line_and_per_cpu_homes():
    """The global lock is ``____cacheline_aligned_in_smp``; local-list locks sit in each CPU's
    per-CPU area, so CPUs updating their own local lists share no line."""
    host, table, lru, nodes = make(ncpus=2, nr=2)
    g = lru.lru_list
    assert g.lock.addr == g.addr + LRU_LIST_LOCK_OFFSET and g.lock.addr % 64 == 0
    for cpu in range(2):
        start, end = host.percpu_unit(cpu)
        assert start <= lru.local_list.force_get(cpu).lock.addr < end


# -------------------------------------------------------------------------------------------------
# The common LRU: the local fast path and the global refill
# -------------------------------------------------------------------------------------------------


def test_first_pop_refills_the_local_free_list_under_the_global_lock():
    """The local FREE list starts empty, so the first pop takes the CPU's local lock, then the
    global lock (``bpf_lru_list_pop_free_to_local``) and moves up to 128 nodes across; the node
    it returns is parked on the CPU's PENDING list with the element's hash."""
    host, table, lru, nodes = make(ncpus=2, nr=200)
    log: list = []
    node = insert(host, table, lru, "a", cpu=1, log=log)
    assert locks_taken(log) == ["m cpu1 local", "m global"]
    assert [type(r) for r in log if isinstance(r, Acquire | Release)] == [
        Acquire,
        Acquire,
        Release,
        Release,
    ]
    loc = lru.local_list.force_get(1)
    assert len(loc.free) == LOCAL_FREE_TARGET - 1
    assert list(loc.pending) == [node]
    assert (node.type, node.cpu, node.hash) == (BPF_LRU_LOCAL_LIST_T_PENDING, 1, _h("a"))
    assert len(lru.lru_list.lists[BPF_LRU_LIST_T_FREE]) == 200 - LOCAL_FREE_TARGET
    assert work(log, "lru_rotate") == LOCAL_FREE_TARGET  # the 128 FREE nodes it moved
    assert Touch(node.addr + HASH_OFFSET, 4, True) in log
    lru.check(nodes)


def test_later_pops_take_only_the_local_lock():
    """The common case: one uncontended per-CPU lock, a few lines touched, no global lock."""
    host, table, lru, nodes = make(ncpus=2, nr=200)
    insert(host, table, lru, "a")
    log: list = []
    node = insert(host, table, lru, "b", log=log)
    assert locks_taken(log) == ["m cpu0 local"]
    touched = {r.addr for r in log if isinstance(r, Touch)}
    loc = lru.local_list.force_get(0)
    assert {loc.free.addr, loc.pending.addr, node.addr} <= touched
    assert len(touched) <= 8


def test_refill_flushes_pending_then_shrinks_up_to_128_elements_at_once():
    """When the global FREE list is empty, a refill evicts *every* unreferenced element it
    finds on INACTIVE, up to LOCAL_FREE_TARGET: a 4-entry LRU written by one CPU loses all four
    elements to the fifth insert."""
    host, table, lru, nodes = make(ncpus=1, nr=4)
    for k in "abcd":
        insert(host, table, lru, k)
    log: list = []
    insert(host, table, lru, "e", log=log)
    assert table.evicted == ["a", "b", "c", "d"]  # oldest first, from the INACTIVE tail
    assert work(log, "lru_evict") == 4
    assert locks_taken(log) == ["m cpu0 local", "m global"] + [bucket(k) for k in "abcd"]
    assert sorted(table.present.values()) == ["e"]
    lru.check(nodes)


def test_a_referenced_element_survives_the_shrink_that_evicts_its_neighbours():
    """Hotness is the ref bit: a lookup sets it, the flush puts that node on ACTIVE instead of
    INACTIVE, and shrinking evicts only from INACTIVE.  It stays there, unreferenced, until
    INACTIVE runs low — while newer elements come and go (the approximation)."""
    host, table, lru, nodes = make(ncpus=1, nr=4)
    held = {k: insert(host, table, lru, k) for k in "abcd"}
    log: list = []
    run(lru.node_set_ref(held["b"]), host, log)
    assert held["b"].ref == 1 and locks_taken(log) == []
    insert(host, table, lru, "e")
    assert table.evicted == ["a", "c", "d"]
    assert held["b"].type == BPF_LRU_LIST_T_ACTIVE and held["b"].ref == 0
    insert(host, table, lru, "f")
    insert(host, table, lru, "g")  # the two nodes the shrink freed beyond e's
    assert sorted(table.present.values()) == ["b", "e", "f", "g"]
    insert(host, table, lru, "h")
    assert table.evicted == ["a", "c", "d", "e", "f", "g"]
    assert sorted(table.present.values()) == ["b", "h"]  # b never referenced again, still here
    lru.check(nodes)


def test_set_ref_stores_only_when_the_bit_changes():
    host, table, lru, nodes = make(nr=2)
    node = insert(host, table, lru, "a")
    first, second = [], []
    run(lru.node_set_ref(node), host, first)
    run(lru.node_set_ref(node), host, second)
    ref = node.addr + 19
    assert first == [Touch(ref, 1, False), Touch(ref, 1, True)]
    assert second == [Touch(ref, 1, False)]


def test_force_shrink_evicts_one_active_element_when_inactive_is_empty():
    """If shrinking INACTIVE frees nothing, ``__bpf_lru_list_shrink`` evicts exactly one
    element ignoring its ref bit, from INACTIVE if it has nodes, else from the ACTIVE tail."""
    host, table, lru, nodes = make(ncpus=1, nr=2)
    a, b = insert(host, table, lru, "a"), insert(host, table, lru, "b")
    l = lru.lru_list
    # flush both onto ACTIVE (referenced), then make them referenced again
    for n in (a, b):
        n.ref = 1
    t: list = []
    lru._local_flush(l, lru.local_list.force_get(0), t)
    assert list(l.lists[BPF_LRU_LIST_T_ACTIVE]) == [b, a]
    a.ref = b.ref = 1
    freed = run(
        lru._shrink(l, 128, l.lists[BPF_LRU_LIST_T_FREE], BPF_LRU_LIST_T_FREE, t, [0]), host
    )
    assert freed == 1 and table.evicted == ["a"]  # the ACTIVE tail, despite its ref bit


def test_rotate_active_demotes_unreferenced_and_keeps_referenced():
    """``__bpf_lru_list_rotate_active`` (run when INACTIVE < ACTIVE): from the tail, ref set ->
    back to the ACTIVE head with ref cleared, ref clear -> INACTIVE head."""
    host, table, lru, nodes = make(ncpus=1, nr=4)
    l = lru.lru_list
    t: list = []
    for n in nodes:
        n.type = BPF_LRU_LIST_T_ACTIVE  # pretend they came in referenced
    _relink(l.lists[BPF_LRU_LIST_T_FREE], [])
    _relink(l.lists[BPF_LRU_LIST_T_ACTIVE], nodes)
    l.counts[BPF_LRU_LIST_T_ACTIVE] = 4
    nodes[1].ref = nodes[3].ref = 1
    visited = lru._rotate(l, t)
    assert visited == 4 + 2  # all four of ACTIVE, then INACTIVE's two (nothing referenced)
    assert list(l.lists[BPF_LRU_LIST_T_ACTIVE]) == [nodes[1], nodes[3]]
    assert list(l.lists[BPF_LRU_LIST_T_INACTIVE]) == [nodes[0], nodes[2]]
    assert all(n.ref == 0 for n in nodes)
    lru.check(nodes)


def _relink(head, items):
    """Lay ``items`` out on ``head`` in order (test set-up only)."""
    head.next = head.prev = head
    for n in reversed(items):
        first = head.next
        first.prev = n
        n.next = first
        n.prev = head
        head.next = n


def test_rotate_inactive_walks_from_a_cursor_at_most_nr_scans_nodes():
    """``__bpf_lru_list_rotate_inactive`` visits ``nr_scans`` nodes (4 for a per-CPU LRU) going
    backwards from ``next_inactive_rotation``, moves referenced ones to ACTIVE and leaves the
    cursor where it stopped, so the next rotation looks at the next four."""
    host, table, lru, nodes = make(ncpus=1, nr=10, percpu=True)
    l = lru.percpu_lru.force_get(0)
    _relink(l.lists[BPF_LRU_LIST_T_FREE], [])
    _relink(l.lists[BPF_LRU_LIST_T_INACTIVE], nodes)  # nodes[9] is the tail
    for n in nodes:
        n.type = BPF_LRU_LIST_T_INACTIVE
    l.counts[BPF_LRU_LIST_T_INACTIVE] = 10
    for i in (8, 4, 3):
        nodes[i].ref = 1
    t: list = []
    assert lru._rotate_inactive(l, t) == 4  # visits 9, 8, 7, 6
    assert list(l.lists[BPF_LRU_LIST_T_ACTIVE]) == [nodes[8]]
    assert l.next_inactive_rotation is nodes[5]
    assert lru._rotate_inactive(l, t) == 4  # visits 5, 4, 3, 2
    assert list(l.lists[BPF_LRU_LIST_T_ACTIVE]) == [nodes[3], nodes[4], nodes[8]]
    assert l.next_inactive_rotation is nodes[1]
    lru.check(nodes)


# -------------------------------------------------------------------------------------------------
# Stealing
# -------------------------------------------------------------------------------------------------


def test_a_cpu_with_nothing_steals_a_free_node_from_another_cpus_local_list():
    """CPU 0's first pop took all four nodes to its local FREE list.  CPU 1 finds its local
    list empty and the global lists empty, so it steals round robin starting with
    ``next_steal`` (itself), reaching CPU 0's FREE list: no element is evicted."""
    host, table, lru, nodes = make(ncpus=2, nr=4)
    insert(host, table, lru, "a", cpu=0)
    log: list = []
    node = insert(host, table, lru, "b", cpu=1, log=log)
    assert node is not None and table.evicted == []
    assert locks_taken(log) == [
        "m cpu1 local",  # own FREE list: empty
        "m global",  # refill: nothing to move, nothing to shrink
        "m cpu1 local",  # steal from CPU 1 (next_steal starts at the CPU itself)
        "m cpu0 local",  # steal from CPU 0: a FREE node
        "m cpu1 local",  # park it on CPU 1's PENDING list
    ]
    assert work(log, "lru_steal") == 1
    assert (node.cpu, node.type) == (1, BPF_LRU_LOCAL_LIST_T_PENDING)
    assert lru.local_list.force_get(1).next_steal == 1  # the CPU after the one it stole from
    lru.check(nodes)


def test_stealing_goes_round_robin_upwards_from_next_steal():
    """``get_next_cpu`` walks the possible CPUs upwards and wraps: CPU 2 looks at itself, then
    CPU 0 (which still has a FREE node), and never reaches CPU 1, whose only node holds b."""
    host, table, lru, nodes = make(ncpus=3, nr=3)
    insert(host, table, lru, "a", cpu=0)  # CPU 0 takes all three nodes
    insert(host, table, lru, "b", cpu=1)  # steals one of them: 1, 2, 0
    assert lru.local_list.force_get(1).next_steal == 1
    log: list = []
    insert(host, table, lru, "c", cpu=2, log=log)
    assert table.evicted == []
    assert [n for n in locks_taken(log) if "local" in n] == [
        "m cpu2 local",
        "m cpu2 local",
        "m cpu0 local",
        "m cpu2 local",
    ]
    assert lru.local_list.force_get(2).next_steal == 1


def test_shrink_moves_an_inactive_node_referenced_since_rotation_to_active():
    """``__bpf_lru_list_shrink_inactive`` checks the ref bit again: a node referenced after the
    rotation looked at it is spared (moved to ACTIVE) and the walk evicts the next ones."""
    host, table, lru, nodes = make(ncpus=1, nr=4)
    l = lru.lru_list
    _relink(l.lists[BPF_LRU_LIST_T_FREE], [])
    _relink(l.lists[BPF_LRU_LIST_T_INACTIVE], nodes)
    for i, n in enumerate(nodes):
        n.type = BPF_LRU_LIST_T_INACTIVE
        table.insert(n, i)
    l.counts[BPF_LRU_LIST_T_INACTIVE] = 4
    nodes[3].ref = 1  # the tail
    free = l.lists[BPF_LRU_LIST_T_FREE]
    t: list = []
    assert run(lru._shrink_inactive(l, 2, free, BPF_LRU_LIST_T_FREE, t, [0]), host) == 2
    assert table.evicted == [2, 1]
    assert list(l.lists[BPF_LRU_LIST_T_ACTIVE]) == [nodes[3]] and nodes[3].ref == 0
    lru.check(nodes)


def test_stealing_evicts_the_oldest_unreferenced_pending_element_of_a_cpu_without_free_nodes():
    """With no FREE node anywhere, ``__local_list_pop_pending`` evicts from the victim CPU's
    PENDING tail — skipping referenced nodes on the first pass."""
    host, table, lru, nodes = make(ncpus=2, nr=3)
    held = {k: insert(host, table, lru, k, cpu=0) for k in "abc"}
    run(lru.node_set_ref(held["a"]), host)
    log: list = []
    insert(host, table, lru, "d", cpu=1, log=log)
    assert table.evicted == ["b"]
    assert work(log, "lru_steal") == 1 and work(log, "lru_evict") == 1
    assert locks_taken(log) == [
        "m cpu1 local",
        "m global",
        "m cpu1 local",  # nothing on CPU 1
        "m cpu0 local",  # CPU 0: no FREE node; PENDING tail is a (referenced), then b
        bucket("b"),
        "m cpu1 local",
    ]
    lru.check(nodes)


def test_pop_fails_only_when_no_element_can_be_deleted():
    """Nodes taken for elements not yet in the table cannot be evicted (their deletion finds
    nothing): with every node in that state the pop returns NULL, the update's ENOMEM."""
    host, table, lru, nodes = make(ncpus=2, nr=2)
    host.cpu = 0
    run(lru.pop_free(1), host)
    run(lru.pop_free(2), host)  # both in flight, neither in the table
    host.cpu = 1
    log: list = []
    assert run(lru.pop_free(3), host, log) is None
    assert work(log, "lru_steal") == 0
    assert lru.local_list.force_get(1).next_steal == 1  # a full round: back where it began


# -------------------------------------------------------------------------------------------------
# Pushing nodes back
# -------------------------------------------------------------------------------------------------


def test_push_of_a_pending_node_returns_it_to_its_own_cpus_free_list():
    """``bpf_common_lru_push_free``: a node still PENDING goes back to the local FREE list of
    the CPU that took it (``node->cpu``), under that CPU's lock — whoever deletes it."""
    host, table, lru, nodes = make(ncpus=2, nr=4)
    node = insert(host, table, lru, "a", cpu=1)
    table.remove(node)
    host.cpu = 0
    log: list = []
    run(lru.push_free(node), host, log)
    assert locks_taken(log) == ["m cpu1 local"]
    assert node.type == BPF_LRU_LOCAL_LIST_T_FREE
    assert lru.local_list.force_get(1).free.next is node
    lru.check(nodes)


def test_push_of_a_flushed_node_returns_it_to_the_global_free_list():
    """A node a refill has flushed to ACTIVE/INACTIVE belongs to the global lists: deleting its
    element pushes it to the global FREE list under the global lock."""
    host, table, lru, nodes = make(ncpus=1, nr=2)
    insert(host, table, lru, "a")
    b = insert(host, table, lru, "b")
    l = lru.lru_list
    lru._local_flush(l, lru.local_list.force_get(0), [])  # what the next refill starts with
    assert b.type == BPF_LRU_LIST_T_INACTIVE
    table.remove(b)
    log: list = []
    run(lru.push_free(b), host, log)
    assert locks_taken(log) == ["m global"]
    assert b.type == BPF_LRU_LIST_T_FREE and l.lists[BPF_LRU_LIST_T_FREE].next is b
    lru.check(nodes)


def test_pushing_a_free_node_twice_is_a_bug():
    host, table, lru, nodes = make(nr=2)
    node = insert(host, table, lru, "a")
    run(lru.push_free(node), host)
    with pytest.raises(RuntimeError, match="twice"):
        run(lru.push_free(node), host)


# -------------------------------------------------------------------------------------------------
# BPF_F_NO_COMMON_LRU: one LRU list per CPU
# -------------------------------------------------------------------------------------------------


def test_percpu_lru_takes_only_its_own_cpus_lock_and_shrinks_four_at_a_time():
    host, table, lru, nodes = make(ncpus=2, nr=16, percpu=True)
    keys = [f"k{i}" for i in range(8)]
    for k in keys:
        log: list = []
        insert(host, table, lru, k, cpu=1, log=log)
        assert locks_taken(log)[0] == "m cpu1"
    assert table.evicted == []  # CPU 1's 8 nodes are all in use
    log = []
    insert(host, table, lru, "k8", cpu=1, log=log)
    assert table.evicted == keys[:PERCPU_FREE_TARGET]  # the 4 oldest of CPU 1 only
    assert all(n.cpu == 1 for n in nodes if id(n) in table.present)
    assert len(lru.percpu_lru.force_get(0).lists[BPF_LRU_LIST_T_FREE]) == 8  # CPU 0 untouched
    lru.check(nodes)


def test_percpu_push_returns_the_node_to_its_cpu_from_any_cpu():
    host, table, lru, nodes = make(ncpus=2, nr=4, percpu=True)
    node = insert(host, table, lru, "a", cpu=1)
    table.remove(node)
    host.cpu = 0
    log: list = []
    run(lru.push_free(node), host, log)
    assert locks_taken(log) == ["m cpu1"]
    assert lru.percpu_lru.force_get(1).lists[BPF_LRU_LIST_T_FREE].next is node
    lru.check(nodes)


# -------------------------------------------------------------------------------------------------
# The exact policy
# -------------------------------------------------------------------------------------------------


def test_exact_lru_evicts_exactly_one_least_recently_used_element_when_full():
    host, table, lru, nodes = make(ncpus=2, nr=3, policy="exact")
    assert isinstance(lru, ExactLru)
    held = {k: insert(host, table, lru, k, cpu=i % 2) for i, k in enumerate("abc")}
    assert table.evicted == []
    run(lru.node_set_ref(held["a"]), host)  # a becomes the most recent: b is now the oldest
    log: list = []
    insert(host, table, lru, "d", cpu=1, log=log)
    assert table.evicted == ["b"]
    assert locks_taken(log) == ["m exact", bucket("b")]
    assert [table.present[id(n)] for n in lru.recency()] == ["d", "a", "c"]
    lru.check(nodes)


def test_exact_lookup_takes_the_list_lock():
    """The price of exactness: every program-side use takes the one list lock."""
    host, table, lru, nodes = make(nr=2, policy="exact")
    a = insert(host, table, lru, "a")
    insert(host, table, lru, "b")
    log: list = []
    run(lru.node_set_ref(a), host, log)
    assert locks_taken(log) == ["m exact"]
    log = []
    run(lru.node_set_ref(a, just_popped=True), host, log)
    assert log == []


def test_exact_skips_elements_it_cannot_delete():
    host, table, lru, nodes = make(nr=2, policy="exact")
    a = insert(host, table, lru, "a")
    insert(host, table, lru, "b")
    table.refuse.add(id(a))
    insert(host, table, lru, "c")
    assert table.evicted == ["b"]


def test_exact_percpu_evicts_among_its_own_cpus_elements():
    host, table, lru, nodes = make(ncpus=2, nr=4, percpu=True, policy="exact")
    insert(host, table, lru, "a", cpu=0)
    insert(host, table, lru, "b", cpu=1)
    insert(host, table, lru, "c", cpu=1)
    insert(host, table, lru, "d", cpu=1)
    assert table.evicted == ["b"]
    lru.check(nodes)


def test_unknown_policy():
    host = TestHost()
    with pytest.raises(ValueError, match="policy"):
        bpf_lru_init(host, host, False, None, 0, "m", "clock")


def test_destroy_returns_the_memory():
    host = TestHost(ncpus=2)
    before = host.kmalloc_live()
    for percpu in (False, True):
        for policy in ("linux", "exact"):
            lru = bpf_lru_init(host, host, percpu, None, 0, "m", policy)
            lru.destroy()
    assert host.kmalloc_live() == before and not host._pcpu_live


# -------------------------------------------------------------------------------------------------
# A random walk against the structure's invariants
# -------------------------------------------------------------------------------------------------


class LruLists(RuleBasedStateMachine):
    """Random pops, pushes and references on random CPUs: the lists stay well formed, every
    node is on exactly one list, a pop always finds a node (sequentially every taken node holds
    an element, so something can be evicted), an element leaves the table only through an
    eviction the LRU asked for or a delete, and the exact policy evicts only when full and then
    exactly its least recently used element."""

    @initialize(
        ncpus=st.integers(1, 3),
        nr=st.integers(1, 12),
        percpu=st.booleans(),
        policy=st.sampled_from(["linux", "exact"]),
    )
    def setup(self, ncpus, nr, percpu, policy):
        if percpu:
            nr = ncpus * max(1, nr // ncpus)
        self.host, self.table, self.lru, self.nodes = make(ncpus, nr, percpu, policy)
        self.percpu, self.exact = percpu, policy == "exact"
        self.next_key = 0
        self.keys: dict[int, LruNode] = {}
        self.order: dict[int, list[int]] = {}  # exact: list -> keys, most recent first

    def _list(self, cpu: int) -> int:
        return cpu if self.percpu else 0

    @rule(cpu=st.integers(0, 2))
    def insert(self, cpu):
        cpu %= self.host.ncpus
        key = self.next_key
        self.next_key += 1
        n_evicted = len(self.table.evicted)
        node = insert(self.host, self.table, self.lru, key, cpu=cpu)
        assert node is not None
        evicted = self.table.evicted[n_evicted:]
        for k in evicted:
            del self.keys[k]
        if self.exact:
            order = self.order.setdefault(self._list(cpu), [])
            capacity = len(self.nodes) // (self.host.ncpus if self.percpu else 1)
            if len(order) < capacity:
                assert evicted == []
            else:
                assert evicted == [order.pop()]
            order.insert(0, key)
        self.keys[key] = node

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def delete(self, data):
        key = data.draw(st.sampled_from(sorted(self.keys)))
        node = self.keys.pop(key)
        self.table.remove(node)
        if self.exact:
            self.order[self._list(node.cpu)].remove(key)
        self.host.cpu = data.draw(st.integers(0, self.host.ncpus - 1))
        run(self.lru.push_free(node), self.host)

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def reference(self, data):
        key = data.draw(st.sampled_from(sorted(self.keys)))
        node = self.keys[key]
        run(self.lru.node_set_ref(node), self.host)
        if self.exact:
            order = self.order[self._list(node.cpu)]
            order.remove(key)
            order.insert(0, key)

    @invariant()
    def well_formed(self):
        if not hasattr(self, "lru"):
            return
        self.lru.check(self.nodes)
        assert set(self.table.present.values()) == set(self.keys)
        in_use = (BPF_LRU_LIST_T_ACTIVE, BPF_LRU_LIST_T_INACTIVE, BPF_LRU_LOCAL_LIST_T_PENDING)
        for _owner, _cpu, head, type_ in self.lru.lists():
            for node in head:
                assert (id(node) in self.table.present) == (type_ in in_use)
        if self.exact:
            for lst, order in self.order.items():
                assert [self.table.present[id(n)] for n in self.lru.recency(lst)] == order


TestLruLists = LruLists.TestCase


def test_node_types_are_the_kernel_enum():
    assert (BPF_LRU_LIST_T_ACTIVE, BPF_LRU_LIST_T_INACTIVE, BPF_LRU_LIST_T_FREE) == (0, 1, 2)
    assert (BPF_LRU_LOCAL_LIST_T_FREE, BPF_LRU_LOCAL_LIST_T_PENDING) == (3, 4)
