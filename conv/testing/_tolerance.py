"""The tolerance check: how close a conv2d result must be to the exact reference."""
from __future__ import annotations

import numpy as np

from .._contract import NORMWISE_TOLERANCE
from ._reference import reference_conv2d

#: The normwise bound a method declaring ``accuracy="normwise"`` keeps, per dtype name:
#: max|y - exact| <= NORMWISE[dtype] * max|exact|.
NORMWISE = dict(NORMWISE_TOLERANCE)

#: Relative tolerance (relative to :func:`tolerance_scale`) per result dtype.
RTOL = {
    np.dtype(np.float16): 4e-3,
    np.dtype(np.float32): 1e-5,
    np.dtype(np.float64): 1e-12,
}


def tolerance_scale(x, w, stride=1, padding="VALID", dilation=1) -> np.ndarray:
    """reference_conv2d(|x|, |w|): the natural scale of a conv2d result's rounding error."""
    return reference_conv2d(np.abs(np.asarray(x)), np.abs(np.asarray(w)), stride, padding, dilation)


def _rtol(dtype) -> float:
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") in RTOL:
        return RTOL[dt.newbyteorder("=")]
    raise ValueError(f"assert_conv_close: no tolerance for dtype {dt}; use float16/32/64")


def _same_nonfinite(a: np.ndarray, e: np.ndarray) -> None:
    """NaN, +Inf and -Inf at the same positions in a and e, or AssertionError."""
    for label, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        bad = test(a) != test(e)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise AssertionError(
                f"{label} positions differ at {int(bad.sum())} of {bad.size} elements; first at "
                f"index {idx}: actual {a[idx]!r}, expected {e[idx]!r}"
            )


def _real_pair(actual, expected):
    act, exp = np.asarray(actual), np.asarray(expected)
    if act.shape != exp.shape:
        raise AssertionError(f"shape mismatch: actual {act.shape}, expected {exp.shape}")
    if act.dtype.kind not in "biuf":
        raise AssertionError(f"actual has non-real dtype {act.dtype}")
    return act, exp


def assert_conv_normwise(actual, expected, dtype=None) -> None:
    """Assert ``max|actual - expected| <= NORMWISE[dtype] * max|expected|`` over the
    finite elements of ``expected`` (the bound of a method declaring
    ``accuracy="normwise"``: 2e-5 float32, 1e-12 float64), with NaN, +Inf and -Inf at
    the same positions. ``dtype``: the dtype the result was computed in (default:
    ``actual``'s). Raises AssertionError naming the worst element."""
    act, exp = _real_pair(actual, expected)
    dt = np.dtype(dtype if dtype is not None else act.dtype).newbyteorder("=")
    if dt.name not in NORMWISE:
        raise ValueError(f"assert_conv_normwise: no bound for dtype {dt}; use float32/64")
    a, e = act.astype(np.float64), exp.astype(np.float64)
    _same_nonfinite(a, e)
    finite = np.isfinite(e)
    if not finite.any():
        return
    with np.errstate(invalid="ignore"):  # Inf - Inf where both are Inf: masked out
        err = np.where(finite, np.abs(a - e), 0.0)
    allowed = NORMWISE[dt.name] * float(np.abs(e[finite]).max()) + float(np.finfo(dt).tiny)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    if err[worst] > allowed:
        raise AssertionError(
            f"conv2d result over the normwise bound: max |diff| {err[worst]:.3e} > allowed "
            f"{allowed:.3e} ({NORMWISE[dt.name]:g} x max|expected|), at index "
            f"{tuple(int(i) for i in worst)}: actual {a[worst]!r}, expected {e[worst]!r}"
        )


def assert_conv_close(actual, expected, scale, dtype=None) -> None:
    """Assert ``|actual - expected| <= rtol * scale + atol`` elementwise.

    rtol is 1e-5 for float32, 1e-12 for float64 (4e-3 for float16), atol is the
    dtype's smallest normal number; ``scale`` is :func:`tolerance_scale`. NaN
    positions must match exactly, and so must +Inf and -Inf positions. ``dtype``
    is the dtype the result was computed in (default: ``actual``'s dtype).
    Raises AssertionError naming the worst element (index, values, ratio).
    """
    act, exp = _real_pair(actual, expected)
    dt = np.dtype(dtype if dtype is not None else act.dtype)
    rtol = _rtol(dt)
    atol = float(np.finfo(dt).tiny)
    a = act.astype(np.float64)
    e = exp.astype(np.float64)
    sc = np.broadcast_to(np.asarray(scale, dtype=np.float64), e.shape)

    _same_nonfinite(a, e)
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


def assert_conv_accurate(actual, expected, scale, dtype=None, accuracy="componentwise") -> None:
    """The check a method's ``accuracy`` names: :func:`assert_conv_close` (componentwise,
    ``scale`` from :func:`tolerance_scale`) or :func:`assert_conv_normwise` (``scale``
    unused)."""
    if accuracy == "componentwise":
        assert_conv_close(actual, expected, scale, dtype)
    elif accuracy == "normwise":
        assert_conv_normwise(actual, expected, dtype)
    else:
        raise ValueError(f"accuracy must be 'componentwise' or 'normwise', not {accuracy!r}")
