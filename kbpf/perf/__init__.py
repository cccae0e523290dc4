"""Perf events for BPF: the ring pages user space maps, the event object, and
``perf_event_open``'s argument parsing (kbpf-basic's ``perf`` module).

* :class:`RingPage` — ``struct perf_buffer``: the metadata page and data pages a perf event's
  mmap shows, with Linux's space, loss (PERF_RECORD_LOST) and wakeup rules;
* :class:`BpfPerfEvent` — an event: its attribute, where it runs, enable/disable and the other
  ioctls, its ring once mapped, and the sample layout ``bpf_perf_event_output`` writes;
* :class:`PerfProbeArgs` — ``PerfProbeArgs.try_from_perf_attr(host, attr, pid, cpu, group_fd,
  flags, ncpus=...)`` with ``perf_event_open``'s checks;
* the ioctl numbers (:class:`PerfEventIoc` and ``PERF_EVENT_IOC_*``).
"""

from kbpf.linux_bpf import (
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
)
from kbpf.perf.attr import (
    PERF_EVENT_IOC_PAUSE_OUTPUT,
    PERF_EVENT_IOC_REFRESH,
    PERF_EVENT_IOC_RESET,
    PerfEventIoc,
    PerfEventOpenFlags,
    PerfProbeArgs,
    PerfSwIds,
)
from kbpf.perf.event import BpfPerfEvent
from kbpf.perf.ring_page import EPOLLHUP, EPOLLIN, RingPage

__all__ = [
    "EPOLLHUP",
    "EPOLLIN",
    "PERF_EVENT_IOC_DISABLE",
    "PERF_EVENT_IOC_ENABLE",
    "PERF_EVENT_IOC_PAUSE_OUTPUT",
    "PERF_EVENT_IOC_REFRESH",
    "PERF_EVENT_IOC_RESET",
    "PERF_EVENT_IOC_SET_BPF",
    "BpfPerfEvent",
    "PerfEventIoc",
    "PerfEventOpenFlags",
    "PerfProbeArgs",
    "PerfSwIds",
    "RingPage",
]
