"""Running a scenario: build the machine, load programs, drive the sources, collect metrics.

``run_scenario`` returns a :class:`RunResult`; :mod:`sim.scenario.results` writes it out.
Every metric is read from the machine after the run: invocation records, per-CPU busy time,
lock statistics and map contents.  Nothing is estimated.
"""

from __future__ import annotations

import re
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kbpf.asm import AsmError, assemble
from kbpf.errors import BpfError
from sim.machine import Machine
from sim.scenario.checks import CheckError, CheckResult, evaluate
from sim.scenario.schema import Scenario, ScenarioError, read_scenario, validate
from sim.scenario.sources import SourceProcess

_MAP_REF = re.compile(r"\b(map_fd|map_value)\s+([A-Za-z_][A-Za-z0-9_.]*)")

#: How many keys of a map the summary lists (small maps entirely).
MAX_KEYS_REPORTED = 64


@dataclass
class RunResult:
    scenario: Scenario
    path: Path
    machine: Machine
    records: list[tuple[str, int, int, int, bool]]  # (program, cpu, start_ns, end_ns, faulted)
    metrics: dict[str, float]
    map_values: dict[str, tuple[list[str], list[int]]]
    faults: list[str]
    wall_s: float
    trace: list[str] = field(default_factory=list)
    percpu_values: dict[str, list[tuple[str, list[int]]]] = field(default_factory=dict)
    consumers: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    timeline: list = field(default_factory=list)
    locks: list[tuple[str, int, int, int]] = field(default_factory=list)


@dataclass
class ScenarioRun:
    """The base run, every ``[[variant]]`` run (same seed), and the checks over all of them."""

    base: RunResult
    variants: dict[str, RunResult]
    checks: list[CheckResult]
    resolved: dict

    @property
    def checks_passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def faults(self) -> list[str]:
        out = list(self.base.faults)
        for name, res in self.variants.items():
            out += [f"variant {name}: {f}" for f in res.faults]
        return out

    @property
    def wall_s(self) -> float:
        return self.base.wall_s + sum(v.wall_s for v in self.variants.values())

    def check_metrics(self) -> dict[str, float]:
        """The names checks may use: the base's metrics bare and as ``base.X``, each variant's
        as ``variant.NAME.X``."""
        names = dict(self.base.metrics)
        names.update({f"base.{k}": v for k, v in self.base.metrics.items()})
        for vname, res in self.variants.items():
            names.update({f"variant.{vname}.{k}": v for k, v in res.metrics.items()})
        return names


