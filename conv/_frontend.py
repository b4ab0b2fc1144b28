"""TensorFlow's conv2d semantics, in one place.

Validation and normalization of every argument of ``conv.conv2d``: arrays to one
float dtype and C-contiguous layout (copying only when needed, never writing to
the caller's arrays), stride and dilation to (h, w) pairs, padding to
((top, bottom), (left, right)) by TensorFlow's rules, threads to an int, and the
output shape. Kernels receive the result and never re-check it.
"""
from __future__ import annotations

import numbers
import os
from time import monotonic as _monotonic
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from . import _geometry
from ._contract import Pads, Pair, Problem

#: The largest padding per side, and the largest span of a dilated kernel ((k - 1) * d + 1),
#: in rows or columns: far beyond any real image, and far from overflowing the kernels'
#: 64-bit index arithmetic.
MAX_EXTENT = 2**31 - 1

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
#: The compute dtypes by name (``np.dtype.name`` costs microseconds a call).
DTYPE_NAMES = {_FLOAT32: "float32", _FLOAT64: "float64"}


@dataclass(frozen=True)
class Normalized(Problem):
    """Everything the front end derives from one call: a Problem on the unpadded arrays
    (``padding`` still to apply, x and w C-contiguous read-only views in the compute
    dtype), plus the dtype the caller gets back."""

    result_dtype: np.dtype  # differs from x.dtype only for float16 inputs


# --------------------------------------------------------------------- arrays
def _as_array(value, name: str) -> np.ndarray:
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array; conv2d has no notion of a mask and would silently "
            f"drop it. Pass {name}.filled(value) to decide what masked entries count as, "
            f"or np.ma.getdata({name}) to use the stored values"
        )
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except ValueError as exc:
            raise ValueError(
                f"{name} must be a rectangular array-like of real numbers (ragged nested "
                f"sequences are not arrays): {exc}"
            ) from None
        except TypeError as exc:  # e.g. a GPU array that refuses to become a NumPy one
            raise TypeError(
                f"{name} is a {type(value).__module__}.{type(value).__name__}, which NumPy "
                f"cannot convert ({exc}); conv takes NumPy arrays, what NumPy converts "
                f"(nested lists, objects with __array__ such as CPU torch tensors) and, for "
                f"x, dask.array.Array"
            ) from None
    check_real_dtype(arr.dtype, name)
    return arr


def check_real_dtype(dtype, name: str) -> None:
    """A dtype conv computes on: real numbers (floats, integers, bool)."""
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {dtype}; expected real numbers (float32, float64, "
            f"float16, integer or bool). Complex, object, string and datetime arrays are "
            f"not supported."
        )


def compute_dtype(x_dtype, w_dtype) -> Tuple[np.dtype, np.dtype]:
    """(dtype the kernels compute in, dtype of the result), by NumPy's promotion.

    Integer and bool inputs compute in float64. float16 computes in float32 and
    the result is rounded back to float16 (as TensorFlow returns float16).
    """
    promoted = np.result_type(x_dtype, w_dtype)
    if promoted.kind in "biu":
        return _FLOAT64, _FLOAT64
    if promoted.type is np.float16:
        return _FLOAT32, np.dtype(np.float16)
    if promoted.type is np.float32:
        return _FLOAT32, _FLOAT32
    if promoted.type is np.float64:
        return _FLOAT64, _FLOAT64
    raise TypeError(
        f"x ({x_dtype}) and w ({w_dtype}) promote to {promoted}, which conv does not "
        f"compute; pass float32 or float64 arrays"
    )


def kernel_array(arr: np.ndarray, dtype=None) -> np.ndarray:
    """What a kernel may receive: C-contiguous, native byte order, ``dtype`` (default:
    arr's), and read-only so no kernel can write to the caller's memory. Copies only
    when the layout or dtype requires it."""
    out = np.ascontiguousarray(arr, dtype=dtype)
    # A view over a read-only buffer: unlike flags.writeable = False on a plain view,
    # a kernel cannot switch it back to writeable and reach the caller's memory.
    view = np.asarray(memoryview(out).toreadonly())
    return view if view.shape == out.shape else view.reshape(out.shape)


# ------------------------------------------------------------ int parameters
def _int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {value!r} of type {type(value).__name__}")
    return int(value)


