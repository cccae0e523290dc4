"""The scenario file schema: strict pydantic models (an unknown key is an error naming its path).

A scenario is TOML.  ``docs/scenario-reference.md`` documents every key; this module is the
single source of truth for what is accepted.  Validation errors are turned into
:class:`ScenarioError`, whose message names the scenario file, the key path and what was expected.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kbpf.linux_bpf import BpfMapType


class ScenarioError(Exception):
    """A scenario (or a file it refers to) is wrong; the message says where and how."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,14}$")]


class MachineSpec(_Strict):
    """``[machine]``: the simulated machine."""

    cpus: Annotated[int, Field(ge=1, le=1024)] = 2
    seed: Annotated[int, Field(ge=0)] = 0
    freq_ghz: Annotated[float, Field(gt=0.1, le=10.0)] | None = None
    memory_mib: Annotated[int, Field(ge=4, le=65536)] = 256
    cost_model: str = "default"
    cost_overrides: dict[str, int | float] = Field(default_factory=dict)
    locking: Literal["linux", "kbpf"] = "linux"
    lru: Literal["linux", "exact"] = "linux"
    insn_budget: Annotated[int, Field(ge=1)] = 1_000_000

    @field_validator("freq_ghz", mode="before")
    @classmethod
    def _int_freq(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class MapSpec(_Strict):
    """``[[map]]``: a map created before the programs load (for ``.asm`` programs, which
    reference it as ``map_fd NAME`` or ``map_value NAME, OFFSET``)."""

    name: Name
    type: str
    key_size: Annotated[int, Field(ge=0)] = 0
    value_size: Annotated[int, Field(ge=0)] = 0
    max_entries: Annotated[int, Field(ge=0)] = 0
    flags: Annotated[int, Field(ge=0)] = 0

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        key = "BPF_MAP_TYPE_" + v.upper()
        if key not in BpfMapType.__members__:
            choices = ", ".join(m[len("BPF_MAP_TYPE_") :].lower() for m in BpfMapType.__members__)
            raise ValueError(f"unknown map type {v!r}; expected one of {choices}")
        return v.lower()


class MapChange(_Strict):
    """``[program.maps.NAME]``: changes to an object's map before it loads (as libbpf's
    ``bpf_map__set_type`` and friends), so one program serves a sweep over map types."""

    type: str | None = None
    max_entries: Annotated[int, Field(ge=1)] | None = None
    flags: Annotated[int, Field(ge=0)] | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str | None) -> str | None:
        return None if v is None else MapSpec._known_type(v)


