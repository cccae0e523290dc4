"""The perf output helper: ``bpf_perf_event_output`` (helper 25) as kernel/trace/bpf_trace.c
(v6.6) runs it for tracing programs; kbpf-basic's ``perf_event_output`` helper.

``bpf_perf_event_output(ctx, map, flags, data, size)`` writes ``size`` bytes of program memory
as the raw part of one ``PERF_RECORD_SAMPLE`` into the perf event stored in ``map`` at index
``flags & BPF_F_INDEX_MASK`` (``BPF_F_CURRENT_CPU``: the slot of the CPU running the program).
r0 is 0 or a negative errno, checked in Linux's order:

* a map that is not a PERF_EVENT_ARRAY: EINVAL (the verifier's ``check_map_func_compatibility``,
  which kbpf-sim, having no verifier, applies at run time);
* flag bits outside ``BPF_F_INDEX_MASK``: EINVAL (the tracing helper; ``BPF_F_CTXLEN_MASK`` is
  only for the skb and xdp variants, which kbpf-sim's program types do not have);
* then the map's checks (E2BIG, ENOENT, EINVAL for an event that is no BPF output event,
  EOPNOTSUPP for an event not running on this CPU, which includes a disabled one) and the ring's
  answer (ENOSPC when the sample is lost or the event has no ring), see
  :meth:`kbpf.map.perf_event_array.PerfEventArrayMap.event_output`.

Linux also refuses a fourth nested call on one CPU (its three per-CPU sample buffers, for task,
irq and NMI context) with EBUSY; kbpf-sim runs one program per CPU at a time and never nests
output, so that limit cannot be reached and is not modelled.
"""

from __future__ import annotations

import errno

from kbpf.errors import BpfError
from kbpf.helper.adapter import HelperSpec, Ret
from kbpf.host import Op
from kbpf.linux_bpf import BPF_F_INDEX_MASK, BpfFuncId
from kbpf.map.perf_event_array import PerfEventArrayMap


def perf_event_output(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> Op:
    """25 ``bpf_perf_event_output(ctx, map, flags, data, size)``: 0 or a negative errno."""
    ops = env.host.get_unified_map_from_ptr(r2).ops
    if not isinstance(ops, PerfEventArrayMap):
        raise BpfError(errno.EINVAL, f"map at {r2:#x} is not a PERF_EVENT_ARRAY")
    if r3 & ~BPF_F_INDEX_MASK:
        raise BpfError(errno.EINVAL, f"perf_event_output flags {r3:#x}: only the index bits")
    return (yield from ops.event_output(r3, r4, r5))


HELPERS: list[HelperSpec] = [
    HelperSpec(BpfFuncId.BPF_FUNC_perf_event_output, perf_event_output, Ret.ERRNO),
]
