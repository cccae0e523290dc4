"""The ``kbpf-sim`` command.

Bad input of any kind ends with a one-paragraph error naming the file and what is wrong, exit 2,
and no traceback; a failing ``[[check]]`` exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kbpf.errors import BpfError


class UsageFailure(click.ClickException):
    """An error in what the user gave us: printed without a traceback, exit 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"kbpf-sim: error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kbpf-sim")
def main() -> None:
    """kbpf-sim: eBPF maps and helpers on a simulated multi-CPU machine."""


def _parse_sets(pairs: tuple[str, ...]) -> dict:
    from sim.scenario.schema import parse_value

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageFailure(f"--set {pair!r}: expected KEY=VALUE, such as machine.cpus=4")
        out[key.strip()] = parse_value(value.strip())
    return out


@main.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Results folder (default: results/<scenario stem>); overwritten.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a dotted scenario key with a TOML value (repeatable).",
)
@click.option("--seed", type=int, default=None, help="Override machine.seed.")
@click.option("--quiet", is_flag=True, help="No progress bar or table; errors only.")
def run(
    scenario: Path, out: Path | None, sets: tuple[str, ...], seed: int | None, quiet: bool
) -> None:
    """Run SCENARIO.toml and write summary, metrics and plots."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sim.scenario.results import write_results
    from sim.scenario.runner import run_scenario
    from sim.scenario.schema import ScenarioError

    overrides = _parse_sets(sets)
    if seed is not None:
        overrides["machine.seed"] = seed
    console = Console(stderr=False)
    out = out or Path("results") / scenario.stem
    try:
        if quiet:
            outcome = run_scenario(scenario, overrides)
        else:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("invocations"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar:
                tasks: dict[str, int] = {}

                def progress(run: str, done: int, total: int) -> None:
                    if run not in tasks:
                        tasks[run] = bar.add_task(f"{scenario.stem} [{run}]", total=total)
                    bar.update(tasks[run], completed=done, total=total)

                outcome = run_scenario(scenario, overrides, progress)
        plots = write_results(outcome, out)
    except ScenarioError as e:
        raise UsageFailure(str(e)) from None
    except BpfError as e:
        raise UsageFailure(f"{scenario}: {e}") from None
    if not quiet:
        _print_summary(console, outcome, out, plots)
    if outcome.faults and not outcome.base.scenario.run.expect_faults:
        raise UsageFailure(
            f"{scenario}: {len(outcome.faults)} program fault(s); the first: {outcome.faults[0]}"
        )
    if not outcome.checks_passed:
        sys.exit(1)


def _print_summary(console, outcome, out: Path, plots) -> None:
    from rich.table import Table

    res = outcome.base
    title = res.scenario.title or res.path.stem
    table = Table(title=f"{title} — {res.machine.ncpus} CPUs, seed {res.scenario.machine.seed}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    shown = [k for k in res.metrics if not k.startswith("map.")][:40]
    for k in shown:
        v = res.metrics[k]
        table.add_row(k, f"{v:,.1f}" if isinstance(v, float) else f"{v:,}")
    console.print(table)
    for name, (keys, vals) in res.map_values.items():
        pairs = ", ".join(f"[{k}]={v}" for k, v in zip(keys[:8], vals[:8], strict=True))
        more = f" … ({len(keys)} keys)" if len(keys) > 8 else ""
        console.print(f"map [bold]{name}[/bold]: {pairs or '(empty)'}{more}")
    for name, var in outcome.variants.items():
        console.print(
            f"variant [bold]{name}[/bold]: throughput {var.metrics['throughput']:,.0f}/s, "
            f"elapsed {var.metrics['sim.elapsed_ns']:,} ns"
        )
    for c in outcome.checks:
        mark = "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]"
        vals = ", ".join(f"{k}={v:g}" for k, v in c.values.items())
        console.print(f"{mark} {c.check}   ({vals})")
    console.print(
        f"results in {out}/ (plots: {', '.join(p.name for p in plots)}); "
        f"simulated {res.metrics['sim.elapsed_ns']:,} ns in {outcome.wall_s:.2f} s wall"
    )


@main.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option(
    "--grid",
    "grids",
    multiple=True,
    required=True,
    metavar="KEY=V1,V2,...",
    help="A dotted scenario key and its values (TOML literals); repeat for more axes.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: the number of CPUs).",
)
@click.option(
    "--dask",
    "dask_address",
    default=None,
    metavar="ADDRESS",
    help="Run the points on a Dask cluster (scheduler address) instead of local processes.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Results folder (default: results/<scenario stem>-sweep); overwritten.",
)
@click.option(
    "--metric", "metrics", multiple=True, help="Metric to plot against the grid (repeatable)."
)
def sweep(
    scenario: Path,
    grids: tuple[str, ...],
    jobs: int | None,
    dask_address: str | None,
    out: Path | None,
    metrics: tuple[str, ...],
) -> None:
    """Run SCENARIO.toml once per grid point and plot metrics against the grid."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sim.scenario.schema import ScenarioError, load_scenario
    from sim.scenario.sweep import grid_points, make_executor, parse_grid, run_sweep, write_sweep

    console = Console()
    out = out or Path("results") / f"{scenario.stem}-sweep"
    try:
        grid = parse_grid(grids)
        for point in grid_points(grid):  # every point must validate before anything runs
            load_scenario(scenario, point)
        executor = make_executor(jobs, dask_address)
        with (
            executor,
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("points"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar,
        ):
            task = bar.add_task(scenario.stem, total=len(grid_points(grid)))
            result = run_sweep(scenario, grid, executor, lambda d, t: bar.update(task, completed=d))
        plots = write_sweep(result, out, list(metrics) or None)
    except ScenarioError as e:
        raise UsageFailure(str(e)) from None
    console.print(
        f"{len(result.points)} points: {len(result.points) - len(result.errors) - len(result.failed)} passed, "
        f"{len(result.failed)} failed checks, {len(result.errors)} errors; results in {out}/ "
        f"(points.csv, sweep.json, {len(plots)} plots)"
    )
    for p in result.errors:
        console.print(f"[red]error[/red] at {p['overrides']}: {p['error']}")
    if result.errors:
        sys.exit(2)
    if result.failed:
        sys.exit(1)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def conformance(paths: tuple[Path, ...]) -> None:
    """Run bpf_conformance .data files (or folders of them) on the engine."""
    from sim.conformance import main as conformance_main

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UsageFailure(f"{missing[0]}: no such file or folder")
    sys.exit(conformance_main([str(p) for p in paths]))


@main.command()
@click.argument("obj", metavar="OBJECT.bpf.o", type=click.Path(path_type=Path))
def inspect(obj: Path) -> None:
    """List an eBPF object's maps, programs and sections, and disassemble each program
    after relocation (map references by name)."""
    from sim.user.loader import BpfObject, inspect_text

    try:
        opened = BpfObject.open(obj)
    except BpfError as e:
        raise UsageFailure(e.strerror) from None
    click.echo(inspect_text(opened), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