def run_scenario(
    path: Path,
    overrides: dict | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ScenarioRun:
    """Validate the scenario at ``path`` with ``overrides``, run it and its variants, check it."""
    raw = read_scenario(path)
    scn, resolved = validate(raw, path, overrides)
    base = simulate(scn, path, None if progress is None else partial(progress, "base"))
    variants = {}
    for i, var in enumerate(scn.variant):
        vscn, _ = validate(resolved, path, var.set, where=f"variant[{i}] ({var.name})")
        variants[var.name] = simulate(
            vscn, path, None if progress is None else partial(progress, var.name)
        )
    outcome = ScenarioRun(base, variants, [], resolved)
    names = outcome.check_metrics()
    for i, chk in enumerate(scn.check):
        try:
            outcome.checks.append(evaluate(chk.expect, names))
        except CheckError as e:
            raise ScenarioError(f"{path}: check[{i}].expect: {e}") from None
    return outcome


def _substitute_maps(text: str, fds: dict[str, int], asm_path: Path) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(2)
        if name.isdigit():
            return m.group(0)
        if name not in fds:
            raise ScenarioError(
                f"{asm_path}: refers to map {name!r}, which the scenario does not declare in [[map]]"
            )
        return f"{m.group(1)} {fds[name]}"

    return _MAP_REF.sub(repl, text)


def _open_objects(m: Machine, scn: Scenario, path: Path) -> dict:
    """Open each clang object the scenario names once, apply its map changes, load it."""
    objects: dict[str, object] = {}
    changes: dict[str, dict[str, dict]] = {}
    for i, spec in enumerate(scn.program):
        if spec.object is None:
            continue
        per_obj = changes.setdefault(spec.object, {})
        for mname, change in spec.maps.items():
            mine = change.model_dump(exclude_none=True)
            old = per_obj.setdefault(mname, {})
            for key, value in mine.items():
                if key in old and old[key] != value:
                    raise ScenarioError(
                        f"{path}: program[{i}].maps.{mname}.{key}: conflicts with another "
                        f"program's change of the same map ({old[key]!r})"
                    )
                old[key] = value
    for rel, per_obj in changes.items():
        obj_path = (path.parent / rel).resolve()
        try:
            obj = m.open_object(obj_path)
            for mname, change in per_obj.items():
                if mname not in obj.maps:
                    raise ScenarioError(
                        f"{path}: maps.{mname}: {rel} has no map {mname!r} "
                        f"(it has: {', '.join(obj.maps)})"
                    )
                if "type" in change:
                    obj.maps[mname].set_type(change["type"])
                if "max_entries" in change:
                    obj.maps[mname].set_max_entries(change["max_entries"])
                if "flags" in change:
                    obj.maps[mname].set_flags(change["flags"])
            obj.load()
        except (BpfError, OSError) as e:
            raise ScenarioError(f"{path}: object {rel}: {e}") from None
        objects[rel] = obj
    return objects


def build_machine(scn: Scenario) -> Machine:
    ms = scn.machine
    cost: Any = (
        ms.cost_model if not ms.cost_overrides else {"preset": ms.cost_model, **ms.cost_overrides}
    )
    return Machine(
        cpus=ms.cpus,
        seed=ms.seed,
        memory_mib=ms.memory_mib,
        freq_ghz=ms.freq_ghz,
        cost_model=cost,
        locking=ms.locking,
        lru=ms.lru,
        insn_budget=ms.insn_budget,
    )


def _u64s(value: bytes) -> int:
    """A value as an unsigned little-endian integer of its first 8 bytes (a counter)."""
    return int.from_bytes(value[:8], "little")


def simulate(
    scn: Scenario, path: Path, progress: Callable[[int, int], None] | None = None
) -> RunResult:
    """Run one configuration ``scn`` (loaded from ``path``); ``progress(done, total)`` is called
    as invocations finish."""
    wall0 = time.perf_counter()
    base = path.parent
    try:
        m = build_machine(scn)
    except ValueError as e:
        raise ScenarioError(f"{path}: machine: {e}") from None
    maps = {}
    for i, spec in enumerate(scn.map):
        try:
            maps[spec.name] = m.create_map(
                spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.flags, spec.name
            )
        except BpfError as e:
            raise ScenarioError(f"{path}: map[{i}] ({spec.name}): {e}") from None
    fds = {name: h.fd for name, h in maps.items()}
    progs = {}
    objects = _open_objects(m, scn, path)
    for obj in objects.values():
        for mname, h in obj.maps.items():
            maps.setdefault(mname, h)
    for i, spec in enumerate(scn.program):
        if spec.object is not None:
            obj = objects[spec.object]
            if spec.name not in obj.programs:
                raise ScenarioError(
                    f"{path}: program[{i}].name: {spec.object} has no program {spec.name!r} "
                    f"(it has: {', '.join(obj.programs) or 'none'})"
                )
            progs[spec.name] = obj.programs[spec.name]
            continue
        asm_path = (base / spec.asm).resolve()
        try:
            text = asm_path.read_text()
        except OSError as e:
            raise ScenarioError(
                f"{path}: program[{i}].asm: cannot read {asm_path}: {e.strerror}"
            ) from None
        try:
            insns = assemble(_substitute_maps(text, fds, asm_path))
        except AsmError as e:
            raise ScenarioError(f"{path}: program[{i}].asm: {asm_path}: {e}") from None
        try:
            progs[spec.name] = m.load_program(insns, prog_type=spec.prog_type, name=spec.name[:15])
        except (BpfError, ValueError) as e:
            raise ScenarioError(f"{path}: program[{i}] ({spec.name}) failed to load: {e}") from None

    for spec in scn.program:
        if spec.attach:
            try:
                m.attach(progs[spec.name], spec.attach)
            except (BpfError, ValueError) as e:
                raise ScenarioError(
                    f"{path}: program {spec.name!r}: attach {spec.attach!r}: {e}"
                ) from None

    consumers = {}
    for i, c in enumerate(scn.consumer):
        handle = maps.get(c.map)
        if handle is None:
            raise ScenarioError(
                f"{path}: consumer[{i}].map: no map named {c.map!r} (have: {', '.join(maps) or 'none'})"
            )
        opts = dict(
            task_cpu=c.cpu,
            per_record_ns=c.per_record_ns,
            batch=c.batch or None,
            interval_ns=c.interval_ns if c.wakeup == "interval" else 0,
        )
        try:
            if c.kind == "ringbuf":
                consumers[c.name] = m.ring_buffer(handle, lambda data: None, **opts)
            else:
                consumers[c.name] = m.perf_buffer(
                    handle,
                    lambda cpu, data: None,
                    None,
                    c.page_cnt,
                    wakeup_events=c.wakeup_events,
                    **opts,
                )
        except BpfError as e:
            raise ScenarioError(f"{path}: consumer[{i}] ({c.name}): {e}") from None
    lines = {}
    for i, ln in enumerate(scn.line):
        handle = maps.get(ln.map)
        if handle is None:
            raise ScenarioError(f"{path}: line[{i}].map: no map named {ln.map!r}")
        try:
            lines[ln.name] = m.value_address(handle, ln.key)
        except BpfError as e:
            raise ScenarioError(
                f"{path}: line[{i}] ({ln.name}): key {ln.key} of map {ln.map!r}: {e}"
            ) from None
    if any(p.kind == "timeline" for p in scn.plot):
        m.record_timeline()

    rec = Records()
    sources = []
    for i, src in enumerate(scn.source):
        if src.program is not None:
            prog = progs[src.program]

            def fire(cpu, ctx, prog=prog):
                return [m.submit(prog, cpu=cpu, ctx=ctx)]
        else:

            def fire(cpu, ctx, tp=src.tracepoint):
                return m.fire(tp, cpu=cpu, ctx=ctx)

        cpus = range(m.ncpus) if src.cpus == "all" else src.cpus
        for cpu in cpus:
            sources.append(SourceProcess(m, i, src, cpu, fire, rec.watch, scn.machine.seed))
    total = sum(
        src.count or 0
        for src in scn.source
        for _ in (range(m.ncpus) if src.cpus == "all" else src.cpus)
    )

    env = m.env
    arrivals_done = env.all_of([sp.process for sp in sources])
    until_ps = None if scn.run.until_ns is None else scn.run.until_ns * 1000
    # Step the simulation: until every source has fired and the machine is idle (or until_ns).
    # Stepping processes exactly the events env.run would, so results do not depend on it.
    done_shown = 0
    step = env.step
    while (not arrivals_done.triggered or m.busy) and env.peek() != float("inf"):
        if until_ps is not None and env.peek() >= until_ps:
            break
        step()
        if progress is not None and rec.count - done_shown >= max(1, total // 200):
            done_shown = rec.count
            progress(done_shown, max(total, done_shown))
    if until_ps is not None and env.now < until_ps:
        m.run(until_ns=scn.run.until_ns)
    if progress is not None:
        progress(rec.count, max(total, rec.count))

    records = rec.as_tuples()
    metrics = collect_metrics(m, scn, records, progs)
    addr_names = {
        m.kernel.map_from_fd(m.kernel.facade, h.fd).umap.addr: name for name, h in maps.items()
    }
    metrics.update(map_op_metrics(m, addr_names))
    for name, c in consumers.items():
        metrics[f"consumer.{name}.records"] = c.consumed if hasattr(c, "consumed") else c.samples
        metrics[f"consumer.{name}.lost"] = getattr(c, "lost", 0)
        metrics[f"consumer.{name}.discarded"] = getattr(c, "discarded", 0)
        metrics[f"consumer.{name}.wakeups"] = c.task.wakeups if c.task is not None else 0
        metrics[f"consumer.{name}.polls"] = c.polls
        occ = [o for _, o in c.occupancy]
        metrics[f"consumer.{name}.occupancy_bytes.max"] = max(occ, default=0)
        metrics[f"consumer.{name}.occupancy_bytes.mean"] = float(np.mean(occ)) if occ else 0.0
    cache = getattr(m, "cache", None)
    if cache is not None:
        total = cache.stats()["total"]
        for key in ("transfers", "invalidations"):
            metrics[f"cache.{key}"] = total[key]
        for key, value in sorted(total.items()):
            if key not in ("transfers", "invalidations", "lines_tracked"):
                metrics[f"cache.{key}"] = value
        for name, addr in lines.items():
            ls = cache.line_stats(addr)
            metrics[f"line.{name}.transfers"] = ls.get("transfers", 0)
            metrics[f"line.{name}.invalidations"] = ls.get("invalidations", 0)
    map_values = {}
    for name, h in maps.items():
        keys, vals = [], []
        try:
            for key in h.keys():
                if len(keys) >= MAX_KEYS_REPORTED:
                    break
                value = h.lookup(key)
                if value is None:
                    continue
                label = str(int.from_bytes(key, "little")) if len(key) <= 8 else key.hex()
                keys.append(label)
                vals.append(
                    _u64s(value) if not h.percpu else sum(_u64s(v) for v in h.lookup_percpu(key))
                )
        except BpfError:
            continue  # maps without keys (queue, stack, ring buffers) have no values to list
        map_values[name] = (keys, vals)
        for label, v in zip(keys, vals, strict=True):
            metrics[f"map.{name}.value.{label}"] = v
    percpu_values = {}
    for name, h in maps.items():
        if getattr(h, "percpu", False):
            try:
                rows = []
                for key in h.keys():
                    if len(rows) >= MAX_KEYS_REPORTED:
                        break
                    vals = h.lookup_percpu(key)
                    if vals is not None:
                        rows.append((str(int.from_bytes(key, "little")), [_u64s(v) for v in vals]))
                percpu_values[name] = rows
            except BpfError:
                continue
    faults = [str(f) for f in m.faults]
    result = RunResult(
        scn,
        path,
        m,
        records,
        metrics,
        map_values,
        faults,
        time.perf_counter() - wall0,
        m.trace_lines(),
    )
    result.percpu_values = percpu_values
    result.consumers = {name: list(c.occupancy) for name, c in consumers.items()}
    result.timeline = list(m.stats.timeline or [])
    result.locks = [
        (st.name, st.acquisitions, st.contended, st.wait_ps // 1000)
        for st in m.spinlocks.all.values()
    ]
    return result


#: Work kinds each map family reports, listed (as 0) even when the run never produced one, so
#: that checks can name them: "no drops" is a measured zero, not a missing metric.
FAMILY_WORK = {
    "BPF_MAP_TYPE_RINGBUF": ("ringbuf_drop",),
    "BPF_MAP_TYPE_LRU_HASH": ("lru_evict", "lru_steal"),
    "BPF_MAP_TYPE_LRU_PERCPU_HASH": ("lru_evict", "lru_steal"),
    "BPF_MAP_TYPE_PERF_EVENT_ARRAY": ("perf_lost",),
}
_OUTCOMES = {"pointer": ("ok", "null"), "errno": ("ok", "err")}


def map_op_metrics(m: Machine, addr_names: dict[int, str]) -> dict[str, float]:
    """Helper calls per map by outcome, and work per map by kind, as the cores counted them."""
    from kbpf.linux_bpf import BpfFuncId

    out: dict[str, float] = {}
    for (addr, hid, outcome), n in sorted(m.stats.ops.items()):
        name = addr_names.get(addr)
        if name is None:
            continue
        try:
            helper = BpfFuncId(hid).name.removeprefix("BPF_FUNC_")
        except ValueError:
            helper = str(hid)
        for other in _OUTCOMES.get(m.kernel.helper_ret.get(hid), ()):
            out.setdefault(f"map.{name}.ops.{helper}.{other}", 0)
        out[f"map.{name}.ops.{helper}.{outcome}"] = n
    for addr, name in addr_names.items():
        mtype = m.kernel.maps_by_addr[addr].meta.map_type.name
        for kind in FAMILY_WORK.get(mtype, ()):
            out[f"map.{name}.work.{kind}"] = 0
    for (addr, kind), n in sorted(m.stats.work.items()):
        name = addr_names.get(addr)
        if name is not None:
            out[f"map.{name}.work.{kind}"] = n
    return out


class Records:
    """Finished invocations, kept compactly (a scenario may run millions)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self.prog = array("i")
        self.cpu = array("i")
        self.start = array("q")
        self.end = array("q")
        self.fault = array("b")
        self.count = 0

    def watch(self, inv) -> None:
        inv.done.callbacks.append(self._done)

    def _done(self, event) -> None:
        inv = event.value
        name = inv.prog.name
        idx = self._index.get(name)
        if idx is None:
            idx = self._index[name] = len(self.names)
            self.names.append(name)
        self.prog.append(idx)
        self.cpu.append(inv.cpu)
        self.start.append(inv.start_ns)
        self.end.append(inv.end_ns)
        self.fault.append(inv.fault is not None)
        self.count += 1

    def as_tuples(self) -> list[tuple[str, int, int, int, bool]]:
        names = self.names
        return [
            (names[p], c, s, e, bool(f))
            for p, c, s, e, f in zip(
                self.prog, self.cpu, self.start, self.end, self.fault, strict=True
            )
        ]


def collect_metrics(m: Machine, scn: Scenario, records, progs) -> dict[str, float]:
    met: dict[str, float] = {}
    end = max((r[3] for r in records), default=m.now_ns)
    met["sim.elapsed_ns"] = end
    met["faults"] = len(m.faults)
    met["invocations"] = len(records)
    met["throughput"] = len(records) / (end * 1e-9) if end > 0 else 0.0
    for name in progs:
        mine = [r for r in records if r[0] == name]
        lat = np.array([r[3] - r[2] for r in mine], dtype=np.int64)
        met[f"program.{name}.invocations"] = int(lat.size)
        met[f"program.{name}.faults"] = sum(1 for r in mine if r[4])
        if lat.size:
            met[f"program.{name}.latency_ns.mean"] = float(lat.mean())
            for q in (50, 90, 99):
                met[f"program.{name}.latency_ns.p{q}"] = float(np.percentile(lat, q))
            met[f"program.{name}.latency_ns.max"] = int(lat.max())
            span = max(r[3] for r in mine) - min(r[2] for r in mine)
            met[f"program.{name}.throughput_per_s"] = lat.size / (span * 1e-9) if span > 0 else 0.0
    for core in m.cores:
        met[f"cpu.{core.id}.busy_ns"] = core.busy_ps // 1000
        met[f"cpu.{core.id}.invocations"] = core.invocations
    seen: dict[str, int] = {}
    for st in m.spinlocks.all.values():
        label = st.name.replace(" ", "_")
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:  # two locks of one name (per-CPU locks): number them
            label = f"{label}#{seen[label] - 1}"
        key = f"lock.{label}"
        met[f"{key}.acquisitions"] = st.acquisitions
        met[f"{key}.contended"] = st.contended
        met[f"{key}.wait_ns"] = st.wait_ps // 1000
        met[f"{key}.handoffs"] = getattr(st, "handoffs", 0)
    return met
