"""conv.testing: the conformance kit for conv2d methods.

A plugin author proves a method with one line in their own pytest suite::

    import conv.testing

    def test_mine():
        conv.testing.check_method("mine")

:func:`check_method` runs the method through the same correctness grid conv's
built-in methods pass: every case in :data:`CASES` (strides 1-3, VALID/SAME/
explicit padding in all its forms, dilations 1-2 with and without stride, odd,
even and non-square kernels, N=1, C_in=1, 1x1 kernels, kernel as large as the
input, the article's shape scaled down) in each dtype the method declares,
against :func:`reference_conv2d`; plus unmodified inputs (read-only,
non-contiguous, negative-stride, Fortran-order, big-endian), output dtype and
shape, bad inputs, NaN/Inf propagation and empty problems.

The pieces are public so a test suite can parametrize over them::

    @pytest.mark.parametrize("case", conv.testing.CASES, ids=conv.testing.case_ids())
    def test_case(case):
        x, w = conv.testing.make_inputs(case, "float32")
        got = conv.conv2d(x, w, method="mine", **case.kwargs)
        conv.testing.assert_conv_close(got, case.reference(x, w), case.scale(x, w), "float32")

:func:`reference_conv2d` is deliberately independent of conv's own front end:
it implements TensorFlow's padding rules itself and accumulates in extended
precision (``np.longdouble``), skipping padded taps: an Inf weight whose tap
lands in the padding gives Inf, not NaN (0 * Inf), in every dtype, as conv's
documented semantics say. TensorFlow's own result there differs between its
builds (float32 skipped padded taps on one machine and gave NaN on another;
float64 gave NaN on both), so it is no reference there;
:func:`nonfinite_meets_padding` tells where that is. The reference is slow; it is
meant for small shapes.
"""
from __future__ import annotations

import numbers
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "reference_conv2d",
    "tolerance_scale",
    "assert_conv_close",
    "Case",
    "CASES",
    "ARTICLE_CASES",
    "case_ids",
    "get_case",
    "make_inputs",
    "explicit_padding",
    "output_shape",
    "nonfinite_meets_padding",
    "check_method",
    "RTOL",
]

#: Relative tolerance (relative to :func:`tolerance_scale`) per result dtype.
RTOL = {
    np.dtype(np.float16): 4e-3,
    np.dtype(np.float32): 1e-5,
    np.dtype(np.float64): 1e-12,
}