class ProgramSpec(_Strict):
    """``[[program]]``: an eBPF program, from assembler text (``asm``) or a clang object
    (``object``; ``name`` is then the function's name in it)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")]
    asm: str | None = None
    object: str | None = None
    prog_type: str = "tracepoint"
    attach: str | None = None
    maps: dict[str, MapChange] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> ProgramSpec:
        if (self.asm is None) == (self.object is None):
            raise ValueError("give exactly one of 'asm' (a .asm file) or 'object' (a .bpf.o file)")
        if self.maps and self.object is None:
            raise ValueError(
                "'maps' changes apply to an object's maps; declare [[map]]s for asm programs"
            )
        return self


class FieldSpec(_Strict):
    """``[[source.field]]``: one context field, packed little-endian after ``ctx_hex``."""

    name: str = ""
    size: Literal[1, 2, 4, 8] = 4
    dist: Literal["constant", "sequence", "uniform", "zipf", "cpu", "time"] = "constant"
    value: Annotated[int, Field(ge=0)] = 0
    start: Annotated[int, Field(ge=0)] = 0
    step: int = 1
    low: Annotated[int, Field(ge=0)] = 0
    high: Annotated[int, Field(ge=0)] = 0
    s: Annotated[float, Field(gt=0.0)] = 1.0
    n: Annotated[int, Field(ge=1)] = 1

    @field_validator("s", mode="before")
    @classmethod
    def _int_s(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _ranges(self) -> FieldSpec:
        if self.dist == "uniform" and self.high < self.low:
            raise ValueError(f"uniform field needs low <= high (low={self.low}, high={self.high})")
        if self.dist == "zipf" and self.n > 1 << 24:
            raise ValueError(f"zipf n={self.n} is too large (at most {1 << 24} keys)")
        return self


class SourceSpec(_Strict):
    """``[[source]]``: firings of a program (``program``) or a tracepoint (``tracepoint``)."""

    program: str | None = None
    tracepoint: str | None = None
    cpus: list[Annotated[int, Field(ge=0)]] | Literal["all"] = "all"
    count: Annotated[int, Field(ge=0)] | None = None
    duration_ns: Annotated[int, Field(ge=1)] | None = None
    arrival: Literal["back-to-back", "periodic", "poisson", "burst"] = "back-to-back"
    interval_ns: Annotated[int, Field(ge=0)] = 0
    burst_size: Annotated[int, Field(ge=1)] = 1
    start_ns: Annotated[int, Field(ge=0)] = 0
    ctx_hex: str = ""
    field: list[FieldSpec] = Field(default_factory=list)

    @field_validator("ctx_hex")
    @classmethod
    def _hex(cls, v: str) -> str:
        try:
            bytes.fromhex(v)
        except ValueError as e:
            raise ValueError(f"not hex bytes: {e}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SourceSpec:
        if (self.program is None) == (self.tracepoint is None):
            raise ValueError("give exactly one of 'program' or 'tracepoint'")
        if self.arrival in ("periodic", "poisson", "burst") and self.interval_ns <= 0:
            raise ValueError(f"arrival {self.arrival!r} needs interval_ns > 0")
        if self.count is None and self.duration_ns is None:
            raise ValueError("give 'count' (firings per CPU) or 'duration_ns' (or both)")
        return self


class ConsumerSpec(_Strict):
    """``[[consumer]]``: a user task reading a ring buffer or perf buffer."""

    name: Name
    kind: Literal["ringbuf", "perfbuf"]
    map: str
    cpu: Annotated[int, Field(ge=0)] = 0
    wakeup: Literal["poll", "interval"] = "poll"
    interval_ns: Annotated[int, Field(ge=0)] = 0
    batch: Annotated[int, Field(ge=0)] = 0
    per_record_ns: Annotated[int, Field(ge=0)] = 100
    page_cnt: Annotated[int, Field(ge=1)] = 8
    wakeup_events: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _interval(self) -> ConsumerSpec:
        if self.wakeup == "interval" and self.interval_ns <= 0:
            raise ValueError("wakeup 'interval' needs interval_ns > 0")
        if self.page_cnt & (self.page_cnt - 1):
            raise ValueError(f"page_cnt must be a power of two, got {self.page_cnt}")
        return self


class LineSpec(_Strict):
    """``[[line]]``: name the cache line holding a map value, to count its transfers."""

    name: Name
    map: str
    key: Annotated[int, Field(ge=0)] = 0


class PlotSpec(_Strict):
    """``[[plot]]``: a figure written as PNG into the results folder."""

    kind: Literal[
        "completions", "latency", "map_values", "variants", "timeline", "ring", "locks", "percpu"
    ]
    file: str | None = None
    map: str | None = None
    metric: str | None = None
    consumer: str | None = None
    title: str | None = None

    @model_validator(mode="after")
    def _map_needed(self) -> PlotSpec:
        if self.kind == "map_values" and not self.map:
            raise ValueError("plot kind 'map_values' needs 'map' (a map name)")
        if self.kind == "variants" and not self.metric:
            raise ValueError("plot kind 'variants' needs 'metric' (a metric name)")
        if self.kind == "ring" and not self.consumer:
            raise ValueError("plot kind 'ring' needs 'consumer' (a consumer name)")
        if self.kind == "percpu" and not self.map:
            raise ValueError("plot kind 'percpu' needs 'map' (a per-CPU map name)")
        return self


class CheckSpec(_Strict):
    """``[[check]]``: a comparison over the run's measured metrics (see the reference page)."""

    expect: str
    why: str = ""


