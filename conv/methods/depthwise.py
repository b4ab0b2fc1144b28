""""depthwise": a compiled kernel for depthwise convolutions, one input channel a group.

A grouped problem whose groups each read one input channel (``conv.depthwise_conv2d``,
or ``conv2d`` with w's C_in = 1 and x's C_in > 1) runs on _depthwise.h: a task is one
output row, each output pixel's channels updated tap by tap with vectorized loops over
channels, so the input streams through once per output row (the work is bound by
memory, not by flops). Padded taps are skipped, not multiplied, so NaN/Inf propagate
exactly; each sum runs over the taps in the order (i, j) whatever the thread count.

Every other problem (ordinary or grouped with several channels a group) runs on
"direct", through conv2d.
"""
from __future__ import annotations

import numpy as np

from .._contract import Method, Problem
from . import _compiled


def is_depthwise(p: Problem) -> bool:
    """Whether the compiled depthwise kernel computes ``p`` (one input channel a group)."""
    return p.w.shape[2] == 1 and p.x.shape[3] > 1


def _kernel(p: Problem) -> np.ndarray:
    if not is_depthwise(p):
        import conv

        return conv.conv2d(p.x, p.w, method="direct", stride=p.stride, padding=p.padding,
                           dilation=p.dilation, threads=p.threads)
    kh, kw, _, cm = p.w.shape
    c = p.x.shape[3]
    out = np.empty(p.out_shape, dtype=p.x.dtype)
    threads = max(1, min(p.threads, (p.x.nbytes + out.nbytes) // (1 << 18)))
    _compiled.kernels.conv2d_depthwise(p.x, p.w.reshape(kh, kw, c, cm // c), out,
                                       p.stride[0], p.stride[1], p.dilation[0], p.dilation[1],
                                       p.padding[0][0], p.padding[1][0], threads)
    return out


METHOD = Method(
    name="depthwise",
    kernel=_kernel,
    description="Depthwise convolution (one input channel a group) in C: output rows on "
    "conv's thread pool, channels vectorized, taps in order; other problems run on direct.",
    parallel=True,
    pads_itself=True,
    supports_groups=True,
)
