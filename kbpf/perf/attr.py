"""``perf_event_open(2)`` arguments: the attribute checks of Linux v6.6 and kbpf-basic's
``PerfProbeArgs`` (src/perf/util.rs).

:meth:`PerfProbeArgs.try_from_perf_attr` does what ``perf_event_open`` (kernel/events/core.c)
does with its arguments before a host gets involved, in the kernel's order:

1. ``flags`` beyond ``PERF_FLAG_ALL`` -> EINVAL;
2. ``perf_copy_attr``: the ``size`` field (0 means ``PERF_ATTR_SIZE_VER0``; below VER0 or above a
   page -> E2BIG; a larger struct than v6.6 knows must be zero past its 136 bytes, else E2BIG, and
   the kernel writes the size it knows back into the user's ``size``), the reserved fields, the
   known ``sample_type`` and ``read_format`` bits, branch-stack, user-register and user-stack
   sampling, weight, inherit/exec/sigtrap combinations -> EINVAL;
3. ``sample_freq`` above ``perf_event_max_sample_rate`` (with ``freq``), or a ``sample_period``
   with bit 63 set -> EINVAL; a cgroup event needs a pid and a CPU -> EINVAL;
4. from ``perf_event_alloc``: a CPU that does not exist, or no CPU and no task -> EINVAL; sigtrap
   without a task -> EINVAL;
5. the PMU for ``type``/``config``: software ids up to ``PERF_COUNT_SW_CGROUP_SWITCHES``
   (beyond -> ENOENT; branch sampling -> EOPNOTSUPP), tracepoints by id (the host resolves the id:
   EINVAL when unknown), and kbpf-basic's convention for a probe PMU at ``PERF_TYPE_MAX`` (its
   function name a user string at ``config1``, its offset ``config2``).  kbpf-sim has no hardware,
   cache, raw or breakpoint PMU, so those types find none: ENOENT, as on a machine without them.

What needs the host's tables (``group_fd``, the task behind ``pid``, the tracepoint behind a
tracepoint id) is left to the host, which Linux checks between steps 3 and 4.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from kbpf.errors import BpfError
from kbpf.host import KernelAuxiliaryOps
from kbpf.linux_bpf import (
    PAGE_SIZE,
    PERF_ATTR_SIZE_VER0,
    PERF_ATTR_SIZE_VER8,
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PERF_TYPE_BREAKPOINT,
    PERF_TYPE_HARDWARE,
    PERF_TYPE_HW_CACHE,
    PERF_TYPE_RAW,
    PERF_TYPE_SOFTWARE,
    PERF_TYPE_TRACEPOINT,
    PerfEventAttr,
    PerfSwIds,
)

U64 = (1 << 64) - 1

#: ``PERF_TYPE_MAX``: kbpf-basic reads a probe (kprobe-like) event at this type number.
PERF_TYPE_MAX = 6
#: ``PERF_COUNT_SW_MAX`` in v6.6 (``PERF_COUNT_SW_CGROUP_SWITCHES`` is the last id).
PERF_COUNT_SW_MAX = 12

# sample_type bits v6.6 knows (PERF_SAMPLE_IP … PERF_SAMPLE_RAW are in kbpf.linux_bpf)
PERF_SAMPLE_BRANCH_STACK = 1 << 11
PERF_SAMPLE_REGS_USER = 1 << 12
PERF_SAMPLE_STACK_USER = 1 << 13
PERF_SAMPLE_WEIGHT = 1 << 14
PERF_SAMPLE_DATA_SRC = 1 << 15
PERF_SAMPLE_IDENTIFIER = 1 << 16
PERF_SAMPLE_TRANSACTION = 1 << 17
PERF_SAMPLE_REGS_INTR = 1 << 18
PERF_SAMPLE_PHYS_ADDR = 1 << 19
PERF_SAMPLE_AUX = 1 << 20
PERF_SAMPLE_CGROUP = 1 << 21
PERF_SAMPLE_DATA_PAGE_SIZE = 1 << 22
PERF_SAMPLE_CODE_PAGE_SIZE = 1 << 23
PERF_SAMPLE_WEIGHT_STRUCT = 1 << 24
PERF_SAMPLE_MAX = 1 << 25

#: ``PERF_FORMAT_MAX`` (TOTAL_TIME_ENABLED, TOTAL_TIME_RUNNING, ID, GROUP, LOST).
PERF_FORMAT_MAX = 1 << 5
#: ``PERF_SAMPLE_BRANCH_MAX`` in v6.6 (the last shift is PRIV_SAVE, 18).
PERF_SAMPLE_BRANCH_MAX = 1 << 19
PERF_SAMPLE_BRANCH_USER = 1 << 0
PERF_SAMPLE_BRANCH_KERNEL = 1 << 1
PERF_SAMPLE_BRANCH_HV = 1 << 2
PERF_SAMPLE_BRANCH_PLM_ALL = (
    PERF_SAMPLE_BRANCH_USER | PERF_SAMPLE_BRANCH_KERNEL | PERF_SAMPLE_BRANCH_HV
)

#: x86-64 ``perf_reg_validate``: DS, ES, FS and GS (bits 12-15) cannot be sampled and bits
#: 24-31 (between R15 and XMM0) are reserved.
X86_REG_REJECT = (0xF << 12) | (0xFF << 24)
#: ``sysctl_perf_event_sample_rate`` at boot (``DEFAULT_MAX_SAMPLE_RATE``).
PERF_EVENT_MAX_SAMPLE_RATE = 100_000
#: ``sysctl_perf_event_max_stack`` (``PERF_MAX_STACK_DEPTH``): what sample_max_stack 0 becomes.
PERF_MAX_STACK_DEPTH = 127
#: ``KSYM_NAME_LEN`` in v6.6: the probe PMU reads at most this many bytes of a function name.
KSYM_NAME_LEN = 512
USHRT_MAX = 0xFFFF

# where the reserved fields of struct perf_event_attr sit (PerfEventAttr has no field for them)
_RESERVED_2_OFFSET = 110  # u16 after sample_max_stack
_RESERVED_3_OFFSET = 116  # u32 after aux_sample_size
_SIZE_OFFSET = 4

# flag bits of perf_event_attr beyond those PerfEventAttr names
BIT_EXCLUDE_HV = 6
BIT_ENABLE_ON_EXEC = 12
BIT_SAMPLE_ID_ALL = 18
BIT_WRITE_BACKWARD = 27
BIT_INHERIT_THREAD = 35
BIT_REMOVE_ON_EXEC = 36
BIT_SIGTRAP = 37
#: ``__reserved_1``: the 26 bits above ``sigtrap``.
RESERVED_1_MASK = ((1 << 26) - 1) << 38


class PerfEventOpenFlags(IntFlag):
    """The ``flags`` argument of ``perf_event_open``."""

    PERF_FLAG_FD_NO_GROUP = 1
    PERF_FLAG_FD_OUTPUT = 2
    PERF_FLAG_PID_CGROUP = 4
    PERF_FLAG_FD_CLOEXEC = 8


PERF_FLAG_ALL = 0xF


class PerfEventIoc(IntEnum):
    """The perf event ioctls of include/uapi/linux/perf_event.h (``_IO('$', n)`` etc.)."""

    ENABLE = PERF_EVENT_IOC_ENABLE
    DISABLE = PERF_EVENT_IOC_DISABLE
    REFRESH = 0x2402
    RESET = 0x2403
    PERIOD = 0x40082404
    SET_OUTPUT = 0x2405
    SET_FILTER = 0x40082406
    ID = 0x80082407
    SET_BPF = PERF_EVENT_IOC_SET_BPF
    PAUSE_OUTPUT = 0x40042409
    QUERY_BPF = 0xC008240A
    MODIFY_ATTRIBUTES = 0x4008240B


PERF_EVENT_IOC_REFRESH = PerfEventIoc.REFRESH.value
PERF_EVENT_IOC_RESET = PerfEventIoc.RESET.value
PERF_EVENT_IOC_PAUSE_OUTPUT = PerfEventIoc.PAUSE_OUTPUT.value


def _bit(flags: int, bit: int) -> bool:
    return bool(flags >> bit & 1)


def _i32(v: int) -> int:
    """A C ``int`` argument as the syscall sees it (``pid``, ``cpu``, ``group_fd``)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def strncpy_from_user(host: KernelAuxiliaryOps, src: int, count: int) -> bytes:
    """``strncpy_from_user(dst, src, count)``: the bytes of the user string at ``src`` up to its
    NUL, at most ``count`` of them (exactly ``count`` means no NUL was found within them);
    EFAULT if a byte before the NUL cannot be read.  Reads page by page, so memory past the NUL
    (or past ``count``) is never touched, as the kernel's word-at-a-time copy does not fault
    there."""
    out = bytearray()
    addr = src
    while len(out) < count:
        n = min(count - len(out), PAGE_SIZE - addr % PAGE_SIZE)
        piece = host.copy_from_user(addr, n)
        nul = piece.find(b"\0")
        if nul >= 0:
            return bytes(out + piece[:nul])
        out += piece
        addr += n
    return bytes(out)


