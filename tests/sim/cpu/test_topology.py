"""The topology of a preset: how CPU ids map onto sockets, cores, SMT threads and L3 domains.

Linux on an x86 server numbers every core's first hardware thread before any second thread, so
on a two-socket, 14-core, two-thread Xeon CPU 0's sibling is CPU 28 and CPU 14 is the first core
of socket 1; on a 16-core Ryzen CPU 16 is CPU 0's sibling, and CPUs 0-3 share one CCX's L3.
"""

import pytest

from sim import Machine
from sim.cpu.preset import Preset
from sim.cpu.topology import OTHER_L3, OTHER_SOCKET, SAME_L3, SELF, SMT, Topology


def test_xeon_cpus_are_numbered_cores_first_then_siblings():
    top = Preset.resolve("xeon_e5_2680v4").topology
    assert top.max_cpus == 56 and top.ncores == 28
    assert [top.socket_of[c] for c in (0, 13, 14, 27, 28, 42, 55)] == [0, 0, 1, 1, 0, 1, 1]
    assert top.siblings(0) == [0, 28] and top.siblings(41) == [13, 41]
    assert top.pair_class(0, 0) == SELF
    assert top.pair_class(0, 28) == SMT
    assert top.pair_class(0, 13) == SAME_L3  # one LLC per socket
    assert top.pair_class(0, 14) == OTHER_SOCKET
    assert top.pair_class(28, 14) == OTHER_SOCKET
    assert top.pair_class_name(3, 31) == "smt"


def test_ryzen_cores_fill_four_ccx_of_four():
    top = Preset.resolve("ryzen9_3950x").topology
    assert top.max_cpus == 32 and top.nl3 == 4
    assert [top.l3_of[c] for c in (0, 3, 4, 7, 8, 15, 16, 20)] == [0, 0, 1, 1, 2, 3, 0, 1]
    assert top.pair_class(0, 3) == SAME_L3
    assert top.pair_class(0, 4) == OTHER_L3  # another CCX of the same socket
    assert top.pair_class(0, 16) == SMT
    assert top.pair_class(19, 3) == SMT  # CPU 19 is core 3's second thread


def test_the_default_is_one_socket_of_single_threaded_cores():
    top = Preset.resolve("default").topology
    assert (top.sockets, top.threads_per_core, top.max_cpus) == (1, 1, 64)
    assert {top.pair_class(0, c) for c in range(1, 64)} == {SAME_L3}


def test_max_cpus_comes_from_the_topology_and_bounds_the_machine():
    for name, most in (("default", 64), ("xeon_e5_2680v4", 56), ("ryzen9_3950x", 32)):
        assert Preset.resolve(name).max_cpus == most
    with pytest.raises(ValueError, match="maximum of 32"):
        Machine(cpus=33, cost_model="ryzen9_3950x")
    bigger = Preset.resolve({"preset": "default", "topology.sockets": 2})
    assert bigger.max_cpus == 128 and bigger.topology.pair_class(0, 64) == OTHER_SOCKET


def test_machine_presets_inherit_the_generic_values_they_do_not_restate():
    xeon = Preset.resolve("xeon_e5_2680v4")
    default = Preset.resolve("default")
    assert xeon.freq_ghz == 2.4 and xeon.get("lock", "kind") == "queued"
    assert xeon.data["insn"] == default.data["insn"]  # cycles, priced at the Xeon's clock
    assert xeon.get_ps("insn", "alu_cycles") == round(1000 / 2.4)
    assert xeon.get("mem", "llc_inclusive") is True and default.get("mem", "llc_inclusive") is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 4), "sockets must be a positive integer"),
        ((1, 6, 2, 4), "do not split evenly"),
        ((1, 4, 1.5), "threads_per_core"),
    ],
)
def test_impossible_topologies_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        Topology(*args)


def test_a_preset_without_a_topology_is_refused():
    with pytest.raises(ValueError, match="topology"):
        Topology.from_preset({"cpu": {"freq_ghz": 3.0}})
    with pytest.raises(ValueError, match="lacks cores_per_socket"):
        Topology.from_preset({"topology": {"sockets": 1}})
