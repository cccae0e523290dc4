"""PNG plots of a finished run.  Every number drawn comes from the run's own records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _finish(fig, ax, title: str, path: Path) -> Path:
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_completions(records, ncpus: int, path: Path, title: str | None = None) -> Path:
    """Cumulative completed invocations per CPU against simulated time (µs).

    ``records`` are ``(program, cpu, start_ns, end_ns)`` tuples.  A flat stretch is a CPU not
    running programs; the slope is that CPU's throughput.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for cpu in range(ncpus):
        ends = np.sort(np.array([r[3] for r in records if r[1] == cpu], dtype=np.int64))
        if ends.size:
            ax.step(
                np.concatenate(([0], ends)) / 1000.0,
                np.arange(ends.size + 1),
                where="post",
                label=f"CPU {cpu}",
            )
    ax.set_xlabel("simulated time (µs)")
    ax.set_ylabel("invocations completed")
    if ncpus <= 16:
        ax.legend(loc="upper left", fontsize="small")
    return _finish(fig, ax, title or "Program invocations completed per CPU", path)


def plot_latency(records, path: Path, title: str | None = None) -> Path:
    """Empirical CDF of each program's invocation run time (start to end, ns)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in sorted({r[0] for r in records}):
        lat = np.sort(np.array([r[3] - r[2] for r in records if r[0] == name], dtype=np.int64))
        if lat.size:
            ax.step(lat, np.arange(1, lat.size + 1) / lat.size, where="post", label=name)
    ax.set_xlabel("invocation run time (ns)")
    ax.set_ylabel("fraction of invocations")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize="small")
    return _finish(fig, ax, title or "Invocation run time (CDF)", path)


def plot_map_values(
    name: str, keys: list[str], values: list[int], path: Path, title: str | None = None
) -> Path:
    """Bars of a map's values (as unsigned integers), key by key."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(values)), keys, rotation=45 if len(keys) > 8 else 0, fontsize="small")
    ax.set_xlabel("key")
    ax.set_ylabel("value")
    return _finish(fig, ax, title or f"Map {name!r}: values after the run", path)