def perf_copy_attr(host: KernelAuxiliaryOps, uattr: int) -> bytes:
    """``perf_copy_attr``'s copy: the attribute at user address ``uattr`` by its ``size`` field,
    as the kernel's 136 bytes (zero-extended, ``size`` set to the size used).

    ``size`` 0 means ``PERF_ATTR_SIZE_VER0`` (an ABI quirk); a size below VER0 or above a page,
    or a larger struct with non-zero bytes past the 136 v6.6 knows, is E2BIG, and the kernel then
    writes 136 into the user's ``size`` so the caller learns what it supports."""
    size = int.from_bytes(host.copy_from_user(uattr + _SIZE_OFFSET, 4), "little")
    if size == 0:
        size = PERF_ATTR_SIZE_VER0
    if size < PERF_ATTR_SIZE_VER0 or size > PAGE_SIZE:
        _size_error(host, uattr, f"perf_event_attr size {size} outside [64, 4096]")
    data = host.copy_from_user(uattr, min(size, PERF_ATTR_SIZE_VER8))
    if size > PERF_ATTR_SIZE_VER8:
        tail = host.copy_from_user(uattr + PERF_ATTR_SIZE_VER8, size - PERF_ATTR_SIZE_VER8)
        if tail.strip(b"\0"):
            _size_error(
                host, uattr, f"perf_event_attr has non-zero bytes past its {PERF_ATTR_SIZE_VER8}"
            )
    return _with_size(data, size)