def as_pair(value, name: str) -> Pair:
    """stride/dilation: int, (h, w), or TensorFlow's [1, h, w, 1]; every entry >= 1."""
    if isinstance(value, (str, bytes)) or not (
        isinstance(value, numbers.Integral) or np.ndim(value) == 1
    ):
        raise TypeError(
            f"{name} must be an int or an (h, w) pair of ints; got {value!r}"
        )
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        pair = (int(value), int(value))
    else:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be an int or an (h, w) pair of ints; got {value!r}")
        items = [_int(v, name) for v in value]
        if len(items) == 1:  # tf.nn.conv2d accepts [s] too
            pair = (items[0], items[0])
        elif len(items) == 2:
            pair = (items[0], items[1])
        elif len(items) == 4 and items[0] == 1 and items[3] == 1:
            pair = (items[1], items[2])
        else:
            raise ValueError(
                f"{name} must be an int, [s], an (h, w) pair, or [1, h, w, 1]; got {value!r}"
            )
    if pair[0] < 1 or pair[1] < 1:
        raise ValueError(f"{name} must be >= 1 in both dimensions; got {value!r}")
    return pair


#: available_cpus' last reading: [count, time.monotonic() when it was read]
_CPUS = [0, -1.0]
#: how long a reading of the affinity set is kept, in seconds
CPUS_KEPT_SECONDS = 0.5


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity set where the OS has one
    (``os.sched_getaffinity``), else ``os.cpu_count()``. conv never runs more threads.

    Read at most every CPUS_KEPT_SECONDS: the system call costs every conv2d call a few
    microseconds once a large kernel has left the caches cold (5 us of a 28x28x192
    depthwise layer's 60 us outside the kernel, batch 8), and a thread count never
    changes a result, so a changed affinity is followed within half a second."""
    now = _monotonic()
    if now - _CPUS[1] < CPUS_KEPT_SECONDS:
        return _CPUS[0]
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        n = max(1, os.cpu_count() or 1)
    _CPUS[0], _CPUS[1] = n, now
    return n


def as_threads(value) -> int:
    """threads: None (the default) or an int >= 1, capped at :func:`available_cpus`."""
    if value is None:
        return default_threads()
    if type(value) is int and value >= 1:  # the usual call, without _int's checks
        return min(value, available_cpus())
    t = _int(value, "threads")
    if t < 1:
        raise ValueError(f"threads must be None or an int >= 1; got {value!r}")
    return min(t, available_cpus())


def default_threads() -> int:
    """OMP_NUM_THREADS when it is set to an int >= 1 (its first entry), else every CPU
    this process may run on; capped at :func:`available_cpus` either way."""
    cap = available_cpus()
    env = os.environ.get("OMP_NUM_THREADS", "")
    first = _OMP_PARSED.get(env)
    if first is None:
        try:
            first = int(env.strip().split(",")[0]) if env.strip() else 0
        except ValueError:
            first = 0
        if len(_OMP_PARSED) < 64:
            _OMP_PARSED[env] = first
    return min(first, cap) if first >= 1 else cap


_OMP_PARSED: dict = {}  # OMP_NUM_THREADS's value -> its first entry (0: none usable)


# -------------------------------------------------------------------- padding
def _same_pads(size: int, k: int, s: int, d: int) -> Pair:
    """TensorFlow's SAME: out = ceil(size / s); the odd pad goes after (bottom/right)."""
    out = _geometry.same_out_size(size, s)
    total = max((out - 1) * s + _geometry.span(k, d) - size, 0)
    return (total // 2, total - total // 2)


def _pad_amount(v, name: str) -> int:
    p = _int(v, name)
    if p < 0:
        raise ValueError(f"{name} must be >= 0; got {p}")
    if p > MAX_EXTENT:
        raise ValueError(f"{name} must be at most 2**31 - 1 per side; got {p}")
    return p


def as_padding(padding, in_hw: Pair, k_hw: Pair, stride: Pair, dilation: Pair) -> Pads:
    """padding to ((top, bottom), (left, right))."""
    msg = (
        "padding must be 'VALID', 'SAME', an int, an (h, w) pair, "
        "((top, bottom), (left, right)), or TensorFlow's explicit "
        "[[0, 0], [top, bottom], [left, right], [0, 0]]"
    )
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0), (0, 0))
        if mode == "SAME":
            return tuple(
                _same_pads(in_hw[a], k_hw[a], stride[a], dilation[a]) for a in (0, 1)
            )  # type: ignore[return-value]
        raise ValueError(f"{msg}; got the string {padding!r}")
    if isinstance(padding, (bool, np.bool_, bytes)):
        raise TypeError(f"{msg}; got {padding!r}")
    if isinstance(padding, (dict, set, frozenset)):  # unordered: no top/bottom/left/right
        raise TypeError(f"{msg}, as a list or tuple; got a {type(padding).__name__}: "
                        f"{padding!r}")
    if isinstance(padding, numbers.Integral):
        p = _pad_amount(padding, "padding")
        return ((p, p), (p, p))
    try:
        items = list(padding)
    except TypeError:
        raise TypeError(f"{msg}; got {padding!r}") from None
    if len(items) == 2 and all(isinstance(v, numbers.Integral) for v in items):
        h, w = (_pad_amount(v, "padding") for v in items)
        return ((h, h), (w, w))
    try:
        pairs = [tuple(p) for p in items]
    except TypeError:
        raise TypeError(f"{msg}; got {padding!r}") from None
    if len(pairs) == 4 and all(len(p) == 2 for p in pairs):
        if any(_pad_amount(v, "padding") != 0 for v in pairs[0] + pairs[3]):
            raise ValueError(
                f"explicit padding of the batch and channel dimensions must be zero; got {padding!r}"
            )
        pairs = pairs[1:3]
    if len(pairs) != 2 or any(len(p) != 2 for p in pairs):
        raise ValueError(f"{msg}; got {padding!r}")
    (t, b), (l, r) = pairs
    return (
        (_pad_amount(t, "padding"), _pad_amount(b, "padding")),
        (_pad_amount(l, "padding"), _pad_amount(r, "padding")),
    )


