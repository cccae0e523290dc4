"""Cost presets: sourced TOML values, converted once to integer picoseconds, overridable."""

import pytest

from sim.cpu.preset import Preset, available_presets, check_cpus, load_preset_data


def test_every_preset_value_has_a_unit_and_a_source():
    for name in available_presets():
        text_tables = load_preset_data(name)
        for table, values in text_tables.items():
            if not isinstance(values, dict):
                continue
            for key in values:
                assert key.endswith(("_cycles", "_ns", "_ps", "_ghz", "_cpus")) or key in (
                    "sockets", "smt"), f"{name}: {table}.{key} names no unit"


def test_cycles_become_picoseconds_at_the_preset_clock():
    p = Preset.resolve("default", freq_ghz=3.0)
    assert p.cycles_ps(1) == 333 and p.get_ps("mem", "l1_hit_cycles") == 1333
    assert p.get_ps("lock", "handoff_ns") == 47000
    assert Preset.resolve("default", freq_ghz=2.0).get_ps("insn", "alu_cycles") == 500


def test_single_values_can_be_overridden():
    p = Preset.resolve({"preset": "default", "mem.l1_hit_cycles": 5, "handoff_ns": 100})
    assert p.data["mem"]["l1_hit_cycles"] == 5 and p.get_ps("lock", "handoff_ns") == 100_000
    with pytest.raises(ValueError, match="no such value"):
        Preset.resolve({"preset": "default", "mem.l9_hit_cycles": 5})
    with pytest.raises(ValueError, match="expected a number"):
        Preset.resolve({"preset": "default", "alu_cycles": "fast"})
    with pytest.raises(ValueError, match="unknown cost preset"):
        Preset.resolve("pentium")


def test_cpu_count_is_bounded_by_the_topology():
    p = Preset.resolve("default")
    check_cpus(p, p.max_cpus)
    with pytest.raises(ValueError, match="maximum"):
        check_cpus(p, p.max_cpus + 1)
    with pytest.raises(ValueError, match="positive"):
        check_cpus(p, 0)