def _with_size(data: bytes, size: int) -> bytes:
    buf = bytearray(bytes(data[:PERF_ATTR_SIZE_VER8]).ljust(PERF_ATTR_SIZE_VER8, b"\0"))
    buf[_SIZE_OFFSET : _SIZE_OFFSET + 4] = size.to_bytes(4, "little")
    return bytes(buf)


def _size_error(host: KernelAuxiliaryOps, uattr: int, why: str) -> None:
    """``err_size``: tell user space the size the kernel knows, then E2BIG."""
    host.copy_to_user(uattr + _SIZE_OFFSET, PERF_ATTR_SIZE_VER8.to_bytes(4, "little"))
    raise BpfError(errno.E2BIG, f"{why} (the kernel knows {PERF_ATTR_SIZE_VER8} bytes)")


def _check_regs(mask: int, what: str) -> BpfError | None:
    """x86-64 ``perf_reg_validate``."""
    if not mask or mask & X86_REG_REJECT:
        return BpfError(errno.EINVAL, f"{what} {mask:#x}: empty, or DS/ES/FS/GS/reserved bits")
    return None


def check_attr(raw: bytes) -> PerfEventAttr:
    """The checks ``perf_copy_attr`` makes after the copy, in its order, on the kernel's 136
    bytes; returns the attribute, updated where the kernel updates it (branch privilege
    levels, ``sample_max_stack``)."""
    attr = PerfEventAttr.unpack(raw)
    flags = attr.flags
    reserved_2 = int.from_bytes(raw[_RESERVED_2_OFFSET : _RESERVED_2_OFFSET + 2], "little")
    reserved_3 = int.from_bytes(raw[_RESERVED_3_OFFSET : _RESERVED_3_OFFSET + 4], "little")
    if flags & RESERVED_1_MASK or reserved_2 or reserved_3:
        raise BpfError(errno.EINVAL, "perf_event_attr reserved fields must be zero")
    if attr.sample_type & ~(PERF_SAMPLE_MAX - 1):
        raise BpfError(errno.EINVAL, f"sample_type {attr.sample_type:#x} has unknown bits")
    if attr.read_format & ~(PERF_FORMAT_MAX - 1):
        raise BpfError(errno.EINVAL, f"read_format {attr.read_format:#x} has unknown bits")
    if attr.sample_type & PERF_SAMPLE_BRANCH_STACK:
        mask = attr.branch_sample_type
        if mask & ~(PERF_SAMPLE_BRANCH_MAX - 1):
            raise BpfError(errno.EINVAL, f"branch_sample_type {mask:#x} has unknown bits")
        if not mask & ~PERF_SAMPLE_BRANCH_PLM_ALL:
            raise BpfError(errno.EINVAL, "branch_sample_type names no branch kind")
        if not mask & PERF_SAMPLE_BRANCH_PLM_ALL:
            # privilege levels default to those the event itself counts
            if not attr._bit(attr.BIT_EXCLUDE_USER):
                mask |= PERF_SAMPLE_BRANCH_USER
            if not attr._bit(attr.BIT_EXCLUDE_KERNEL):
                mask |= PERF_SAMPLE_BRANCH_KERNEL
            if not _bit(flags, BIT_EXCLUDE_HV):
                mask |= PERF_SAMPLE_BRANCH_HV
            attr.branch_sample_type = mask
    if attr.sample_type & PERF_SAMPLE_REGS_USER:
        err = _check_regs(attr.sample_regs_user, "sample_regs_user")
        if err:
            raise err
    if attr.sample_type & PERF_SAMPLE_STACK_USER:
        # a u32 field, but samples are limited to u16 sizes
        if attr.sample_stack_user >= USHRT_MAX:
            raise BpfError(errno.EINVAL, f"sample_stack_user {attr.sample_stack_user} >= 65535")
        if attr.sample_stack_user % 8:
            raise BpfError(
                errno.EINVAL, f"sample_stack_user {attr.sample_stack_user} not 8-aligned"
            )
    if not attr.sample_max_stack:
        attr.sample_max_stack = PERF_MAX_STACK_DEPTH
    # REGS_INTR's verdict is kept, not returned at once: the checks below may answer first
    pending = None
    if attr.sample_type & PERF_SAMPLE_REGS_INTR:
        pending = _check_regs(attr.sample_regs_intr, "sample_regs_intr")
    if attr.sample_type & PERF_SAMPLE_WEIGHT and attr.sample_type & PERF_SAMPLE_WEIGHT_STRUCT:
        raise BpfError(errno.EINVAL, "PERF_SAMPLE_WEIGHT and PERF_SAMPLE_WEIGHT_STRUCT together")
    if not attr._bit(attr.BIT_INHERIT) and _bit(flags, BIT_INHERIT_THREAD):
        raise BpfError(errno.EINVAL, "inherit_thread without inherit")
    if _bit(flags, BIT_REMOVE_ON_EXEC) and _bit(flags, BIT_ENABLE_ON_EXEC):
        raise BpfError(errno.EINVAL, "remove_on_exec and enable_on_exec together")
    if _bit(flags, BIT_SIGTRAP) and not _bit(flags, BIT_REMOVE_ON_EXEC):
        raise BpfError(errno.EINVAL, "sigtrap without remove_on_exec")
    if pending:
        raise pending
    return attr


