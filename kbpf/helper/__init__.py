"""Helpers: each written once as a request generator, offered in two tables.

``request_helpers(host)`` maps helper id -> ``f(r1, r2, r3, r4, r5)`` returning a generator of
host requests whose return value is r0 (a 64-bit unsigned int): the simulated machine drives
these so that a helper's locks and memory traffic take simulated time.
``init_helper_functions(host)`` maps helper id -> a plain ``f(r1, r2, r3, r4, r5) -> int`` that
runs the same generator through :func:`kbpf.host.drive`.

``HELPERS`` is the declarative list: id, implementation, return convention.  Other helper
modules (ring buffer, perf output) add their specs to it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from kbpf.helper import basic, printk
from kbpf.helper.adapter import HelperOp, HelperSpec, Ret, adapt
from kbpf.helper.basic import HelperEnv
from kbpf.host import KernelAuxiliaryOps, drive
from kbpf.linux_bpf import BpfFuncId

F = BpfFuncId

#: Every helper kbpf implements, with its return convention.
HELPERS: list[HelperSpec] = [
    HelperSpec(F.BPF_FUNC_map_lookup_elem, basic.map_lookup_elem, Ret.POINTER),
    HelperSpec(F.BPF_FUNC_map_update_elem, basic.map_update_elem, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_map_delete_elem, basic.map_delete_elem, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_probe_read, basic.probe_read, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_ktime_get_ns, basic.ktime_get_ns, Ret.VALUE),
    HelperSpec(F.BPF_FUNC_trace_printk, printk.trace_printk, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_get_prandom_u32, basic.get_prandom_u32, Ret.VALUE),
    HelperSpec(F.BPF_FUNC_get_smp_processor_id, basic.get_smp_processor_id, Ret.VALUE),
    HelperSpec(F.BPF_FUNC_get_current_pid_tgid, basic.get_current_pid_tgid, Ret.VALUE),
    HelperSpec(F.BPF_FUNC_get_current_comm, basic.get_current_comm, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_map_push_elem, basic.map_push_elem, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_map_pop_elem, basic.map_pop_elem, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_map_peek_elem, basic.map_peek_elem, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_probe_read_user, basic.probe_read_user, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_probe_read_kernel, basic.probe_read_kernel, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_probe_read_user_str, basic.probe_read_user_str, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_probe_read_kernel_str, basic.probe_read_kernel_str, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_ktime_get_boot_ns, basic.ktime_get_boot_ns, Ret.VALUE),
    HelperSpec(F.BPF_FUNC_for_each_map_elem, basic.for_each_map_elem, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_trace_vprintk, printk.trace_vprintk, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_loop, basic.loop, Ret.ERRNO),
    HelperSpec(F.BPF_FUNC_map_lookup_percpu_elem, basic.map_lookup_percpu_elem, Ret.POINTER),
]


#: Modules of further helper families, each exporting its own ``HELPERS`` list of specs
#: (ring buffer, perf output, dynptr); imported when the tables are built.
HELPER_MODULES = ("kbpf.helper.ringbuf", "kbpf.helper.perf")


def all_helper_specs() -> list[HelperSpec]:
    """``HELPERS`` plus every family module's list, in id order."""
    specs = list(HELPERS)
    for name in HELPER_MODULES:
        specs.extend(import_module(name).HELPERS)
    return sorted(specs, key=lambda s: int(s.func_id))


def request_helpers(host: KernelAuxiliaryOps) -> dict[int, HelperOp]:
    """Helper id -> ``f(r1..r5)`` returning a request generator whose value is r0."""
    env = HelperEnv(host)
    return {int(spec.func_id): adapt(spec, env) for spec in all_helper_specs()}


def init_helper_functions(
    host: KernelAuxiliaryOps,
) -> dict[int, Callable[[int, int, int, int, int], int]]:
    """Helper id -> ``f(r1..r5) -> r0``, each the generator form run by :func:`drive`."""
    table = request_helpers(host)

    def synchronous(helper: HelperOp) -> Callable[[int, int, int, int, int], int]:
        def call(r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
            return drive(helper(r1, r2, r3, r4, r5), host)

        call.__name__ = helper.__name__
        call.__doc__ = helper.__doc__
        return call

    return {func_id: synchronous(helper) for func_id, helper in table.items()}


__all__ = [
    "HELPERS",
    "HelperEnv",
    "HelperSpec",
    "Ret",
    "adapt",
    "init_helper_functions",
    "request_helpers",
]
