"""The rule behind method="auto": which installed method runs a given problem.

The rule is a preference order measured on the reference machine (2 Zen 3 cores);
see README "Choosing a method". It never picks "python".
"""
from __future__ import annotations

from ._contract import Method, MethodError
from ._frontend import Normalized

PREFERENCE = ("direct", "matmul", "numpy")


def candidates(norm: Normalized):
    """Method names to try for this problem, best first."""
    return PREFERENCE


def choose(norm: Normalized, registry) -> Method:
    """The first candidate that is registered, loads, is available and computes the
    problem's dtype. Looks candidates up directly (no full plugin scan per call)."""
    tried = []
    for name in candidates(norm):
        try:
            method = registry.get_method(name)
        except (ValueError, MethodError) as exc:
            tried.append(f"{name} ({exc.__class__.__name__})")
            continue
        if norm.dtype.name in method.dtypes and method.is_available():
            return method
        tried.append(name)
    raise ValueError(
        "method='auto' found none of its candidates usable "
        f"({', '.join(tried)}); installed: {', '.join(registry.list_methods()) or 'none'}"
    )