@dataclass
class PerfProbeArgs:
    """The parsed ``perf_event_open(attr, pid, cpu, group_fd, flags)`` (kbpf-basic's
    ``PerfProbeArgs``).

    ``config`` is a :class:`PerfSwIds` for software events and the raw ``config`` otherwise;
    ``name`` and ``offset`` describe a probe event (``type == PERF_TYPE_MAX``): the function name
    read from ``config1`` and the offset in ``config2``.  ``attr`` is the whole attribute as
    the kernel keeps it (``size`` as used, defaults applied).
    """

    attr: PerfEventAttr
    config: PerfSwIds | int
    name: str
    offset: int
    size: int
    type: int
    pid: int
    cpu: int
    group_fd: int
    flags: PerfEventOpenFlags
    sample_type: int

    @property
    def wakeup_events(self) -> int:
        """Samples between wakeups (0 when ``watermark`` selects a byte watermark instead)."""
        return 0 if self.attr.watermark else self.attr.wakeup_events

    @property
    def is_bpf_output(self) -> bool:
        """A ``PERF_COUNT_SW_BPF_OUTPUT`` software event: what ``bpf_perf_event_output``
        writes to."""
        return (
            self.type == PERF_TYPE_SOFTWARE
            and self.attr.config == PerfSwIds.PERF_COUNT_SW_BPF_OUTPUT
        )

    @classmethod
    def try_from_perf_attr(
        cls,
        host: KernelAuxiliaryOps,
        attr: int | PerfEventAttr,
        pid: int = -1,
        cpu: int = -1,
        group_fd: int = -1,
        flags: int = 0,
        *,
        ncpus: int,
    ) -> PerfProbeArgs:
        """Check and parse ``perf_event_open``'s arguments (see the module docstring).

        ``attr`` is the user address of a ``struct perf_event_attr`` (what the syscall gets;
        copied with :func:`perf_copy_attr`) or an attribute already in kernel hands (its
        ``size`` checked the same way, without a tail to read).  ``ncpus`` is the number of
        possible CPUs (``nr_cpu_ids``)."""
        pid, cpu, group_fd = _i32(pid), _i32(cpu), _i32(group_fd)
        if flags & ~PERF_FLAG_ALL:
            raise BpfError(errno.EINVAL, f"perf_event_open flags {flags:#x} has unknown bits")
        if isinstance(attr, int):
            raw = perf_copy_attr(host, attr)
        else:
            size = attr.size or PERF_ATTR_SIZE_VER0
            if size < PERF_ATTR_SIZE_VER0 or size > PAGE_SIZE:
                raise BpfError(errno.E2BIG, f"perf_event_attr size {size} outside [64, 4096]")
            raw = _with_size(attr.pack(), size)
        a = check_attr(raw)
        if a.freq:
            if a.sample_freq > PERF_EVENT_MAX_SAMPLE_RATE:
                raise BpfError(
                    errno.EINVAL,
                    f"sample_freq {a.sample_freq} above the maximum rate {PERF_EVENT_MAX_SAMPLE_RATE}",
                )
        elif a.sample_period & (1 << 63):
            raise BpfError(errno.EINVAL, f"sample_period {a.sample_period:#x} has bit 63 set")
        if flags & PerfEventOpenFlags.PERF_FLAG_PID_CGROUP and (pid == -1 or cpu == -1):
            raise BpfError(errno.EINVAL, "a cgroup event needs a cgroup fd (pid) and a CPU")
        # perf_event_alloc: a task-less event needs a real CPU
        if not 0 <= cpu < ncpus and (pid == -1 or cpu != -1):
            raise BpfError(errno.EINVAL, f"cpu {cpu} is no CPU (0..{ncpus - 1}) for this event")
        if _bit(a.flags, BIT_SIGTRAP) and pid == -1:
            raise BpfError(errno.EINVAL, "sigtrap needs a task to signal")
        config, name, offset = _init_event(host, a)
        return cls(
            attr=a,
            config=config,
            name=name,
            offset=offset,
            size=a.size,
            type=a.type,
            pid=pid,
            cpu=cpu,
            group_fd=group_fd,
            flags=PerfEventOpenFlags(flags),
            sample_type=a.sample_type,
        )


