"""Gates: `metric: '>= 0.95'` rules that a recipe stage, or an update's challenger, must pass. Parsed here once, for
pipeline.py and maintenance/update.py alike."""
from __future__ import annotations

import operator
import re
from typing import Any, Callable

from .errors import UsageError

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne}
GATE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.eE+-]+)\s*$")


def parse_gate(gate: Any, where: str) -> list[tuple[str, str, float]]:
    if gate is None:
        return []
    if not isinstance(gate, dict):
        raise UsageError(f"{where}: gate {gate!r} is not accepted; write it as a mapping like {{accuracy: '>= 0.95'}}.")
    out = []
    for metric, rule in gate.items():
        if isinstance(rule, bool):  # `drift: false`: the metric must equal 0 (false) or 1 (true)
            out.append((str(metric), "==", float(rule)))
            continue
        m = GATE.match(str(rule))
        if not m:
            raise UsageError(f"{where}: gate rule {rule!r} for {metric!r} is not accepted; write an operator "
                             f"({', '.join(OPS)}) and a number, like '>= 0.95'.")
        out.append((str(metric), m.group(1), float(m.group(2))))
    return out
