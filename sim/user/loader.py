"""Loading clang-built eBPF objects onto a Machine, as libbpf's ``bpf_object__open_file`` and
``bpf_object__load`` do (API.md §3, "Objects and programs").

``open_object`` reads the file (:mod:`sim.user.bpf_object`) and gives a :class:`BpfObject`
whose ``maps`` hold :class:`ObjectMap` descriptors that may still be changed — ``set_type``,
``set_max_entries``, ``set_flags`` (and ``set_key_size``/``set_value_size``), as libbpf allows
between open and load — and whose ``programs`` hold :class:`ObjectProgram` descriptors.
``load()`` then does what libbpf does, all through the simulated ``bpf(2)``:

1. every map is created with ``BPF_MAP_CREATE`` in declaration order (``.maps`` first, then
   global data), a ``PERF_EVENT_ARRAY`` without ``max_entries`` getting one slot per CPU
   (``map_set_def_max_entries``);
2. each global-data map gets its initial contents with ``BPF_MAP_UPDATE_ELEM`` (``.bss``:
   zeros), and ``.rodata*`` maps, created ``BPF_F_RDONLY_PROG``, are frozen with
   ``BPF_MAP_FREEZE`` once written (``bpf_object__populate_internal_map``);
3. each program's map references get the maps' fds and it is loaded with ``BPF_PROG_LOAD``.

After ``load()`` the same dicts hold the :class:`~sim.user.maps.MapHandle` and
:class:`~sim.user.programs.ProgramHandle` objects, so ``obj.maps["counts"].lookup(key)`` and
``m.run_program(obj.programs["count"])`` work; a descriptor kept from before the load forwards to
its handle too.  Loading never attaches.  A failed load closes whatever it created, and an
object can be loaded once (libbpf: "load can't be attempted twice").
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from kbpf.asm import disassemble
from kbpf.errors import BpfError
from kbpf.insn import LD_DW_IMM
from kbpf.linux_bpf import BpfMapType, BpfProgType
from sim.user.bpf_object import MapDef, ParsedObject, ProgramDef, parse_object, ringbuf_size
from sim.user.maps import MapHandle, map_type_from
from sim.user.programs import ProgramHandle

if TYPE_CHECKING:  # pragma: no cover
    from sim.machine import Machine
    from sim.user.btf import Btf

_KERNEL_NAME_MAX = 15  # BPF_OBJ_NAME_LEN - 1: libbpf hands the kernel a truncated name


class _Descriptor:
    """What an object's map and program descriptors share: the definition from the ELF until
    ``load()``, then a handle that every attribute this class lacks is forwarded to."""

    _what = "object"

    def __init__(self, obj: BpfObject, definition):
        self._obj = obj
        self._def = definition
        self.handle = None

    @property
    def name(self) -> str:
        return self._def.name

    @property
    def section(self) -> str:
        return self._def.section

    def __getattr__(self, attr: str) -> Any:
        # Only reached for names this class lacks: after load, the handle's (fd, lookup, ...).
        handle = self.__dict__.get("handle")
        if handle is not None and not attr.startswith("_"):
            return getattr(handle, attr)
        if attr.startswith("_"):
            raise AttributeError(attr)
        raise AttributeError(
            f"{self._what} '{self.name}' has no '{attr}' before the object is loaded (load() creates it)"
        )


class ObjectMap(_Descriptor):
    """A map of an opened object: its definition until ``load()``, then its handle.

    Before load, ``set_*`` change what will be created.  After load they raise
    ``BpfError(EBUSY)`` (libbpf's answer), the attributes read the created map, and every other
    attribute (``fd``, ``lookup``, ``update``, ...) is the :class:`MapHandle`'s.
    """

    _what = "map"
    handle: MapHandle | None

    # -- what it is -------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``"btf"`` for a map in ``.maps``; ``"data"``, ``"rodata"`` or ``"bss"`` for global data."""
        return self._def.kind

    @property
    def initial_value(self) -> bytes | None:
        """A global-data map's contents as the object file has them."""
        return self._def.initial

    @property
    def btf_key_type_id(self) -> int:
        return self._def.btf_key_type_id

    @property
    def btf_value_type_id(self) -> int:
        return self._def.btf_value_type_id

    def _attr(self, field: str):
        return getattr(self.handle, field) if self.handle is not None else getattr(self._def, field)

    @property
    def map_type(self) -> BpfMapType:
        return self._attr("map_type")

    @property
    def key_size(self) -> int:
        return self._attr("key_size")

    @property
    def value_size(self) -> int:
        return self._attr("value_size")

    @property
    def max_entries(self) -> int:
        return self._attr("max_entries")

    @property
    def map_flags(self) -> int:
        return self._attr("map_flags")

    # -- changes before load ----------------------------------------------------------------
    def _mutable(self, what: str, internal_ok: bool = False) -> None:
        if self._obj.loaded:
            raise BpfError(
                errno.EBUSY,
                f"{self._obj.path}: map '{self.name}': cannot {what} after the object is loaded",
            )
        if self._def.is_internal and not internal_ok:
            raise BpfError(
                errno.EINVAL,
                f"{self._obj.path}: map '{self.name}' holds the global "
                f"data of {self.section}: it stays a one-element ARRAY "
                f"of {self._def.value_size} bytes, so you cannot {what}",
            )

    def set_type(self, map_type: BpfMapType | str | int) -> None:
        self._mutable("change its type")
        try:
            self._def.map_type = map_type_from(map_type)
        except ValueError as e:
            raise BpfError(errno.EINVAL, f"{self._obj.path}: map '{self.name}': {e}") from None

    def set_max_entries(self, max_entries: int) -> None:
        self._mutable("change max_entries")
        _check_u32(self, "max_entries", max_entries)
        if self._def.map_type == BpfMapType.BPF_MAP_TYPE_RINGBUF:
            max_entries = ringbuf_size(max_entries)  # libbpf adjusts here too
        self._def.max_entries = max_entries

    def set_flags(self, map_flags: int) -> None:
        self._mutable("change its flags", internal_ok=True)
        _check_u32(self, "map_flags", map_flags)
        self._def.map_flags = map_flags

    def set_key_size(self, key_size: int) -> None:
        self._mutable("change key_size")
        _check_u32(self, "key_size", key_size)
        self._def.key_size = key_size
        self._def.btf_key_type_id = 0

    def set_value_size(self, value_size: int) -> None:
        self._mutable("change value_size")
        _check_u32(self, "value_size", value_size)
        self._def.value_size = value_size
        self._def.btf_value_type_id = 0

    # -- after load --------------------------------------------------------------------------
    def __repr__(self) -> str:
        state = f"fd={self.handle.fd}" if self.handle is not None else "not created"
        return (
            f"ObjectMap({self.name!r}, {self.map_type.name[len('BPF_MAP_TYPE_') :].lower()}, "
            f"key_size={self.key_size}, value_size={self.value_size}, "
            f"max_entries={self.max_entries}, map_flags={self.map_flags:#x}, {state})"
        )


def _check_u32(m: ObjectMap, label: str, v: Any) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 32:
        raise BpfError(
            errno.EINVAL,
            f"{m._obj.path}: map '{m.name}': {label} must be an unsigned 32-bit integer, got {v!r}",
        )


class ObjectProgram(_Descriptor):
    """A program of an opened object: its linked instructions until ``load()``, then the
    :class:`ProgramHandle` (``fd`` and the rest forward to it)."""

    _what = "program"
    handle: ProgramHandle | None

    @property
    def prog_type(self) -> BpfProgType:
        return self._def.prog_type

    @property
    def insn_count(self) -> int:
        """Instructions including the appended subprograms."""
        return self._def.insn_count

    @property
    def definition(self) -> ProgramDef:
        return self._def

    def instructions(self) -> bytes:
        """What ``BPF_PROG_LOAD`` receives: map references hold fds once the maps exist
        (fd 0 before)."""
        return self._def.instructions(self._obj._fds() if self._obj.loaded else None)

    def __repr__(self) -> str:
        state = f"fd={self.handle.fd}" if self.handle is not None else "not loaded"
        return (
            f"ObjectProgram({self.name!r}, section={self.section!r}, "
            f"{self.prog_type.name}, {self.insn_count} insns, {state})"
        )


class BpfObject:
    """An opened (and, after :meth:`load`, loaded) eBPF object file."""

    def __init__(self, parsed: ParsedObject, machine: Machine | None = None):
        self._parsed = parsed
        self.machine = machine
        self.path: str = parsed.path
        self.name: str = parsed.name
        self.license: str = parsed.license
        self.kern_version: int = parsed.kern_version
        self.sections = parsed.sections
        self.btf: Btf | None = parsed.btf
        self.loaded = False
        self._map_objs = {d.name: ObjectMap(self, d) for d in parsed.maps}
        self._prog_objs = {d.name: ObjectProgram(self, d) for d in parsed.programs}
        #: name -> ObjectMap before load, MapHandle after.
        self.maps: dict[str, ObjectMap | MapHandle] = dict(self._map_objs)
        #: function name -> ObjectProgram before load, ProgramHandle after.
        self.programs: dict[str, ObjectProgram | ProgramHandle] = dict(self._prog_objs)

    @classmethod
    def open(cls, path: str | os.PathLike, machine: Machine | None = None) -> BpfObject:
        """Read ``path``; a machine is needed only to :meth:`load`."""
        return cls(parse_object(path), machine)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "opened"
        return (
            f"BpfObject({self.name!r}, {self.path!r}, {len(self.maps)} maps, "
            f"{len(self.programs)} programs, {state})"
        )

    def map_def(self, name: str) -> ObjectMap:
        """The descriptor of map ``name`` (before or after load)."""
        return self._map_objs[name]

    def program_def(self, name: str) -> ObjectProgram:
        return self._prog_objs[name]

    def _fds(self) -> dict[str, int]:
        return {n: m.handle.fd for n, m in self._map_objs.items() if m.handle is not None}

    # -- load ---------------------------------------------------------------------------------
    def load(self, machine: Machine | None = None) -> BpfObject:
        """Create the maps, write global data, freeze ``.rodata``, load the programs."""
        if machine is not None:
            if self.machine is not None and machine is not self.machine:
                raise BpfError(errno.EINVAL, f"{self.path}: object was opened for another machine")
            self.machine = machine
        m = self.machine
        if m is None:
            raise BpfError(
                errno.EINVAL,
                f"{self.path}: opened without a machine; use Machine.open_object or load(machine)",
            )
        if self.loaded:
            raise BpfError(
                errno.EINVAL,
                f"{self.path}: object is already loaded (an object "
                "can be loaded once; open it again for another copy)",
            )
        self.loaded = True  # set first, as libbpf does: a failed load is not retried either
        made_maps: list[MapHandle] = []
        made_progs: list[ProgramHandle] = []
        try:
            for om in self._map_objs.values():
                handle = _create_map(m, self, om._def)
                made_maps.append(handle)
                om.handle = handle
                _populate_map(self, om._def, handle)
            fds = self._fds()
            for op in self._prog_objs.values():
                d = op._def
                try:
                    handle = ProgramHandle.load(
                        m, d.instructions(fds), d.prog_type, d.name[:_KERNEL_NAME_MAX], d.section
                    )
                except BpfError as e:
                    raise BpfError(
                        e.errno,
                        f"{self.path}: program '{d.name}' (section '{d.section}'): {e.strerror}",
                    ) from None
                handle.name = d.name
                made_progs.append(handle)
                op.handle = handle
        except BaseException:
            for p in made_progs:
                p.close()
            for h in made_maps:
                h.close()
            for om in self._map_objs.values():
                om.handle = None
            for op in self._prog_objs.values():
                op.handle = None
            raise
        self.maps = {n: om.handle for n, om in self._map_objs.items()}
        self.programs = {n: op.handle for n, op in self._prog_objs.items()}
        return self

    def close(self) -> None:
        """Close every fd the load created (``bpf_object__close``); maps live on while a
        program or another fd holds them."""
        for op in self._prog_objs.values():
            if op.handle is not None:
                op.handle.close()
                op.handle = None
        for om in self._map_objs.values():
            if om.handle is not None:
                om.handle.close()
                om.handle = None


def _create_map(m: Machine, obj: BpfObject, d: MapDef) -> MapHandle:
    max_entries = d.max_entries
    if d.map_type == BpfMapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY and max_entries == 0:
        max_entries = m.ncpus  # libbpf's map_set_def_max_entries: one slot per possible CPU
    try:
        handle = MapHandle.create(
            m,
            d.map_type,
            d.key_size,
            d.value_size,
            max_entries,
            d.map_flags,
            d.name[:_KERNEL_NAME_MAX],
        )
    except BpfError as e:
        raise BpfError(
            e.errno,
            f"{obj.path}: cannot create map '{d.name}' "
            f"({d.map_type.name}, key_size={d.key_size}, "
            f"value_size={d.value_size}, max_entries={max_entries}, "
            f"map_flags={d.map_flags:#x}): {e.strerror}",
        ) from None
    handle.name = d.name
    return handle


def _populate_map(obj: BpfObject, d: MapDef, handle: MapHandle) -> None:
    """Global data: the section's bytes (zeros for .bss) at key 0; .rodata* then frozen, so
    that user space cannot change what programs were loaded against."""
    if d.initial is None:
        return
    step = "write the initial contents of"
    try:
        handle.update(bytes(4), d.initial)
        if d.kind == "rodata":
            step = "freeze"
            handle.freeze()
    except BpfError as e:
        raise BpfError(e.errno, f"{obj.path}: cannot {step} map '{d.name}': {e.strerror}") from None


def open_object(machine: Machine, path: str | os.PathLike) -> BpfObject:
    """``bpf_object__open_file``: read ``path`` for ``machine``, creating nothing yet."""
    return BpfObject.open(path, machine)


def load_object(machine: Machine, path: str | os.PathLike) -> BpfObject:
    """``open_object`` then ``load``."""
    return open_object(machine, path).load()


# -- listings (``kbpf-sim inspect``) ---------------------------------------------------------------

_MAP_FLAG_NAMES = {
    1 << 0: "NO_PREALLOC",
    1 << 1: "NO_COMMON_LRU",
    1 << 2: "NUMA_NODE",
    1 << 3: "RDONLY",
    1 << 4: "WRONLY",
    1 << 5: "STACK_BUILD_ID",
    1 << 6: "ZERO_SEED",
    1 << 7: "RDONLY_PROG",
    1 << 8: "WRONLY_PROG",
    1 << 9: "CLONE",
    1 << 10: "MMAPABLE",
    1 << 11: "PRESERVE_ELEMS",
    1 << 12: "INNER_MAP",
    1 << 13: "LINK",
}
_SHF = ((0x1, "W"), (0x2, "A"), (0x4, "X"), (0x10, "M"), (0x20, "S"), (0x40, "I"))


def map_flags_text(flags: int) -> str:
    """``0x480 RDONLY_PROG|MMAPABLE``, or ``0``."""
    if not flags:
        return "0"
    names = [n for bit, n in _MAP_FLAG_NAMES.items() if flags & bit]
    rest = flags & ~sum(_MAP_FLAG_NAMES)
    if rest:
        names.append(f"{rest:#x}")
    return f"{flags:#x} " + "|".join(names)


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def program_listing(prog: ObjectProgram) -> list[str]:
    """The linked program, one instruction per line (``kbpf.asm.disassemble`` syntax) with its
    index, map references by name (``map_fd counts``, ``map_value globals.bss, 8``), a label
    where each appended subprogram begins, and the function each call or callback reaches."""
    d = prog.definition
    code = d.instructions(None)
    relocs = {r.insn: r for r in d.data_relocs}
    starts = dict(d.functions)
    n = len(code) // 8
    lines: list[str] = []
    i = 0
    while i < n:
        if i in starts:
            lines.append(f"  {starts[i]}:")
        width = 2 if code[i * 8] == LD_DW_IMM and i + 1 < n else 1
        if i in relocs:
            r = relocs[i]
            dst = code[i * 8 + 1] & 0x0F
            texts = [
                f"lddw %r{dst}, map_value {r.map_name}, {r.offset}"
                if r.value
                else f"lddw %r{dst}, map_fd {r.map_name}"
            ]
        else:
            texts = disassemble(code[i * 8 : (i + width) * 8]).splitlines()
        if i in d.calls:
            texts[0] += f"    ; -> {d.calls[i]}"
        for k, text in enumerate(texts):
            lines.append(f"  {i + k:5d}: {text}")
        i += width
    return lines


def inspect_text(obj: BpfObject) -> str:
    """What ``kbpf-sim inspect`` prints: maps, programs, sections and each program's
    disassembly after relocation."""
    maps = [obj.map_def(n) for n in obj.maps]
    progs = [obj.program_def(n) for n in obj.programs]
    out = [
        f"{obj.path}: object '{obj.name}', license '{obj.license or '(none)'}', "
        f"{len(maps)} maps, {len(progs)} programs",
        "",
    ]
    out.append("Maps:")
    if maps:
        rows = [["NAME", "TYPE", "KEY", "VALUE", "MAX_ENTRIES", "FLAGS", "DEFINED BY"]]
        for om in maps:
            if om.kind == "btf":
                btf = obj.btf
                key = btf.describe(om.btf_key_type_id) if om.btf_key_type_id else ""
                val = btf.describe(om.btf_value_type_id) if om.btf_value_type_id else ""
                origin = f".maps  {key} -> {val}" if key or val else ".maps"
            else:
                origin = f"global data of {om.section}"
            max_e = str(om.max_entries)
            if om.map_type == BpfMapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY and om.max_entries == 0:
                max_e = "0 (one per CPU)"
            rows.append(
                [
                    om.name,
                    om.map_type.short_name,
                    str(om.key_size),
                    str(om.value_size),
                    max_e,
                    map_flags_text(om.map_flags),
                    origin,
                ]
            )
        out += _table(rows, {2, 3, 4})
    else:
        out.append("  (none)")
    out += ["", "Programs:"]
    if progs:
        rows = [["NAME", "SECTION", "TYPE", "INSNS"]]
        for p in progs:
            rows.append(
                [
                    p.name,
                    p.section,
                    p.prog_type.name[len("BPF_PROG_TYPE_") :].lower(),
                    str(p.insn_count),
                ]
            )
        out += _table(rows, {3})
    else:
        out.append("  (none)")
    out += ["", "Sections:"]
    rows = [["IDX", "NAME", "TYPE", "SIZE", "FLAGS", "USE"]]
    for s in obj.sections:
        flags = "".join(ch for bit, ch in _SHF if s.flags & bit)
        rows.append([str(s.index), s.name, s.type, str(s.size), flags, s.role])
    out += _table(rows, {0, 3})
    for p in progs:
        out += ["", f"Disassembly of {p.name} (section {p.section}, {p.insn_count} instructions):"]
        out += program_listing(p)
    return "\n".join(out) + "\n"
