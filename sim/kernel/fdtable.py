"""Per-process file descriptor tables, as Linux hands them out: the lowest free number.

0, 1 and 2 are taken by the process's standard streams at creation, so the first BPF object a
process creates gets fd 3, as it would on Linux.
"""

from __future__ import annotations

import errno
from typing import Any

from kbpf.errors import BpfError

#: Linux's default RLIMIT_NOFILE soft limit.
NR_OPEN_DEFAULT = 1024


class StdStream:
    """A stand-in for an inherited terminal descriptor (not a BPF object)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def release(self) -> None:
        """Terminal streams hold nothing to drop."""


class FdTable:
    def __init__(self, limit: int = NR_OPEN_DEFAULT):
        self.limit = limit
        self._files: dict[int, Any] = {
            0: StdStream("stdin"),
            1: StdStream("stdout"),
            2: StdStream("stderr"),
        }

    def install(self, obj: Any) -> int:
        """Install ``obj`` at the lowest free descriptor; EMFILE when the table is full."""
        for fd in range(self.limit):
            if fd not in self._files:
                self._files[fd] = obj
                return fd
        raise BpfError(errno.EMFILE, f"no free file descriptor below {self.limit}")

    def get(self, fd: int) -> Any:
        """The object behind ``fd``; EBADF when none."""
        try:
            return self._files[fd]
        except (KeyError, TypeError):
            raise BpfError(errno.EBADF, f"fd {fd} is not open") from None

    def close(self, fd: int) -> Any:
        """Remove ``fd`` and return the object it referred to; EBADF when not open."""
        try:
            return self._files.pop(fd)
        except (KeyError, TypeError):
            raise BpfError(errno.EBADF, f"fd {fd} is not open") from None

    def items(self):
        return sorted(self._files.items())
