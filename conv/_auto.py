"""The rule behind method="auto": which installed method runs a given problem.

Rule: "depthwise" for a grouped problem with one input channel a group (a depthwise
convolution: its compiled kernel takes 0.9-1.1 ms where one "direct" call per channel took
72 ms, MobileNet-v2's (8,112,112,32) 3x3 SAME float32; with 4 or more channels a group it
takes 1.7-3.7x the time of "direct" group by group, which auto therefore keeps; at 2 it
took 0.6-0.9x in quiet runs and 1.6x in one under load: too little to route on);
"winograd" where it pays (winograd_pays: a 3x3 kernel at stride 1 and dilation 1, at least
WINOGRAD_MIN_PIXELS output pixels and WINOGRAD_PIXELS_PER_WEIGHT * C_in * C_out of them,
C_in and C_out at least WINOGRAD_MIN_CHANNELS and together at least
WINOGRAD_MIN_CHANNEL_SUM); otherwise the first of PREFERENCE that is registered, loads, and
computes the problem's dtype. It never picks "python", "tensorflow" or a plugin.

Every method auto may pick keeps the accuracy contract (conv.testing.NORMWISE, normwise
2e-5 float32, 1e-12 float64) on the grid of ``python -m conv --accuracy`` (tested):
"winograd" by declaration and measurement, the others componentwise.

Why (measured side by side, interleaved, median of 5-9, 2 threads, on a 2-core AVX-512
Xeon; README "Choosing a method" has the tables): "winograd" took 0.40-0.86x direct's
time on ResNet-50's 3x3 stride-1 layers with 64-256 channels at batch 1 and 8 and on
mid and deep, and with its weights-stationary order 0.84x (float32) and 0.79x (float64)
on 7 x 7 x 512 at batch 8 (0.0015 output pixels a weight). It lost where the weights
outweigh the pixels further (7 x 7 x 512 at batch 1, 0.0002 pixels a weight: 1.19x and
1.4x; at batch 4, 0.00075: 0.89x float32 but 1.23x float64) or channels are few (8
channels: 2.1x, 16: 0.88-1.2x, 3: 1.9-2.8x). Elsewhere "direct" was the fastest or
within noise of the fastest. "matmul" runs the same micro-kernel tap by tap, which adds
memory traffic and never beat it. "numpy" (BLAS) came within noise of it only on
large-channel strided problems, and it cannot honour ``threads``. "matmul" and "numpy"
remain as fallbacks for a build whose compiled kernels cannot be loaded.
"""
from __future__ import annotations

from typing import Optional

from ._contract import Method, MethodError
from ._frontend import DTYPE_NAMES, Spec

PREFERENCE = ("direct", "matmul", "numpy")
#: Every method auto may pick (for the accuracy test and the benchmarks).
CANDIDATES = ("depthwise", "winograd") + PREFERENCE

WINOGRAD_MIN_PIXELS = 64
WINOGRAD_PIXELS_PER_WEIGHT = 0.001
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_CHANNEL_SUM = 48


def winograd_pays(spec: Spec, n: int) -> bool:
    """Whether "winograd" is faster than "direct" here, by the measured rule above, for a
    batch of ``n``."""
    kh, kw, c_in, c_out = spec.w.shape
    c_out //= spec.groups  # a grouped problem runs group by group
    oh, ow = spec.out_hw
    return (
        (kh, kw) == (3, 3)
        and spec.stride == (1, 1)
        and spec.dilation == (1, 1)
        and n * oh * ow >= max(WINOGRAD_MIN_PIXELS, WINOGRAD_PIXELS_PER_WEIGHT * c_in * c_out)
        and min(c_in, c_out) >= WINOGRAD_MIN_CHANNELS
        and c_in + c_out >= WINOGRAD_MIN_CHANNEL_SUM
    )


def _usable(name: str, spec: Spec, registry, tried) -> Optional[Method]:
    try:
        method = registry.get_method(name)
    except (ValueError, MethodError) as exc:
        tried.append(f"{name} ({exc.__class__.__name__})")
        return None
    if DTYPE_NAMES[spec.dtype] in method.dtypes and method.is_available():
        return method
    tried.append(name)
    return None


def choose(spec: Spec, registry, n: int) -> Method:
    """The method "auto" runs for this problem at batch size ``n`` (by the rule; wisdom
    is consulted by the caller). Looks candidates up by name (no full plugin scan, no
    plugin import on each call)."""
    tried = []
    if spec.groups > 1 and spec.w.shape[2] == 1:  # one input channel a group
        names = ("depthwise",) + PREFERENCE
    else:
        names = (("winograd",) if winograd_pays(spec, n) else ()) + PREFERENCE
    for name in names:
        method = _usable(name, spec, registry, tried)
        if method is not None:
            return method
    raise ValueError(
        "method='auto' found none of its candidates usable "
        f"({', '.join(tried)}); installed: {', '.join(registry.list_methods()) or 'none'}"
    )
