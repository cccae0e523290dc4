"""The per-CPU free list of preallocated hash-map elements (kernel/bpf/percpu_freelist.c, v6.6).

A preallocated hash map keeps every element it is not using on a ``pcpu_freelist``: one list per
possible CPU, each with its own raw spinlock, plus one global *extralist*.  The design is about
contention: an update pops from *its own* CPU's list and a delete pushes back to *its own* CPU's
list, so CPUs that insert and delete locally never share a lock.  Only when the local list is
empty does a pop walk the other CPUs' lists (``for_each_cpu_wrap`` from the current CPU), and it
skips an empty list by reading its head without taking its lock (Feng Zhou's 2022 change, in
v6.6) — which is why an update into a full map reads every CPU's list head and then the
extralist's before failing with E2BIG, instead of taking ``ncpus + 1`` locks.

What kbpf models, and how:

* each CPU's ``struct pcpu_freelist_head`` (``first`` pointer, then the lock word) lives in that
  CPU's per-CPU area at a real address; the lock is a :class:`kbpf.host.Lock` at ``head + 8``;
* the extralist head is a 16-byte ``pcpu_freelist_head`` the owner places (inside its map
  structure, as ``struct pcpu_freelist`` embeds it);
* nodes are addresses of ``struct pcpu_freelist_node`` (the element's ``fnode``); the links
  between them are kernel-private, so they are kept in Python arrays (the end of each array is
  the list's ``first``) and each link read or write is reported as a :class:`Touch` of the node's
  ``next`` word — nobody but the free list can see those bytes;
* populate gives every CPU ``nr_elems / ncpus`` nodes and the first ``nr_elems % ncpus`` CPUs one
  more (Xu Kuohai's 2022 change, in v6.6), pushing each CPU's share in address order so the last
  one pushed is popped first.

The extralist receives nodes only from ``___pcpu_freelist_push_nmi``: in NMI context the kernel
*trylocks* each CPU's list and, failing all, the extralist.  A kbpf host runs no program in NMI
context and the request protocol has no trylock, so kbpf never takes that path; the pop side,
which every v6.6 pop runs once the per-CPU lists are empty, is modelled exactly (a read of the
extralist head, its lock only when it is non-empty), and :meth:`PcpuFreelist.push_extra` is the
extralist's push for a host that has such a context.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from kbpf.host import Acquire, Lock, Op, PerCpuVariantsOps, Release, Touch

#: ``sizeof(struct pcpu_freelist_head)``: the ``first`` pointer and a ``raw_spinlock_t``.
FREELIST_HEAD_SIZE = 16
#: Offset of the lock word in a ``pcpu_freelist_head``.
FREELIST_LOCK_OFFSET = 8


class PcpuFreelist:
    """``struct pcpu_freelist``: one locked LIFO list per CPU plus the extralist.

    ``host`` answers ``current_cpu_id()``; ``extralist_addr`` is where the owner placed the
    extralist's 16-byte head.  Operations are request generators; :meth:`populate` is plain
    (the lists are not visible to anyone yet, as the kernel notes).
    """

    __slots__ = (
        "host",
        "ncpus",
        "heads",
        "locks",
        "lists",
        "extralist_addr",
        "extra_lock",
        "extralist",
        "_percpu_ops",
    )

    def __init__(
        self, host, percpu_ops: PerCpuVariantsOps, extralist_addr: int, name: str = "htab"
    ):
        """``pcpu_freelist_init``: a zeroed (empty, unlocked) head in every CPU's area."""
        self.host = host
        self._percpu_ops = percpu_ops
        self.ncpus = percpu_ops.num_cpus()
        #: per CPU: the kernel address of that CPU's ``pcpu_freelist_head``
        self.heads: list[int] = percpu_ops.alloc_percpu(FREELIST_HEAD_SIZE, 8)
        self.locks = [
            Lock(head + FREELIST_LOCK_OFFSET, f"{name} freelist/{cpu}")
            for cpu, head in enumerate(self.heads)
        ]
        #: per CPU: node addresses, the list's ``first`` at the end
        self.lists = [array("Q") for _ in range(self.ncpus)]
        self.extralist_addr = extralist_addr
        self.extra_lock = Lock(extralist_addr + FREELIST_LOCK_OFFSET, f"{name} freelist/extra")
        self.extralist = array("Q")

    def destroy(self) -> None:
        """``pcpu_freelist_destroy``: give the per-CPU heads back."""
        if self.heads:
            self._percpu_ops.free_percpu(self.heads)
            self.heads = []

    # -- filling ------------------------------------------------------------------------------
    def populate(self, nodes: Sequence[int]) -> None:
        """``pcpu_freelist_populate``: ``len(nodes) // ncpus`` nodes per CPU in CPU order, one
        more for each of the first ``len(nodes) % ncpus`` CPUs; within a CPU the nodes are
        pushed in the order given, so the last is that CPU's ``first``."""
        n, m = divmod(len(nodes), self.ncpus)
        pos = 0
        for cpu in range(self.ncpus):
            take = n + (1 if cpu < m else 0)
            self.lists[cpu].extend(nodes[pos : pos + take])
            pos += take

    # -- operations ---------------------------------------------------------------------------
    def push(self, node: int) -> Op:
        """``__pcpu_freelist_push`` outside NMI: under the current CPU's lock, ``node`` becomes
        that list's ``first``."""
        cpu = self.host.current_cpu_id()
        lock = self.locks[cpu]
        yield Acquire(lock)
        yield Touch(node, 8, True)  # node->next = head->first
        yield Touch(self.heads[cpu], 8, True)  # WRITE_ONCE(head->first, node)
        self.lists[cpu].append(node)
        yield Release(lock)

    def push_extra(self, node: int) -> Op:
        """Push ``node`` on the extralist (``pcpu_freelist_try_push_extra`` once its trylock
        succeeded): the last resort of an NMI-context push, see the module docstring."""
        yield Acquire(self.extra_lock)
        yield Touch(node, 8, True)
        yield Touch(self.extralist_addr, 8, True)
        self.extralist.append(node)
        yield Release(self.extra_lock)

    def pop(self) -> Op:
        """``__pcpu_freelist_pop`` outside NMI: the first node of the first non-empty list,
        starting at the current CPU and wrapping around the others; a list whose head reads
        empty is skipped without its lock; then the extralist.  Returns the node's address,
        or 0 when every list is empty."""
        orig = self.host.current_cpu_id()
        ncpus = self.ncpus
        for i in range(ncpus):
            cpu = (orig + i) % ncpus
            head = self.heads[cpu]
            yield Touch(head, 8)  # READ_ONCE(head->first)
            lst = self.lists[cpu]
            if not lst:
                continue
            lock = self.locks[cpu]
            yield Acquire(lock)
            if lst:  # another CPU may have emptied it while we waited for the lock
                node = lst.pop()
                yield Touch(node, 8)  # node->next
                yield Touch(head, 8, True)  # WRITE_ONCE(head->first, node->next)
                yield Release(lock)
                return node
            yield Release(lock)
        yield Touch(self.extralist_addr, 8)  # READ_ONCE(s->extralist.first)
        if not self.extralist:
            return 0
        yield Acquire(self.extra_lock)
        node = 0
        if self.extralist:
            node = self.extralist.pop()
            yield Touch(node, 8)
            yield Touch(self.extralist_addr, 8, True)
        yield Release(self.extra_lock)
        return node

    # -- inspection ---------------------------------------------------------------------------
    def counts(self) -> list[int]:
        """Free nodes on each CPU's list (the extralist not included)."""
        return [len(lst) for lst in self.lists]

    def __len__(self) -> int:
        return sum(len(lst) for lst in self.lists) + len(self.extralist)
