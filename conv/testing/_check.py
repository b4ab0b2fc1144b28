"""check_method: a conv method through the whole conformance grid, against the reference."""
from __future__ import annotations

from typing import Any, Iterable, List, Optional, Sequence

import numpy as np

from ._cases import CASES, Case, make_inputs
from ._reference import nonfinite_meets_padding, reference_conv2d
from ._tolerance import assert_conv_accurate, tolerance_scale


class _Failure(AssertionError):
    pass


def _where(name, label, exc):
    if isinstance(exc, AssertionError):
        return _Failure(f"conv method {name!r}, {label}: {exc}")
    return _Failure(f"conv method {name!r}, {label}: raised {type(exc).__name__}: {exc}")


def _snapshot(*arrays) -> List[bytes]:
    return [np.asarray(a).tobytes(order="A") + repr(np.asarray(a).shape).encode() for a in arrays]


def method_accuracy(name: str, x=None, w=None, **kwargs) -> str:
    """The error bound method ``name``'s results keep (``Method.accuracy``:
    "componentwise" or "normwise"). For ``"auto"``, the bound of the method auto picks
    for ``conv2d(x, w, **kwargs)``."""
    import conv
    from .. import _introspect

    if name == "auto":
        name = _introspect.auto_choice(x, w, kwargs.pop("threads", None), **kwargs)
    return conv.get_method(name).accuracy


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
        assert_conv_accurate(out, expected, tolerance_scale(x, w, **kwargs), dtype,
                             method_accuracy(name, x, w, threads=threads, **kwargs))
    except AssertionError as exc:
        raise _where(name, label, exc) from exc
    _check_plan(name, x, w, kwargs, out, label, bases, before, threads)


def _check_plan(name, x, w, kwargs, expected, label, bases, before, threads):
    """The same call through a plan (the method's prepare hook, if it has one) and into
    an out= buffer (the kernel's, with kernel_writes_out): their results, with and without
    out=, equal conv2d's bit for bit."""
    import conv

    label = f"{label}, planned and out="
    try:
        p = conv.plan(np.shape(x), w, method=name, threads=threads,
                      dtype=np.asarray(x).dtype, **kwargs)
        planned = p(x)
        into = np.empty_like(expected)
        returned = p(x, out=into)
        buf = np.empty_like(expected)
        filled = conv.conv2d(x, w, method=name, threads=threads, out=buf, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported with the case
        raise _where(name, label, exc) from exc
    try:
        if _snapshot(*bases) != before:
            raise AssertionError("an input array was modified")
        if returned is not into:
            raise AssertionError("p(x, out=buf) did not return buf")
        if filled is not buf:
            raise AssertionError("conv2d(x, w, out=buf) did not return buf")
        for got, how in ((planned, "p(x)"), (into, "p(x, out=buf)"),
                         (buf, "conv2d(x, w, out=buf)")):
            if got.dtype != expected.dtype or got.shape != expected.shape:
                raise AssertionError(f"{how} gave {got.dtype} {got.shape}, conv2d "
                                     f"{expected.dtype} {expected.shape}")
            np.testing.assert_array_equal(got, expected,
                                          err_msg=f"{how} differs from conv2d's result")
    except AssertionError as exc:
        raise _where(name, label, exc) from exc


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
        1e-5 (float32) / 1e-12 (float64) of :func:`tolerance_scale` elementwise, or,
        for a method declaring ``accuracy="normwise"``, within :data:`NORMWISE` of
        the largest exact value (:func:`assert_conv_normwise`); output is a
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
      * a representative handful of bad inputs raise ValueError/TypeError;
      * every call above is repeated through ``conv.plan`` (which uses the method's
        ``prepare`` hook when it has one): ``p(x)`` and ``p(x, out=buf)`` equal
        ``conv2d``'s result bit for bit, and write to no input.

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
            _check_one(name, x, w, case.kwargs, dtype, f"empty case {case.id!r} ({dtype})")

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
