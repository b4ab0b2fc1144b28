"""Plans: every choice about one convolution made once, then calls at the kernel's speed.

A plan freezes what the front end derives from the arguments (conv._frontend.Spec), the
method (auto's rule, wisdom, or measured), the way that method computes the problem
(its route: conv pads, subsamples a stride it lacks, splits dilation phases, or crops
bands around non-finite weights, decided once) and what the method prepared through its
``prepare`` hook (packed or transformed weights). ``conv.conv2d`` builds a throwaway plan
and calls it, so there is one way through a call.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np

from . import _auto, _dask, _geometry, _wisdom
from ._contract import NORMWISE_TOLERANCE, Method, MethodError, Problem, make_problem
from ._frontend import (DTYPE_NAMES, Spec, _as_array, as_nchw, as_threads, check_x_shape,
                        compute_dtype, from_layout, kernel_array, layout_dims, specify,
                        to_layout, zero_pad)
from ._registry import REGISTRY

_NO_PADS = ((0, 0), (0, 0))
EFFORTS = ("estimate", "measure", "patient")


# ------------------------------------------------------------------- kernels
class _Kernel:
    """One method's kernel, prepared once for one template problem, called with the
    contract's checks on what it returns."""

    __slots__ = ("method", "run")

    def __init__(self, method: Method, template):
        """template: a Problem, or a callable making one (called only if the method has a
        prepare hook), or None: no preparing (conv2d's one-call plans, whose kernel call
        does the same work)."""
        self.method = method
        self.run = None
        if method.prepare is not None and template is not None:
            run = method.prepare(template if isinstance(template, Problem) else template())
            if not callable(run):
                raise MethodError(
                    f"conv method {method.name!r} broke the kernel contract: its prepare hook "
                    f"returned {type(run).__name__}, not a callable run(problem, out)")
            self.run = run

    def nchw_out(self, problem: Problem, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """The result as NCHW (N, C_out, OH, OW), into out (None, or a writeable
        C-contiguous array of that shape and dtype) if given, from a kernel that stores it
        so itself (conv's direct and winograd, whose tiles write each channel's plane: no
        layout change of the result); None if the kernel cannot. Internal: the
        ``_nchw_out`` and ``_nchw_io`` hooks are not (yet) part of the plugin contract."""
        return self._nchw_hook("_nchw_out", problem, out)

    def nchw_io(self, problem: Problem, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """nchw_out for a problem whose x is an (N, H, W, C_in) view of NCHW memory, from
        a kernel that reads it so (conv's direct on a 1x1 kernel without padding: no layout
        change at all); None if the kernel cannot."""
        return self._nchw_hook("_nchw_io", problem, out)

    def _nchw_hook(self, name: str, problem: Problem, out) -> Optional[np.ndarray]:
        hook = getattr(self.run if self.run is not None else self.method.kernel, name, None)
        if hook is None:
            return None
        res = hook(problem, out)
        if res is None:
            return None
        shape = to_layout(problem.out_shape, True)
        if not (isinstance(res, np.ndarray) and res.shape == shape
                and res.dtype == problem.x.dtype):
            raise MethodError(f"conv method {self.method.name!r}: its NCHW output has shape "
                              f"{getattr(res, 'shape', None)}; expected {shape}")
        return res

    def __call__(self, problem: Problem, out: Optional[np.ndarray]) -> np.ndarray:
        if self.run is not None:
            res = self.run(problem, out)
        elif self.method.kernel_writes_out:
            res = self.method.kernel(problem, out)
        else:
            res = self.method.kernel(problem)
        if res is out and out is not None:
            return out
        if (not isinstance(res, np.ndarray) or res.shape != problem.out_shape
                or res.dtype != problem.x.dtype):
            got = (f"{type(res).__name__} shape={getattr(res, 'shape', None)} "
                   f"dtype={getattr(res, 'dtype', None)}")
            raise MethodError(
                f"conv method {self.method.name!r} broke the kernel contract: it returned "
                f"{got}; expected a numpy.ndarray of shape {problem.out_shape} and dtype "
                f"{problem.x.dtype}")
        if np.may_share_memory(res, problem.x) or np.may_share_memory(res, problem.w):
            raise MethodError(
                f"conv method {self.method.name!r} broke the kernel contract: it returned an "
                f"array that shares memory with its input; a kernel must return a new array")
        if out is not None:
            out[...] = res
            return out
        return res


def _template(shape_hwc, spec: Spec, w, stride, dilation, pads, out_hw) -> Problem:
    x = np.empty((0,) + tuple(shape_hwc), dtype=spec.dtype)
    x.flags.writeable = False  # it holds no data anyway
    return Problem(x, w, stride, dilation, pads, spec.threads, (0,) + tuple(out_hw) + (w.shape[3],))


# -------------------------------------------------------------------- routes
# How one method computes a Spec, decided once: each route is called with x (the kernel
# array in the compute dtype, unpadded), the batch size and out (None or a writeable
# C-contiguous array of the output's shape in the compute dtype) and returns the output.
class _Direct:
    """The method computes the problem in one kernel call; conv pads x first unless the
    method pads itself."""

    def __init__(self, method: Method, spec: Spec, prepare: bool, kernel: Optional[_Kernel] = None,
                 pad: Optional[bool] = None):
        self.spec = spec
        pads = spec.padding
        self.pad = (not method.pads_itself) if pad is None else pad
        self.pad = self.pad and pads != _NO_PADS
        h, w, c = spec.in_shape
        if self.pad:
            h, w = h + pads[0][0] + pads[0][1], w + pads[1][0] + pads[1][1]
        self.kpads = _NO_PADS if self.pad or not method.pads_itself else pads
        self.kernel = kernel or _Kernel(method, (lambda: _template(
            (h, w, c), spec, spec.w, spec.stride, spec.dilation, self.kpads, spec.out_hw))
            if prepare else None)

    def __call__(self, x, n, out):
        return self.kernel(self._problem(x, n), out)

    def nchw_out(self, x, n, out):
        """The result as NCHW, into out (see _Kernel.nchw_out); None if the kernel cannot."""
        return self.kernel.nchw_out(self._problem(x, n), out)

    def nchw_io(self, x, n, out):
        """The result as NCHW from NCHW x (the kernel array), into out (see
        _Kernel.nchw_io); None if the kernel cannot (or x needs padding first)."""
        if self.pad:
            return None
        return self.kernel.nchw_io(self._problem(x.transpose(0, 2, 3, 1), n), out)

    def _problem(self, x, n):
        s = self.spec
        if self.pad:
            x = zero_pad(x, s.padding)
        return make_problem(x, s.w, s.stride, s.dilation, self.kpads, s.threads, s.out_shape(n))


def _subsample(full, stride, out_shape, out):
    sub = full[:, :: stride[0], :: stride[1], :][:, : out_shape[1], : out_shape[2], :]
    if out is None:
        return np.ascontiguousarray(sub)
    out[...] = sub
    return out


class _Dense:
    """A method without strides: the stride-1 output, subsampled."""

    def __init__(self, method: Method, spec: Spec, prepare: bool):
        self.spec = spec
        dense = tuple(
            _geometry.dense_size(size + p[0] + p[1], k, d)
            for size, p, k, d in zip(spec.in_shape[:2], spec.padding, spec.w.shape[:2],
                                     spec.dilation))
        self.inner = _Direct(method, spec.replace(stride=(1, 1), out_hw=dense), prepare)

    def __call__(self, x, n, out):
        return _subsample(self.inner(x, n, None), self.spec.stride, self.spec.out_shape(n), out)


class _Phases:
    """A method without dilation: output rows a, a+d, a+2d, ... only ever read input rows
    a, a+d, ..., so each phase is an undilated convolution of the padded input (one
    prepared kernel serves every phase); then strides are subsampled."""

    def __init__(self, method: Method, spec: Spec, prepare: bool):
        self.spec = spec
        (dh, dw), (kh, kw) = spec.dilation, spec.w.shape[:2]
        pads = spec.padding
        hp = spec.in_shape[0] + pads[0][0] + pads[0][1]
        wp = spec.in_shape[1] + pads[1][0] + pads[1][1]
        self.dense = (_geometry.dense_size(hp, kh, dh), _geometry.dense_size(wp, kw, dw))
        self.phases = []
        kernel = None
        for a in range(min(dh, self.dense[0])):
            for b in range(min(dw, self.dense[1])):
                sub = spec.replace(
                    in_shape=(len(range(a, hp, dh)), len(range(b, wp, dw)), spec.in_shape[2]),
                    stride=(1, 1), dilation=(1, 1), padding=_NO_PADS,
                    out_hw=(len(range(a, self.dense[0], dh)), len(range(b, self.dense[1], dw))))
                route = _Direct(method, sub, prepare, kernel, pad=False)
                kernel = route.kernel
                self.phases.append((a, b, route))

    def __call__(self, x, n, out):
        s = self.spec
        (dh, dw) = s.dilation
        xp = zero_pad(x, s.padding)
        if s.stride == (1, 1) and out is not None:
            full = out
        else:
            full = np.empty((n,) + self.dense + (s.w.shape[3],), dtype=s.dtype)
        for a, b, route in self.phases:
            full[:, a::dh, b::dw, :] = route(kernel_array(xp[:, a::dh, b::dw, :]), n, None)
        if s.stride == (1, 1):
            return full
        return _subsample(full, s.stride, s.out_shape(n), out)


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


class _Banded:
    """Padding without zeros, for a method conv pads for, when a weight is Inf or NaN
    (zero padding would turn Inf * 0 into NaN where padded taps must be skipped): each band
    of outputs sharing one range of in-bounds taps is a VALID problem on an input window
    with the kernel cropped to those taps; outputs with no in-bounds tap are exactly zero."""

    def __init__(self, method: Method, spec: Spec, prepare: bool):
        self.spec = spec
        (sh, sw), (dh, dw) = spec.stride, spec.dilation
        (pt, _), (pl, _) = spec.padding
        h, w, _ = spec.in_shape
        kh, kw = spec.w.shape[:2]
        self.bands = []
        for o0, o1, a0, a1 in _bands(spec.out_hw[0], h, kh, sh, dh, pt):
            for p0, p1, b0, b1 in _bands(spec.out_hw[1], w, kw, sw, dw, pl):
                if a0 == a1 or b0 == b1:
                    self.bands.append((o0, o1, p0, p1, None, None))
                    continue
                y, xx = o0 * sh + a0 * dh - pt, p0 * sw + b0 * dw - pl
                rows = (o1 - o0 - 1) * sh + (a1 - a0 - 1) * dh + 1
                cols = (p1 - p0 - 1) * sw + (b1 - b0 - 1) * dw + 1
                sub = spec.replace(in_shape=(rows, cols, spec.in_shape[2]),
                                   w=kernel_array(spec.w[a0:a1, b0:b1]), padding=_NO_PADS,
                                   out_hw=(o1 - o0, p1 - p0))
                window = (slice(y, y + rows), slice(xx, xx + cols))
                self.bands.append((o0, o1, p0, p1, window, _route(method, sub, prepare)))

    def __call__(self, x, n, out):
        if out is None:
            out = np.empty(self.spec.out_shape(n), dtype=self.spec.dtype)
        for o0, o1, p0, p1, window, route in self.bands:
            if route is None:
                out[:, o0:o1, p0:p1, :] = 0
            else:
                out[:, o0:o1, p0:p1, :] = route(kernel_array(x[:, window[0], window[1], :]), n,
                                                None)
        return out


class _Grouped:
    """A grouped convolution for a method without ``supports_groups``: group g convolves
    x's channels [g * ci, (g + 1) * ci) with w's output channels [g * co, (g + 1) * co)
    (ci, co: per group), each group its own route (prepared once in a plan)."""

    def __init__(self, method: Method, spec: Spec, prepare: bool):
        self.spec = spec
        g = spec.groups
        ci, co = spec.in_shape[2] // g, spec.w.shape[3] // g
        self.parts = []
        for k in range(g):
            sub = spec.replace(in_shape=spec.in_shape[:2] + (ci,), groups=1,
                               w=kernel_array(spec.w[..., k * co:(k + 1) * co]))
            self.parts.append((k * ci, (k + 1) * ci, k * co, (k + 1) * co,
                               _route(method, sub, prepare)))

    def __call__(self, x, n, out):
        if out is None:
            out = np.empty(self.spec.out_shape(n), dtype=self.spec.dtype)
        for c0, c1, o0, o1, route in self.parts:
            out[..., o0:o1] = route(kernel_array(x[..., c0:c1]), n, None)
        return out


class _Zeros:
    """No input pixels (every tap in the padding) or no input channels: empty sums."""

    def __init__(self, spec: Spec):
        self.spec = spec

    def __call__(self, x, n, out):
        if out is None:
            return np.zeros(self.spec.out_shape(n), dtype=self.spec.dtype)
        out[...] = 0
        return out


def _route(method: Method, spec: Spec, prepare: bool = True):
    """How ``method`` computes ``spec``, emulating what it lacks; ``prepare``: call its
    prepare hook (plans) or not (conv2d's one-call plans)."""
    if DTYPE_NAMES[spec.dtype] not in method.dtypes:
        raise TypeError(
            f"conv method {method.name!r} computes {', '.join(method.dtypes)} only; "
            f"these inputs compute in {spec.dtype.name}")
    if 0 in spec.in_shape or 0 in spec.out_hw or spec.w.shape[3] == 0:
        return _Zeros(spec)
    if spec.groups > 1 and not method.supports_groups:
        return _Grouped(method, spec, prepare)
    need_stride = spec.stride != (1, 1) and not method.supports_stride
    need_dilation = spec.dilation != (1, 1) and not method.supports_dilation
    we_pad = not method.pads_itself or need_dilation
    if we_pad and spec.padding != _NO_PADS and not np.isfinite(spec.w).all():
        return _Banded(method, spec, prepare)
    if need_dilation:
        return _Phases(method, spec, prepare)
    if need_stride:
        return _Dense(method, spec, prepare)
    return _Direct(method, spec, prepare)


# ---------------------------------------------------------------------- plans
def check_out(out, shape, dtype, *inputs) -> None:
    """``out=``: a writeable C-contiguous ndarray of the output's shape and dtype that
    overlaps none of the inputs."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be None or a numpy.ndarray; got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}; this convolution's output is {shape}")
    if out.dtype != dtype:
        raise ValueError(f"out has dtype {out.dtype}; this convolution returns {dtype}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous (np.empty(shape, dtype) is); got a "
                         "non-contiguous array")
    if not out.flags.writeable:
        raise ValueError("out must be writeable; got a read-only array")
    for arr in inputs:
        if isinstance(arr, np.ndarray) and np.may_share_memory(out, arr):
            raise ValueError("out overlaps an input (x or w) in memory; pass a separate "
                             "array")


class Plan:
    """One convolution, planned: call it with x (any batch size if the plan was made
    for one), optionally ``out=``. Made by :func:`conv.plan`; see there.

    Attributes: ``method`` (the method it runs), ``threads``, ``dtype`` (of its results),
    ``compute_dtype``, ``x_shape`` (batch None: any), ``w_shape``, ``stride``,
    ``padding`` (((top, bottom), (left, right))), ``dilation``, ``effort``, ``reason``
    (how the method was chosen), ``times`` (measured median seconds a call, by candidate,
    when measured), ``planning_seconds``.
    """

    __slots__ = ("_spec", "_method", "_route", "_args", "_x_dtypes", "_nchw", "method",
                 "effort", "reason", "times", "planning_seconds")

    def __init__(self, spec: Spec, method: Method, *, effort="estimate", reason="",
                 times=None, planning_seconds=0.0, args=None, nchw=False):
        self._spec = spec
        self._nchw = nchw
        self._method = method
        self._route = _route(method, spec)
        self._args = args  # what re-creates it (pickling); None for conv2d's own plans
        self._x_dtypes = {}  # x dtypes seen, known to compute like the plan's
        self.method = method.name
        self.effort = effort
        self.reason = reason
        self.times = dict(times or {})
        self.planning_seconds = planning_seconds

    # ------------------------------------------------------------- facts
    @property
    def threads(self) -> int:
        return self._spec.threads

    @property
    def dtype(self) -> np.dtype:
        return self._spec.result_dtype

    @property
    def compute_dtype(self) -> np.dtype:
        return self._spec.dtype

    @property
    def data_format(self) -> str:
        return "NCHW" if self._nchw else "NHWC"

    @property
    def x_shape(self):
        return to_layout((self._spec.batch,) + self._spec.in_shape, self._nchw)

    @property
    def w_shape(self):
        return self._spec.w.shape

    @property
    def groups(self) -> int:
        return self._spec.groups

    @property
    def stride(self):
        return self._spec.stride

    @property
    def padding(self):
        return self._spec.padding

    @property
    def dilation(self):
        return self._spec.dilation

    def out_shape(self, n: Optional[int] = None):
        """The output's shape for a batch of ``n`` (default: the planned batch size)."""
        if n is None:
            n = self._spec.batch
            if n is None:
                raise ValueError("this plan takes any batch size: pass n to out_shape(n)")
        elif isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be an int >= 0; got {n!r}")
        elif self._spec.batch is not None and n != self._spec.batch:
            raise ValueError(f"this plan takes a batch of {self._spec.batch}; got n={n}")
        return to_layout(self._spec.out_shape(int(n)), self._nchw)

    def __repr__(self):
        s = self._spec
        batch = "any" if s.batch is None else s.batch
        hwc = to_layout((0,) + s.in_shape, self._nchw)[1:]
        return (f"<conv.Plan {self.method!r}: x {self.data_format} (N={batch}, {hwc[0]}, "
                f"{hwc[1]}, {hwc[2]}) {s.dtype.name}, w {s.w.shape}"
                f"{f', {s.groups} groups' if s.groups > 1 else ''}, stride {s.stride}, "
                f"padding {s.padding}, dilation {s.dilation}, {s.threads} thread"
                f"{'s' if s.threads != 1 else ''}; {self.reason}{self._measured()}; planned "
                f"in {_ms(self.planning_seconds)}>")

    def _measured(self) -> str:
        """The measured times, fastest first: " (direct 1.2 ms, winograd 1.9 ms)"."""
        seconds = sorted((v, k) for k, v in self.times.items() if isinstance(v, float))
        if not seconds:
            return ""
        return ": " + ", ".join(f"{k} {_ms(v)}" for v, k in seconds) + " a call"

    # -------------------------------------------------------------- calls
    def __call__(self, x, *, out=None):
        """The convolution of x, as ``conv.conv2d(x, w, method=self.method, ...)`` with
        the planned arguments gives it, bit for bit; into ``out`` when given (then
        returned). A Dask array x gives a lazy Dask array (docs/dask.md)."""
        spec = self._spec
        if _dask.is_dask_array(x):
            return self._dask(x, out)
        xa = _as_array(x, "x")
        self._check_x(xa.shape, xa.dtype)
        n = xa.shape[0]
        if out is not None:
            check_out(out, to_layout(spec.out_shape(n), self._nchw), spec.result_dtype, xa)
        return self._execute(kernel_array(xa, spec.dtype), n, out)

    def _dask(self, x, out):
        """p(x) for a Dask array x: conv2d's Dask path with the plan's arguments, weights
        (in their own dtype) and method."""
        spec, a = self._spec, self._args
        self._check_x(x.shape, x.dtype)
        return _dask.conv2d(x, a["w"].astype(a["w_dtype"], copy=False), stride=spec.stride,
                            padding=spec.padding, dilation=spec.dilation,
                            threads=a["threads"], method=self.method, groups=spec.groups,
                            data_format=self.data_format, nchw=self._nchw, out=out)

    def _check_x(self, shape, dtype) -> None:
        """x's shape (in the plan's layout) and dtype against the plan's."""
        spec = self._spec
        if len(shape) != 4 or from_layout(shape, self._nchw)[1:] != spec.in_shape or (
                spec.batch is not None and shape[0] != spec.batch):
            check_x_shape(shape, layout=self.data_format)
            planned = to_layout((0,) + spec.in_shape, self._nchw)[1:]
            raise ValueError(
                f"x has shape {shape}; this plan was made for x of shape "
                f"({'any N' if spec.batch is None else spec.batch}, {planned[0]}, "
                f"{planned[1]}, {planned[2]}) ({self.data_format})")
        self._check_dtype(dtype)

    def _check_dtype(self, x_dtype) -> None:
        if x_dtype in self._x_dtypes:
            return
        spec = self._spec
        w_dtype = self._args["w_dtype"]
        if compute_dtype(x_dtype, w_dtype) != (spec.dtype, spec.result_dtype):
            raise TypeError(
                f"x has dtype {x_dtype}; this plan computes in {spec.dtype.name} and returns "
                f"{spec.result_dtype.name}, as for x of dtype {self._args['x_dtype'].name}; "
                f"make a plan with dtype={x_dtype.name!r} or pass "
                f"x.astype({self._args['x_dtype'].name!r})")
        if len(self._x_dtypes) < 16:
            self._x_dtypes[x_dtype] = True

    def _execute(self, xk: np.ndarray, n: int, out: Optional[np.ndarray]) -> np.ndarray:
        run = _execute_nchw if self._nchw else _execute
        return run(self._spec, self._route, xk, n, out)

    # ------------------------------------------------------------ pickling
    def __reduce__(self):
        if self._args is None:
            raise TypeError("conv2d's internal plans are not picklable; use conv.plan")
        a = dict(self._args)
        a["method"] = self.method
        if self._spec.threads != as_threads(a["threads"]):  # chosen by measuring: kept
            a["threads"] = self._spec.threads
        return (_unpickle, (a, self.effort, self.reason, self.times))


def _ms(seconds: float) -> str:
    """A duration for people: 1.23 s, 4.56 ms, 7.89 us."""
    if seconds >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"


# ------------------------------------------------------ NCHW (data_format)
def _swap(x: np.ndarray, a: int, out: np.ndarray, threads: int) -> np.ndarray:
    """out[n, b, a] = x[n, a, b] for x viewed as (N, a, B): NCHW to NHWC (a = C) or back
    (a = H * W), by the compiled, cache-blocked layout change (methods/_layout.h)."""
    from .methods import _compiled

    n = x.shape[0]
    _compiled.kernels.swap_axes(x.reshape(n, a, -1), out.reshape(n, -1, a), threads)
    return out


#: NCHW calls keep their two NHWC scratch arrays (x's and the result's) per thread for the
#: next call, up to this many bytes each: fresh large arrays cost a page fault per 4 KB
#: page on first touch, which on some machines (virtual ones above all) costs more than
#: the layout change itself.
SCRATCH_KEEP_BYTES = 64 << 20
_scratch = threading.local()


def _scratch_array(slot: int, shape, dtype) -> np.ndarray:
    """A C-contiguous array for this thread's scratch ``slot`` (0: x, 1: the result),
    reused from the previous call when it is large enough; a fresh one while an outer
    NCHW call on this thread holds them (a kernel that calls conv itself)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes > SCRATCH_KEEP_BYTES or getattr(_scratch, "busy", False):
        return np.empty(shape, dtype=dtype)
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = [np.empty(0, np.uint8), np.empty(0, np.uint8)]
    if bufs[slot].nbytes < nbytes:
        bufs[slot] = np.empty(nbytes, np.uint8)
    return bufs[slot][:nbytes].view(dtype).reshape(shape)


def _execute_nchw(spec: Spec, route, xk: np.ndarray, n: int, out: Optional[np.ndarray],
                  prepared: bool = True):
    """_execute for NCHW x (the kernel array) and out: x moved to NHWC, the route run,
    its result moved back into out. Two copies, cache-blocked and on the thread pool,
    through this thread's scratch arrays (the result's only for a prepared route, which
    writes into it; an unprepared kernel returns its own array, which a copy would not
    beat). A route whose kernel reads NCHW x itself (_Direct.nchw_io: conv's direct on a 1x1
    kernel) copies nothing; one that stores an NCHW result (_Direct.nchw_out: direct and
    winograd) copies x alone; and x with one channel (or one pixel) is already NHWC."""
    oshape = to_layout(spec.out_shape(n), True)
    if n == 0 or 0 in oshape:
        return np.empty(oshape, dtype=spec.result_dtype) if out is None else out
    into = out if out is not None and out.dtype == xk.dtype else None
    direct_io = getattr(route, "nchw_io", None)
    res = direct_io(xk, n, into) if direct_io is not None else None
    if res is not None:
        return _into(res, out, spec.result_dtype)
    outer = not getattr(_scratch, "busy", False)
    if xk.shape[1] == 1 or xk.shape[2] * xk.shape[3] == 1:  # NCHW is NHWC: one channel
        xs = xk.reshape(from_layout(xk.shape, True))          # or one pixel an image
    else:
        xs = _swap(xk, xk.shape[1], _scratch_array(0, from_layout(xk.shape, True), xk.dtype),
                   spec.threads)
    direct_out = getattr(route, "nchw_out", None)
    _scratch.busy = True
    try:
        if direct_out is not None:
            res = direct_out(xs, n, into)
            if res is not None:
                return _into(res, out, spec.result_dtype)
        scratch = _scratch_array(1, spec.out_shape(n), xk.dtype) if prepared else None
        res = route(xs, n, scratch)
    finally:
        if outer:
            _scratch.busy = False
    pixels = res.shape[1] * res.shape[2]
    if out is not None and out.dtype == res.dtype:
        return _swap(res, pixels, out, spec.threads)
    moved = _swap(res, pixels, np.empty(oshape, dtype=res.dtype), spec.threads)
    if out is None:
        return moved if moved.dtype == spec.result_dtype else moved.astype(spec.result_dtype)
    out[...] = moved  # float16: computed in float32, rounded once
    return out


def _into(res: np.ndarray, out: Optional[np.ndarray], dtype) -> np.ndarray:
    """A kernel's NCHW result as the call's: itself, or copied into out (float16: computed
    in float32, rounded once)."""
    if out is None:
        return res if res.dtype == dtype else res.astype(dtype)
    if res is not out:
        out[...] = res
    return out


def _execute(spec: Spec, route, xk: np.ndarray, n: int, out: Optional[np.ndarray]):
    """Run a route on x (the kernel array) for a batch of n, into out if given."""
    oshape = spec.out_shape(n)
    if n == 0 or 0 in oshape:
        return np.empty(oshape, dtype=spec.result_dtype) if out is None else out
    if spec.result_dtype is spec.dtype:
        return route(xk, n, out)
    res = route(xk, n, None)  # float16: computed in float32, rounded once
    if out is None:
        return res.astype(spec.result_dtype)
    out[...] = res
    return out


def _unpickle(args, effort, reason, times):
    """A plan re-created where it is unpickled: same arguments and method (chosen where it
    was planned, never re-chosen), weights packed again here."""
    t0 = time.perf_counter()
    spec = specify(args["x_shape"], None, args["w"], stride=args["stride"],
                   padding=args["padding"], dilation=args["dilation"], threads=args["threads"],
                   groups=args.get("groups"), dtypes=args["dtypes"])
    method = REGISTRY.usable(args["method"])
    return Plan(spec, method, effort=effort, reason=reason, times=times,
                planning_seconds=time.perf_counter() - t0, args=args,
                nchw=args.get("data_format") == "NCHW")


# ------------------------------------------------------------------- planning
def _x_shape(x_shape, layout="NHWC"):
    """A plan's x_shape, checked, in its layout."""
    try:
        items = tuple(x_shape)
    except TypeError:
        raise TypeError(f"x_shape must be a tuple {layout_dims(layout)}; "
                        f"got {x_shape!r}") from None
    check_x_shape(items, "x_shape", layout=layout)
    shape = []
    for i, v in enumerate(items):
        if i == 0 and v is None:
            shape.append(None)
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"x_shape must hold ints >= 0 (its batch entry may be None); "
                             f"got {x_shape!r}")
        shape.append(int(v))
    return tuple(shape)


