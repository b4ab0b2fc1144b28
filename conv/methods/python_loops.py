""""python": the article's element-wise loops, in pure Python. The slow baseline.

Seven nested loops over (n, oy, ox, c_out, i, j, c_in), one multiply-add of NumPy
scalars each, so float32 inputs are computed in float32 as the compiled methods do.
Padded taps are skipped.
"""
from __future__ import annotations

import numpy as np

from .._contract import Method, Problem


def _kernel(p: Problem) -> np.ndarray:
    x, w = p.x, p.w
    _, h, wd, c_in = x.shape
    kh, kw, _, c_out = w.shape
    n_, oh, ow, _ = p.out_shape
    (sh, sw), (dh, dw) = p.stride, p.dilation
    pt, pl = p.padding[0][0], p.padding[1][0]
    out = np.empty(p.out_shape, dtype=x.dtype)
    zero = x.dtype.type(0)
    with np.errstate(all="ignore"):  # Inf * 0 is NaN, as in TensorFlow, without warnings
        for n in range(n_):
            for oy in range(oh):
                for ox in range(ow):
                    for co in range(c_out):
                        acc = zero
                        for i in range(kh):
                            iy = oy * sh + i * dh - pt
                            if iy < 0 or iy >= h:
                                continue
                            for j in range(kw):
                                ix = ox * sw + j * dw - pl
                                if ix < 0 or ix >= wd:
                                    continue
                                for ci in range(c_in):
                                    acc += x[n, iy, ix, ci] * w[i, j, ci, co]
                        out[n, oy, ox, co] = acc
    return out


METHOD = Method(
    name="python",
    kernel=_kernel,
    description="Seven nested pure-Python loops (the article's baseline; very slow).",
    pads_itself=True,
)