def _out_size(size: int, pads: Pair, k: int, s: int, d: int, axis: str) -> int:
    """_geometry.out_size, with a ValueError when the kernel does not fit."""
    padded = size + pads[0] + pads[1]
    if padded < _geometry.span(k, d):
        raise ValueError(
            f"the kernel's {axis} ({k} taps, {_geometry.span(k, d)} with dilation {d}) is "
            f"larger than the padded input's {axis} ({padded}); pad the input or use a "
            f"smaller kernel"
        )
    return _geometry.out_size(padded, k, s, d)


# ---------------------------------------------------------------- everything
class Spec:
    """Everything the front end derives from a call's arguments except x's values: the
    geometry of the problem (x's batch size may be None: any), the weights as a kernel
    array, and the dtypes. A plan is built from one; ``conv2d`` builds a throwaway one.

    batch : int or None; in_shape : (H, W, C_in); w : (KH, KW, C_in, C_out) kernel array
    in ``dtype``; stride, dilation : (h, w) pairs, clamped (a one-tap kernel's dilation
    and a stride past the output's extent do nothing); padding : ((top, bottom), (left,
    right)); threads : int >= 1; out_hw : (OH, OW); dtype : the dtype computed in;
    result_dtype : the dtype returned (differs only for float16 inputs); groups : x's
    C_in / w's C_in (1: an ordinary convolution).
    """

    __slots__ = ("batch", "in_shape", "w", "stride", "dilation", "padding", "threads",
                 "out_hw", "dtype", "result_dtype", "groups")

    def __init__(self, batch, in_shape, w, stride, dilation, padding, threads, out_hw,
                 dtype, result_dtype, groups=1):
        self.batch, self.in_shape, self.w = batch, in_shape, w
        self.stride, self.dilation, self.padding = stride, dilation, padding
        self.threads, self.out_hw = threads, out_hw
        self.dtype, self.result_dtype = dtype, result_dtype
        self.groups = groups

    def out_shape(self, n: int) -> Tuple[int, int, int, int]:
        return (n, self.out_hw[0], self.out_hw[1], self.w.shape[3])

    def replace(self, **changes) -> "Spec":
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return Spec(**fields)

    def with_w(self, w) -> "Spec":
        """replace(w=w) in a third of its time (conv2d's remembered calls make one)."""
        return Spec(self.batch, self.in_shape, w, self.stride, self.dilation, self.padding,
                    self.threads, self.out_hw, self.dtype, self.result_dtype, self.groups)


