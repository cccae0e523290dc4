"""Finite caches kept coherent: what a load or store costs, and why.

The model, from the preset (``[topology]``, ``[mem]``, ``[coherence]``):

* **Caches.**  Each physical core has an L1D and an L2, shared by its SMT threads; each L3 domain
  (a socket on Intel, a CCX on Zen 2) has an LLC.  Capacities are in 64-byte lines; replacement
  is LRU over the whole cache (no sets or ways: associativity conflicts are not modelled).  The
  L2 holds everything the L1 holds.  The LLC is either **inclusive** of its cores' L2s (Intel
  before Skylake-SP: a line evicted from the LLC is invalidated in every core of the domain) or
  a **victim** cache (Skylake-SP's non-inclusive L3, Zen's L3: lines enter it when evicted from
  an L2 and leave it when a core takes them back), as ``mem.llc_inclusive`` says.
* **Directory.**  One entry per 64-byte line *of physical memory* (vmap aliases of a frame are
  one line; a direct-map address translates by a subtraction, a vmap'd one through the kernel's
  page table): the CPU that holds it exclusively (Modified or Exclusive: ``owner``, or -1), the
  cores that hold a copy (``sharers``, a bit mask), which LLCs hold it, and ``busy-until``.
* **Prices.**  A line is priced by where it is: the requester's L1 (``mem.l1_hit_cycles``), its
  L2, its LLC, another core's cache (``coherence.<class>_transfer_ns`` by pair class, see
  :mod:`sim.cpu.topology`: SMT sibling, same L3 domain, other L3 domain, other socket), another
  domain's victim LLC (a transfer of that class), or DRAM (``mem.dram_ns``; local: NUMA
  placement is not modelled).  A read of a line that others hold exclusively downgrades them to
  shared; a write invalidates every other copy and pays the invalidation round trip to the
  farthest sharer (``coherence.<class>_invalidate_ns``), overlapped with fetching the data.  A
  read that misses everywhere gets the line exclusively (MESI's E), so a later write by the
  same CPU is silent, and a read by another CPU is a transfer, as a snoop of an E line is.
  SMT siblings share their core's L1, but a line leaving one thread's exclusive use for the
  other's costs the SMT transfer (the ~7 ns an SMT CAS ping-pong measures).
* **Serialisation.**  A request that is not a private hit goes to the line's directory entry,
  which answers one request at a time: a request arriving before ``busy-until`` waits for it,
  then pays its own price, and moves ``busy-until`` to its completion.  That single rule makes
  a contended line's transfers queue up, so hand-offs grow with the number of contenders
  exactly where the hardware's do (Boyd-Wickizer et al.'s model in simulation.md 2.4 assumes
  the same serial directory).

**Why request order is ownership order.**  Cores call :meth:`CacheModel.access` at the
simulated time of the request (the engine meets the clock first, so no other core has an
earlier event pending), and the engine moves the data right after pricing, at that same
instant.  So the order in which the directory sees requests is the order in which the data
accesses happen, and the state the directory grants (who owns the line) always matches who
last wrote the bytes: a plain ``*v += 1`` on two cores loses updates for the reason it does on
hardware.  The latency a request pays (its wait for busy-until included) moves only the
requester's own clock.

**The hot path** (:meth:`CacheModel.access`) handles a hit in the requester's L1 on one line of
the direct map with a subtraction, a dict lookup and an LRU touch; everything else goes to
:meth:`CacheModel._access_slow`.  Caches are mappings used as ordered sets: insertion order is
recency, a hit moves the line to the end, the first key is the LRU victim.  The L1 is a plain
dict: its hit (delete and re-insert) measured ~85 ns against ~110 ns for an ``OrderedDict``'s
``move_to_end``.  The L2s and LLCs are ``OrderedDict``s: a plain dict that keeps losing its
oldest key accumulates deleted slots at the front, and finding the first key then scans them
(measured 4 us per eviction on a 1 MiB L2), where ``OrderedDict`` finds it at once.  The value
stored for a line is the CPU that holds it exclusively, or -1 for a shared copy, so the hit
test needs no directory lookup.  Measured on the development host: ~0.25 us per L1 hit, ~2 us
per miss that goes to the directory.

**Not modelled** (each a simplification with a direction): set associativity (no conflict
misses); prefetchers and memory-level parallelism (an access spanning several lines pays each
in turn, so streaming copies are priced high); NUMA placement (DRAM is always local); the
store buffer (a store costs its line like a load); write-back traffic (evicting a modified
line is free); a shared line whose only holder remains is upgraded silently (as if Exclusive).

Nothing here is called by the synchronous driver: calls made from Python between runs leave
the caches as they were.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from sim.cpu.topology import OTHER_L3, OTHER_SOCKET, PAIR_CLASS_NAMES
from sim.mem.kernel_vm import PAGE_OFFSET

if TYPE_CHECKING:  # pragma: no cover
    from sim.cpu.preset import Preset
    from sim.cpu.topology import Topology
    from sim.mem.kernel_vm import KernelVM

LINE_SHIFT = 6
LINE_SIZE = 1 << LINE_SHIFT

_ABSENT = -2  # not in this cache (values are a CPU id >= 0, or -1 for a shared copy)
_SHARED = -1

# Directory entry fields (a list per line, indexed by these).
_OWNER, _SHARERS, _BUSY, _LLC = range(4)

# Where a line was found, for the per-CPU counters.
L1, L2, LLC, REMOTE, DRAM = range(5)
LEVEL_NAMES = ("l1", "l2", "llc", "remote", "dram")

# How many LRU candidates an eviction may pass over to spare a line a nearer cache still uses.
_EVICT_SCAN = 16


def _bits(mask: int):
    """The set bit positions of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class CacheModel:
    """The caches and coherence directory of one machine (see the module docstring).

    ``access(cpu, vaddr, size, write, t) -> latency_ps`` prices one access made by ``cpu`` at
    its local time ``t`` (ps) and updates the caches; ``touch`` is the same, for kbpf's
    ``Touch`` requests.  Counters: :meth:`cpu_stats`, :meth:`line_stats`, :attr:`invalidations`.
    """

    def __init__(self, preset: Preset, topology: Topology, ncpus: int, kvm: KernelVM):
        if not 1 <= ncpus <= topology.max_cpus:
            raise ValueError(f"{ncpus} CPUs do not fit the topology ({topology.describe()})")
        self.topology = topology
        self.ncpus = ncpus
        self._kvm = kvm
        self._direct = kvm.phys.size
        g = preset.get_ps
        self.l1_ps = g("mem", "l1_hit_cycles")
        self.l2_ps = g("mem", "l2_hit_cycles")
        self.llc_ps = g("mem", "llc_hit_cycles")
        self.dram_ps = g("mem", "dram_ns")
        self.inclusive = bool(preset.get("mem", "llc_inclusive"))
        self.l1_lines = preset.kib_lines("mem", "l1d_kib", LINE_SIZE)
        self.l2_lines = preset.kib_lines("mem", "l2_kib", LINE_SIZE)
        self.llc_lines = preset.kib_lines("mem", "llc_kib", LINE_SIZE)
        if not self.l1_lines <= self.l2_lines:
            raise ValueError(
                "mem.l1d_kib must not exceed mem.l2_kib: the L2 holds what the L1 holds"
            )
        xfer = [g("coherence", f"{name}_transfer_ns") for name in PAIR_CLASS_NAMES[1:]]
        inval = [g("coherence", f"{name}_invalidate_ns") for name in PAIR_CLASS_NAMES[1:]]
        cls = topology.pair_class
        cpus = range(ncpus)
        # Per-CPU-pair prices (index [requester][other]); the SELF class is never used.
        self._xfer = [[xfer[cls(a, b) - 1] if a != b else 0 for b in cpus] for a in cpus]
        self._inval = [[inval[cls(a, b) - 1] if a != b else 0 for b in cpus] for a in cpus]
        self._core_of = topology.core_of[:ncpus]
        self._l3_of = topology.l3_of[:ncpus]
        ncores = max(self._core_of) + 1  # CPUs fill first threads first: cores 0..ncores-1
        self.ncores = ncores
        nl3 = max(self._l3_of) + 1
        self._l1 = [{} for _ in range(ncores)]
        self._l2 = [OrderedDict() for _ in range(ncores)]
        self._llc = [OrderedDict() for _ in range(nl3)]
        self._l1_of = [self._l1[c] for c in self._core_of]  # per CPU: its core's L1
        self._l3_of_core = [topology.l3_of[k] for k in range(ncores)]
        # Bit mask of the cores in each L3 domain (for inclusive back-invalidation).
        self._l3_cores = [0] * nl3
        for k in range(ncores):
            self._l3_cores[self._l3_of_core[k]] |= 1 << k
        # A cross-domain transfer from a victim LLC, per CPU and domain: the class it crosses.
        self._llc_xfer = []
        for a in cpus:
            row = []
            for d in range(nl3):
                core = next(k for k in range(topology.ncores) if topology.l3_of[k] == d)
                same_socket = topology.socket_of[core] == topology.socket_of[a]
                row.append(xfer[(OTHER_L3 if same_socket else OTHER_SOCKET) - 1])
            self._llc_xfer.append(row)
        self._dir: dict[int, list[int]] = {}
        # Counters.  Per CPU: where each line access was served (L1 .. DRAM), and upgrades
        # (writes to a line held shared, which invalidate the other copies).
        self._n = [[0] * ncpus for _ in LEVEL_NAMES]
        self._n_l1 = self._n[L1]  # bound for the hot path
        self._upgrades = [0] * ncpus
        #: copies invalidated by writes and by inclusive LLC evictions, machine-wide
        self.invalidations = 0
        self.back_invalidations = 0
        #: cache-line transfers between cores, machine-wide (the per-line counts summed)
        self.transfers = 0
        # Per line (physical line number): [transfers, invalidations, waits, wait_ps].
        self._line_stats: dict[int, list[int]] = {}
        self.touch = self.access

    # -- the hot path ------------------------------------------------------------------------

    def access(self, cpu: int, addr: int, size: int, write: bool, t: int) -> int:
        """The latency (ps) of ``cpu`` reading or writing ``size`` bytes at kernel address
        ``addr`` at its local time ``t``; the caches and directory are updated."""
        off = addr - PAGE_OFFSET
        line = off >> LINE_SHIFT
        # A direct-map access within one line that hits in the L1 in a sufficient state.
        if 0 <= off and (off + size - 1) >> LINE_SHIFT == line and off < self._direct:
            l1 = self._l1_of[cpu]
            st = l1.get(line, _ABSENT)
            if st == cpu or (st == _SHARED and not write):
                del l1[line]
                l1[line] = st
                self._n_l1[cpu] += 1
                return self.l1_ps
        return self._access_slow(cpu, addr, size, write, t)

    def _access_slow(self, cpu: int, addr: int, size: int, write: bool, t: int) -> int:
        if size <= 0:
            return 0
        off = addr - PAGE_OFFSET
        if 0 <= off and off + size <= self._direct:
            # The direct map: physically contiguous, so one run of lines.
            line = off >> LINE_SHIFT
            last = (off + size - 1) >> LINE_SHIFT
            if line == last:
                return self._line(cpu, line, write, t)
            lat = 0
            for ln in range(line, last + 1):
                lat += self._line(cpu, ln, write, t + lat)
            return lat
        lat = 0
        for phys, n in self._kvm.phys_ranges(addr, size, "write" if write else "read"):
            first = phys >> LINE_SHIFT
            last = (phys + n - 1) >> LINE_SHIFT
            for line in range(first, last + 1):
                lat += self._line(cpu, line, write, t + lat)
        return lat

    # -- one line ------------------------------------------------------------------------------

    def _line(self, cpu: int, line: int, write: bool, t: int) -> int:
        core = self._core_of[cpu]
        l1 = self._l1[core]
        st = l1.get(line, _ABSENT)
        if st != _ABSENT:
            del l1[line]
            l1[line] = st
            base, level = self.l1_ps, L1
        else:
            l2 = self._l2[core]
            st = l2.get(line, _ABSENT)
            if st == _ABSENT:
                return self._miss(cpu, core, line, write, t)
            l2.move_to_end(line)
            self._fill_l1(l1, line, st)
            base, level = self.l2_ps, L2
        if st == cpu or (st == _SHARED and not write):
            self._n[level][cpu] += 1
            return base
        e = self._dir[line]
        if st >= 0:
            # Exclusive to this core's other thread: it moves to this thread.
            self._n[REMOTE][cpu] += 1
            self._stat(line)[0] += 1
            self.transfers += 1
            new = cpu if write else _SHARED
            self._set_core_state(core, line, new)
            e[_OWNER] = new
            return base + self._xfer[cpu][st]
        # A write to a line this core holds shared: take it exclusively.
        self._n[level][cpu] += 1
        self._upgrades[cpu] += 1
        others = e[_SHARERS] & ~(1 << core)
        self._set_core_state(core, line, cpu)
        e[_OWNER] = cpu
        if not others:
            return base  # the only copy: a silent upgrade
        start = e[_BUSY]
        if start > t:
            self._waited(line, start - t)
        else:
            start = t
        done = start + base + self._farthest(cpu, others)
        e[_BUSY] = done
        self._invalidate(line, e, others)
        return done - t

    def _miss(self, cpu: int, core: int, line: int, write: bool, t: int) -> int:
        """The line is in neither of this core's caches: ask the directory."""
        d = self._dir
        e = d.get(line)
        if e is None:
            e = d[line] = [_SHARED, 0, 0, 0]
        start = e[_BUSY]
        if start > t:
            self._waited(line, start - t)
        else:
            start = t
        owner = e[_OWNER]
        sharers = e[_SHARERS]
        dom = self._l3_of[cpu]
        in_llc = e[_LLC] >> dom & 1
        if owner >= 0:
            # Another core holds it exclusively (perhaps modified): it sends the line.
            cost = self._xfer[cpu][owner]
            self._n[REMOTE][cpu] += 1
            self._stat(line)[0] += 1
            self.transfers += 1
            if write:
                self._invalidate(line, e, sharers)
                sharers = 0
            else:
                self._set_core_state(self._core_of[owner], line, _SHARED)
                owner = _SHARED
        elif sharers:
            # Clean copies elsewhere: from this domain's LLC, or from the nearest sharer.
            if in_llc:
                data = self.llc_ps
                self._n[LLC][cpu] += 1
            else:
                data = min(self._xfer[cpu][k] for k in _bits(sharers))
                self._n[REMOTE][cpu] += 1
                self._stat(line)[0] += 1
                self.transfers += 1
            if write:
                cost = max(data, self._farthest(cpu, sharers))
                self._invalidate(line, e, sharers)
                sharers = 0
            else:
                cost = data
        else:
            # Nobody holds it: this domain's LLC, another domain's victim LLC, or DRAM.  The
            # requester gets it exclusively either way (E for a read, M for a write).
            if in_llc:
                cost = self.llc_ps
                self._n[LLC][cpu] += 1
            elif e[_LLC]:
                cost = min(self._llc_xfer[cpu][x] for x in _bits(e[_LLC]))
                self._n[REMOTE][cpu] += 1
                self._stat(line)[0] += 1
                self.transfers += 1
            else:
                cost = self.dram_ps
                self._n[DRAM][cpu] += 1
        if write or not sharers:
            owner = cpu
        e[_OWNER] = owner
        e[_SHARERS] = sharers | 1 << core
        done = start + cost
        e[_BUSY] = done
        state = cpu if owner == cpu else _SHARED
        if self.inclusive:
            self._fill_llc(dom, line, e)
        elif in_llc:
            # A victim LLC gives the line up to the core that takes it.
            del self._llc[dom][line]
            e[_LLC] &= ~(1 << dom)
        self._fill_l2(core, line, state)
        self._fill_l1(self._l1[core], line, state)
        return done - t

    # -- state changes -------------------------------------------------------------------------

    def _set_core_state(self, core: int, line: int, state: int) -> None:
        l2 = self._l2[core]
        if line in l2:
            l2[line] = state
        l1 = self._l1[core]
        if line in l1:
            l1[line] = state

    def _drop_from_core(self, core: int, line: int) -> None:
        self._l2[core].pop(line, None)
        self._l1[core].pop(line, None)

    def _invalidate(self, line: int, e: list[int], cores: int) -> None:
        """Remove ``line`` from every core in the mask ``cores`` (a write took it)."""
        n = 0
        for k in _bits(cores):
            self._drop_from_core(k, line)
            n += 1
        e[_SHARERS] &= ~cores
        self.invalidations += n
        self._stat(line)[1] += n

    def _farthest(self, cpu: int, cores: int) -> int:
        """The invalidation round trip to the farthest of ``cores`` (sent in parallel)."""
        inval = self._inval[cpu]
        return max(inval[k] for k in _bits(cores))

    def _stat(self, line: int) -> list[int]:
        s = self._line_stats.get(line)
        if s is None:
            s = self._line_stats[line] = [0, 0, 0, 0]
        return s

    def _waited(self, line: int, ps: int) -> None:
        s = self._stat(line)
        s[2] += 1
        s[3] += ps

    def _forget_if_unheld(self, line: int, e: list[int]) -> None:
        if not e[_SHARERS] and not e[_LLC]:
            del self._dir[line]

    # -- fills and evictions -------------------------------------------------------------------

    def _fill_l1(self, l1: dict, line: int, state: int) -> None:
        l1[line] = state
        if len(l1) > self.l1_lines:
            # The L1's victim stays in the L2 (which holds everything the L1 holds).
            del l1[next(iter(l1))]

    def _fill_l2(self, core: int, line: int, state: int) -> None:
        l2 = self._l2[core]
        l2[line] = state
        if len(l2) <= self.l2_lines:
            return
        l1 = self._l1[core]
        victim = self._pick_victim(l2, l1.__contains__, line)
        del l2[victim]
        l1.pop(victim, None)
        e = self._dir[victim]
        e[_SHARERS] &= ~(1 << core)
        owner = e[_OWNER]
        if owner >= 0 and self._core_of[owner] == core:
            e[_OWNER] = _SHARED  # written back: now only the LLC or memory has it
        if not self.inclusive:
            self._fill_llc(self._l3_of_core[core], victim, e)
        self._forget_if_unheld(victim, e)

    def _fill_llc(self, dom: int, line: int, e: list[int]) -> None:
        llc = self._llc[dom]
        if line in llc:
            llc.move_to_end(line)
        else:
            llc[line] = None
        e[_LLC] |= 1 << dom
        if len(llc) <= self.llc_lines:
            return
        if self.inclusive:
            cores = self._l3_cores[dom]
            d = self._dir
            victim = self._pick_victim(llc, lambda v: d[v][_SHARERS] & cores, line)
        else:
            victim = next(iter(llc))
        del llc[victim]
        ev = self._dir[victim]
        ev[_LLC] &= ~(1 << dom)
        if self.inclusive:
            # Inclusion: the domain's cores may not keep what their LLC dropped.
            held = ev[_SHARERS] & self._l3_cores[dom]
            if held:
                for k in _bits(held):
                    self._drop_from_core(k, victim)
                ev[_SHARERS] &= ~held
                owner = ev[_OWNER]
                if owner >= 0 and held >> self._core_of[owner] & 1:
                    ev[_OWNER] = _SHARED
                self.back_invalidations += held.bit_count()
        self._forget_if_unheld(victim, ev)

    @staticmethod
    def _pick_victim(cache: dict, in_use, keep: int) -> int:
        """The least recently used line other than ``keep`` (the one being filled), passing
        over (and refreshing) a few that a nearer cache still holds: a hot line hits in the L1
        and so never refreshes its L2 or LLC position, and evicting it for that would be an
        artefact of strict inclusion rather than of the workload."""
        victim = None
        skipped = []
        for cand in cache:
            if cand != keep:
                if not in_use(cand):
                    victim = cand
                    break
                skipped.append(cand)
                if len(skipped) == _EVICT_SCAN:
                    break
        for cand in skipped:
            cache.move_to_end(cand)
        if victim is None:
            # Every candidate is in use: take the oldest after all (the nearer cache loses it).
            victim = next(c for c in cache if c != keep)
        return victim

    # -- counters ------------------------------------------------------------------------------

    def line_of(self, addr: int) -> int:
        """The physical line number of a physical address (below the memory size) or of a
        kernel virtual address."""
        if 0 <= addr < self._direct:
            return addr >> LINE_SHIFT
        return self._kvm.translate(addr, "line_stats") >> LINE_SHIFT

    def line_stats(self, addr: int) -> dict:
        """What happened to the line holding ``addr`` (physical or kernel virtual): transfers
        between caches, copies invalidated, requests that waited for it and for how long, and
        who holds it now."""
        line = self.line_of(addr)
        transfers, invals, waits, wait_ps = self._line_stats.get(line, (0, 0, 0, 0))
        e = self._dir.get(line)
        return {
            "line": line,
            "paddr": line << LINE_SHIFT,
            "transfers": transfers,
            "invalidations": invals,
            "waits": waits,
            "wait_ps": wait_ps,
            "owner": None if e is None or e[_OWNER] < 0 else e[_OWNER],
            "sharers": [] if e is None else list(_bits(e[_SHARERS])),
            "busy_until_ps": 0 if e is None else e[_BUSY],
        }

    def hottest_lines(self, n: int = 10) -> list[dict]:
        """The ``n`` lines with the most transfers (ties: lowest address first)."""
        lines = sorted(self._line_stats, key=lambda ln: (-self._line_stats[ln][0], ln))[:n]
        return [self.line_stats(ln << LINE_SHIFT) for ln in lines]

    def cpu_stats(self, cpu: int) -> dict:
        """Line accesses by ``cpu``, by where they were served, and the misses per level."""
        n = {name: self._n[i][cpu] for i, name in enumerate(LEVEL_NAMES)}
        beyond_l1 = n["l2"] + n["llc"] + n["remote"] + n["dram"]
        return {
            "accesses": n["l1"] + beyond_l1,
            "l1_hits": n["l1"],
            "l1_misses": beyond_l1,
            "l2_hits": n["l2"],
            "l2_misses": n["llc"] + n["remote"] + n["dram"],
            "llc_hits": n["llc"],
            "llc_misses": n["remote"] + n["dram"],
            "remote": n["remote"],
            "dram": n["dram"],
            "upgrades": self._upgrades[cpu],
        }

    def stats(self) -> dict:
        """Machine-wide totals and per-CPU figures."""
        per_cpu = [self.cpu_stats(c) for c in range(self.ncpus)]
        total = {k: sum(s[k] for s in per_cpu) for k in per_cpu[0]}
        total["invalidations"] = self.invalidations
        total["back_invalidations"] = self.back_invalidations
        total["transfers"] = sum(s[0] for s in self._line_stats.values())
        total["lines_tracked"] = len(self._dir)
        return {"total": total, "cpus": per_cpu}

    def holders(self, addr: int) -> dict:
        """Where the line holding ``addr`` is now: per-core state and LLC domains (for tests
        and for explaining a figure)."""
        line = self.line_of(addr)
        cores = {}
        for k in range(self.ncores):
            st = self._l2[k].get(line, _ABSENT)
            if st != _ABSENT:
                cores[k] = {"l1": line in self._l1[k], "exclusive_cpu": None if st < 0 else st}
        llcs = [d for d in range(len(self._llc)) if line in self._llc[d]]
        return {"cores": cores, "llc": llcs}


__all__ = ["CacheModel", "LEVEL_NAMES", "LINE_SIZE"]