def make_plan(x_shape, w, *, stride=1, padding="VALID", dilation=1, threads=None,
              method="auto", effort="estimate", dtype=None, groups=None,
              data_format="NHWC") -> Plan:
    """conv.plan (documented there)."""
    t0 = time.perf_counter()
    if not isinstance(method, str):
        raise TypeError(f"method must be a str; got {type(method).__name__}")
    if effort not in EFFORTS:
        raise ValueError(f"effort must be one of {EFFORTS}; got {effort!r}")
    nchw = as_nchw(data_format)
    shape = from_layout(_x_shape(x_shape, data_format), nchw)
    wa = _as_array(w, "w")
    x_dtype = wa.dtype if dtype is None else _as_dtype(dtype)
    dtypes = compute_dtype(x_dtype, wa.dtype)
    # the plan's own copy: later changes to the caller's w do not reach it
    w_copy = np.array(wa, dtype=dtypes[0], order="C", copy=True)
    spec = specify(shape, x_dtype, w_copy, stride=stride, padding=padding, dilation=dilation,
                   threads=threads, groups=groups, dtypes=dtypes, layout=data_format)
    args = dict(x_shape=shape, w=spec.w, w_dtype=wa.dtype, x_dtype=np.dtype(x_dtype), dtypes=dtypes,
                stride=stride, padding=padding, dilation=dilation, threads=threads, groups=groups,
                data_format=data_format)
    times = {}
    if method != "auto":
        chosen = REGISTRY.usable(method)
        reason = "method given"
        if effort == "patient" and chosen.parallel and spec.threads > 1:
            best, times = _measure(spec, [chosen], patient=True, default=chosen)
            spec = spec.replace(threads=best[1])
            reason = f"method given, threads measured (effort={effort!r})"
    else:
        found = _wisdom.lookup(spec, spec.batch, effort)
        if found is not None:
            chosen, threads_w, times = found
            spec = spec.replace(threads=threads_w)
            reason = "from wisdom"
        elif effort == "estimate":
            chosen = _auto.choose(spec, REGISTRY, spec.batch or 1)
            reason = "auto's rule"
        else:
            best, times = _measure(spec, _measurable(spec), patient=effort == "patient",
                                   default=_auto.choose(spec, REGISTRY, spec.batch or 1))
            chosen = best[0]
            _wisdom.record(spec, spec.batch, chosen.name, best[1], effort, times)
            spec = spec.replace(threads=best[1])
            reason = f"fastest measured (effort={effort!r})"
    return Plan(spec, chosen, effort=effort, reason=reason, times=times,
                planning_seconds=time.perf_counter() - t0, args=args, nchw=nchw)


