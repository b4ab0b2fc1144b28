""""winograd": Winograd's minimal filtering, F(4x4, 3x3) and F(2x2, 3x3), compiled.

A 3x3 convolution at stride 1 is computed tile by tile: each (m+2) x (m+2) input tile
and each 3x3 filter are transformed (V = B^T d B, U = G g G^T), multiplied element by
element and summed over C_in, which for the (m+2)**2 transform positions is a batch of
matrix products run on the direct kernel's micro-kernel, and transformed back
(Y = A^T M A) into an m x m output tile: (m+2)**2 products where the direct loop does
9 m**2, 2.25x fewer for m = 2, 4x fewer for m = 4 (Lavin & Gray, 2016).

Accuracy: normwise (conv.testing.NORMWISE: max|y - exact| <= 2e-5 max|exact| in
float32, 1e-12 in float64), not componentwise; the results are not those of "direct"
bit for bit, but they do not depend on the thread count. Measured on the accuracy grid
of ``python -m conv --accuracy`` (C_in 1 to 1024, normal and mixed-magnitude inputs):
F(2x2) at most 9.4e-7 (float32) and 2.1e-15 (float64); F(4x4) 2.2e-5 at C_in = 1024 in
float32 (over the bound), 8.7e-6 at C_in = 256, and 3.5e-14 in float64. Hence
F(4x4, 3x3), except in float32 with more than F4_MAX_C_IN_FLOAT32 input channels.

Two orders of work, with the same results element for element: tiles-outer (weights
transformed once for the whole call, then tasks of tiles x channel groups) and, when the
weights outweigh the tiles (batch 1, small images, many channels), weights-stationary
(weights_stationary).

What it does not transform runs on "direct", exactly: kernels other than 3x3, strides
other than 1, and any call whose weights or input hold an Inf or NaN (a transform
would smear it over its tile; the compiled code reports one it meets, from the input
or from an overflow, and the call is recomputed). Dilated 3x3 kernels are split into
dilation phases by conv's front end, each an undilated problem.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .._contract import Method, Problem
from .._frontend import DTYPE_NAMES, to_layout
from . import _compiled, direct

#: Largest C_in for F(4x4, 3x3) in float32: the accuracy grid's error at C_in = 256 is
#: 8.7e-6 (under the 2e-5 bound), at 1024 2.2e-5 (over it); F(2x2, 3x3) above.
F4_MAX_C_IN_FLOAT32 = 256
#: The weights-stationary order (each task transforms one channel tile's weights and keeps
#: them in its scratch for every tile) runs when there are at most WS_TILES_PER_CHANNEL
#: tiles per output channel, and every tile's transformed input fits WS_MAX_BYTES: it
#: never writes the transformed weights to memory, which pays when they outweigh the
#: tiles. Measured (float32, 2 threads, side by side): 14 x 14 x 256 at batch 1 (16
#: tiles, 256 channels) 1.12 ms against 2.13 in the other order; batch 8 (128 tiles)
#: 5.48 against 5.96; 7 x 7 x 512 at batch 8 (F(2x2), 128 tiles) 11.2 against 16.1; but
#: 56 x 56 x 64 at batch 1 (196 tiles, 64 channels) 1.04 against 0.94.
WS_TILES_PER_CHANNEL = 1
WS_MAX_BYTES = 32 << 20
#: In a plan (conv.plan) the transformed weights are made once, and then the tiles-outer
#: order was faster wherever measured (float32 and float64, 2 threads, side by side, its
#: time over weights-stationary's: ResNet-50's 3x3 layers at batch 1 and 8 0.52-0.86, deep
#: (8,14,14,256) 0.69), except with the largest transformed weights and many tiles:
#: 7 x 7 x 512 in float64 (F(4x4), 75 MB of transformed weights) 0.51 at 4 tiles, 0.88 at
#: 16 and 1.21 at 32. So a plan runs weights-stationary only where the one-call rule
#: would and the transformed weights exceed PLAN_WS_MIN_BYTES over more than
#: PLAN_WS_MIN_TILES tiles.
PLAN_WS_MIN_BYTES = 32 << 20
PLAN_WS_MIN_TILES = 16


def tile_size(dtype: str, c_in: int) -> int:
    """m of F(m x m, 3 x 3): 4, or 2 where F(4x4) is not accurate enough (float32 with
    C_in > F4_MAX_C_IN_FLOAT32). F(4x4) was as fast as F(2x2) or faster wherever both
    were measured with the weights-stationary order, in both dtypes (README)."""
    return 2 if dtype == "float32" and c_in > F4_MAX_C_IN_FLOAT32 else 4


def weights_stationary(tiles: int, c_in: int, c_out: int, m: int, itemsize: int) -> bool:
    """Whether to run the weights-stationary order (see WS_TILES_PER_CHANNEL)."""
    return (tiles <= WS_TILES_PER_CHANNEL * c_out
            and (m + 2) ** 2 * tiles * c_in * itemsize <= WS_MAX_BYTES)


def transformable(p: Problem) -> bool:
    """Whether the Winograd kernel computes ``p`` itself (else it runs on "direct")."""
    return p.w.shape[:2] == (3, 3) and p.stride == (1, 1) and p.dilation == (1, 1)


def transform_weights(w: np.ndarray, m: int, threads: int) -> Optional[np.ndarray]:
    """U = G g G^T of 3x3 weights (3, 3, C_in, C_out), packed for the micro-kernel:
    ((m+2)**2, C_out tiles, C_in, NR), zero past C_out; None if a weight is Inf or NaN."""
    nr = _compiled.kernels.NR[w.dtype.name]
    u = _compiled.empty_aligned(((m + 2) ** 2, -(-w.shape[3] // nr), w.shape[2], nr),
                                w.dtype)
    return u if _compiled.kernels.winograd_weights(w, u, m, threads) else None


class _Prepared:
    """run(problem, out) for one 3x3 stride-1 weight array. In a plan (``planned``) the
    transformed weights of the tiles-outer order are made once, at planning when they are
    at most PLAN_WS_MIN_BYTES (else on the first call that needs them), and that order is
    preferred (PLAN_WS_MIN_BYTES); in conv2d's one call, the weights-stationary rule
    decides as the transform's cost counts. What cannot be transformed runs on direct's
    packed weights, made on first need."""

    __slots__ = ("template", "m", "u", "direct", "planned")

    def __init__(self, template: Problem, planned: bool):
        self.template = template
        w = template.w
        self.m = tile_size(DTYPE_NAMES[w.dtype], w.shape[2])
        self.u = None  # transformed weights; False: a weight is Inf or NaN
        self.direct = None
        self.planned = planned
        if planned and self._u_bytes() <= PLAN_WS_MIN_BYTES:
            self._transformed(template.threads)

    def _u_bytes(self) -> int:
        kh, kw, c_in, c_out = self.template.w.shape
        nr = _compiled.kernels.NR[DTYPE_NAMES[self.template.w.dtype]]
        return (self.m + 2) ** 2 * -(-c_out // nr) * nr * c_in * self.template.w.itemsize

    def _transformed(self, threads):
        if self.u is None:  # two threads may both transform: same result, either kept
            u = transform_weights(self.template.w, self.m, threads)
            self.u = False if u is None else u
        return self.u

    def _direct(self, p: Problem, out, threads: int, nchw: bool):
        if self.direct is None:  # two threads may both pack: same result, either kept
            self.direct = _compiled.Packed(_compiled.kernels.conv2d_direct, self.template)
        return self.direct.run(p, out, threads, nchw)

    def _stationary(self, tiles: int, c_in: int, c_out: int, itemsize: int) -> bool:
        ws = weights_stationary(tiles, c_in, c_out, self.m, itemsize)
        if self.planned:
            return ws and tiles > PLAN_WS_MIN_TILES and self._u_bytes() > PLAN_WS_MIN_BYTES
        return ws

    def __call__(self, p: Problem, out=None) -> np.ndarray:
        return self._run(p, out, False)

    def _nchw_out(self, p: Problem, out=None) -> np.ndarray:
        """The result as NCHW (N, C_out, OH, OW), into out if given: the output transform
        (or direct's tiles) store it so."""
        return self._run(p, out, True)

    def _run(self, p: Problem, out, nchw: bool) -> np.ndarray:
        threads = _compiled.threads_for(p)
        n, oh, ow, c_out = p.out_shape
        c_in, dtype, m = p.w.shape[2], p.x.dtype, self.m
        tiles = n * -(-oh // m) * -(-ow // m)
        if out is None:
            out = _compiled.empty_aligned(to_layout(p.out_shape, nchw), dtype,
                                          _compiled.ALIGN_MIN_BYTES)
        zeros = _compiled.zeros(max(1, c_in), dtype)
        pt, pl = p.padding[0][0], p.padding[1][0]
        if self._stationary(tiles, c_in, c_out, dtype.itemsize):
            vall = np.empty((m + 2) ** 2 * tiles * c_in, dtype=dtype)
            ok = _compiled.kernels.conv2d_winograd_ws(p.x, p.w, zeros, vall, out, m, pt, pl,
                                                      threads, nchw)
        else:
            u = self._transformed(threads)
            ok = u is not False and _compiled.kernels.conv2d_winograd(
                p.x, u, zeros, out, pt, pl, threads, out_nchw=nchw)
        if not ok:  # an Inf or NaN weight, or one met in a transform: the exact order instead
            return self._direct(p, out, threads, nchw)
        return out


def _prepare(template: Problem, planned: bool = True):
    if not transformable(template):
        return _compiled.Packed(_compiled.kernels.conv2d_direct, template)
    return _Prepared(template, planned)


def _kernel(p: Problem, out=None) -> np.ndarray:
    return _prepare(p, planned=False)(p, out)


def _nchw_out(p: Problem, out=None) -> np.ndarray:
    """_kernel with the result as NCHW (N, C_out, OH, OW)."""
    return _prepare(p, planned=False)._nchw_out(p, out)


# conv's NCHW calls (conv._plan, _Kernel.nchw_io and nchw_out) use these; a 1x1 kernel
# runs on direct
_kernel._nchw_out = _nchw_out
_kernel._nchw_io = direct._nchw_io


METHOD = Method(
    name="winograd",
    kernel=_kernel,
    description="Winograd F(4x4,3x3) / F(2x2,3x3) for 3x3 kernels at stride 1: transforms in C, "
    "the element-wise products as batched matrix products on the direct micro-kernel; normwise "
    "accuracy; other problems run on direct.",
    parallel=True,
    supports_dilation=False,
    pads_itself=True,
    accuracy="normwise",
    prepare=_prepare,
    kernel_writes_out=True,
)
