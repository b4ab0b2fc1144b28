""""direct": the direct convolution loop as a compiled, OpenMP-parallel kernel."""
from __future__ import annotations

import numpy as np

from .._contract import Method, Problem
from ._direct import conv2d_direct


def _kernel(p: Problem) -> np.ndarray:
    out = np.empty(p.out_shape, dtype=p.dtype)
    pads = (p.padding[0][0], p.padding[1][0])
    conv2d_direct(p.x, p.w, out, p.stride, p.dilation, pads, p.threads)
    return out


METHOD = Method(
    name="direct",
    kernel=_kernel,
    description="Direct convolution loop in Cython (typed memoryviews, nogil, OpenMP prange).",
    parallel=True,
    pads_itself=True,
)
