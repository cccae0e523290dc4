"""``[[check]]`` expressions compare measured metrics and can fail."""

import pytest

from sim.scenario.checks import CheckError, evaluate

M = {
    "map.plain.value.0": 1200,
    "map.atomic.value.0": 2000,
    "cpu.0.busy_ns": 10,
    "cpu.1.busy_ns": 12,
}


def test_a_true_and_a_false_comparison():
    ok = evaluate("map.plain.value.0 < map.atomic.value.0", M)
    assert ok.passed and ok.values == {"map.plain.value.0": 1200, "map.atomic.value.0": 2000}
    assert not evaluate("map.plain.value.0 > 0.9 * map.atomic.value.0", M).passed


def test_chains_functions_and_boolean_operators():
    assert evaluate(
        "0 < min(cpu.0.busy_ns, cpu.1.busy_ns) <= 10 and not cpu.1.busy_ns < 5", M
    ).passed
    assert evaluate("abs(cpu.0.busy_ns - cpu.1.busy_ns) / cpu.1.busy_ns < 0.2", M).passed


@pytest.mark.parametrize(
    "text, reason",
    [
        ("map.nope.value.0 > 1", "no metric named 'map.nope.value.0'"),
        ("cpu.0.busy_ns", "must be a comparison"),
        ("__import__('os') == 1", "not allowed"),
        ("cpu.0.busy_ns >", "not an expression"),
    ],
)
def test_bad_checks_are_errors(text, reason):
    with pytest.raises(CheckError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        evaluate(text, M)
