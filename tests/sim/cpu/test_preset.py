"""Cost presets: sourced TOML values, converted once to integer picoseconds, overridable."""

import pytest

from sim.cpu.preset import (
    CHOICES,
    COUNT_KEYS,
    UNIT_SUFFIXES,
    Preset,
    available_presets,
    check_cpus,
    preset_text,
)


def _value_comments(name: str) -> dict[tuple[str, str], str]:
    """Each ``key = value`` line of a preset file, by (table, key): its comment, with the
    comment-only lines that continue it."""
    out: dict[tuple[str, str], str] = {}
    table, last = "", None
    for raw in preset_text(name).splitlines():
        line = raw.strip()
        if line.startswith("[") and "]" in line:
            table, last = line[1 : line.index("]")], None
        elif line.startswith("#"):
            if last is not None and raw.startswith(" "):  # an indented continuation
                out[last] += " " + line.lstrip("# ")
            else:
                last = None
        elif "=" in line:
            key = line.split("=", 1)[0].strip()
            last = (table, key)
            out[last] = line.split("#", 1)[1].strip() if "#" in line else ""
    return out


def test_every_preset_value_has_a_unit_and_a_source():
    """Each value names its unit in its key (or is a count or a listed choice) and, in its
    comment, a source or "[chosen: reason]"."""
    for name in available_presets():
        comments = _value_comments(name)
        for (table, key), comment in comments.items():
            if not table:
                continue  # name, description, inherits
            unit = key.endswith(UNIT_SUFFIXES) or key in COUNT_KEYS or (table, key) in CHOICES
            assert unit, f"{name}: {table}.{key} names no unit"
            assert "[chosen: " in comment or ";" in comment, (
                f"{name}: {table}.{key} states neither a source ('unit; source') nor "
                f"'[chosen: reason]': {comment!r}"
            )


def test_cycles_become_picoseconds_at_the_preset_clock():
    p = Preset.resolve("default", freq_ghz=3.0)
    assert p.cycles_ps(1) == 333 and p.get_ps("mem", "l1_hit_cycles") == 1333
    assert p.get_ps("coherence", "same_l3_transfer_ns") == 47000
    assert Preset.resolve("default", freq_ghz=2.0).get_ps("insn", "alu_cycles") == 500


def test_single_values_can_be_overridden():
    p = Preset.resolve({"preset": "default", "mem.l1_hit_cycles": 5, "same_l3_transfer_ns": 100})
    assert p.data["mem"]["l1_hit_cycles"] == 5
    assert p.get_ps("coherence", "same_l3_transfer_ns") == 100_000
    ticket = Preset.resolve({"preset": "default", "lock.kind": "ticket"})
    assert ticket.get("lock", "kind") == "ticket"
    with pytest.raises(ValueError, match="expected one of"):
        Preset.resolve({"preset": "default", "lock.kind": "mcs"})
    with pytest.raises(ValueError, match="expected one of"):
        Preset.resolve({"preset": "default", "mem.llc_inclusive": 1})
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