# ============================================================ the reference
def _ref_pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or an (h, w) pair; got {value!r}")
    if isinstance(value, numbers.Integral):
        pair = (int(value), int(value))
    else:
        items = tuple(value)
        if len(items) == 4 and items[0] == 1 and items[3] == 1:
            items = items[1:3]
        if len(items) != 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in items
        ):
            raise ValueError(f"{name} must be an int or an (h, w) pair of ints; got {value!r}")
        pair = (int(items[0]), int(items[1]))
    if min(pair) < 1:
        raise ValueError(f"{name} must be >= 1; got {value!r}")
    return pair


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def explicit_padding(padding, in_hw, k_hw, stride=1, dilation=1):
    """``((top, bottom), (left, right))`` for any padding form, by TensorFlow's rules.

    'SAME': out = ceil(in / stride), total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0),
    top/left = total // 2 and the odd one at the bottom/right. An int p pads p on every side,
    (h, w) pads h rows above and below and w columns left and right, and
    ((t, b), (l, r)) or TensorFlow's [[0, 0], [t, b], [l, r], [0, 0]] is explicit.
    """
    s = _ref_pair(stride, "stride")
    d = _ref_pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return ((0, 0), (0, 0))
        if padding.upper() == "SAME":
            pads = []
            for a in (0, 1):
                size, k = int(in_hw[a]), int(k_hw[a])
                out = -(-size // s[a])
                total = max((out - 1) * s[a] + (k - 1) * d[a] + 1 - size, 0)
                pads.append((total // 2, total - total // 2))
            return (pads[0], pads[1])
        raise ValueError(f"unknown padding {padding!r}")
    if _is_int(padding):
        p = int(padding)
        pads = ((p, p), (p, p))
    else:
        items = list(padding)
        if len(items) == 2 and all(_is_int(v) for v in items):
            pads = ((int(items[0]),) * 2, (int(items[1]),) * 2)
        else:
            items = [tuple(v) for v in items]
            if len(items) == 4:
                if items[0] != (0, 0) or items[3] != (0, 0):
                    raise ValueError(f"padding of batch/channels must be zero; got {padding!r}")
                items = items[1:3]
            if len(items) != 2 or any(len(v) != 2 or not all(_is_int(u) for u in v) for v in items):
                raise ValueError(f"malformed padding {padding!r}")
            pads = ((int(items[0][0]), int(items[0][1])), (int(items[1][0]), int(items[1][1])))
    if min(pads[0] + pads[1]) < 0:
        raise ValueError(f"padding must be >= 0; got {padding!r}")
    return pads


def output_shape(x_shape, w_shape, stride=1, padding="VALID", dilation=1):
    """(N, OH, OW, C_out) as TensorFlow defines it (independent of conv's front end)."""
    n, h, wd, _ = x_shape
    kh, kw, _, co = w_shape
    s = _ref_pair(stride, "stride")
    d = _ref_pair(dilation, "dilation")
    if isinstance(padding, str) and padding.upper() == "SAME":
        return (n, -(-h // s[0]), -(-wd // s[1]), co)
    pads = explicit_padding(padding, (h, wd), (kh, kw), s, d)
    out = []
    for a, (size, k) in enumerate(((h, kh), (wd, kw))):
        padded = size + pads[a][0] + pads[a][1]
        eff = (k - 1) * d[a] + 1
        if padded < eff:
            raise ValueError(
                f"kernel extent {eff} is larger than the padded input ({padded}) in axis {a + 1}"
            )
        out.append((padded - eff) // s[a] + 1)
    return (n, out[0], out[1], co)


def _tap_groups(out_size, in_size, k, s, d, before):
    """Output indices grouped by the kernel taps that land inside the input for them:
    [(taps, outputs)], each an intp array; outputs whose taps all fall in the padding
    are left out (their sum is empty, exactly zero)."""
    groups = {}
    for o in range(out_size):
        taps = tuple(t for t in range(k) if 0 <= o * s + t * d - before < in_size)
        if taps:
            groups.setdefault(taps, []).append(o)
    return [(np.array(t, dtype=np.intp), np.array(o, dtype=np.intp)) for t, o in groups.items()]


def _padded_taps(out_size, in_size, k, s, d, before) -> List[int]:
    """The kernel taps along one axis that land in the padding for at least one output."""
    return [t for t in range(k)
            if any(not 0 <= o * s + t * d - before < in_size for o in range(out_size))]


def nonfinite_meets_padding(x, w, stride=1, padding="VALID", dilation=1) -> bool:
    """True when a NaN or Inf weight sits on a kernel tap that lands in the padding for
    at least one output pixel.

    That is the one place where skipping padded taps (conv's semantics and
    :func:`reference_conv2d`'s) and multiplying the padding's zeros (0 * Inf = NaN)
    give different results, and where tf.nn.conv2d's result differs between
    TensorFlow's builds. NaN/Inf in ``x`` never meet the padding (padding is
    added around ``x``), so only ``w``'s values matter; ``x`` gives the shape.
    """
    xs = np.shape(x)
    wa = np.asarray(w)
    bad = ~np.isfinite(wa.astype(np.float64)) if wa.size else np.zeros(wa.shape, bool)
    if wa.ndim != 4 or len(xs) != 4 or not bad.any():
        return False
    n, oh, ow, co = output_shape(xs, wa.shape, stride, padding, dilation)
    if 0 in (n, oh, ow, co):
        return False
    s = _ref_pair(stride, "stride")
    d = _ref_pair(dilation, "dilation")
    pads = explicit_padding(padding, xs[1:3], wa.shape[:2], s, d)
    kh, kw = wa.shape[:2]
    bad_taps = bad.any(axis=(2, 3))  # (KH, KW)
    rows = _padded_taps(oh, xs[1], kh, s[0], d[0], pads[0][0])
    cols = _padded_taps(ow, xs[2], kw, s[1], d[1], pads[1][0])
    # tap (i, j) is padded for some output iff row tap i or column tap j is (every
    # output row meets every output column)
    return bool(bad_taps[rows, :].any() or bad_taps[:, cols].any())


def _to_longdouble(a, name):
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: reference_conv2d takes real numbers; got dtype {arr.dtype}")
    if arr.ndim != 4:
        raise ValueError(f"{name} must be 4-D; got shape {arr.shape}")
    return arr.astype(np.longdouble)


def reference_conv2d(x, w, stride=1, padding="VALID", dilation=1) -> np.ndarray:
    """An exact-as-practical tf.nn.conv2d (NHWC x HWIO), returned as float64.

    Products are accumulated in ``np.longdouble`` (64-bit mantissa on x86) over
    the taps that land inside the input only: padded positions are skipped, not
    multiplied by zero. Output pixels are grouped by the set of taps that land inside the
    input (the interior is one group), so it is reasonably quick for small and medium shapes.
    """
    xl = _to_longdouble(x, "x")
    wl = _to_longdouble(w, "w")
    n, h, wd, ci = xl.shape
    kh, kw, ci2, co = wl.shape
    if ci != ci2:
        raise ValueError(f"channel mismatch: x has {ci}, w expects {ci2}")
    s = _ref_pair(stride, "stride")
    d = _ref_pair(dilation, "dilation")
    pads = explicit_padding(padding, (h, wd), (kh, kw), s, d)
    shape = output_shape(xl.shape, wl.shape, s, padding, d)
    _, oh, ow, _ = shape
    out = np.zeros(shape, dtype=np.longdouble)
    if out.size == 0 or ci == 0:
        return out.astype(np.float64)
    rows = _tap_groups(oh, h, kh, s[0], d[0], pads[0][0])
    cols = _tap_groups(ow, wd, kw, s[1], d[1], pads[1][0])
    with np.errstate(all="ignore"):
        # Output pixels sharing one set of in-range taps are gathered together: for each,
        # (taps x C_in) input values times the matching weights, summed in longdouble.
        for ti, oys in rows:
            iy = oys[:, None] * s[0] + ti[None, :] * d[0] - pads[0][0]  # (rows, taps)
            for tj, oxs in cols:
                ix = oxs[:, None] * s[1] + tj[None, :] * d[1] - pads[1][0]  # (cols, taps)
                taps = wl[np.ix_(ti, tj)].reshape(-1, co)  # (taps_h * taps_w * C_in, C_out)
                per_image = len(oys) * len(oxs) * taps.shape[0]
                step = max(1, 2_000_000 // max(per_image, 1))
                for n0 in range(0, n, step):
                    # (batch, rows, cols, taps_h, taps_w, C_in)
                    patch = xl[n0 : n0 + step][:, iy[:, None, :, None], ix[None, :, None, :], :]
                    nb = patch.shape[0]
                    out[n0 : n0 + nb, oys[:, None], oxs[None, :], :] = (
                        patch.reshape(-1, taps.shape[0]) @ taps
                    ).reshape(nb, len(oys), len(oxs), co)
        return out.astype(np.float64)


def tolerance_scale(x, w, stride=1, padding="VALID", dilation=1) -> np.ndarray:
    """reference_conv2d(|x|, |w|): the natural scale of a conv2d result's rounding error."""
    return reference_conv2d(np.abs(np.asarray(x)), np.abs(np.asarray(w)), stride, padding, dilation)


def _rtol(dtype) -> float:
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") in RTOL:
        return RTOL[dt.newbyteorder("=")]
    raise ValueError(f"assert_conv_close: no tolerance for dtype {dt}; use float16/32/64")


def assert_conv_close(actual, expected, scale, dtype=None) -> None:
    """Assert ``|actual - expected| <= rtol * scale + atol`` elementwise.

    rtol is 1e-5 for float32, 1e-12 for float64 (4e-3 for float16), atol is the
    dtype's smallest normal number; ``scale`` is :func:`tolerance_scale`. NaN
    positions must match exactly, and so must +Inf and -Inf positions. ``dtype``
    is the dtype the result was computed in (default: ``actual``'s dtype).
    Raises AssertionError naming the worst element (index, values, ratio).
    """
    act = np.asarray(actual)
    exp = np.asarray(expected)
    dt = np.dtype(dtype if dtype is not None else act.dtype)
    rtol = _rtol(dt)
    atol = float(np.finfo(dt).tiny)
    if act.shape != exp.shape:
        raise AssertionError(f"shape mismatch: actual {act.shape}, expected {exp.shape}")
    if act.dtype.kind not in "biuf":
        raise AssertionError(f"actual has non-real dtype {act.dtype}")
    a = act.astype(np.float64)
    e = exp.astype(np.float64)
    sc = np.broadcast_to(np.asarray(scale, dtype=np.float64), e.shape)

    def _mask_mismatch(label, ma, me):
        bad = ma != me
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise AssertionError(
                f"{label} positions differ at {int(bad.sum())} of {bad.size} elements; first at "
                f"index {idx}: actual {a[idx]!r}, expected {e[idx]!r}"
            )

    _mask_mismatch("NaN", np.isnan(a), np.isnan(e))
    _mask_mismatch("+Inf", np.isposinf(a), np.isposinf(e))
    _mask_mismatch("-Inf", np.isneginf(a), np.isneginf(e))
    finite = np.isfinite(e)
    if not finite.any():
        return
    with np.errstate(all="ignore"):
        err = np.where(finite, np.abs(a - e), 0.0)
        allowed = rtol * np.where(np.isfinite(sc), sc, np.inf) + atol
        ratio = np.where(finite, err / allowed, 0.0)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)  # NaN scale: never a silent pass
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    if ratio[worst] > 1.0:
        nbad = int((ratio > 1.0).sum())
        raise AssertionError(
            f"conv2d result out of tolerance at {nbad} of {ratio.size} elements; worst at index "
            f"{tuple(int(i) for i in worst)}: actual {a[worst]!r}, expected {e[worst]!r}, "
            f"|diff| {err[worst]:.3e} > allowed {allowed[worst]:.3e} "
            f"(rtol {rtol:g} x scale {sc[worst]:.3e} + atol {atol:.1e}); ratio {ratio[worst]:.3g}"
        )


# ================================================================= the grid
@dataclass(frozen=True)
class Case:
    """One conv2d problem of the grid: shapes and the keyword arguments of ``conv.conv2d``."""

    id: str
    x_shape: Tuple[int, int, int, int]
    w_shape: Tuple[int, int, int, int]
    stride: Any = 1
    padding: Any = "VALID"
    dilation: Any = 1

    @property
    def kwargs(self) -> dict:
        """stride, padding and dilation as keyword arguments for ``conv.conv2d``."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}

    @property
    def out_shape(self) -> Tuple[int, int, int, int]:
        return output_shape(self.x_shape, self.w_shape, self.stride, self.padding, self.dilation)

    @property
    def pads(self):
        """((top, bottom), (left, right)) by TensorFlow's rules."""
        return explicit_padding(
            self.padding, self.x_shape[1:3], self.w_shape[:2], self.stride, self.dilation
        )

    @property
    def macs(self) -> int:
        n, oh, ow, co = self.out_shape
        kh, kw, ci, _ = self.w_shape
        return n * oh * ow * co * kh * kw * ci

    def reference(self, x, w) -> np.ndarray:
        return reference_conv2d(x, w, self.stride, self.padding, self.dilation)

    def scale(self, x, w) -> np.ndarray:
        return tolerance_scale(x, w, self.stride, self.padding, self.dilation)


def _c(id, x, w, stride=1, padding="VALID", dilation=1):
    return Case(id, tuple(x), tuple(w), stride, padding, dilation)


#: The correctness grid: small enough that the pure-Python method runs all of it in seconds.
CASES: Tuple[Case, ...] = (
    # stride 1, the basic paddings
    _c("k3x2-valid", (2, 7, 8, 3), (3, 2, 3, 4)),
    _c("k3x2-same", (2, 7, 8, 3), (3, 2, 3, 4), padding="SAME"),
    _c("k3-same-s1", (2, 6, 7, 3), (3, 3, 3, 4), padding="SAME"),
    # strides 2 and 3, square and not, odd SAME totals
    _c("k3-valid-s2", (2, 7, 8, 3), (3, 3, 3, 4), stride=2),
    _c("k3-same-s2", (2, 7, 8, 3), (3, 3, 3, 4), stride=2, padding="SAME"),
    _c("k3-valid-s3", (2, 9, 10, 2), (3, 3, 2, 3), stride=3),
    _c("k2-same-s3", (1, 8, 7, 2), (2, 2, 2, 3), stride=3, padding="SAME"),
    _c("k3-same-s1x2", (2, 6, 9, 3), (3, 3, 3, 2), stride=(1, 2), padding="SAME"),
    _c("k2x3-explicit-s3x1", (1, 9, 6, 2), (2, 3, 2, 3), stride=(3, 1), padding=((1, 0), (2, 1))),
    _c("k2-valid-s3-gt-kernel", (1, 9, 9, 2), (2, 2, 2, 2), stride=3),
    # dilation
    _c("k3-valid-d2", (2, 8, 9, 2), (3, 3, 2, 3), dilation=2),
    _c("k3-same-d2", (2, 8, 9, 2), (3, 3, 2, 3), padding="SAME", dilation=2),
    _c("k2x4-same-d1x2", (1, 7, 8, 2), (2, 4, 2, 3), padding="SAME", dilation=(1, 2)),
    _c("k3-explicit-d2x1", (1, 7, 8, 2), (3, 2, 2, 2), padding=((2, 0), (1, 1)), dilation=(2, 1)),
    # stride > 1 together with dilation > 1
    _c("k3-valid-s2-d2", (2, 9, 9, 2), (3, 3, 2, 3), stride=2, dilation=2),
    _c("k3-same-s2-d2", (2, 9, 8, 2), (3, 3, 2, 3), stride=2, padding="SAME", dilation=2),
    _c("k2x3-explicit-s3-d2", (1, 10, 11, 2), (2, 3, 2, 2), stride=3, padding=((1, 2), (0, 3)),
       dilation=2),
    _c("k3x2-same-s2x1-d1x2", (2, 7, 9, 3), (3, 2, 3, 2), stride=(2, 1), padding="SAME",
       dilation=(1, 2)),
    _c("k2-pad1-s1x3-d2x1", (1, 8, 9, 2), (2, 2, 2, 3), stride=(1, 3), padding=1, dilation=(2, 1)),
    _c("k3-pad2-s3-d2", (1, 8, 7, 2), (3, 3, 2, 2), stride=3, padding=2, dilation=2),
    # every explicit padding form
    _c("k3-pad-int1", (2, 6, 7, 3), (3, 3, 3, 4), padding=1),
    _c("k3-pad-int0", (1, 6, 7, 3), (3, 3, 3, 2), padding=0),
    _c("k3-pad-int2-s2", (1, 5, 6, 2), (3, 3, 2, 2), stride=2, padding=2),
    _c("k3x2-pad-hw", (2, 6, 7, 3), (3, 2, 3, 4), padding=(2, 1)),
    _c("k3-pad-tblr", (2, 6, 7, 3), (3, 3, 3, 2), padding=((0, 2), (3, 1))),
    _c("k3-pad-tblr-zero", (1, 5, 6, 2), (3, 3, 2, 2), padding=((0, 0), (0, 0))),
    _c("k2-pad-tf4", (1, 6, 5, 2), (2, 2, 2, 3), padding=((0, 0), (1, 2), (2, 1), (0, 0))),
    _c("k2-pad-wider-than-kernel", (1, 3, 4, 2), (2, 2, 2, 2), padding=((3, 2), (1, 4))),
    # kernel sizes and shapes
    _c("k1-valid", (2, 5, 6, 4), (1, 1, 4, 3)),
    _c("k1-same-s2", (2, 5, 6, 4), (1, 1, 4, 3), stride=2, padding="SAME"),
    _c("k1-pad1-s3", (1, 7, 5, 3), (1, 1, 3, 2), stride=3, padding=1),
    _c("k2-same-even", (2, 6, 6, 2), (2, 2, 2, 3), padding="SAME"),
    _c("k4-same-even", (1, 7, 6, 2), (4, 4, 2, 2), padding="SAME"),
    _c("k1x3-same", (2, 5, 7, 2), (1, 3, 2, 3), padding="SAME"),
    _c("k3x1-valid-s2", (2, 7, 5, 2), (3, 1, 2, 3), stride=2),
    _c("k5-same", (1, 7, 7, 2), (5, 5, 2, 2), padding="SAME"),
    # small dimensions
    _c("cin1-same", (1, 6, 7, 1), (3, 3, 1, 4), padding="SAME"),
    _c("cout1-valid", (2, 6, 5, 3), (2, 3, 3, 1)),
    _c("cin16-same", (1, 5, 5, 16), (3, 3, 16, 8), padding="SAME"),
    _c("n1-x1x1-k1", (2, 1, 1, 3), (1, 1, 3, 2)),
    _c("x1x1-k3-same", (2, 1, 1, 3), (3, 3, 3, 2), padding="SAME"),
    # kernel as large as the (padded) input
    _c("kernel-eq-input-valid", (2, 4, 5, 3), (4, 5, 3, 2)),
    _c("kernel-eq-input-same", (1, 4, 5, 3), (4, 5, 3, 2), padding="SAME"),
    _c("kernel-eq-input-valid-s2", (1, 3, 3, 2), (3, 3, 2, 2), stride=2),
    _c("kernel-gt-input-same", (1, 2, 2, 2), (3, 3, 2, 2), padding="SAME"),
    _c("kernel-eq-padded-input", (1, 2, 3, 2), (3, 4, 2, 2), padding=((1, 0), (0, 1))),
    # the article's shapes, scaled down
    _c("article-small-same", (4, 32, 32, 3), (3, 3, 3, 16), padding="SAME"),
    _c("article-small-valid-s2", (2, 16, 16, 3), (3, 3, 3, 16), stride=2),
)

#: The article's full-size shapes: for fast methods only (not "python").
ARTICLE_CASES: Tuple[Case, ...] = (
    _c("article-valid", (100, 32, 32, 3), (3, 3, 3, 16)),
    _c("article-same", (100, 32, 32, 3), (3, 3, 3, 16), padding="SAME"),
)


def case_ids(cases: Optional[Iterable[Case]] = None) -> List[str]:
    """The ids of ``cases`` (default :data:`CASES`), for ``pytest.mark.parametrize(ids=...)``."""
    return [c.id for c in (CASES if cases is None else cases)]


def get_case(case_id: str) -> Case:
    for c in CASES + ARTICLE_CASES:
        if c.id == case_id:
            return c
    raise KeyError(case_id)


def make_inputs(case: Case, dtype="float64", seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic (x, w) for ``case``: uniform in [-1, 1), rounded to ``dtype``,
    C-contiguous and writeable. The same (case, dtype, seed) always gives the same arrays."""
    rng = np.random.default_rng([seed, zlib.crc32(case.id.encode())])
    x = rng.uniform(-1.0, 1.0, case.x_shape).astype(dtype)
    w = rng.uniform(-1.0, 1.0, case.w_shape).astype(dtype)
    return x, w


# ============================================================ check_method
class _Failure(AssertionError):
    pass


def _where(name, label, exc):
    if isinstance(exc, AssertionError):
        return _Failure(f"conv method {name!r}, {label}: {exc}")
    return _Failure(f"conv method {name!r}, {label}: raised {type(exc).__name__}: {exc}")


def _snapshot(*arrays) -> List[bytes]:
    return [np.asarray(a).tobytes(order="A") + repr(np.asarray(a).shape).encode() for a in arrays]


def _check_one(name, x, w, kwargs, dtype, label, bases=None, threads=None):
    """Run one call and check value, dtype, shape and that nothing was written."""
    import conv

    bases = (x, w) if bases is None else bases
    before = _snapshot(*bases)
    flags = [b.flags.writeable if isinstance(b, np.ndarray) else None for b in bases]
    try:
        out = conv.conv2d(x, w, method=name, threads=threads, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported with the case
        raise _where(name, label, exc) from exc
    try:
        if _snapshot(*bases) != before:
            raise AssertionError("an input array was modified")
        after = [b.flags.writeable if isinstance(b, np.ndarray) else None for b in bases]
        if after != flags:
            raise AssertionError(f"input writeable flags changed from {flags} to {after}")
        if not isinstance(out, np.ndarray):
            raise AssertionError(f"returned {type(out).__name__}, not numpy.ndarray")
        if out.dtype != np.dtype(dtype):
            raise AssertionError(f"returned dtype {out.dtype}, expected {np.dtype(dtype)}")
        expected = reference_conv2d(x, w, **kwargs)
        if out.shape != expected.shape:
            raise AssertionError(f"returned shape {out.shape}, expected {expected.shape}")
        assert_conv_close(out, expected, tolerance_scale(x, w, **kwargs), dtype)
    except AssertionError as exc:
        raise _where(name, label, exc) from exc
    return out


def _expect_raises(name, label, excs, fn):
    try:
        fn()
    except excs:
        return
    except Exception as exc:  # noqa: BLE001
        raise _Failure(
            f"conv method {name!r}, bad input {label}: raised {type(exc).__name__}: {exc}, "
            f"expected {' or '.join(e.__name__ for e in excs)}"
        ) from exc
    raise _Failure(f"conv method {name!r}, bad input {label}: no error raised")


def _layouts(case: Case, dtype, seed):
    """(label, x, w, bases) for the same problem in several memory layouts."""
    x, w = make_inputs(case, dtype, seed)
    yield "C-contiguous", x, w, (x, w)
    xr, wr = x.copy(), w.copy()
    xr.flags.writeable = False
    wr.flags.writeable = False
    yield "read-only", xr, wr, (xr, wr)
    xf, wf = np.asfortranarray(x), np.asfortranarray(w)
    yield "Fortran-order", xf, wf, (xf, wf)
    xb = np.ascontiguousarray(x[::-1, ::-1, ::-1, ::-1])
    wb = np.ascontiguousarray(w[::-1, ::-1, ::-1, ::-1])
    yield "negative-stride", xb[::-1, ::-1, ::-1, ::-1], wb[::-1, ::-1, ::-1, ::-1], (xb, wb)
    n, h, wd, c = x.shape
    xbig = np.full((n, 2 * h, wd + 3, 2 * c), np.nan, dtype=x.dtype)
    xbig[:, ::2, 1 : wd + 1, ::2] = x
    kh, kw, ci, co = w.shape
    wbig = np.full((kh, 2 * kw, ci, co + 2), np.nan, dtype=w.dtype)
    wbig[:, ::2, :, 1 : co + 1] = w
    yield (
        "non-contiguous view",
        xbig[:, ::2, 1 : wd + 1, ::2],
        wbig[:, ::2, :, 1 : co + 1],
        (xbig, wbig),
    )
    if np.dtype(dtype).itemsize > 1:
        xe = x.astype(x.dtype.newbyteorder(">" if np.little_endian else "<"))
        we = w.astype(w.dtype.newbyteorder(">" if np.little_endian else "<"))
        yield "non-native byte order", xe, we, (xe, we)


_LAYOUT_CASE = Case("layout", (2, 6, 7, 3), (3, 2, 3, 4), stride=(2, 1), padding="SAME", dilation=(1, 2))


# For parallel methods: big enough (about 13 MFLOP) that a method does not fall back to
# one thread, with several output-channel tiles of any plausible width.
_THREAD_CASES = (
    Case("threads-channel-tiles", (8, 24, 24, 4), (3, 3, 4, 40), padding="SAME"),
    Case("threads-strided-dilated", (4, 30, 29, 3), (3, 3, 3, 24), stride=2, padding=1,
         dilation=2),
)


def _nan_inf_inputs(case: Case, dtype, seed):
    x, w = make_inputs(case, dtype, seed)
    n, h, wd, c = x.shape
    x[0, 0, 0, 0] = np.inf  # the corner
    x[0, h // 2, wd // 2, c - 1] = np.nan
    x[n - 1, h - 1, wd // 3, 0] = -np.inf
    w[0, 0, 0, 1] = np.inf  # a top-left tap: in the padding for the first output row/column
    w[-1, -1, c - 1, 0] = np.nan
    return x, w


#: Methods whose values are TensorFlow's own: conv's built-in "tensorflow" method is
#: tf.nn.conv2d itself. It is the baseline conv is measured against, not an
#: implementation of conv's semantics, and where a NaN/Inf weight meets a padded tap
#: (:func:`nonfinite_meets_padding`) TensorFlow's result differs between its builds;
#: check_method does not check these methods on such cases (see its docstring).
_TENSORFLOW_METHODS = frozenset({"tensorflow"})

_NAN_CASES = (
    Case("nan-inf-same", (2, 6, 7, 3), (3, 3, 3, 3), padding="SAME"),
    Case("nan-inf-valid", (2, 6, 7, 3), (3, 3, 3, 3)),
    Case("nan-inf-explicit-s2-d2", (2, 8, 7, 3), (2, 3, 3, 3), stride=2, padding=((2, 1), (1, 3)),
         dilation=2),
)

_EMPTY_CASES = (
    Case("empty-batch-valid", (0, 5, 6, 2), (3, 3, 2, 4)),
    Case("empty-batch-same-s2", (0, 5, 6, 2), (3, 3, 2, 4), stride=2, padding="SAME"),
    Case("cout0", (2, 5, 6, 2), (3, 3, 2, 0)),
    Case("cout0-same", (2, 5, 6, 2), (3, 3, 2, 0), padding="SAME"),
    Case("cin0", (2, 5, 6, 0), (3, 3, 0, 3), padding=1),
)


def _bad_inputs(dtype):
    x = np.ones((1, 5, 5, 2), dtype)
    w = np.ones((3, 3, 2, 3), dtype)
    return [
        ("x not 4-D", ValueError, (x[0], w), {}),
        ("w not 4-D", ValueError, (x, w[0]), {}),
        ("channel mismatch", ValueError, (x, np.ones((3, 3, 4, 3), dtype)), {}),
        ("stride=0", ValueError, (x, w), {"stride": 0}),
        ("stride=(1, -2)", ValueError, (x, w), {"stride": (1, -2)}),
        ("dilation=1.5", TypeError, (x, w), {"dilation": 1.5}),
        ("padding='FULL'", ValueError, (x, w), {"padding": "FULL"}),
        ("padding=-1", ValueError, (x, w), {"padding": -1}),
        ("kernel larger than padded input", ValueError, (x, np.ones((7, 3, 2, 3), dtype)), {}),
        ("threads=0", ValueError, (x, w), {"threads": 0}),
        ("complex x", TypeError, (x.astype(np.complex128), w), {}),
        ("ragged x", ValueError, ([[[[1.0]]], [[[1.0, 2.0]]]], w), {}),
    ]


def check_method(
    name: str,
    *,
    dtypes: Optional[Sequence[Any]] = None,
    cases: Optional[Iterable[Case]] = None,
    seed: int = 0,
) -> None:
    """Run conv method ``name`` through the conformance grid; raise AssertionError on a failure.

    Checks, through ``conv.conv2d(..., method=name)``:
      * every case of ``cases`` (default :data:`CASES`) in each dtype (default: the
        method's declared ``dtypes``) against :func:`reference_conv2d`, within
        1e-5 (float32) / 1e-12 (float64) of :func:`tolerance_scale`; output is a
        numpy.ndarray of the input dtype and TensorFlow's shape;
      * inputs are never written to, whatever their layout (read-only, Fortran
        order, negative strides, non-contiguous views, non-native byte order),
        and the results do not depend on the layout;
      * for a parallel method, threads=1, 2 and 3 (repeatedly, on problems large enough to
        be split) all give correct results;
      * NaN and Inf propagate as the exact reference says: a NaN or Inf in ``x`` or
        ``w`` reaches exactly the outputs it is multiplied into, and padded taps are
        skipped, so an Inf weight whose tap lands in the padding gives Inf, not NaN
        (0 * Inf). One exception, by name: for conv's ``"tensorflow"`` method, which
        is tf.nn.conv2d itself, the NaN/Inf cases where a non-finite weight meets a
        padded tap (:func:`nonfinite_meets_padding`) are not run, because
        TensorFlow's result there differs between its builds (float32 skipped padded
        taps on one machine and gave NaN on another). Its NaN/Inf case without
        padding is run. Every other method, plugins included, is checked on all;
      * an empty batch, C_out == 0 and C_in == 0 give results of the right shape;
      * a dtype the method does not declare raises TypeError;
      * a representative handful of bad inputs raise ValueError/TypeError.

    The AssertionError names the method, the check and the case.
    """
    import conv

    method = conv.get_method(name) if name != "auto" else None
    declared = tuple(method.dtypes) if method is not None else ("float32", "float64")
    if dtypes is None:
        dtypes = declared
    dtypes = [np.dtype(d) for d in dtypes]
    grid = list(CASES if cases is None else cases)
    if not grid:
        raise ValueError("check_method: no cases to run")

    for dtype in dtypes:
        for case in grid:
            x, w = make_inputs(case, dtype, seed)
            _check_one(name, x, w, case.kwargs, dtype, f"case {case.id!r} ({dtype})")

        for label, x, w, bases in _layouts(_LAYOUT_CASE, dtype, seed):
            _check_one(name, x, w, _LAYOUT_CASE.kwargs, dtype, f"{label} input ({dtype})", bases)

        if method is None or method.parallel:
            for case in (_LAYOUT_CASE,) + _THREAD_CASES:
                x, w = make_inputs(case, dtype, seed)
                # repeated: a data race between threads shows up only some of the time
                for threads in (1, 2, 2, 2, 3):
                    _check_one(name, x, w, case.kwargs, dtype,
                               f"case {case.id!r} with threads={threads} ({dtype})",
                               threads=threads)

        for case in _NAN_CASES:
            x, w = _nan_inf_inputs(case, dtype, seed)
            if name in _TENSORFLOW_METHODS and nonfinite_meets_padding(x, w, **case.kwargs):
                continue  # TensorFlow's result differs between its builds here: not checked
            _check_one(name, x, w, case.kwargs, dtype, f"NaN/Inf case {case.id!r} ({dtype})")

        for case in _EMPTY_CASES:
            x, w = make_inputs(case, dtype, seed)
            out = _check_one(name, x, w, case.kwargs, dtype, f"empty case {case.id!r} ({dtype})")
            if out.shape != case.out_shape:  # pragma: no cover - _check_one checked it
                raise _Failure(f"conv method {name!r}, {case.id}: shape {out.shape}")

        for label, exc, args, kwargs in _bad_inputs(dtype):
            _expect_raises(
                name, label, (exc,), lambda: conv.conv2d(*args, method=name, **kwargs)
            )

    # Nested lists compute in float64, and inputs of an undeclared dtype are refused.
    case = CASES[0]
    x, w = make_inputs(case, "float64", seed)
    if "float64" in declared:
        _check_one(name, x.tolist(), w.tolist(), case.kwargs, np.float64, "nested-list input")
    for dt in ("float32", "float64"):
        if dt not in declared:
            xd, wd = make_inputs(case, dt, seed)
            _expect_raises(name, f"undeclared dtype {dt}", (TypeError,),
                           lambda: conv.conv2d(xd, wd, method=name, **case.kwargs))
