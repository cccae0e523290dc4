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
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: results/<scenario stem>); overwritten.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a dotted scenario key with a TOML value (repeatable).")
@click.option("--seed", type=int, default=None, help="Override machine.seed.")
@click.option("--quiet", is_flag=True, help="No progress bar or table; errors only.")
def run(scenario: Path, out: Path | None, sets: tuple[str, ...], seed: int | None, quiet: bool) -> None:
    """Run SCENARIO.toml and write summary, metrics and plots."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sim.scenario.results import write_results
    from sim.scenario.runner import run_scenario
    from sim.scenario.schema import ScenarioError, load_scenario

    overrides = _parse_sets(sets)
    if seed is not None:
        overrides["machine.seed"] = seed
    console = Console(stderr=False)
    try:
        scn, raw = load_scenario(scenario, overrides)
        out = out or Path("results") / scenario.stem
        if quiet or not scn.run.progress:
            res = run_scenario(scn, scenario)
        else:
            with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("invocations"), TimeElapsedColumn(), console=console,
                          transient=True) as bar:
                task = bar.add_task(scenario.stem, total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                res = run_scenario(scn, scenario, progress)
        plots = write_results(res, out, raw)
    except ScenarioError as e:
        raise UsageFailure(str(e)) from None
    except BpfError as e:
        raise UsageFailure(f"{scenario}: {e}") from None
    if not quiet:
        _print_summary(console, res, out, plots)
    if res.faults and not scn.run.expect_faults:
        raise UsageFailure(f"{scenario}: {len(res.faults)} program fault(s); the first: {res.faults[0]}")
    if not res.checks_passed:
        sys.exit(1)


def _print_summary(console, res, out: Path, plots) -> None:
    from rich.table import Table

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
    for c in res.checks:
        mark = "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]"
        vals = ", ".join(f"{k}={v:g}" for k, v in c.values.items())
        console.print(f"{mark} {c.check}   ({vals})")
    console.print(f"results in {out}/ (plots: {', '.join(p.name for p in plots)}); "
                  f"simulated {res.metrics['sim.elapsed_ns']:,} ns in {res.wall_s:.2f} s wall")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def conformance(paths: tuple[Path, ...]) -> None:
    """Run bpf_conformance .data files (or folders of them) on the engine."""
    from sim.conformance import main as conformance_main

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UsageFailure(f"{missing[0]}: no such file or folder")
    sys.exit(conformance_main([str(p) for p in paths]))


if __name__ == "__main__":  # pragma: no cover
    main()
