"""Program metadata from BPF_PROG_LOAD (kbpf-basic's ``BpfProgMeta``) and the load log.

:meth:`BpfProgMeta.from_attr` reads a packed BPF_PROG_LOAD ``bpf_attr`` and what it points to in
user memory (instructions, license, through ``host.copy_from_user`` /
``host.string_from_user_cstr``) with the checks ``bpf_prog_load`` (kernel/bpf/syscall.c, v6.6)
makes before verification, in its order:

* ``CHECK_ATTR`` (nothing past ``log_true_size``; the whole union is used) -> EINVAL;
* unknown ``prog_flags`` bits -> EINVAL;
* the license must be readable (EFAULT); it is cut to 127 bytes, and ``gpl_compatible`` says
  whether it is one of the kernel's GPL-compatible strings;
* ``insn_cnt`` of 0 or above 1,000,000 (the privileged limit) -> E2BIG;
* an unknown program type -> EINVAL;
* the instructions must be readable (EFAULT);
* the name follows ``bpf_obj_name_cpy`` (``[A-Za-z0-9_.]``, NUL within 16 bytes) -> EINVAL;
* the log attributes must be sane (``bpf_verifier_log_attr_valid``) -> EINVAL.

:class:`BpfVerifierLog` is the load log: text appended during checks, then written back to the
user's buffer the way v6.6 does (rotating by default, keeping the end; ``BPF_LOG_FIXED`` keeps
the start), with ENOSPC when the text did not fit.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from kbpf.errors import BpfError
from kbpf.host import KernelAuxiliaryOps
from kbpf.linux_bpf import (
    BPF_COMPLEXITY_LIMIT_INSNS,
    BPF_LOG_FIXED,
    BPF_LOG_MASK,
    BPF_PROG_LOAD_FLAGS,
    BpfProgLoadAttr,
    BpfProgType,
    check_attr_tail,
)
from kbpf.map.meta import obj_name_from_bytes

#: ``license_is_gpl_compatible`` (include/linux/license.h).
GPL_COMPATIBLE_LICENSES = frozenset(
    {
        "GPL",
        "GPL v2",
        "GPL and additional rights",
        "Dual BSD/GPL",
        "Dual MIT/GPL",
        "Dual MPL/GPL",
    }
)
#: The kernel copies at most this many license bytes (``char license[128]``).
LICENSE_MAX = 127


def license_is_gpl_compatible(license: str) -> bool:
    return license in GPL_COMPATIBLE_LICENSES


@dataclass
class BpfVerifierLog:
    """The load log of one BPF_PROG_LOAD (``struct bpf_verifier_log``).

    ``level`` 0 keeps nothing.  :meth:`finalize` copies the log to ``ubuf`` (``len_total``
    bytes, NUL-terminated) and returns ``log_true_size``, the size the whole log needed; it
    raises ENOSPC when that exceeds ``len_total``, as Linux fails such a load.
    """

    level: int = 0
    ubuf: int = 0
    len_total: int = 0
    lines: list[str] = field(default_factory=list)

    @classmethod
    def from_attr(cls, attr: BpfProgLoadAttr) -> BpfVerifierLog:
        """``bpf_vlog_init``: buffer and size together or not at all; a buffer needs a level;
        only known level bits; at most ``UINT_MAX >> 2`` bytes -> EINVAL otherwise."""
        log = cls(attr.log_level, attr.log_buf, attr.log_size)
        if bool(log.ubuf) != bool(log.len_total):
            raise BpfError(errno.EINVAL, "log_buf and log_size must be given together")
        if log.ubuf and not log.level:
            raise BpfError(errno.EINVAL, "log_buf given with log_level 0")
        if log.level & ~BPF_LOG_MASK:
            raise BpfError(errno.EINVAL, f"log_level {log.level:#x} has unknown bits")
        if log.len_total > 0xFFFFFFFF >> 2:
            raise BpfError(errno.EINVAL, f"log_size {log.len_total} too large")
        return log

    def write(self, text: str) -> None:
        """Append ``text`` (a line or part of one) when logging is on."""
        if self.level:
            self.lines.append(text)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def finalize(self, host: KernelAuxiliaryOps) -> int:
        """Write the log to user memory; return ``log_true_size`` (length + NUL, 0 without
        logging).  ENOSPC when it was cut."""
        if not self.level:
            return 0
        data = self.text.encode("utf-8", "replace")
        true_size = len(data) + 1
        if self.ubuf:
            room = self.len_total - 1
            kept = data[:room] if self.level & BPF_LOG_FIXED else data[-room:] if room else b""
            host.copy_to_user(self.ubuf, kept + b"\0")
            if true_size > self.len_total:
                raise BpfError(
                    errno.ENOSPC, f"load log of {true_size} bytes exceeds log_size {self.len_total}"
                )
        return true_size


@dataclass
class BpfProgMeta:
    """What BPF_PROG_LOAD asked for (kbpf-basic's ``BpfProgMeta``)."""

    prog_type: BpfProgType
    insns: bytes
    license: str = ""
    prog_flags: int = 0
    expected_attach_type: int = 0
    kern_version: int = 0
    name: str = ""
    gpl_compatible: bool = False
    attach_btf_id: int = 0
    attach_prog_fd: int = 0
    fd_array: int = 0
    log: BpfVerifierLog = field(default_factory=BpfVerifierLog)

    @property
    def insn_cnt(self) -> int:
        return len(self.insns) // 8

    @classmethod
    def from_attr(cls, host: KernelAuxiliaryOps, data: bytes | bytearray) -> BpfProgMeta:
        """Parse a packed BPF_PROG_LOAD attribute; see the module docstring for the checks."""
        check_attr_tail(
            bytes(data).ljust(BpfProgLoadAttr.END, b"\0"), BpfProgLoadAttr.END, "BPF_PROG_LOAD"
        )
        attr = BpfProgLoadAttr.unpack(data)
        if attr.prog_flags & ~BPF_PROG_LOAD_FLAGS:
            raise BpfError(
                errno.EINVAL,
                f"prog_flags {attr.prog_flags:#x} has unknown bits "
                f"({attr.prog_flags & ~BPF_PROG_LOAD_FLAGS:#x})",
            )
        license = _read_license(host, attr.license)
        if attr.insn_cnt == 0 or attr.insn_cnt > BPF_COMPLEXITY_LIMIT_INSNS:
            raise BpfError(
                errno.E2BIG,
                f"insn_cnt {attr.insn_cnt}: a program has 1 to {BPF_COMPLEXITY_LIMIT_INSNS} instructions",
            )
        try:
            prog_type = BpfProgType(attr.prog_type)
        except ValueError:
            raise BpfError(errno.EINVAL, f"unknown program type {attr.prog_type}") from None
        if prog_type == BpfProgType.BPF_PROG_TYPE_UNSPEC:
            raise BpfError(errno.EINVAL, "program type 0 (BPF_PROG_TYPE_UNSPEC) cannot be loaded")
        insns = host.copy_from_user(attr.insns, attr.insn_cnt * 8)
        name = obj_name_from_bytes(attr.prog_name, "prog_name")
        log = BpfVerifierLog.from_attr(attr)
        return cls(
            prog_type=prog_type,
            insns=bytes(insns),
            license=license,
            prog_flags=attr.prog_flags,
            expected_attach_type=attr.expected_attach_type,
            kern_version=attr.kern_version,
            name=name,
            gpl_compatible=license_is_gpl_compatible(license),
            attach_btf_id=attr.attach_btf_id,
            attach_prog_fd=attr.attach_prog_fd,
            fd_array=attr.fd_array,
            log=log,
        )


def _read_license(host: KernelAuxiliaryOps, ptr: int) -> str:
    """``strncpy_from_bpfptr(license, attr->license, 127)``: EFAULT when unreadable (a NULL
    pointer included); cut at 127 bytes."""
    if not ptr:
        raise BpfError(errno.EFAULT, "license pointer is NULL")
    out = bytearray()
    while len(out) < LICENSE_MAX:
        b = host.copy_from_user(ptr + len(out), 1)
        if b == b"\0":
            break
        out += b
    return out.decode("utf-8", "replace")
