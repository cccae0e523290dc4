"""The shipped scenarios: each one runs, shortened, through the command line and its checks pass.

Every scenario in ``scenarios/`` states its point as ``[[check]]`` comparisons between measured
figures (variants, counters against invocations, throughputs, latencies), so "its checks pass"
is the point being made, not merely "it ran".  The ``--set`` overrides only shorten a run (fewer
firings, shorter durations, smaller fills); they never change what a check compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

#: scenario file (relative to scenarios/) -> the --set overrides that shorten it.
SHORTENED: dict[str, list[str]] = {
    "counters.toml": ["source.0.count=200", "source.1.count=200", "source.2.count=200"],
    "percpu_layout.toml": ["source.1.duration_ns=10000"],
    "map_throughput.toml": ["source.1.duration_ns=50000"],
    "locking.toml": ["source.1.duration_ns=30000"],
    "hash_fill.toml": [
        "source.4.field.1.value=16384",
        "source.1.field.2.value=1",
        "source.3.field.2.value=1",
        "source.5.field.2.value=1",
    ],
    "lru_eviction.toml": ["source.0.count=300"],
    "ringbuf_vs_perfbuf.toml": ["source.0.duration_ns=150000"],
    "calibration/hash_lookup_vs_fill.toml": ["source.1.field.2.value=1"],
    "calibration/ringbuf_multi_producer.toml": ["source.0.duration_ns=100000"],
    "calibration/ringbuf_vs_perfbuf_single.toml": ["source.0.duration_ns=50000"],
}


def test_every_shipped_scenario_is_in_this_test():
    shipped = {str(p.relative_to(SCENARIOS)) for p in SCENARIOS.rglob("*.toml")}
    assert shipped == set(SHORTENED)


@pytest.mark.parametrize("name", sorted(SHORTENED))
def test_scenario_runs_shortened_and_makes_its_point(name, tmp_path):
    out = tmp_path / "out"
    sets = [arg for s in SHORTENED[name] for arg in ("--set", s)]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim.cli",
            "run",
            str(SCENARIOS / name),
            "--quiet",
            "--out",
            str(out),
            *sets,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=dict(os.environ, PYTHONHASHSEED="0"),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checks"], f"{name} has no [[check]]"
    failed = [c for c in summary["checks"] if not c["passed"]]
    assert not failed, failed


def test_percpu_value_syscall_view_is_padded_per_possible_cpu():
    """percpu_layout.toml's other half: its 4-byte per-CPU value reaches user space as one
    8-byte slot per possible CPU (round_up(value_size, 8)), this CPU's 4 bytes then padding."""
    from sim import Machine

    m = Machine(cpus=4, seed=0)
    obj = m.load_object(SCENARIOS / "progs" / "percpu_view.bpf.o")
    hits = obj.maps["hits"]
    for _ in range(3):
        m.run_program(obj.programs["count"], cpu=2)
    key = (0).to_bytes(4, "little")
    raw = hits.lookup(key)
    assert hits.value_size == 4 and len(raw) == 4 * 8
    slots = [raw[i * 8 : (i + 1) * 8] for i in range(4)]
    assert [int.from_bytes(s[:4], "little") for s in slots] == [0, 0, 3, 0]
    assert all(s[4:] == b"\0\0\0\0" for s in slots)
    per_cpu = [int.from_bytes(v, "little") for v in hits.lookup_percpu(key)]
    assert per_cpu == [0, 0, 3, 0]


def test_scenario_programs_match_their_sources():
    """The committed .bpf.o files are what the Makefile builds from the .bpf.c beside them."""
    if not _have("clang-14"):
        pytest.skip("clang-14 is not installed")
    r = subprocess.run(
        ["make", "-s", "-C", str(SCENARIOS / "progs"), "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _have(tool: str) -> bool:
    from shutil import which

    return which(tool) is not None
