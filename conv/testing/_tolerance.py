"""The tolerance check: how close a conv2d result must be to the exact reference."""
from __future__ import annotations

import numpy as np

from ._reference import reference_conv2d

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