def _as_dtype(dtype):
    try:
        return np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be a NumPy dtype or None; got {dtype!r} ({exc})") from None


#: Methods effort="measure" never times: "python" is the article's pure-Python loop, a
#: reference thousands of times slower than the rest (a deep layer takes it hours).
NEVER_MEASURED = ("python",)


def _measurable(spec: Spec):
    """Every installed, usable method computing the spec's dtype (plugins included)."""
    out = []
    for name in REGISTRY.list_methods():
        if name in NEVER_MEASURED:
            continue
        method = REGISTRY.get_method(name)
        if spec.dtype.name in method.dtypes:
            out.append(method)
    if "tensorflow" in [m.name for m in out]:  # its start-up lines hidden, as the bench does
        from .methods import tensorflow_conv

        try:
            tensorflow_conv.import_tensorflow(quiet=True)
        except ImportError:
            pass  # its own call then says why
    return out


#: effort="measure": rounds of timed calls, interleaved across candidates; a sample is
#: at least SAMPLE_SECONDS of back-to-back calls; a candidate over DROP_RATIO times the
#: best median after the first round is dropped (it cannot win).
ROUNDS = 7
SAMPLE_SECONDS = 5e-3
DROP_RATIO = 3.0
#: A measured time within this fraction of the fastest is a tie (on a shared machine one
#: run's time can be 1.5x another's), and a tie goes to auto's rule's choice.
TIE = 0.05


