"""Cost presets: TOML files next to this module, selectable by name, overridable value by value.

A preset is data with sources (see ``presets/default.toml``): the topology, the clock, the cost
of each instruction class, the memory hierarchy and its coherence costs, locks, per-unit work
and kernel entry.  Units are part of the key names (``_cycles``, ``_ns``, ``_ps``, ``_ghz``,
``_kib``; counts are ``sockets`` or ``..._per_...``); :class:`Preset` converts times to integer
picoseconds once, so hot paths only add integers.  A few values are choices, not quantities
(:data:`CHOICES`: the spinlock kind, whether the LLC is inclusive).

A preset file may say ``inherits = "other"``: it starts from that preset's tables and replaces
the values it names, so a machine preset states only what differs from the generic one (each
value keeps the source written beside it, in whichever file holds it).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from sim.cpu.topology import Topology

PRESET_DIR = "presets"

#: Suffixes that name a value's unit, and the count keys (their unit is in the name).
UNIT_SUFFIXES = ("_cycles", "_ns", "_ps", "_ghz", "_kib", "_per_socket", "_per_core")
COUNT_KEYS = ("sockets",)
#: Values that are a choice among named alternatives rather than a quantity.
CHOICES: dict[tuple[str, str], tuple] = {
    ("lock", "kind"): ("queued", "ticket"),
    ("mem", "llc_inclusive"): (True, False),
}


def available_presets() -> list[str]:
    """Names of the shipped presets."""
    root = resources.files("sim.cpu").joinpath(PRESET_DIR)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """The TOML source of preset ``name`` as shipped (without what it inherits)."""
    names = available_presets()
    if name not in names:
        raise ValueError(f"unknown cost preset {name!r}; choose one of {', '.join(names)}")
    return resources.files("sim.cpu").joinpath(PRESET_DIR).joinpath(f"{name}.toml").read_text()


def load_preset_data(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The TOML tables of preset ``name``, merged over those it inherits; a ``ValueError``
    naming the choices if unknown."""
    if name in _seen:
        raise ValueError(f"cost preset {name!r} inherits from itself ({' -> '.join(_seen)})")
    own = tomllib.loads(preset_text(name))
    base_name = own.pop("inherits", None)
    if base_name is None:
        return own
    data = load_preset_data(base_name, (*_seen, name))
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


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
    choice = next(
        (c for (t, k), c in CHOICES.items() if target is data.get(t) and k == leaf_key), None
    )
    if choice is not None:
        if value not in choice or type(value) is not type(old):
            raise ValueError(
                f"cost_model override {key!r}: expected one of {', '.join(map(repr, choice))}, "
                f"got {value!r}"
            )
        target[leaf_key] = value
        return
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
    topology: Topology = field(repr=False, compare=False)

    @classmethod
    def resolve(
        cls, cost_model: str | Mapping[str, Any] = "default", freq_ghz: float | None = None
    ) -> Preset:
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
        for (table, key), allowed in CHOICES.items():
            value = data.get(table, {}).get(key)
            if value not in allowed or type(value) is not type(allowed[0]):
                raise ValueError(
                    f"preset {name!r}: {table}.{key} must be one of {allowed}, got {value!r}"
                )
        topology = Topology.from_preset(data)
        return cls(
            name=name, data=data, freq_ghz=freq, max_cpus=topology.max_cpus, topology=topology
        )

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

    def get(self, table: str, key: str) -> Any:
        """A raw value (a count, a capacity or a choice), as the preset states it."""
        return self.data[table][key]

    def kib_lines(self, table: str, key: str, line_bytes: int = 64) -> int:
        """A capacity in KiB as a number of ``line_bytes``-byte cache lines."""
        if not key.endswith("_kib"):
            raise KeyError(f"{table}.{key} is not a capacity in KiB")
        return max(1, round(self.data[table][key] * 1024) // line_bytes)


def check_cpus(preset: Preset, cpus: int) -> None:
    """Refuse a CPU count the preset's topology cannot hold."""
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        raise ValueError(f"cpus must be a positive integer, got {cpus!r}")
    if cpus > preset.max_cpus:
        raise ValueError(
            f"cpus={cpus} exceeds preset {preset.name!r}'s maximum of {preset.max_cpus}"
        )
