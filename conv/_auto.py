"""The rule behind method="auto": which installed method runs a given problem.

Rule: the first of PREFERENCE that is registered, loads, and computes the problem's
dtype. It never picks "python", "tensorflow" or a plugin.

Why this order (measured side by side on the reference machine, 2 Zen 3 cores, over
the public suite seed/mid/deep/pointwise/k5 in float32 and float64, VALID, stride 2
SAME and dilation 2 SAME; README "Choosing a method" has the table): "direct" was
the fastest or within noise of the fastest on every problem. "matmul" runs the same
micro-kernel tap by tap, which adds memory traffic and never beat it. "numpy"
(BLAS) came within noise of it only on large-channel strided problems, and it
cannot honour ``threads``. "matmul" and "numpy" remain as fallbacks for a build
whose compiled kernels cannot be loaded.
"""
from __future__ import annotations

from ._contract import Method, MethodError
from ._frontend import Normalized

PREFERENCE = ("direct", "matmul", "numpy")


def choose(norm: Normalized, registry) -> Method:
    """The method "auto" runs for this problem. Looks candidates up by name (no full
    plugin scan, no plugin import on each call)."""
    tried = []
    for name in PREFERENCE:
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