def _label(name, threads, patient):
    return f"{name}/{threads}t" if patient else name


def _reference(spec: Spec, x: np.ndarray) -> Optional[np.ndarray]:
    """The exact-order result in float64 (direct's loop, else numpy's), for the accuracy
    check of measured candidates; None if neither can run."""
    for name in ("direct", "numpy"):
        try:
            method = REGISTRY.usable(name)
        except Exception:  # noqa: BLE001 - a broken build: no check rather than no plan
            continue
        sub = spec.replace(w=kernel_array(spec.w, np.float64), dtype=np.dtype(np.float64),
                           result_dtype=np.dtype(np.float64))
        return Plan(sub, method)._execute(kernel_array(x, np.float64), x.shape[0], None)
    return None


def _accurate(res, ref, dtype) -> bool:
    if ref is None:
        return True
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(res.astype(np.float64) - ref))) if ref.size else 0.0
    return err <= NORMWISE_TOLERANCE[dtype.name] * scale


def _measure(spec: Spec, candidates, patient: bool, default: Optional[Method] = None):
    """((method, threads) of the fastest accurate candidate, {label: median seconds or
    why it was left out}); ``default`` (auto's rule's choice) wins a near tie (TIE)."""
    n = spec.batch if spec.batch is not None else 1
    rng = np.random.default_rng(20261126)
    x = kernel_array(rng.standard_normal((n,) + spec.in_shape), spec.dtype)
    ref = _reference(spec, x) if len(candidates) > 1 else None
    runs, times = [], {}
    for method in candidates:
        team = [spec.threads]
        if patient and method.parallel:
            team = sorted({1, spec.threads} | {t for t in (2, 4, 8, 16, 32, 64)
                                               if t < spec.threads})
        for threads in team:
            label = _label(method.name, threads, patient)
            try:
                plan = Plan(spec.replace(threads=threads), method)
                t0 = time.perf_counter()
                res = plan._execute(x, n, None)
                first = time.perf_counter() - t0
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - a failing plugin is left out, not fatal
                times[label] = f"failed: {type(exc).__name__}: {exc}"
                continue
            if not _accurate(res, ref, spec.dtype):
                times[label] = "left out: outside the accuracy contract here"
                continue
            reps = max(1, min(1000, int(SAMPLE_SECONDS / max(first, 1e-7))))
            runs.append([method, threads, label, plan, reps, []])
    if not runs:
        raise ValueError(f"effort={'patient' if patient else 'measure'} found no method that "
                         f"computes this problem: {times}")
    for r in range(ROUNDS):
        for run in runs:
            plan, reps = run[3], run[4]
            t0 = time.perf_counter()
            for _ in range(reps):
                plan._execute(x, n, None)
            run[5].append((time.perf_counter() - t0) / reps)
        if r == 0 and len(runs) > 1:
            best = min(min(run[5]) for run in runs)
            for run in runs:
                if min(run[5]) > DROP_RATIO * best:
                    times[run[2]] = float(np.median(run[5]))
            runs = [run for run in runs if min(run[5]) <= DROP_RATIO * best]
    for run in runs:
        times[run[2]] = float(np.median(run[5]))
    best = min(runs, key=lambda run: times[run[2]])
    # a near tie is noise on a shared machine: the default (auto's rule at the thread
    # count asked for) keeps its place unless beaten by more than TIE
    for run in runs:
        if (run[0] is default and run[1] == spec.threads
                and times[run[2]] <= (1 + TIE) * times[best[2]]):
            best = run
    return (best[0], best[1]), times


