"""conv.conv2d: front end -> registry -> kernel, and nothing else."""
from __future__ import annotations

import dataclasses

import numpy as np

from . import _auto, _geometry
from ._contract import Method, MethodError, Problem
from ._frontend import Normalized, kernel_array, normalize, zero_pad
from ._registry import REGISTRY


def conv2d(x, w, *, method="auto", stride=1, padding="VALID", dilation=1, threads=None):
    """2-D convolution (cross-correlation) with ``tf.nn.conv2d``'s semantics.

    Parameters
    ----------
    x : array_like, (N, H, W, C_in)
        Input, NHWC. Any array-like and memory layout; never modified.
    w : array_like, (KH, KW, C_in, C_out)
        Filters, HWIO.
    method : str
        A name from ``conv.list_methods()``, or ``"auto"`` (the default) for the
        fastest installed method for this problem.
    stride, dilation : int or (h, w)
        Integers >= 1 (TensorFlow's ``[1, h, w, 1]`` is accepted too).
    padding : "VALID", "SAME", int, (h, w) or ((top, bottom), (left, right))
        "SAME" follows TensorFlow: output size ceil(size / stride), the odd extra
        row/column of padding at the bottom/right. Padded positions contribute
        nothing (they are skipped, not multiplied).
    threads : int or None
        Threads for methods that run in parallel; None uses every CPU this process may
        run on (``OMP_NUM_THREADS`` when set). Capped at the CPUs this process may run
        on (its affinity set).

    Returns
    -------
    numpy.ndarray, (N, OH, OW, C_out)
        float32 or float64 as NumPy promotes the inputs (integer and bool inputs
        give float64; float16 is computed in float32 and returned as float16).
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str; got {type(method).__name__}")
    norm = normalize(x, w, stride=stride, padding=padding, dilation=dilation, threads=threads)
    if method == "auto":
        chosen = _auto.choose(norm, REGISTRY)
    else:
        chosen = REGISTRY.usable(method)
    out = run_method(chosen, norm)
    if out.dtype != norm.result_dtype:
        out = out.astype(norm.result_dtype)
    return out


def run_method(method: Method, norm: Normalized) -> np.ndarray:
    """Run one method on a normalized problem, emulating what it lacks."""
    if norm.dtype.name not in method.dtypes:
        raise TypeError(
            f"conv method {method.name!r} computes {', '.join(method.dtypes)} only; "
            f"these inputs compute in {norm.dtype.name}"
        )
    n, oh, ow, co = norm.out_shape
    if n * oh * ow * co == 0:
        return np.empty(norm.out_shape, dtype=norm.dtype)
    if 0 in norm.x.shape[1:]:  # every tap in the padding, or no input channels: empty sums
        return np.zeros(norm.out_shape, dtype=norm.dtype)
    x, pads = norm.x, norm.padding
    stride, dilation = norm.stride, norm.dilation
    need_stride = stride != (1, 1) and not method.supports_stride
    need_dilation = dilation != (1, 1) and not method.supports_dilation
    we_pad = not method.pads_itself or need_dilation
    if we_pad and any(pads[0] + pads[1]) and not np.isfinite(norm.w).all():
        # Zero padding would turn Inf * 0 into NaN where padded taps must be skipped.
        return _banded(method, norm)
    if not method.pads_itself:
        x, pads = zero_pad(x, pads), ((0, 0), (0, 0))
    if not (need_stride or need_dilation):
        return _call(method, Problem(x, norm.w, stride, dilation, pads, norm.threads, norm.out_shape))
    if not need_dilation:
        full = _dense(method, x, norm.w, dilation, pads, norm.threads, (1, 1))
    else:
        if method.pads_itself:  # phases are cut from the padded input
            x, pads = zero_pad(x, pads), ((0, 0), (0, 0))
        full = _phases(method, x, norm.w, dilation, norm.threads)
    return np.ascontiguousarray(full[:, :: stride[0], :: stride[1], :][:, :oh, :ow, :])


def _bands(out_size, in_size, k, s, d, pad_before):
    """Runs of consecutive output indices whose in-bounds taps are the same range
    [t0, t1): (o0, o1, t0, t1) each."""
    bands = []
    for o in range(out_size):
        first = o * s - pad_before  # input index of tap 0
        t0 = min(k, max(0, -(first // d)))  # ceil(-first / d); all-padding runs merge
        t1 = max(t0, min(k, (in_size - 1 - first) // d + 1))
        if bands and bands[-1][2:] == [t0, t1]:
            bands[-1][1] = o + 1
        else:
            bands.append([o, o + 1, t0, t1])
    return bands


def _banded(method, norm: Normalized) -> np.ndarray:
    """Padding without zeros, for a method conv pads for: each band of outputs sharing
    one range of in-bounds taps is a VALID problem on an input window with the kernel
    cropped to those taps; outputs with no in-bounds tap are exactly zero."""
    x, w = norm.x, norm.w
    n, _, _, co = norm.out_shape
    (sh, sw), (dh, dw) = norm.stride, norm.dilation
    (pt, _), (pl, _) = norm.padding
    out = np.empty(norm.out_shape, dtype=norm.dtype)
    for o0, o1, a0, a1 in _bands(norm.out_shape[1], x.shape[1], w.shape[0], sh, dh, pt):
        for p0, p1, b0, b1 in _bands(norm.out_shape[2], x.shape[2], w.shape[1], sw, dw, pl):
            if a0 == a1 or b0 == b1:
                out[:, o0:o1, p0:p1, :] = 0
                continue
            y, xx = o0 * sh + a0 * dh - pt, p0 * sw + b0 * dw - pl
            rows = (o1 - o0 - 1) * sh + (a1 - a0 - 1) * dh + 1
            cols = (p1 - p0 - 1) * sw + (b1 - b0 - 1) * dw + 1
            sub = dataclasses.replace(
                norm,
                x=kernel_array(x[:, y : y + rows, xx : xx + cols, :]),
                w=kernel_array(w[a0:a1, b0:b1]),
                padding=((0, 0), (0, 0)),
                out_shape=(n, o1 - o0, p1 - p0, co),
            )
            out[:, o0:o1, p0:p1, :] = run_method(method, sub)
    return out


def _dense(method, x, w, dilation, pads, threads, stride):
    """The stride-1 output, to be subsampled by the caller."""
    oh = _geometry.dense_size(x.shape[1] + pads[0][0] + pads[0][1], w.shape[0], dilation[0])
    ow = _geometry.dense_size(x.shape[2] + pads[1][0] + pads[1][1], w.shape[1], dilation[1])
    shape = (x.shape[0], oh, ow, w.shape[3])
    return _call(method, Problem(x, w, stride, dilation, pads, threads, shape))


def _phases(method, xp, w, dilation, threads):
    """Stride-1 dilated output from undilated calls: output rows a, a+d, a+2d, ...
    only ever read input rows a, a+d, ..., so each phase is an ordinary convolution."""
    dh, dw = dilation
    kh, kw, _, co = w.shape
    oh = _geometry.dense_size(xp.shape[1], kh, dh)
    ow = _geometry.dense_size(xp.shape[2], kw, dw)
    full = np.empty((xp.shape[0], oh, ow, co), dtype=xp.dtype)
    for a in range(min(dh, oh)):
        for b in range(min(dw, ow)):
            sub = kernel_array(xp[:, a::dh, b::dw, :])
            shape = (xp.shape[0], len(range(a, oh, dh)), len(range(b, ow, dw)), co)
            full[:, a::dh, b::dw, :] = _call(
                method, Problem(sub, w, (1, 1), (1, 1), ((0, 0), (0, 0)), threads, shape)
            )
    return full


def _call(method: Method, problem: Problem) -> np.ndarray:
    out = method.kernel(problem)
    if (
        not isinstance(out, np.ndarray)
        or out.shape != problem.out_shape
        or out.dtype != problem.dtype
    ):
        got = (
            f"{type(out).__name__} shape={getattr(out, 'shape', None)} dtype={getattr(out, 'dtype', None)}"
        )
        raise MethodError(
            f"conv method {method.name!r} broke the kernel contract: it returned {got}; "
            f"expected a numpy.ndarray of shape {problem.out_shape} and dtype {problem.dtype}"
        )
    if np.may_share_memory(out, problem.x) or np.may_share_memory(out, problem.w):
        raise MethodError(
            f"conv method {method.name!r} broke the kernel contract: it returned an array "
            f"that shares memory with its input; a kernel must return a new array"
        )
    return out
