"""The machine's topology: sockets, cores, SMT threads and L3 domains, and how far apart two CPUs are.

A preset's ``[topology]`` table gives four counts: ``sockets``, ``cores_per_socket``,
``threads_per_core`` and ``l3_domains_per_socket`` (a CCX on AMD Zen 2, where four cores share
one 16 MiB L3; one per socket on Intel parts, whose LLC spans the socket).

**CPU numbering** follows what Linux shows on x86 servers, where the firmware lists every core's
first hardware thread before any second thread::

    cpu = thread * (sockets * cores_per_socket) + socket * cores_per_socket + core

so on a 2 x 14 x 2 Xeon CPUs 0-13 are socket 0's cores, 14-27 socket 1's, and CPU 28 is CPU 0's
SMT sibling; on a 16 x 2 Ryzen CPU 16 is CPU 0's sibling.  A machine with fewer CPUs than the
preset's maximum uses the first ones: ``Machine(cpus=4)`` gets four separate physical cores.
Cores of a socket fill its L3 domains in order (cores 0-3 are CCX 0 on the Ryzen).

**Pair classes** say what a cache line crosses on its way between two CPUs, and so which
transfer cost of the preset applies (``[coherence]``): the same CPU, SMT siblings (one core,
shared L1 and L2), the same L3 domain, another L3 domain of the same socket, another socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Pair classes, nearest first.  Their names key the preset's ``[coherence]`` costs.
SELF, SMT, SAME_L3, OTHER_L3, OTHER_SOCKET = range(5)
PAIR_CLASS_NAMES = ("self", "smt", "same_l3", "other_l3", "other_socket")

_COUNTS = ("sockets", "cores_per_socket", "threads_per_core", "l3_domains_per_socket")


class Topology:
    """The CPU layout of a preset; every per-CPU table is a tuple indexed by CPU id."""

    def __init__(
        self,
        sockets: int,
        cores_per_socket: int,
        threads_per_core: int = 1,
        l3_domains_per_socket: int = 1,
    ):
        for name, value in zip(
            _COUNTS,
            (sockets, cores_per_socket, threads_per_core, l3_domains_per_socket),
            strict=True,
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"topology.{name} must be a positive integer, got {value!r}")
        if cores_per_socket % l3_domains_per_socket:
            raise ValueError(
                f"topology: {cores_per_socket} cores per socket do not split evenly into "
                f"{l3_domains_per_socket} L3 domains"
            )
        self.sockets = sockets
        self.cores_per_socket = cores_per_socket
        self.threads_per_core = threads_per_core
        self.l3_domains_per_socket = l3_domains_per_socket
        self.cores_per_l3 = cores_per_socket // l3_domains_per_socket
        self.ncores = sockets * cores_per_socket
        self.nl3 = sockets * l3_domains_per_socket
        self.max_cpus = self.ncores * threads_per_core
        cpus = range(self.max_cpus)
        #: physical core (0 .. ncores-1) of each CPU: SMT siblings share it
        self.core_of = tuple(c % self.ncores for c in cpus)
        #: hardware thread of each CPU within its core
        self.thread_of = tuple(c // self.ncores for c in cpus)
        self.socket_of = tuple(self.core_of[c] // cores_per_socket for c in cpus)
        #: L3 domain (0 .. nl3-1) of each CPU
        self.l3_of = tuple(
            self.socket_of[c] * l3_domains_per_socket
            + (self.core_of[c] % cores_per_socket) // self.cores_per_l3
            for c in cpus
        )

    @classmethod
    def from_preset(cls, data: Mapping[str, Any]) -> Topology:
        """The topology of a preset's raw data (its ``[topology]`` table)."""
        table = data.get("topology")
        if not isinstance(table, Mapping):
            raise ValueError("preset has no [topology] table")
        missing = [k for k in _COUNTS if k not in table]
        if missing:
            raise ValueError(f"preset [topology] lacks {', '.join(missing)}")
        return cls(*(table[k] for k in _COUNTS))

    def pair_class(self, a: int, b: int) -> int:
        """How far CPU ``a`` is from CPU ``b``: one of SELF, SMT, SAME_L3, OTHER_L3, OTHER_SOCKET."""
        if a == b:
            return SELF
        if self.core_of[a] == self.core_of[b]:
            return SMT
        if self.l3_of[a] == self.l3_of[b]:
            return SAME_L3
        if self.socket_of[a] == self.socket_of[b]:
            return OTHER_L3
        return OTHER_SOCKET

    def pair_class_name(self, a: int, b: int) -> str:
        return PAIR_CLASS_NAMES[self.pair_class(a, b)]

    def siblings(self, cpu: int) -> list[int]:
        """CPU ids sharing ``cpu``'s physical core (itself included), ascending."""
        core = self.core_of[cpu]
        return [core + t * self.ncores for t in range(self.threads_per_core)]

    def describe(self) -> str:
        return (
            f"{self.sockets} socket(s) x {self.cores_per_socket} cores x "
            f"{self.threads_per_core} thread(s), {self.l3_domains_per_socket} L3 domain(s) per "
            f"socket: {self.max_cpus} CPUs"
        )

    def __repr__(self) -> str:
        return f"Topology({self.describe()})"