def shape_of(x):
    """x's shape without converting it (an ndarray's, else NumPy's reading of it)."""
    return x.shape if isinstance(x, np.ndarray) else np.shape(x)


def depthwise_as_grouped(x_shape, w, data_format="NHWC"):
    """tf.nn.depthwise_conv2d's filters (KH, KW, C_in, multiplier) as a grouped
    convolution's: ((KH, KW, 1, C_in * multiplier), groups = C_in), checked against x's
    shape (in data_format). groups is None when the shape is malformed (conv2d's checks
    then say why) or has no channels."""
    nchw = as_nchw(data_format)
    wa = _as_array(w, "w")
    if wa.ndim != 4:
        raise ValueError(f"w must be 4-D (KH, KW, C_in, multiplier); got shape {wa.shape}")
    try:
        x_shape = tuple(x_shape)
    except TypeError:
        x_shape = ()
    c_in = (x_shape[1] if nchw else x_shape[3]) if len(x_shape) == 4 else None
    if isinstance(c_in, (bool, np.bool_)) or not isinstance(c_in, (int, np.integer)):
        c_in = None
    if c_in is not None and wa.shape[2] != c_in:
        raise ValueError(
            f"w has C_in={wa.shape[2]} channels but x has C_in={c_in} (x is {data_format} "
            f"{tuple(x_shape)}, w is (KH, KW, C_in, multiplier) {wa.shape}); a depthwise "
            f"convolution's filters have x's channels")
    kh, kw, ci, mult = wa.shape
    if ci == 0:
        return wa.reshape(kh, kw, 0, 0), None
    return wa.reshape(kh, kw, 1, ci * mult), (int(c_in) if c_in else None)


