"""The kbpf-sim command: runs scenarios, and refuses bad input with exit 2 and no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def kbpf_sim(*args, cwd=None):
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=120,
    )


def test_counters_scenario_runs_writes_results_and_passes_its_checks(tmp_path):
    out = tmp_path / "res"
    r = kbpf_sim(
        "run",
        "scenarios/counters.toml",
        "--out",
        str(out),
        "--set",
        "source.0.count=300",
        "--set",
        "source.1.count=300",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checks"] and all(c["passed"] for c in summary["checks"])
    assert set(summary["checks"][0]) == {"check", "values", "passed"}
    # Lost updates are real: fewer than the 600 increments made, and atomics lose none.
    assert summary["maps"]["atomic"]["0"] == 600
    assert summary["maps"]["plain"]["0"] < 600
    for name in ("completions.png", "latency.png", "run-info.json", "metrics.csv", "scenario.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "completions.png").read_bytes()[:4] == b"\x89PNG"


def test_same_scenario_and_seed_give_identical_summaries_across_hash_seeds(tmp_path):
    outs = []
    for hs in ("1", "2"):
        out = tmp_path / hs
        env = dict(os.environ, PYTHONHASHSEED=hs)
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "sim.cli",
                "run",
                "scenarios/counters.toml",
                "--quiet",
                "--out",
                str(out),
                "--set",
                "source.0.count=100",
                "--set",
                "source.1.count=100",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        outs.append((out / "summary.json").read_text())
    assert outs[0] == outs[1]


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[machine]\ncpus = 2\nbogus = 1\n", "machine.bogus: unknown key"),
        ("[[program]]\nname = 'p'\nasm = 'missing.asm'\n", "cannot read"),
        ("[[program]]\nname = 'p'\nasm = 'bad.asm'\n", "bad.asm: line 1"),
        ("[machine]\ncpus = 100\n", "exceeds preset"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph_and_no_traceback(tmp_path, text, needle):
    write(tmp_path, "bad.asm", "frobnicate %r0\n")
    scn = write(tmp_path, "s.toml", text)
    r = kbpf_sim("run", str(scn), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and needle in r.stderr and str(scn) in r.stderr


def test_a_failing_check_exits_1(tmp_path):
    (tmp_path / "p.asm").write_text("mov %r0, 0\nexit\n")
    scn = write(
        tmp_path,
        "s.toml",
        "[[program]]\nname='p'\nasm='p.asm'\n[[source]]\nprogram='p'\ncount=2\n"
        "[[check]]\nexpect = 'invocations > 100'\n",
    )
    r = kbpf_sim("run", str(scn), "--quiet", "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["checks"] == [
        {"check": "invocations > 100", "values": {"invocations": 4}, "passed": False}
    ]


def test_program_faults_exit_2_naming_the_fault_unless_expected(tmp_path):
    (tmp_path / "p.asm").write_text("lddw %r1, 0x10\nldxw %r0, [%r1]\nexit\n")
    body = "[[program]]\nname='p'\nasm='p.asm'\n[[source]]\nprogram='p'\ncount=1\n"
    r = kbpf_sim(
        "run", str(write(tmp_path, "s.toml", body)), "--quiet", "--out", str(tmp_path / "o")
    )
    assert r.returncode == 2 and "0x10" in r.stderr and "Traceback" not in r.stderr
    r = kbpf_sim(
        "run",
        str(write(tmp_path, "t.toml", body + "[run]\nexpect_faults = true\n")),
        "--quiet",
        "--out",
        str(tmp_path / "o2"),
    )
    assert r.returncode == 0, r.stderr