def _init_event(host: KernelAuxiliaryOps, a: PerfEventAttr) -> tuple[PerfSwIds | int, str, int]:
    """``perf_init_event``: find the PMU for ``type``; return (config, probe name, offset)."""
    branch = bool(a.sample_type & PERF_SAMPLE_BRANCH_STACK)
    if a.type == PERF_TYPE_SOFTWARE:
        if branch:
            raise BpfError(errno.EOPNOTSUPP, "software events cannot sample branch stacks")
        if a.config >= PERF_COUNT_SW_MAX:
            raise BpfError(errno.ENOENT, f"software event config {a.config} does not exist")
        return PerfSwIds(a.config), "", 0
    if a.type == PERF_TYPE_TRACEPOINT:
        if branch:
            raise BpfError(errno.EOPNOTSUPP, "tracepoint events cannot sample branch stacks")
        return a.config, "", 0
    if a.type == PERF_TYPE_MAX:
        name = ""
        if a.config1:
            raw = strncpy_from_user(host, a.config1, KSYM_NAME_LEN)
            if len(raw) == KSYM_NAME_LEN:
                raise BpfError(errno.E2BIG, f"probe function name longer than {KSYM_NAME_LEN - 1}")
            name = raw.decode("utf-8", "surrogateescape")
        return a.config, name, a.config2
    hardware = (PERF_TYPE_HARDWARE, PERF_TYPE_HW_CACHE, PERF_TYPE_RAW, PERF_TYPE_BREAKPOINT)
    what = "hardware" if a.type in hardware else "dynamic"
    raise BpfError(errno.ENOENT, f"no PMU for perf type {a.type} (kbpf-sim has no {what} PMU)")


__all__ = [
    "KSYM_NAME_LEN",
    "PERF_EVENT_IOC_PAUSE_OUTPUT",
    "PERF_EVENT_IOC_REFRESH",
    "PERF_EVENT_IOC_RESET",
    "PERF_FLAG_ALL",
    "PERF_TYPE_MAX",
    "PerfEventIoc",
    "PerfEventOpenFlags",
    "PerfProbeArgs",
    "PerfSwIds",
    "check_attr",
    "perf_copy_attr",
    "strncpy_from_user",
]
