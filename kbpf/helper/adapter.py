"""One adapter between helper implementations and the five-register calling convention.

A helper is written once, as a generator function ``impl(env, r1, r2, r3, r4, r5)`` that yields
host requests and returns a Python int (or raises ``BpfError``).  What r0 becomes depends only on
the helper's return convention, so that is the adapter's parameter:

* ``ERRNO``   – a result or a negative errno: ``BpfError(e)`` becomes ``-e``;
* ``POINTER`` – an address or NULL: any ``BpfError`` becomes 0 (``RET_PTR_TO_..._OR_NULL``);
* ``VOID``    – nothing: r0 is 0;
* ``VALUE``   – a value that cannot fail (``ktime_get_ns``): a ``BpfError`` is a bug and
  propagates.

Results are masked to 64 bits, so a negative errno reaches the program as its two's complement.
Exceptions other than ``BpfError`` always propagate; so does a program fault the host raises
around a ``Callback`` (the driver calls the program outside the helper's frame).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from kbpf.errors import BpfError
from kbpf.host import Op

U64 = (1 << 64) - 1


class Ret(Enum):
    """A helper's return convention (``bpf_func_proto.ret_type``, coarsely)."""

    ERRNO = "errno"
    POINTER = "pointer"
    VOID = "void"
    VALUE = "value"


#: ``impl(env, r1, r2, r3, r4, r5) -> Op``.
HelperImpl = Callable[..., Op]
#: What a host calls: five unsigned 64-bit arguments, a generator returning r0.
HelperOp = Callable[[int, int, int, int, int], Op]


@dataclass(frozen=True, slots=True)
class HelperSpec:
    """A helper: its id, its implementation and its return convention."""

    func_id: int
    impl: HelperImpl
    ret: Ret

    @property
    def name(self) -> str:
        return self.impl.__name__


def adapt(spec: HelperSpec, env: object) -> HelperOp:
    """Bind ``spec.impl`` to ``env`` behind the adapter for ``spec.ret``."""
    impl = spec.impl
    ret = spec.ret
    if ret is Ret.ERRNO:

        def helper(r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
            try:
                result = yield from impl(env, r1, r2, r3, r4, r5)
            except BpfError as err:
                return -err.errno & U64
            return result & U64

    elif ret is Ret.POINTER:

        def helper(r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
            try:
                result = yield from impl(env, r1, r2, r3, r4, r5)
            except BpfError:
                return 0
            return result & U64

    elif ret is Ret.VOID:

        def helper(r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
            yield from impl(env, r1, r2, r3, r4, r5)
            return 0

    else:

        def helper(r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
            return (yield from impl(env, r1, r2, r3, r4, r5)) & U64

    helper.__name__ = f"bpf_{impl.__name__}"
    helper.__qualname__ = helper.__name__
    helper.__doc__ = impl.__doc__
    return helper
