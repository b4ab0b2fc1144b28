""""depthwise": a compiled kernel for grouped convolutions with few channels a group,
depthwise ones above all.

Every grouped problem (``conv.depthwise_conv2d``, or ``conv2d`` with x's C_in a multiple
of w's) runs on _depthwise.h, which is bound by memory, not by flops: a task is one output
row, which reads its input rows once. Depthwise problems with multiplier 1 hold several
output pixels' channel vectors in registers over all taps; other grouped problems update
each output pixel tap by tap. Padded taps are skipped, not multiplied, so NaN/Inf propagate
exactly; each sum runs over the taps in the order (i, j, channel in the group) whatever the
path or the thread count. auto uses it for depthwise problems (see conv/_auto.py).

Ordinary problems (one group) run on "direct"'s kernel.
"""
from __future__ import annotations

import numpy as np

from .._contract import Method, Problem
from .._frontend import to_layout
from . import _compiled, direct


def runs_here(p: Problem) -> bool:
    """Whether the grouped kernel computes ``p`` (any grouped problem; ordinary ones run on
    direct's kernel)."""
    return p.groups > 1


def _run(p: Problem, out=None, nchw: bool = False, x_nchw=None) -> np.ndarray:
    """The depthwise kernel on ``p``, into ``out`` when given (the contract has checked it),
    else into an array as far off a cache line as x (the kernel's loads and stores then
    align alike: 0.87-0.91x the time on MobileNet-v2's 144-channel layer). nchw: the
    result (and out) (N, C_out, OH, OW), each output row moved into the channels' planes
    by the kernel; x_nchw: None, or x itself as NCHW (p.x its NHWC view), each channel
    plane convolved as it lies (with nchw)."""
    if out is None:
        out = (_compiled.empty_aligned(to_layout(p.out_shape, True), p.x.dtype,
                                       _compiled.ALIGN_MIN_BYTES)
               if nchw else _compiled.empty_aligned_as(p.out_shape, p.x))
    # a thread per 256 KB moved at most: waking a worker costs more on the smallest layers
    threads = max(1, min(p.threads, (p.x.nbytes + out.nbytes) // (1 << 18)))
    _compiled.kernels.conv2d_depthwise(p.x if x_nchw is None else x_nchw, p.w, out,
                                       p.stride[0], p.stride[1], p.dilation[0],
                                       p.dilation[1], p.padding[0][0], p.padding[1][0], threads,
                                       nchw, x_nchw is not None)
    return out


def _nchw_out(p: Problem, out=None) -> np.ndarray:
    """The result as NCHW (N, C_out, OH, OW), stored so by the kernels (grouped: the rows
    moved into the planes; else direct's tiles)."""
    if runs_here(p):
        return _run(p, out, True)
    return direct._nchw_out(p, out)


def _nchw_io(p: Problem, out=None):
    """NCHW in and out (p.x an NHWC view of NCHW x): depthwise problems with multiplier 1,
    row stride 1 and output rows of at least 3 vectors convolve each channel plane as it
    lies (nothing moved: the NHWC kernel's sums, the same results); an ungrouped 1x1
    problem on direct's NCHW 1x1 path (see direct._nchw_io); None for the rest."""
    if not runs_here(p):
        return direct._nchw_io(p, out)
    kh, kw, cg, co = p.w.shape
    x = p.x.transpose(0, 3, 1, 2)
    if not (x.flags.c_contiguous
            and _compiled.kernels.planes_apply(kh, kw, cg, co, x.shape[1], p.stride[1],
                                               p.out_shape[2], x.itemsize)):
        return None
    return _run(p, out, True, x)


def _kernel(p: Problem, out=None) -> np.ndarray:
    if runs_here(p):
        return _run(p, out)
    return direct.METHOD.kernel(p, out)


# conv's NCHW calls (conv._plan, _Kernel.nchw_io and nchw_out) use these
_kernel._nchw_out = _nchw_out
_kernel._nchw_io = _nchw_io
_run._nchw_out = _nchw_out
_run._nchw_io = _nchw_io


def _prepare(template: Problem):
    if runs_here(template):
        return _run  # nothing to prepare: the filters are read as they are
    return direct.METHOD.prepare(template)


METHOD = Method(
    name="depthwise",
    kernel=_kernel,
    description="Grouped convolution with few channels a group, depthwise above all, in C: "
    "output rows on conv's thread pool, register-blocked over pixels and vectorized over "
    "channels, taps in order; ungrouped problems run on direct.",
    parallel=True,
    pads_itself=True,
    supports_groups=True,
    prepare=_prepare,
    kernel_writes_out=True,
)
