"""Event sources: arrival processes and context fields, each drawn from its own stream."""

import numpy as np
import pytest

from kbpf.asm import assemble
from sim import Machine
from sim.scenario.schema import SourceSpec
from sim.scenario.sources import SourceProcess

READ_U32 = "ldxw %r0, [%r1]\nexit"


def run_source(spec: dict, cpus=1, program=READ_U32, seed=0, index=0):
    m = Machine(cpus=cpus)
    prog = m.load_program(assemble(program), name="p")
    invs = []
    src = SourceSpec.model_validate(spec)
    for cpu in range(cpus):
        SourceProcess(
            m, index, src, cpu, lambda c, ctx: [m.submit(prog, cpu=c, ctx=ctx)], invs.append, seed
        )
    m.env.run()
    return m, invs


def test_periodic_arrivals_fire_every_interval_from_the_start():
    _, invs = run_source(
        {
            "program": "p",
            "count": 5,
            "arrival": "periodic",
            "interval_ns": 1000,
            "start_ns": 300,
            "field": [{"dist": "sequence", "start": 7}],
        }
    )
    assert [inv.start_ns for inv in invs] == [300, 1300, 2300, 3300, 4300]
    assert [inv.r0 for inv in invs] == [7, 8, 9, 10, 11]


def test_back_to_back_fires_the_next_when_the_previous_ends():
    _, invs = run_source({"program": "p", "count": 4, "field": [{"dist": "constant", "value": 3}]})
    for prev, nxt in zip(invs, invs[1:], strict=False):
        assert nxt.start_ns == prev.end_ns
    assert {inv.r0 for inv in invs} == {3}


def test_poisson_gaps_average_the_interval():
    _, invs = run_source({"program": "p", "count": 3000, "arrival": "poisson", "interval_ns": 500})
    gaps = np.diff([inv.start_ns for inv in invs])
    assert 450 < gaps.mean() < 550 and gaps.std() > 300  # exponential: std close to the mean


def test_bursts_and_duration():
    _, invs = run_source(
        {
            "program": "p",
            "duration_ns": 10_000,
            "arrival": "burst",
            "interval_ns": 4000,
            "burst_size": 3,
        }
    )
    starts = [inv.start_ns for inv in invs]
    assert len(invs) == 9  # bursts at 0, ~4000 and ~8000 ns
    assert starts[3] - starts[2] == 4000 and starts[1] == invs[0].end_ns


def test_zipf_keys_favour_rank_zero_and_fields_pack_in_order():
    m, invs = run_source(
        {
            "program": "p",
            "count": 2000,
            "field": [
                {"dist": "zipf", "s": 1.2, "n": 100},
                {"dist": "cpu"},
                {"dist": "time", "size": 8},
            ],
        }
    )
    keys = np.bincount([inv.r0 for inv in invs], minlength=100)
    assert keys[0] == keys.max() and keys[0] > 5 * keys[10] and keys.sum() == 2000
    ctx = invs[5].ctx
    assert len(ctx) == 16 and int.from_bytes(ctx[4:8], "little") == 0
    assert int.from_bytes(ctx[8:16], "little") == invs[5].start_ns


def test_each_source_and_cpu_has_its_own_stream():
    spec = {"program": "p", "count": 50, "field": [{"dist": "uniform", "low": 0, "high": 1 << 30}]}
    _, alone = run_source(spec, cpus=1)
    _, two = run_source(spec, cpus=2)
    assert [i.r0 for i in alone] == [i.r0 for i in two if i.cpu == 0]
    assert [i.r0 for i in two if i.cpu == 0] != [i.r0 for i in two if i.cpu == 1]
    _, other_seed = run_source(spec, seed=1)
    assert [i.r0 for i in alone] != [i.r0 for i in other_seed]


@pytest.mark.parametrize(
    "spec, msg",
    [
        ({"program": "p"}, "give 'count'"),
        ({"program": "p", "tracepoint": "a/b", "count": 1}, "exactly one of"),
        ({"program": "p", "count": 1, "arrival": "poisson"}, "interval_ns > 0"),
        (
            {"program": "p", "count": 1, "field": [{"dist": "uniform", "low": 5, "high": 1}]},
            "low <= high",
        ),
    ],
)
def test_bad_sources_are_refused(spec, msg):
    with pytest.raises(ValueError, match=msg):
        SourceSpec.model_validate(spec)
