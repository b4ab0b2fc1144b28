"""The rule behind method="auto": which installed method runs a given problem.

The rule is a preference order measured on the reference machine (2 Zen 3 cores);
see README "Choosing a method". It never picks "python".
"""
from __future__ import annotations

from typing import Sequence

from ._frontend import Normalized

PREFERENCE = ("numpy", "direct")


def choose(norm: Normalized, available: Sequence[str]) -> str:
    for name in PREFERENCE:
        if name in available:
            return name
    raise ValueError(
        "method='auto' found none of its candidates installed "
        f"({', '.join(PREFERENCE)}); installed: {', '.join(available) or 'none'}"
    )
