"""The exact reference: TensorFlow's padding and output-size rules and the conv2d sum.

This module deliberately recomputes, independently of conv's front end
(``conv/_frontend.py``), the output sizes (:func:`output_shape`), the padding
by TensorFlow's rules (:func:`explicit_padding`) and the stride and dilation
pairs. It also computes the sum itself (:func:`reference_conv2d`, accumulated
in extended precision) rather than calling a conv method. The repetition is on
purpose. A reference that called conv's code would share its mistakes and could
never catch them. Everywhere else in conv, output sizes and flop counts have one
home (``conv/_geometry.py``); the testing kit is the stated exception. Do not
replace these functions with calls into ``conv``.
"""
from __future__ import annotations

import numbers
from typing import List, Tuple

import numpy as np


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
    """An exact-as-practical tf.nn.conv2d (NHWC x HWIO), returned as float64; grouped
    when x's C_in is a multiple of w's (group by group), as TensorFlow does.

    Products are accumulated in ``np.longdouble`` (64-bit mantissa on x86) over
    the taps that land inside the input only: padded positions are skipped, not
    multiplied by zero. Output pixels are grouped by the set of taps that land inside the
    input (the interior is one group), so it is reasonably quick for small and medium shapes.
    """
    xl = _to_longdouble(x, "x")
    wl = _to_longdouble(w, "w")
    n, h, wd, ci = xl.shape
    kh, kw, ci2, co = wl.shape
    if ci != ci2:  # grouped, as TensorFlow infers it: each group on its own
        if ci2 == 0 or ci % ci2 or co % (ci // ci2):
            raise ValueError(f"channel mismatch: x has {ci}, w expects {ci2} (or a divisor "
                             f"of {ci} whose group count divides C_out={co})")
        g, cog = ci // ci2, co // (ci // ci2)
        return np.concatenate(
            [reference_conv2d(xl[..., k * ci2:(k + 1) * ci2], wl[..., k * cog:(k + 1) * cog],
                              stride, padding, dilation) for k in range(g)], axis=3)
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
