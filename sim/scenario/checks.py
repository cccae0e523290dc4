"""``[[check]]`` expressions: comparisons over a run's measured metrics.

A check is a small expression such as ``map.atomic.value.0 > 1.5 * map.plain.value.0``.  Names
are dotted paths into the run's metrics (numbers only); the grammar is numbers, names, ``+ - * /``,
unary minus, parentheses, ``min(...)``/``max(...)``/``abs(...)``, comparisons (chains allowed),
and ``and``/``or``/``not``.  It is parsed with :mod:`ast` and evaluated by walking the tree —
never with ``eval`` — so a scenario cannot run code.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_CMPS = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCS = {"min": min, "max": max, "abs": abs}


class CheckError(ValueError):
    """A check names a metric that does not exist, or is not an expression we accept."""


def _dotted(node: ast.AST) -> str:
    """Turn ``map.plain.value[0]`` / ``map.plain.value.0`` back into a dotted metric name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return f"{_dotted(node.value)}.{node.slice.value}"
    raise CheckError(f"not a metric name: {ast.unparse(node)}")


_NUMERIC_PART = re.compile(r"(?<=[A-Za-z_\]])\.(\d+)")


def _normalise(text: str) -> str:
    """Metric paths may have numeric parts (``value.0``), which Python would read as a float
    after a dot; rewrite ``.N`` that follows a name into ``[N]``."""
    return _NUMERIC_PART.sub(r"[\1]", text)


@dataclass
class CheckResult:
    check: str
    values: dict[str, float]
    passed: bool

    def as_json(self) -> dict:
        return {"check": self.check, "values": self.values, "passed": self.passed}


def evaluate(text: str, metrics: Mapping[str, float]) -> CheckResult:
    """Evaluate one check against ``metrics`` (a flat ``{dotted name: number}``)."""
    try:
        tree = ast.parse(_normalise(text), mode="eval")
    except SyntaxError as e:
        raise CheckError(f"check {text!r} is not an expression: {e.msg}") from None
    used: dict[str, float] = {}

    def ev(node: ast.AST):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            return node.value
        if isinstance(node, ast.Name | ast.Attribute | ast.Subscript):
            name = _dotted(node)
            if name not in metrics:
                near = sorted(k for k in metrics if k.startswith(name.split(".")[0]))[:8]
                hint = f"; known names starting alike: {', '.join(near)}" if near else ""
                raise CheckError(f"check {text!r}: no metric named {name!r}{hint}")
            used[name] = metrics[name]
            return metrics[name]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                return float("inf") if left > 0 else float("-inf") if left < 0 else float("nan")
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not ev(node.operand)
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare) and all(type(o) in _CMPS for o in node.ops):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                if not _CMPS[type(op)](left, right):
                    return False
                left = right
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS
            and not node.keywords
        ):
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))
        raise CheckError(f"check {text!r}: {ast.unparse(node)!r} is not allowed in a check")

    result = ev(tree)
    if not isinstance(tree.body, ast.Compare | ast.BoolOp) and not (
        isinstance(tree.body, ast.UnaryOp) and isinstance(tree.body.op, ast.Not)
    ):
        raise CheckError(f"check {text!r} must be a comparison (such as a < b)")
    return CheckResult(text, used, bool(result))
