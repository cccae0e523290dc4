"""sim — a simulated machine that hosts kbpf: cores, memory, caches, a kernel and a user space.

``from sim import Machine`` is the entry point (API.md §3).
"""

from __future__ import annotations

__all__ = ["Machine"]


def __getattr__(name: str):
    # Imported lazily so that ``sim.mem`` or ``sim.cpu`` can be used without building the whole
    # machine stack (and so that the command line starts fast).
    if name == "Machine":
        from sim.machine import Machine

        return Machine
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
