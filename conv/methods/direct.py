""""direct": the direct convolution loop, compiled, register-blocked and multi-threaded.

Each parallel task computes a block of 8 tiles of 6 consecutive output pixels (8 in the
AVX-512 build) times one 16-channel (float32) or 8-channel (float64) slice of C_out
(32 and 16 in the AVX-512 build), with the accumulators
held in registers, summing over every kernel tap and input channel before storing.
Padded taps contribute nothing (with finite weights the tile may read zeros for
them; with an Inf/NaN weight they are skipped).
"""
from __future__ import annotations

from .._contract import Method, Problem
from . import _compiled


def _kernel(p: Problem, out=None):
    return _compiled.call_driver(_compiled.kernels.conv2d_direct, p, out)


def _nchw_out(p: Problem, out=None):
    """_kernel with the result as NCHW (N, C_out, OH, OW), stored so tile by tile."""
    return _compiled.call_driver(_compiled.kernels.conv2d_direct, p, out, nchw=True)


def _nchw_io(p: Problem, out=None):
    """_kernel on NCHW memory in and out, for a 1x1 kernel without padding (p.x an NHWC
    view of NCHW x); None for other problems."""
    return _compiled.pointwise_nchw(p, out) if _compiled.pointwise_nchw_applies(p) else None


# conv's NCHW calls (conv._plan, _Kernel.nchw_io and nchw_out) use these
_kernel._nchw_out = _nchw_out
_kernel._nchw_io = _nchw_io


def _prepare(template: Problem):
    return _compiled.Packed(_compiled.kernels.conv2d_direct, template)


METHOD = Method(
    name="direct",
    kernel=_kernel,
    description="Direct convolution in Cython: 6-pixel x 16/8-channel register tiles (8 x 32/16 with AVX-512), nogil, "
    "conv's thread pool over blocks of output pixels, AVX-512/AVX2+FMA/portable build chosen at run time.",
    parallel=True,
    pads_itself=True,
    prepare=_prepare,
    kernel_writes_out=True,
)
