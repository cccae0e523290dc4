"""kbpf — a Python port of kbpf-basic: what a kernel needs to host eBPF.

Linux BPF UAPI constants and layouts (:mod:`kbpf.linux_bpf`), map types with Linux v6.6
semantics (:mod:`kbpf.map`), helpers (:mod:`kbpf.helper`), the program preprocessor
(:mod:`kbpf.preprocessor`), perf ring pages (:mod:`kbpf.perf`), and the host protocols a kernel
implements to plug all of it in (:mod:`kbpf.host`).  Nothing here imports SimPy or ``sim``.
"""

from kbpf.errors import ENOTSUPP, BpfError

__all__ = ["BpfError", "ENOTSUPP"]