_PAIR_ONE = (1, 1)
#: Promoted dtypes by (x's, w's): np.result_type costs a microsecond a call.
_DTYPES: dict = {}


def _dtypes(x_dtype, w_dtype) -> Tuple[np.dtype, np.dtype]:
    key = (x_dtype, w_dtype)
    found = _DTYPES.get(key)
    if found is None:
        found = compute_dtype(x_dtype, w_dtype)
        if len(_DTYPES) < 256:
            _DTYPES[key] = found
    return found


# ------------------------------------------------------------------ layouts
#: data_format's values, as TensorFlow names them: x and the result NHWC or NCHW (the
#: filters are HWIO either way).
DATA_FORMATS = ("NHWC", "NCHW")


def as_nchw(data_format) -> bool:
    """data_format, checked: True for "NCHW", False for "NHWC"."""
    if not isinstance(data_format, str):
        raise TypeError(f"data_format must be 'NHWC' or 'NCHW'; got "
                        f"{type(data_format).__name__}")
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be 'NHWC' or 'NCHW'; got {data_format!r}")
    return data_format == "NCHW"


def layout_dims(layout: str) -> str:
    """x's axes in a layout, for messages: "(N, H, W, C_in)" or "(N, C_in, H, W)"."""
    return "(N, C_in, H, W)" if layout == "NCHW" else "(N, H, W, C_in)"


def to_layout(shape_nhwc, nchw: bool):
    """An NHWC shape in the caller's layout: (N, H, W, C) or (N, C, H, W)."""
    if not nchw:
        return tuple(shape_nhwc)
    n, h, w, c = shape_nhwc
    return (n, c, h, w)


def from_layout(shape, nchw: bool):
    """A shape in the caller's layout as NHWC (rank checked first by check_x_shape)."""
    if not nchw:
        return tuple(shape)
    n, c, h, w = shape
    return (n, h, w, c)


def check_x_shape(shape, name: str = "x", layout: str = "NHWC") -> None:
    """x (or a plan's x_shape) must be 4-D, NHWC or (layout="NCHW") NCHW."""
    if len(shape) != 4:
        raise ValueError(f"{name} must be 4-D {layout} {layout_dims(layout)}; got shape "
                         f"{tuple(shape)}")


def as_groups(c_in: int, w_cin: int, c_out: int, groups, x_shape, w_shape,
              layout: str = "NHWC") -> int:
    """TensorFlow's grouped convolution: x's C_in a multiple of w's C_in makes
    C_in / w's C_in groups, and C_out must be a multiple of that. ``groups`` (None, or
    the count the caller states) must agree. x_shape is NHWC; messages show it in
    ``layout``."""
    where = (f"(x is {layout} {to_layout(x_shape, layout == 'NCHW')}, w is HWIO "
             f"{tuple(w_shape)})")
    if groups is not None:
        g = _int(groups, "groups")
        if g < 1:
            raise ValueError(f"groups must be None or an int >= 1; got {groups!r}")
    if c_in == w_cin:
        found = 1
    elif w_cin == 0 or c_in == 0 or c_in % w_cin:
        raise ValueError(
            f"x has C_in={c_in} channels, which is not a multiple of w's C_in={w_cin} "
            f"{where}: w's C_in must equal x's, or divide it for a grouped convolution "
            f"(groups = x's C_in / w's C_in)")
    else:
        found = c_in // w_cin
        if c_out % found:
            raise ValueError(
                f"x's C_in={c_in} over w's C_in={w_cin} makes {found} groups, but w's "
                f"C_out={c_out} is not a multiple of {found} {where}")
    if groups is not None and g != found:
        raise ValueError(
            f"groups={g}, but x's C_in={c_in} over w's C_in={w_cin} makes {found} "
            f"group{'s' if found != 1 else ''} {where}; w's C_in must be x's C_in / groups")
    return found


