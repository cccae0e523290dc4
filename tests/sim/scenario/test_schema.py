"""The scenario schema is strict: every error names the file, the key path and what was expected."""

import pytest

from sim.scenario.schema import ScenarioError, load_scenario, parse_value

BASE = """
[machine]
cpus = 2

[[map]]
name = "counts"
type = "array"
key_size = 4
value_size = 8
max_entries = 1

[[program]]
name = "p"
asm = "p.asm"

[[source]]
program = "p"
count = 3
"""


def write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_valid_scenario_loads(tmp_path):
    scn, raw = load_scenario(write(tmp_path, BASE))
    assert scn.machine.cpus == 2 and scn.source[0].count == 3 and raw["machine"]["cpus"] == 2


@pytest.mark.parametrize(
    "extra, where, what",
    [
        ("[machine]\ncpus = 2\ncpu = 3\n", "machine.cpu", "unknown key"),
        ("[machine]\ncpus = 0\n", "machine.cpus", "greater than or equal to 1"),
        ("[machine]\ncpus = 'two'\n", "machine.cpus", "integer"),
        ("[machine]\nlocking = 'rcu'\n", "machine.locking", "'linux' or 'kbpf'"),
        ("[[map]]\nname = 'm'\ntype = 'hashh'\n", "map[0].type", "unknown map type 'hashh'"),
        ("[[program]]\nname = 'p'\n", "program[0]", "exactly one of 'asm'"),
        (
            "[[source]]\nprogram = 'nope'\ncount = 1\n",
            "source[0].program",
            "no program named 'nope'",
        ),
        ("[[source]]\nprogram = 'p'\n", "source[0]", "give 'count'"),
        ("[[plot]]\nkind = 'pie'\n", "plot[0].kind", "'completions'"),
        ("[flavour]\nx = 1\n", "flavour", "unknown key"),
    ],
)
def test_bad_scenarios_are_refused_with_file_path_and_reason(tmp_path, extra, where, what):
    p = write(tmp_path, extra)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    msg = str(exc.value)
    assert str(p) in msg and where in msg and what in msg


def test_source_on_a_missing_cpu_is_refused(tmp_path):
    p = write(tmp_path, BASE.replace("count = 3", "count = 3\ncpus = [0, 5]"))
    with pytest.raises(ScenarioError, match="CPU 5 does not exist on a 2-CPU machine"):
        load_scenario(p)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "absent.toml")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(write(tmp_path, "[machine\n"))


def test_set_overrides_use_dotted_paths_and_toml_values(tmp_path):
    scn, _ = load_scenario(write(tmp_path, BASE), {"machine.cpus": 4, "source.0.count": 7})
    assert scn.machine.cpus == 4 and scn.source[0].count == 7
    assert (
        parse_value("4") == 4 and parse_value('"kbpf"') == "kbpf" and parse_value("kbpf") == "kbpf"
    )
    assert parse_value("[0, 1]") == [0, 1]
    with pytest.raises(ScenarioError, match="no element 3"):
        load_scenario(write(tmp_path, BASE), {"source.3.count": 1})