def _choose_auto(spec: Spec, n: int):
    """(method, spec) that method="auto" runs for a batch of n: wisdom's choice (with its
    thread count) when an entry matches, else auto's rule."""
    found = _wisdom.lookup(spec, n, None) if _wisdom.ENTRIES else None
    if found is not None:
        return found[0], spec.replace(threads=found[1])
    return _auto.choose(spec, REGISTRY, n), spec


#: conv2d's recent calls: their arguments but x's and w's values -> (the Spec they
#: normalize to, without w, and the method chosen). A layer called again on the next input
#: skips the checks, the padding arithmetic and auto's choice (about 40% of a small call's
#: cost). Keyed also by the thread count the call resolves to (the environment may change
#: it) and by the generations of wisdom and of the registry, which may change the choice;
#: only calls whose arguments are ints, strings, None and tuples or lists of them are kept.
_RECENT: dict = {}
_RECENT_MAX = 128


def _frozen(value):
    """A hashable stand-in for an argument that tells apart what conv tells apart: ints,
    strs and None stand for themselves, a tuple for a tuple of its items' stand-ins, a list
    for (list, that tuple) (no tuple's stand-in starts with a type, so (1, 1) and [1, 1]
    are kept apart); TypeError for anything else, bools included (True == 1)."""
    kind = type(value)
    if kind is int or kind is str or value is None:
        return value
    if kind is tuple:
        return tuple(map(_frozen, value))
    if kind is list:
        return list, tuple(map(_frozen, value))
    raise TypeError("not remembered")


