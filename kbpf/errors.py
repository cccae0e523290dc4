"""BpfError: the one exception every failing map, program or syscall operation raises.

It is an ``OSError`` so that callers can catch it the way they catch a failing system call, and
``.errno`` always holds the positive Linux errno.  Programs never see it: helpers hand them the
negative errno in r0, as Linux does.
"""

from __future__ import annotations

import errno as _errno
import os

#: Linux's internal "operation not supported" (include/linux/errno.h), used by BPF for
#: operations a map type does not implement.  Python's errno module has no name for it.
ENOTSUPP = 524

_NAMES = {ENOTSUPP: "ENOTSUPP"}


def errno_name(code: int) -> str:
    """Return the symbolic name of a Linux errno (``"ENOENT"``), or the number as text."""
    return _NAMES.get(code) or _errno.errorcode.get(code, str(code))


class BpfError(OSError):
    """A BPF operation failed with a Linux errno.

    ``BpfError(errno.EINVAL, "key_size 3, expected 4")`` — the message says what was wrong; for
    size errors it names the expected size.
    """

    def __init__(self, code: int, message: str | None = None):
        code = abs(int(code))
        if message is None:
            message = os.strerror(code) if code != ENOTSUPP else "operation not supported"
        super().__init__(code, message)

    def __str__(self) -> str:
        return f"[{errno_name(self.errno)}] {self.strerror}"