class VariantSpec(_Strict):
    """``[[variant]]``: overrides run after the base with the same seed (``set`` maps dotted
    scenario paths to values, as ``--set`` does)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")]
    set: dict[str, Any]
    description: str = ""

    @field_validator("set")
    @classmethod
    def _not_empty(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("a variant needs at least one override in 'set'")
        for key in v:
            if key.split(".")[0] in ("variant", "check", "plot", "run"):
                raise ValueError(f"a variant cannot override {key!r}")
        return v


class RunSpec(_Strict):
    """``[run]``: how long to simulate."""

    until_ns: Annotated[int, Field(ge=1)] | None = None
    expect_faults: bool = False


class Scenario(_Strict):
    """A whole scenario file."""

    title: str = ""
    description: str = ""
    machine: MachineSpec = Field(default_factory=MachineSpec)
    map: list[MapSpec] = Field(default_factory=list)
    program: list[ProgramSpec] = Field(default_factory=list)
    source: list[SourceSpec] = Field(default_factory=list)
    plot: list[PlotSpec] = Field(default_factory=list)
    check: list[CheckSpec] = Field(default_factory=list)
    consumer: list[ConsumerSpec] = Field(default_factory=list)
    line: list[LineSpec] = Field(default_factory=list)
    variant: list[VariantSpec] = Field(default_factory=list)
    run: RunSpec = Field(default_factory=RunSpec)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        progs = [p.name for p in self.program]
        maps = [m.name for m in self.map]
        variants = [v.name for v in self.variant]
        if "base" in variants:
            raise ValueError("a variant may not be called 'base' (that name is the base run)")
        for what, names in (("program", progs), ("map", maps), ("variant", variants)):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {what} name(s): {', '.join(sorted(dup))}")
        for i, src in enumerate(self.source):
            if src.program is not None and src.program not in progs:
                raise ValueError(
                    f"source[{i}].program: no program named {src.program!r} (have: {', '.join(progs) or 'none'})"
                )
            if src.cpus != "all":
                bad = [c for c in src.cpus if c >= self.machine.cpus]
                if bad:
                    raise ValueError(
                        f"source[{i}].cpus: CPU {bad[0]} does not exist on a {self.machine.cpus}-CPU machine"
                    )
        consumers = [c.name for c in self.consumer]
        for i, plot in enumerate(self.plot):
            if plot.consumer is not None and plot.consumer not in consumers:
                raise ValueError(f"plot[{i}].consumer: no consumer named {plot.consumer!r}")
        for i, c in enumerate(self.consumer):
            if c.cpu >= self.machine.cpus:
                raise ValueError(
                    f"consumer[{i}].cpu: CPU {c.cpu} does not exist on a {self.machine.cpus}-CPU machine"
                )
        return self


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(path: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = _format_loc(
            tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        )
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if (
            e["type"] not in ("extra_forbidden", "missing")
            and "input" in e
            and not isinstance(e["input"], dict | list)
        ):
            msg += f" (got {e['input']!r})"
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply ``--set machine.cpus=4`` style overrides; ``program.0.name`` indexes arrays."""
    parts = dotted.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ScenarioError(f"--set {dotted}: {'.'.join(parts[:i])} has no element {part}")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                raise ScenarioError(f"--set {dotted}: {'.'.join(parts[: i + 1])} is not a table")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ScenarioError(f"--set {dotted}: no element {last}")
        node[int(last)] = value
    else:
        node[last] = value


def parse_value(text: str) -> Any:
    """A ``--set`` value as a TOML literal (``4``, ``"kbpf"``, ``[0, 1]``); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def read_scenario(path: str | Path) -> dict[str, Any]:
    """The raw TOML of a scenario file, with file errors as :class:`ScenarioError`."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such scenario file") from None
    except IsADirectoryError:
        raise ScenarioError(f"{p}: is a directory, not a scenario file") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not a text file") from None
    return raw


def validate(
    raw: dict[str, Any], path: str | Path, overrides: dict[str, Any] | None = None, where: str = ""
) -> tuple[Scenario, dict[str, Any]]:
    """Apply overrides to a copy of ``raw`` and validate it; ``where`` prefixes error paths
    (``variant[0].set``) so a bad override names where it came from."""
    raw = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    try:
        return Scenario.model_validate(raw), raw
    except ValidationError as e:
        text = format_validation_error(str(path), e)
        if where:
            text = text.replace(f"{path}: ", f"{path}: {where}: ")
        raise ScenarioError(text) from None


def load_scenario(
    path: str | Path, overrides: dict[str, Any] | None = None
) -> tuple[Scenario, dict[str, Any]]:
    """Read, override and validate a scenario; returns the model and the resolved raw data."""
    return validate(read_scenario(path), path, overrides)
