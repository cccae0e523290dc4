"""Cost presets: TOML files next to this module, selectable by name, overridable value by value.

A preset is data with sources (see ``presets/default.toml``): the topology, the clock, the cost
of each instruction class, memory, locks, per-unit work and kernel entry.  Units are part of the
key names (``_cycles``, ``_ns``, ``_ps``, ``_ghz``); :class:`Preset` converts everything to
integer picoseconds once, so hot paths only add integers.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

PRESET_DIR = "presets"


def available_presets() -> list[str]:
    """Names of the shipped presets."""
    root = resources.files("sim.cpu").joinpath(PRESET_DIR)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset_data(name: str) -> dict[str, Any]:
    """The raw TOML tables of preset ``name``; a ``ValueError`` naming the choices if unknown."""
    names = available_presets()
    if name not in names:
        raise ValueError(f"unknown cost preset {name!r}; choose one of {', '.join(names)}")
    text = resources.files("sim.cpu").joinpath(PRESET_DIR).joinpath(f"{name}.toml").read_text()
    return tomllib.loads(text)


def _apply_override(data: dict[str, Any], key: str, value: Any, preset: str) -> None:
    """Set ``table.key`` (or a unique bare ``key``) in the preset data, refusing unknown keys."""
    if "." in key:
        table, _, leaf = key.rpartition(".")
        tbl = data.get(table)
        if not isinstance(tbl, dict) or leaf not in tbl:
            raise ValueError(f"cost_model override {key!r}: preset {preset!r} has no such value")
        target, leaf_key = tbl, leaf
    else:
        hits = [t for t in data.values() if isinstance(t, dict) and key in t]
        if len(hits) != 1:
            what = "no such value" if not hits else "an ambiguous name; write table.key"
            raise ValueError(f"cost_model override {key!r}: {what} in preset {preset!r}")
        target, leaf_key = hits[0], key
    old = target[leaf_key]
    if isinstance(old, bool) or not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"cost_model override {key!r}: expected a number, got {value!r}")
    if value < 0:
        raise ValueError(f"cost_model override {key!r}: must not be negative, got {value!r}")
    target[leaf_key] = value


@dataclass(frozen=True)
class Preset:
    """A resolved preset: its name, raw data, and every cost in integer picoseconds."""

    name: str
    data: dict[str, Any] = field(repr=False)
    freq_ghz: float
    max_cpus: int

    @classmethod
    def resolve(cls, cost_model: str | Mapping[str, Any] = "default",
                freq_ghz: float | None = None) -> Preset:
        """Build from a preset name, or a mapping ``{"preset": name, key: value, ...}`` whose other
        keys override single values (``"mem.l1_hit_cycles": 5`` or an unambiguous ``"l1_hit_cycles"``)."""
        if isinstance(cost_model, str):
            name, overrides = cost_model, {}
        elif isinstance(cost_model, Mapping):
            overrides = dict(cost_model)
            name = overrides.pop("preset", "default")
            if not isinstance(name, str):
                raise ValueError(f"cost_model preset must be a name, got {name!r}")
        else:
            raise ValueError(f"cost_model must be a preset name or a mapping, got {cost_model!r}")
        data = copy.deepcopy(load_preset_data(name))
        for key, value in overrides.items():
            _apply_override(data, key, value, name)
        freq = float(freq_ghz if freq_ghz is not None else data["cpu"]["freq_ghz"])
        if not 0.1 <= freq <= 10.0:
            raise ValueError(f"freq_ghz must be between 0.1 and 10, got {freq}")
        return cls(name=name, data=data, freq_ghz=freq, max_cpus=int(data["topology"]["max_cpus"]))

    # -- unit conversion -------------------------------------------------------------------
    def cycles_ps(self, cycles: float) -> int:
        """Picoseconds for ``cycles`` at this preset's clock (rounded to the nearest ps)."""
        return round(cycles * 1000.0 / self.freq_ghz)

    def get_ps(self, table: str, key: str) -> int:
        """A value in picoseconds, whatever unit its key names."""
        value = self.data[table][key]
        if key.endswith("_cycles"):
            return self.cycles_ps(value)
        if key.endswith("_ns"):
            return round(value * 1000)
        if key.endswith("_ps"):
            return round(value)
        raise KeyError(f"{table}.{key} is not a time")


def check_cpus(preset: Preset, cpus: int) -> None:
    """Refuse a CPU count the preset's topology cannot hold."""
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        raise ValueError(f"cpus must be a positive integer, got {cpus!r}")
    if cpus > preset.max_cpus:
        raise ValueError(f"cpus={cpus} exceeds preset {preset.name!r}'s maximum of {preset.max_cpus}")
