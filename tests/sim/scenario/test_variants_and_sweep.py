"""Variants run after the base with the same seed; sweeps run one independent run per point."""

import json
from concurrent.futures import ProcessPoolExecutor

import pytest

from sim.scenario.results import write_results
from sim.scenario.runner import run_scenario
from sim.scenario.schema import ScenarioError
from sim.scenario.sweep import grid_points, parse_grid, run_point, run_sweep, write_sweep

PROGRAM = """
    stw [%r10-4], 0
    mov %r2, %r10
    add %r2, -4
    lddw %r1, map_fd counts
    call 1
    jeq %r0, 0, out
    mov %r1, 1
    lock add [%r0], %r1
out:
    mov %r0, 0
    exit
"""

SCENARIO = """
[machine]
cpus = 2

[[map]]
name = "counts"
type = "{type}"
key_size = 4
value_size = 8
max_entries = 1

[[program]]
name = "inc"
asm = "inc.asm"

[[source]]
program = "inc"
count = 50

[[variant]]
name = "four"
set = {{ "machine.cpus" = 4 }}

[[plot]]
kind = "variants"
metric = "invocations"

[[check]]
expect = "variant.four.invocations == 2 * base.invocations"
"""


@pytest.fixture
def scenario(tmp_path):
    (tmp_path / "inc.asm").write_text(PROGRAM)
    p = tmp_path / "s.toml"
    p.write_text(SCENARIO.format(type="array"))
    return p


def test_variants_run_with_the_same_seed_and_checks_compare_them(scenario, tmp_path):
    outcome = run_scenario(scenario)
    assert outcome.variants["four"].machine.ncpus == 4
    assert outcome.base.metrics["map.counts.value.0"] == 100
    assert outcome.variants["four"].metrics["map.counts.value.0"] == 200
    assert outcome.checks_passed and outcome.checks[0].values == {
        "variant.four.invocations": 200,
        "base.invocations": 100,
    }
    plots = write_results(outcome, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["variants"]["four"]["metrics"]["invocations"] == 200
    assert [p.name for p in plots] == ["variants_invocations.png"]


def test_a_bad_variant_override_names_the_variant(tmp_path, scenario):
    scenario.write_text(
        SCENARIO.format(type="array").replace('"machine.cpus" = 4', '"machine.cpuz" = 4')
    )
    with pytest.raises(ScenarioError, match=r"variant\[0\] \(four\).*machine.cpuz: unknown key"):
        run_scenario(scenario)


def test_grid_parsing_and_points():
    grid = parse_grid(("machine.cpus=1,2", 'machine.locking="linux","kbpf"', "x=[1, 2],[3]"))
    assert grid == [
        ("machine.cpus", [1, 2]),
        ("machine.locking", ["linux", "kbpf"]),
        ("x", [[1, 2], [3]]),
    ]
    assert len(grid_points(grid)) == 8
    with pytest.raises(ScenarioError, match="expected KEY=V1,V2"):
        parse_grid(("machine.cpus",))


def test_a_sweep_gives_the_same_figures_as_single_runs_whatever_the_worker(scenario, tmp_path):
    grid = parse_grid(("machine.cpus=1,3",))
    with ProcessPoolExecutor(max_workers=2) as ex:
        result = run_sweep(scenario, grid, ex)
    assert [p["metrics"]["map.counts.value.0"] for p in result.points] == [50, 150]
    alone = run_point(str(scenario), {"machine.cpus": 3})
    assert alone["metrics"] == result.points[1]["metrics"]
    plots = write_sweep(result, tmp_path / "sw")
    assert (tmp_path / "sw" / "points.csv").read_text().startswith("machine.cpus,run,metric,value")
    assert any(p.name == "sweep_throughput.png" for p in plots)


def test_a_point_that_errs_is_reported_not_raised(scenario):
    bad = run_point(str(scenario), {"machine.cpus": 0})
    assert "error" in bad and "machine.cpus" in bad["error"]


def test_sweep_on_a_local_dask_cluster(scenario):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        result = run_sweep(scenario, parse_grid(("machine.cpus=1,2",)), client.get_executor())
    assert [p["metrics"]["invocations"] for p in result.points] == [50, 100]