def specify(x_shape, x_dtype, wa: np.ndarray, *, stride=1, padding="VALID", dilation=1,
            threads=None, groups=None, dtypes=None, layout="NHWC") -> Spec:
    """Validate and normalize every argument but x's values. ``x_shape`` is 4 entries,
    NHWC (its batch entry may be None), ``wa`` an array (from _as_array); ``dtypes``
    (compute, result) overrides the promotion of x_dtype with wa's dtype; ``layout``: how
    the caller's x is laid out, for messages."""
    if wa.ndim != 4:
        raise ValueError(f"w must be 4-D HWIO (KH, KW, C_in, C_out); got shape {wa.shape}")
    n, h, wd, c_in = x_shape
    kh, kw, w_cin, co = wa.shape
    g = 1 if c_in == w_cin and groups is None else as_groups(c_in, w_cin, co, groups,
                                                              x_shape, wa.shape, layout)
    if kh < 1 or kw < 1:
        raise ValueError(f"w must have KH >= 1 and KW >= 1; got shape {wa.shape}")
    dtype, result_dtype = dtypes or _dtypes(x_dtype, wa.dtype)
    stride_p = _PAIR_ONE if type(stride) is int and stride == 1 else as_pair(stride, "stride")
    dilation_p = (_PAIR_ONE if type(dilation) is int and dilation == 1
                  else as_pair(dilation, "dilation"))
    threads_i = as_threads(threads)
    # a one-tap kernel's dilation does nothing (clamped below); any other must keep the
    # kernel's span within MAX_EXTENT
    for axis, k, d in (("height", kh, dilation_p[0]), ("width", kw, dilation_p[1])):
        if k > 1 and d > 1 and _geometry.span(k, d) > MAX_EXTENT:
            raise ValueError(
                f"dilation {d} makes the kernel's {axis} span {_geometry.span(k, d)} "
                f"({k} taps); at most 2**31 - 1 is supported")
    pads = as_padding(padding, (h, wd), (kh, kw), stride_p, dilation_p)
    if isinstance(padding, str) and padding.upper() == "SAME":
        # TensorFlow's rule: ceil(size / stride), zero rows for an empty input.
        oh, ow = _geometry.same_out_size(h, stride_p[0]), _geometry.same_out_size(wd, stride_p[1])
    else:
        oh = _out_size(h, pads[0], kh, stride_p[0], dilation_p[0], "height")
        ow = _out_size(wd, pads[1], kw, stride_p[1], dilation_p[1], "width")
    # Strides past the dense output's extent all give one output, and a one-tap kernel's
    # dilation does nothing: clamp both, so kernels never see huge values (same result,
    # same output size for a method that derives it itself).
    if dilation_p != _PAIR_ONE:
        dilation_p = tuple(1 if k == 1 else d for k, d in zip((kh, kw), dilation_p))
    if stride_p != _PAIR_ONE:
        dense = [
            _geometry.dense_size(size + p[0] + p[1], k, d)
            for size, p, k, d in zip((h, wd), pads, (kh, kw), dilation_p)
        ]
        stride_p = tuple(min(s, max(1, e)) for s, e in zip(stride_p, dense))
    return Spec(n, (h, wd, c_in), kernel_array(wa, dtype), stride_p, dilation_p, pads,
                threads_i, (oh, ow), dtype, result_dtype, g)


def normalize(x, w, *, stride=1, padding="VALID", dilation=1, threads=None,
              groups=None) -> Normalized:
    """Validate and normalize one conv2d call. Raises ValueError/TypeError naming the argument."""
    xa = _as_array(x, "x")
    wa = _as_array(w, "w")
    check_x_shape(xa.shape)
    spec = specify(xa.shape, xa.dtype, wa, stride=stride, padding=padding,
                   dilation=dilation, threads=threads, groups=groups)
    return Normalized(
        x=kernel_array(xa, spec.dtype),
        w=spec.w,
        stride=spec.stride,
        dilation=spec.dilation,
        padding=spec.padding,
        threads=spec.threads,
        out_shape=spec.out_shape(xa.shape[0]),
        result_dtype=spec.result_dtype,
    )


def zero_pad(x: np.ndarray, pads: Pads) -> np.ndarray:
    """x zero-padded in H and W (a new array; x itself when there is nothing to pad)."""
    (t, b), (l, r) = pads
    if not (t or b or l or r):
        return x
    n, h, w, c = x.shape
    out = np.zeros((n, h + t + b, w + l + r, c), dtype=x.dtype)
    out[:, t : t + h, l : l + w, :] = x
    return kernel_array(out)  # read-only for good, like every array a kernel receives
