"""Event sources: SimPy processes that fire programs or tracepoints on CPUs over time.

One process per (source, CPU) draws its arrival times and context fields from its own random
stream, ``SeedSequence(seed, spawn_key=(source index, cpu))``, so adding a source or a CPU never
changes what another one draws.  Contexts are built at the instant of firing (a ``time`` field
holds that instant).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sim.scenario.schema import FieldSpec, SourceSpec

_CHUNK = 1024  # random draws are made in vectors of this size


class FieldSampler:
    """Draws one context field's values: constant, sequence, uniform, zipf, the CPU or the time."""

    def __init__(self, spec: FieldSpec, rng: np.random.Generator, cpu: int):
        self.spec = spec
        self.rng = rng
        self.cpu = cpu
        self.size = spec.size
        self.mask = (1 << (8 * spec.size)) - 1
        self._buf: list[int] = []
        self._k = 0
        if spec.dist == "zipf":
            ranks = np.arange(1, spec.n + 1, dtype=np.float64)
            weights = ranks ** (-spec.s)
            self._cdf = np.cumsum(weights / weights.sum())

    def _refill(self) -> None:
        spec = self.spec
        if spec.dist == "uniform":
            self._buf = self.rng.integers(spec.low, spec.high + 1, size=_CHUNK).tolist()
        else:  # zipf, bounded to [0, n): rank 0 is the most popular key
            idx = np.searchsorted(self._cdf, self.rng.random(_CHUNK), side="right")
            self._buf = np.minimum(idx, spec.n - 1).tolist()
        self._buf.reverse()

    def draw(self, now_ns: int) -> int:
        spec = self.spec
        dist = spec.dist
        if dist == "constant":
            v = spec.value
        elif dist == "sequence":
            v = spec.start + spec.step * self._k
            self._k += 1
        elif dist == "cpu":
            v = self.cpu
        elif dist == "time":
            v = now_ns
        else:
            if not self._buf:
                self._refill()
            v = self._buf.pop()
        return v & self.mask


class SourceProcess:
    """Fires one source on one CPU; counts what it fired."""

    def __init__(
        self,
        m,
        index: int,
        spec: SourceSpec,
        cpu: int,
        fire: Callable[[int, bytes], list],
        record: Callable[[Any], None],
        seed: int,
    ):
        self.m = m
        self.spec = spec
        self.cpu = cpu
        self.fire = fire
        self.record = record
        self.rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, cpu)))
        self.fields = [FieldSampler(f, self.rng, cpu) for f in spec.field]
        self.static_ctx = bytes.fromhex(spec.ctx_hex)
        self.fired = 0
        self.process = m.env.process(self._run())

    def _ctx(self, now_ns: int) -> bytes:
        if not self.fields:
            return self.static_ctx
        return self.static_ctx + b"".join(
            f.draw(now_ns).to_bytes(f.size, "little") for f in self.fields
        )

    def _gaps(self):
        """Inter-arrival gaps in ns (None: wait for the previous firing to finish)."""
        spec = self.spec
        if spec.arrival == "back-to-back":
            while True:
                yield None
        elif spec.arrival == "periodic":
            while True:
                yield spec.interval_ns
        elif spec.arrival == "poisson":
            while True:
                for gap in self.rng.exponential(spec.interval_ns, size=_CHUNK).tolist():
                    yield max(0, round(gap))
        else:  # bursts of burst_size back-to-back firings, one burst every interval_ns
            while True:
                for _ in range(spec.burst_size - 1):
                    yield None
                yield spec.interval_ns

    def _run(self):
        env = self.m.env
        spec = self.spec
        if spec.start_ns * 1000 > env.now:
            yield env.timeout(spec.start_ns * 1000 - env.now)
        end_ps = None if spec.duration_ns is None else env.now + spec.duration_ns * 1000
        gaps = self._gaps()
        last: list = []
        first = True
        while spec.count is None or self.fired < spec.count:
            if not first:
                gap = next(gaps)
                if gap is None:
                    if last:
                        yield env.all_of([inv.done for inv in last])
                elif gap:
                    yield env.timeout(gap * 1000)
            first = False
            if end_ps is not None and env.now >= end_ps:
                break
            last = self.fire(self.cpu, self._ctx(env.now // 1000))
            for inv in last:
                self.record(inv)
            self.fired += 1
