"""BPF_RAW_TRACEPOINT_OPEN's attribute (kbpf-basic's ``BpfRawTracePointArg``;
``bpf_raw_tracepoint_open`` and ``bpf_raw_tp_link_attach`` of kernel/bpf/syscall.c, v6.6).

Linux handles the command in this order, and so does kbpf where it is kbpf's part:

1. ``CHECK_ATTR``: bytes past ``raw_tracepoint.prog_fd`` must be zero -> EINVAL;
2. the program behind ``prog_fd`` (EBADF / EINVAL: the host's fd table);
3. by program type: RAW_TRACEPOINT and RAW_TRACEPOINT_WRITABLE read the name; TRACING, EXT and
   LSM programs carry their attach point in BTF and must pass no name (EINVAL), which kbpf-sim
   cannot attach without BTF (EINVAL too); any other type -> EINVAL;
4. the name: ``strncpy_from_user`` into a 128-byte buffer: a fault before the NUL -> EFAULT (a
   NULL ``name`` faults); a name of 128 bytes or more is *cut* to its first 127, not refused;
5. the tracepoint by name (ENOENT when none: the host's table).

:meth:`BpfRawTracePointArg.try_from_bpf_attr` does 1, 3 and 4; a host that resolves the program
first passes its type so the checks come in Linux's order.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from kbpf.errors import BpfError
from kbpf.host import KernelAuxiliaryOps
from kbpf.linux_bpf import BpfProgType, BpfRawTracepointOpenAttr, check_attr_tail
from kbpf.perf.attr import strncpy_from_user

#: ``char buf[128]`` in ``bpf_raw_tp_link_attach``: at most 127 name bytes are read.
RAW_TP_NAME_MAX = 127

_NAMED = (
    BpfProgType.BPF_PROG_TYPE_RAW_TRACEPOINT,
    BpfProgType.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
)
_BTF_ATTACHED = (
    BpfProgType.BPF_PROG_TYPE_TRACING,
    BpfProgType.BPF_PROG_TYPE_EXT,
    BpfProgType.BPF_PROG_TYPE_LSM,
)


@dataclass(frozen=True)
class BpfRawTracePointArg:
    """A parsed BPF_RAW_TRACEPOINT_OPEN: the tracepoint's ``name`` and the program's fd."""

    name: str
    prog_fd: int

    @classmethod
    def try_from_bpf_attr(
        cls,
        host: KernelAuxiliaryOps,
        attr: bytes | bytearray | BpfRawTracepointOpenAttr,
        prog_type: BpfProgType | int | None = None,
    ) -> BpfRawTracePointArg:
        """Parse the command's ``bpf_attr`` (the kernel's copy, any length) and read the name
        from the calling process's memory.

        ``prog_type`` is the type of the program behind ``prog_fd`` when the host has resolved
        it (as Linux does before reading the name); None skips the type checks."""
        if isinstance(attr, BpfRawTracepointOpenAttr):
            parsed = attr
        else:
            check_attr_tail(attr, BpfRawTracepointOpenAttr.END, "BPF_RAW_TRACEPOINT_OPEN")
            parsed = BpfRawTracepointOpenAttr.unpack(bytes(attr[: BpfRawTracepointOpenAttr.END]))
        if prog_type is not None:
            kind = int(prog_type)
            if kind in _BTF_ATTACHED:
                if parsed.name:
                    raise BpfError(
                        errno.EINVAL,
                        f"{BpfProgType(kind).name} programs attach by BTF id, not by name",
                    )
                raise BpfError(
                    errno.EINVAL, f"{BpfProgType(kind).name} programs need BTF, which kbpf lacks"
                )
            if kind not in _NAMED:
                known = {int(t): t.name for t in BpfProgType}
                raise BpfError(
                    errno.EINVAL,
                    f"a {known.get(kind, kind)} program cannot attach to a raw tracepoint",
                )
        try:
            raw = strncpy_from_user(host, parsed.name, RAW_TP_NAME_MAX)
        except BpfError as err:
            raise BpfError(
                errno.EFAULT, f"raw tracepoint name at {parsed.name:#x} unreadable: {err.strerror}"
            ) from None
        return cls(raw.decode("utf-8", "surrogateescape"), parsed.prog_fd)
