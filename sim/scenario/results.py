"""The results folder of a run: resolved scenario, summary, run info, metrics and plots.

``summary.json`` holds simulated figures only, so identical scenario and seed give an identical
file; wall time, versions and the host go to ``run-info.json``.
"""

from __future__ import annotations

import csv
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

from sim.scenario import plots
from sim.scenario.runner import RunResult, ScenarioRun


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in (
        "kbpf-sim",
        "simpy",
        "numpy",
        "matplotlib",
        "pyelftools",
        "pydantic",
        "click",
        "rich",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _run_json(res: RunResult) -> dict:
    return {
        "metrics": dict(sorted(res.metrics.items())),
        "maps": {k: dict(zip(*v, strict=True)) for k, v in sorted(res.map_values.items())},
        "faults": res.faults,
    }


def write_results(outcome: ScenarioRun, out: Path) -> list[Path]:
    """Write everything into ``out`` (created, overwritten); return the plot files written."""
    res = outcome.base
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.json").write_text(
        json.dumps(outcome.resolved, indent=2, sort_keys=True) + "\n"
    )
    summary = {
        "scenario": res.path.name,
        "title": res.scenario.title,
        "seed": res.scenario.machine.seed,
        "cpus": res.machine.ncpus,
        **_run_json(res),
        "variants": {name: _run_json(v) for name, v in outcome.variants.items()},
        "checks": [c.as_json() for c in outcome.checks],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    info = {
        "versions": _versions(),
        "wall_time_s": round(outcome.wall_s, 3),
        "wall_time_s_per_run": {
            "base": round(res.wall_s, 3),
            **{k: round(v.wall_s, 3) for k, v in outcome.variants.items()},
        },
        "host": {"platform": platform.platform(), "machine": platform.machine()},
        "argv": sys.argv,
    }
    (out / "run-info.json").write_text(json.dumps(info, indent=2) + "\n")
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "metric", "value"])
        for run_name, run in [("base", res), *outcome.variants.items()]:
            for k, v in sorted(run.metrics.items()):
                w.writerow([run_name, k, v])
    written: list[Path] = []
    specs = list(res.scenario.plot)
    if not specs:
        from sim.scenario.schema import PlotSpec

        specs = [PlotSpec(kind="completions")]
    for i, spec in enumerate(specs):
        default = {
            "map_values": f"map_{spec.map}.png",
            "variants": f"variants_{spec.metric}.png",
            "ring": f"ring_{spec.consumer}.png",
            "percpu": f"percpu_{spec.map}.png",
        }
        fname = spec.file or default.get(spec.kind, f"{spec.kind}.png")
        if not fname.endswith(".png"):
            fname += ".png"
        target = out / fname
        if target in written:
            target = out / f"{Path(fname).stem}_{i}.png"
        if spec.kind == "completions":
            written.append(
                plots.plot_completions(res.records, res.machine.ncpus, target, spec.title)
            )
        elif spec.kind == "latency":
            written.append(plots.plot_latency(res.records, target, spec.title))
        elif spec.kind == "map_values":
            keys, vals = res.map_values.get(spec.map, ([], []))
            written.append(plots.plot_map_values(spec.map, keys, vals, target, spec.title))
        elif spec.kind == "variants":
            runs = [("base", res), *outcome.variants.items()]
            values = [run.metrics.get(spec.metric, float("nan")) for _, run in runs]
            written.append(
                plots.plot_variants(spec.metric, [n for n, _ in runs], values, target, spec.title)
            )
        elif spec.kind == "timeline":
            written.append(
                plots.plot_timeline(
                    res.records, res.timeline, res.machine.ncpus, target, spec.title
                )
            )
        elif spec.kind == "ring":
            written.append(
                plots.plot_ring(
                    spec.consumer, res.consumers.get(spec.consumer, []), target, spec.title
                )
            )
        elif spec.kind == "locks":
            written.append(plots.plot_locks(res.locks, target, spec.title))
        elif spec.kind == "percpu":
            written.append(
                plots.plot_percpu(spec.map, res.percpu_values.get(spec.map, []), target, spec.title)
            )
    return written
