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
from sim.scenario.runner import RunResult


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("kbpf-sim", "simpy", "numpy", "matplotlib", "pyelftools", "pydantic", "click", "rich"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_results(res: RunResult, out: Path, resolved: dict) -> list[Path]:
    """Write everything into ``out`` (created, overwritten); return the plot files written."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.json").write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    summary = {
        "scenario": res.path.name,
        "title": res.scenario.title,
        "seed": res.scenario.machine.seed,
        "cpus": res.machine.ncpus,
        "metrics": dict(sorted(res.metrics.items())),
        "maps": {k: dict(zip(*v, strict=True)) for k, v in sorted(res.map_values.items())},
        "checks": [c.as_json() for c in res.checks],
        "faults": res.faults,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    info = {"versions": _versions(), "wall_time_s": round(res.wall_s, 3),
            "host": {"platform": platform.platform(), "machine": platform.machine()},
            "argv": sys.argv}
    (out / "run-info.json").write_text(json.dumps(info, indent=2) + "\n")
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "value"])
        for k, v in sorted(res.metrics.items()):
            w.writerow([k, v])
    written = []
    specs = list(res.scenario.plot) or []
    if not specs:
        from sim.scenario.schema import PlotSpec
        specs = [PlotSpec(kind="completions")]
    for i, spec in enumerate(specs):
        fname = spec.file or (f"{spec.kind}.png" if spec.kind != "map_values" else f"map_{spec.map}.png")
        if not fname.endswith(".png"):
            fname += ".png"
        target = out / fname
        if target in written:
            target = out / f"{Path(fname).stem}_{i}.png"
        if spec.kind == "completions":
            written.append(plots.plot_completions(res.records, res.machine.ncpus, target, spec.title))
        elif spec.kind == "latency":
            written.append(plots.plot_latency(res.records, target, spec.title))
        else:
            keys, vals = res.map_values.get(spec.map, ([], []))
            written.append(plots.plot_map_values(spec.map, keys, vals, target, spec.title))
    return written