def plot_variants(
    metric: str, names: list[str], values: list[float], path: Path, title: str | None = None
) -> Path:
    """Bars of one metric for the base run and each variant (same seed)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["tab:gray"] + ["tab:blue"] * (len(names) - 1)
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(metric)
    for i, v in enumerate(values):
        ax.annotate(f"{v:,.3g}", (i, v), ha="center", va="bottom", fontsize="small")
    return _finish(fig, ax, title or f"{metric}: base and variants", path)


def plot_sweep(metric: str, grid, points, path: Path) -> Path:
    """One metric against the first grid key, one line per value of the other keys."""
    keys = [k for k, _ in grid]
    xkey = keys[0]
    series: dict[tuple, list[tuple[Any, float]]] = {}
    for p in points:
        label = tuple((k, p["overrides"][k]) for k in keys[1:])
        series.setdefault(label, []).append(
            (p["overrides"][xkey], p["metrics"].get(metric, float("nan")))
        )
    fig, ax = plt.subplots(figsize=(7, 4))
    numeric = all(
        isinstance(x, int | float) and not isinstance(x, bool)
        for x, _ in next(iter(series.values()))
    )
    xs_all = [x for x, _ in next(iter(series.values()))]
    for label, pts in series.items():
        name = ", ".join(f"{k}={v}" for k, v in label) or metric
        if numeric:
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=name)
        else:
            ax.plot(range(len(pts)), [y for _, y in pts], marker="o", label=name)
    if not numeric:
        ax.set_xticks(range(len(xs_all)), [str(x) for x in xs_all])
    ax.set_xlabel(xkey)
    ax.set_ylabel(metric)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return _finish(fig, ax, f"{metric} against {xkey}", path)


def plot_timeline(
    records, lock_waits, ncpus: int, path: Path, title: str | None = None, max_spans: int = 4000
) -> Path:
    """Per-CPU timeline: program runs (one colour per program), lock waits (red) and cache-line
    transfers (black), from the run's own records.  Long runs show their first ``max_spans``
    spans per kind."""
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * ncpus))
    names = sorted({r[0] for r in records})
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        spans = [(r[1], r[2], r[3]) for r in records if r[0] == name][:max_spans]
        for cpu in range(ncpus):
            bars = [(s / 1000.0, max(e - s, 1) / 1000.0) for c, s, e in spans if c == cpu]
            if bars:
                ax.broken_barh(
                    bars,
                    (cpu - 0.35, 0.5),
                    facecolors=cmap(i % 10),
                    label=name if cpu == min(c for c, _, _ in spans) else None,
                )
    # Lock waits (red) and cache-line transfers (black) below each CPU's program runs.
    events = lock_waits
    for kind, colour, label, y, height in (
        ("lock", "tab:red", "lock wait", 0.2, 0.2),
        ("transfer", "black", "line transfer", 0.42, 0.12),
    ):
        spans = [ev for ev in events if ev[1] == kind][:max_spans]
        for cpu in range(ncpus):
            bars = [(s / 1e6, max(e - s, 1) / 1e6) for c, _k, s, e, _n in spans if c == cpu]
            if bars:
                first = cpu == min(ev[0] for ev in spans)
                ax.broken_barh(
                    bars, (cpu + y, height), facecolors=colour, label=label if first else None
                )
    waits = events
    ax.set_yticks(range(ncpus), [f"CPU {c}" for c in range(ncpus)])
    ax.set_xlabel("simulated time (µs)")
    ax.invert_yaxis()
    if names or waits:
        ax.legend(loc="upper right", fontsize="small")
    return _finish(
        fig, ax, title or "Per-CPU timeline: program runs, lock waits, line transfers", path
    )


def plot_ring(
    name: str, samples: list[tuple[int, int]], path: Path, title: str | None = None
) -> Path:
    """Bytes waiting in a ring each time its consumer read it, against simulated time."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if samples:
        t, occ = zip(*samples, strict=True)
        ax.step(np.array(t) / 1000.0, occ, where="post", color="tab:purple")
    ax.set_xlabel("simulated time (µs)")
    ax.set_ylabel("bytes waiting when read")
    return _finish(fig, ax, title or f"Consumer {name!r}: ring occupancy at each read", path)


def plot_locks(
    locks: list[tuple[str, int, int, int]], path: Path, title: str | None = None
) -> Path:
    """Total wait per lock (ns), with its contended share of acquisitions."""
    fig, ax = plt.subplots(figsize=(7, 4))
    shown = sorted(locks, key=lambda x: -x[3])[:20]
    ax.barh(range(len(shown)), [w for *_, w in shown], color="tab:red")
    ax.set_yticks(
        range(len(shown)), [f"{n} ({c}/{a} contended)" for n, a, c, _w in shown], fontsize="small"
    )
    ax.invert_yaxis()
    ax.set_xlabel("total wait (ns)")
    return _finish(fig, ax, title or "Spinlock wait", path)


def plot_percpu(
    name: str, rows: list[tuple[str, list[int]]], path: Path, title: str | None = None
) -> Path:
    """Each CPU's copy of each key of a per-CPU map: the syscall view, CPU by CPU."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if rows:
        ncpu = len(rows[0][1])
        width = 0.8 / ncpu
        for cpu in range(ncpu):
            ax.bar(
                [i + cpu * width for i in range(len(rows))],
                [vals[cpu] for _, vals in rows],
                width,
                label=f"CPU {cpu}",
            )
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))], [k for k, _ in rows])
        if ncpu <= 16:
            ax.legend(fontsize="small")
    ax.set_xlabel("key")
    ax.set_ylabel("value")
    return _finish(fig, ax, title or f"Map {name!r}: each CPU's copy", path)
