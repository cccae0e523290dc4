"""``kbpf-sim sweep``: one independent run per grid point, then plots against the grid.

Each grid point is a set of ``--set``-style overrides; the worker builds its own Machine from the
scenario file and the overrides (both picklable), so a point's result depends only on
(scenario, overrides, seed) — never on which worker ran it.  Points run through a
``concurrent.futures`` executor: local processes by default, or a Dask cluster's executor.
"""

from __future__ import annotations

import csv
import itertools
import json
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.scenario.schema import ScenarioError, parse_value


def parse_grid(specs: tuple[str, ...]) -> list[tuple[str, list[Any]]]:
    """``("machine.cpus=1,2,4", ...)`` -> ``[("machine.cpus", [1, 2, 4]), ...]`` (TOML values)."""
    grid = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ScenarioError(
                f"--grid {spec!r}: expected KEY=V1,V2,... such as machine.cpus=1,2,4"
            )
        vals = [parse_value(v.strip()) for v in _split_values(values)]
        if any(k == key for k, _ in grid):
            raise ScenarioError(f"--grid {key} given twice")
        grid.append((key, vals))
    return grid


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets and quotes (a value may be a TOML array or string)."""
    out, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += ch
    out.append(cur)
    return [v for v in out if v.strip()]


def grid_points(grid: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    keys = [k for k, _ in grid]
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in grid))
    ]


def run_point(path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Run one grid point in a worker; returns a JSON-able record (never raises)."""
    from sim.scenario.runner import run_scenario

    try:
        outcome = run_scenario(Path(path), dict(overrides))
    except ScenarioError as e:
        return {"overrides": overrides, "error": str(e)}
    except Exception as e:  # a bug: reported with its traceback, the sweep goes on
        return {
            "overrides": overrides,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }
    return {
        "overrides": overrides,
        "metrics": outcome.base.metrics,
        "variants": {n: v.metrics for n, v in outcome.variants.items()},
        "checks": [c.as_json() for c in outcome.checks],
        "faults": outcome.faults,
        "passed": outcome.checks_passed,
        "expect_faults": outcome.base.scenario.run.expect_faults,
    }


@dataclass
class SweepResult:
    grid: list[tuple[str, list[Any]]]
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def errors(self) -> list[dict]:
        return [p for p in self.points if "error" in p]

    @property
    def failed(self) -> list[dict]:
        return [
            p
            for p in self.points
            if "error" not in p and (not p["passed"] or (p["faults"] and not p["expect_faults"]))
        ]


def make_executor(jobs: int | None, dask: str | None) -> Executor:
    if dask:
        try:
            from distributed import Client
        except ImportError:
            raise ScenarioError(
                "--dask needs the optional Dask extra: pip install 'kbpf-sim[dask]'"
            ) from None
        try:
            client = Client(dask, timeout="10s")
        except OSError as e:
            raise ScenarioError(f"--dask {dask}: cannot reach the scheduler: {e}") from None
        return client.get_executor()
    return ProcessPoolExecutor(max_workers=jobs)


def run_sweep(
    path: Path,
    grid: list[tuple[str, list[Any]]],
    executor: Executor,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    points = grid_points(grid)
    futures = [executor.submit(run_point, str(path), p) for p in points]
    result = SweepResult(grid)
    for i, fut in enumerate(futures):
        result.points.append(fut.result())
        if progress:
            progress(i + 1, len(futures))
    return result


def write_sweep(result: SweepResult, out: Path, metrics: list[str] | None = None) -> list[Path]:
    """``points.csv`` (tidy: one row per point, run and metric), ``sweep.json`` and plots."""
    from sim.scenario import plots

    out.mkdir(parents=True, exist_ok=True)
    keys = [k for k, _ in result.grid]
    with open(out / "points.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*keys, "run", "metric", "value"])
        for p in result.points:
            if "error" in p:
                continue
            runs = [("base", p["metrics"]), *p["variants"].items()]
            for run, mets in runs:
                for name, value in sorted(mets.items()):
                    w.writerow([*(p["overrides"][k] for k in keys), run, name, value])
    (out / "sweep.json").write_text(
        json.dumps({"grid": result.grid, "points": result.points}, indent=2) + "\n"
    )
    ok = [p for p in result.points if "error" not in p]
    if not ok:
        return []
    wanted = metrics or default_sweep_metrics(ok)
    written = []
    for metric in wanted:
        written.append(
            plots.plot_sweep(metric, result.grid, ok, out / f"sweep_{_fname(metric)}.png")
        )
    return written


def default_sweep_metrics(points: list[dict]) -> list[str]:
    first = points[0]["metrics"]
    names = ["throughput", "sim.elapsed_ns"]
    names += sorted(
        k for k in first if k.endswith(".latency_ns.mean") or k.endswith(".throughput_per_s")
    )
    for c in points[0]["checks"]:
        names += [k for k in c["values"] if k in first and k not in names]
    return [n for n in names if n in first]


def _fname(metric: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in metric)
