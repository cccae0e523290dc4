"""Program handles: load instructions through ``BPF_PROG_LOAD`` the way libbpf does.

The instructions, the licence string and a log buffer are placed in the facade process's user
memory; when the kernel refuses the program, its log (which names the instruction) becomes the
message of the :class:`kbpf.BpfError`.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from kbpf import linux_bpf as uapi
from kbpf.errors import BpfError
from kbpf.linux_bpf import BpfCmd, BpfProgType

if TYPE_CHECKING:  # pragma: no cover
    from sim.machine import Machine

LOG_BUF_SIZE = 64 * 1024
_PREFIX = "BPF_PROG_TYPE_"
#: libbpf's section-name spellings that differ from the type name.
_ALIASES = {
    "tp": "TRACEPOINT",
    "raw_tp": "RAW_TRACEPOINT",
    "socket": "SOCKET_FILTER",
    "tc": "SCHED_CLS",
    "perf_event": "PERF_EVENT",
    "kprobe": "KPROBE",
}


def prog_type_from(value: BpfProgType | str | int) -> BpfProgType:
    if isinstance(value, BpfProgType):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return BpfProgType(value)
        except ValueError:
            raise BpfError(errno.EINVAL, f"unknown program type number {value}") from None
    if isinstance(value, str):
        key = value.strip()
        key = _ALIASES.get(key.lower(), key).upper()
        key = key if key.startswith(_PREFIX) else _PREFIX + key
        if key in BpfProgType.__members__:
            return BpfProgType[key]
        choices = ", ".join(n[len(_PREFIX) :].lower() for n in BpfProgType.__members__)
        raise ValueError(f"unknown program type {value!r}; choose one of: {choices}")
    raise ValueError(f"program type must be a BpfProgType, a name or a number, got {value!r}")


class ProgramHandle:
    """A loaded program's fd in the facade process."""

    def __init__(
        self, machine: Machine, fd: int, name: str, prog_type: BpfProgType, section: str = ""
    ):
        self.machine = machine
        self.fd = fd
        self.name = name
        self.prog_type = prog_type
        self.section = section

    def __repr__(self) -> str:
        return f"ProgramHandle(fd={self.fd}, name={self.name!r}, {self.prog_type.name})"

    @classmethod
    def load(
        cls, m: Machine, insns: bytes, prog_type, name: str, section: str = ""
    ) -> ProgramHandle:
        ptype = prog_type_from(prog_type)
        if not isinstance(insns, bytes | bytearray | memoryview):
            raise BpfError(errno.EINVAL, f"insns must be bytes, got {type(insns).__name__}")
        insns = bytes(insns)
        if not insns or len(insns) % 8:
            raise BpfError(
                errno.EINVAL,
                f"program of {len(insns)} bytes is not a whole number of 8-byte instructions",
            )
        if not isinstance(name, str) or len(name.encode()) > uapi.BPF_OBJ_NAME_LEN - 1:
            raise BpfError(errno.EINVAL, f"program name {name!r} is longer than 15 bytes")
        calls = m.kernel.facade_calls
        calls.begin()
        attr = uapi.BpfProgLoadAttr(
            prog_type=int(ptype),
            insn_cnt=len(insns) // 8,
            insns=calls.put(insns),
            license=calls.put(b"GPL\0"),
            log_level=1,
            log_size=LOG_BUF_SIZE,
            log_buf=calls.buffer(LOG_BUF_SIZE),
            prog_name=name.encode(),
        )
        try:
            fd = calls.bpf(BpfCmd.BPF_PROG_LOAD, attr.pack())
        except BpfError as e:
            log = (
                calls.get(attr.log_buf, LOG_BUF_SIZE)
                .split(b"\0", 1)[0]
                .decode(errors="replace")
                .strip()
            )
            raise BpfError(e.errno, log or e.strerror) from None
        return cls(m, fd, name, ptype, section)

    def close(self) -> None:
        self.machine.kernel.close(self.machine.kernel.facade, self.fd)
