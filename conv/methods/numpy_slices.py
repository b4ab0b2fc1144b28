""""numpy": the article's matmul over kernel-position slices, in NumPy.

For each kernel tap (i, j) the input pixels it reads form a strided slice; one
(pixels x C_in) @ (C_in x C_out) product per tap is accumulated into the output.
Only the output region whose tap falls inside the input is updated, so padded
taps are skipped rather than multiplied by zero. NumPy's BLAS chooses its own
threads, so ``threads`` is not honoured.
"""
from __future__ import annotations

import numpy as np

from .._contract import Method, Problem
from ._taps import valid_range


def _kernel(p: Problem) -> np.ndarray:
    x, w = p.x, p.w
    _, h, wd, c_in = x.shape
    kh, kw, _, c_out = w.shape
    n, oh, ow, _ = p.out_shape
    (sh, sw), (dh, dw) = p.stride, p.dilation
    pt, pl = p.padding[0][0], p.padding[1][0]
    out = np.zeros(p.out_shape, dtype=x.dtype)
    with np.errstate(all="ignore"):
        for i in range(kh):
            y0, y1, iy = valid_range(oh, h, i, sh, dh, pt)
            if y0 == y1:
                continue
            for j in range(kw):
                x0, x1, ix = valid_range(ow, wd, j, sw, dw, pl)
                if x0 == x1:
                    continue
                patch = x[:, iy : iy + (y1 - y0 - 1) * sh + 1 : sh,
                          ix : ix + (x1 - x0 - 1) * sw + 1 : sw, :]
                region = out[:, y0:y1, x0:x1, :]
                region += (patch.reshape(-1, c_in) @ w[i, j]).reshape(region.shape)
    return out


METHOD = Method(
    name="numpy",
    kernel=_kernel,
    description="The article's matmul per kernel position over strided input slices (NumPy/BLAS).",
    pads_itself=True,
)