def _recent_key(xa, wa, stride, padding, dilation, threads, method, groups, nchw):
    try:
        return (xa.shape, xa.dtype, wa.shape, wa.dtype, _frozen(stride), _frozen(padding),
                _frozen(dilation), as_threads(threads), method, _frozen(groups), nchw,
                _wisdom.GENERATION, REGISTRY.generation)
    except (TypeError, ValueError):  # not remembered; the checks below say what is wrong
        return None


def plan_conv2d(x, w, *, stride, padding, dilation, threads, method, out, groups=None,
                data_format="NHWC"):
    """conv.conv2d: a throwaway plan (no copy of w, no pickling), called once."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a str; got {type(method).__name__}")
    nchw = as_nchw(data_format)
    if _dask.is_dask_array(x):
        return _dask.conv2d(x, w, stride=stride, padding=padding, dilation=dilation,
                            threads=threads, method=method, groups=groups,
                            data_format=data_format, nchw=nchw, out=out)
    xa = _as_array(x, "x")
    wa = _as_array(w, "w")
    key = _recent_key(xa, wa, stride, padding, dilation, threads, method, groups, nchw)
    recent = _RECENT.get(key) if key is not None else None
    if recent is not None:
        spec, chosen = recent
        spec = spec.with_w(kernel_array(wa, spec.dtype))
    else:
        check_x_shape(xa.shape, layout=data_format)
        spec = specify(from_layout(xa.shape, nchw), xa.dtype, wa, stride=stride,
                       padding=padding, dilation=dilation, threads=threads, groups=groups,
                       layout=data_format)
        if method == "auto":
            chosen, spec = _choose_auto(spec, spec.batch)
        else:
            chosen = REGISTRY.usable(method)
        if key is not None:
            if len(_RECENT) >= _RECENT_MAX:
                _RECENT.clear()
            _RECENT[key] = (spec.with_w(None), chosen)
    n = spec.batch
    if out is not None:
        check_out(out, to_layout(spec.out_shape(n), nchw), spec.result_dtype, xa, wa)
    # a plan of one call: no Plan object, and no prepare hook (the kernel does that work)
    route, xk = _route(chosen, spec, False), kernel_array(xa, spec.dtype)
    if nchw:
        return _execute_nchw(spec, route, xk, n, out, prepared=False)
    return _execute(spec, route, xk, n, out)


