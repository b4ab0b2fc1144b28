"""The front end: validation, dtype promotion, array-likes, padding rules and output shapes."""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import conv
import conv.testing as kit
from conv import _frontend

X = np.ones((1, 5, 5, 2))
W = np.ones((3, 3, 2, 3))
METHODS = conv.list_methods() + ["auto"]


def _spy(name="spy", parallel=False, dtypes=("float32", "float64")):
    """A run-time method that records the Problem it receives and returns zeros."""
    seen = []

    def kernel(p):
        seen.append(p)
        return np.zeros(p.out_shape, dtype=p.dtype)

    return conv.Method(name, kernel, parallel=parallel, dtypes=dtypes), seen


# ================================================================ bad input
BAD = [
    # (id, exception, match, x, w, kwargs)
    ("x-3d", ValueError, r"\bx\b.*4-D", X[0], W, {}),
    ("x-5d", ValueError, r"\bx\b.*4-D", X[None], W, {}),
    ("w-3d", ValueError, r"\bw\b.*4-D", X, W[0], {}),
    ("w-5d", ValueError, r"\bw\b.*4-D", X, W[None], {}),
    ("x-scalar", ValueError, r"\bx\b.*4-D", 1.0, W, {}),
    ("channel-mismatch", ValueError, r"C_in", X, np.ones((3, 3, 4, 3)), {}),
    ("grouped-conv", ValueError, r"C_in", np.ones((1, 5, 5, 4)), np.ones((3, 3, 2, 3)), {}),
    ("kernel-height-0", ValueError, r"\bw\b", X, np.ones((0, 3, 2, 3)), {}),
    ("stride-0", ValueError, "stride", X, W, {"stride": 0}),
    ("stride-negative", ValueError, "stride", X, W, {"stride": -2}),
    ("stride-pair-0", ValueError, "stride", X, W, {"stride": (1, 0)}),
    ("stride-pair-negative", ValueError, "stride", X, W, {"stride": (-1, 1)}),
    ("stride-float", TypeError, "stride", X, W, {"stride": 1.5}),
    ("stride-integral-float", TypeError, "stride", X, W, {"stride": 2.0}),
    ("stride-float-in-pair", TypeError, "stride", X, W, {"stride": (1.0, 2)}),
    ("stride-bool", TypeError, "stride", X, W, {"stride": True}),
    ("stride-bool-in-pair", TypeError, "stride", X, W, {"stride": (True, 1)}),
    ("stride-str", TypeError, "stride", X, W, {"stride": "2"}),
    ("stride-None", TypeError, "stride", X, W, {"stride": None}),
    ("stride-length-3", ValueError, "stride", X, W, {"stride": (1, 2, 1)}),
    ("stride-length-3", ValueError, "stride", X, W, {"stride": (1, 2, 3)}),
    ("stride-tf4-bad-batch", ValueError, "stride", X, W, {"stride": [2, 1, 1, 1]}),
    ("dilation-0", ValueError, "dilation", X, W, {"dilation": 0}),
    ("dilation-negative", ValueError, "dilation", X, W, {"dilation": -1}),
    ("dilation-pair-0", ValueError, "dilation", X, W, {"dilation": (0, 1)}),
    ("dilation-float", TypeError, "dilation", X, W, {"dilation": 1.5}),
    ("dilation-bool", TypeError, "dilation", X, W, {"dilation": False}),
    ("dilation-length-3", ValueError, "dilation", X, W, {"dilation": (1, 1, 1)}),
    ("padding-unknown", ValueError, "padding", X, W, {"padding": "FULL"}),
    ("padding-empty-str", ValueError, "padding", X, W, {"padding": ""}),
    ("padding-negative", ValueError, "padding", X, W, {"padding": -1}),
    ("padding-negative-hw", ValueError, "padding", X, W, {"padding": (1, -1)}),
    ("padding-negative-tblr", ValueError, "padding", X, W, {"padding": ((0, 1), (2, -3))}),
    ("padding-negative-tf4", ValueError, "padding", X, W,
     {"padding": [[0, 0], [1, -1], [0, 0], [0, 0]]}),
    ("padding-batch-nonzero", ValueError, "padding", X, W,
     {"padding": [[1, 0], [0, 0], [0, 0], [0, 0]]}),
    ("padding-channel-nonzero", ValueError, "padding", X, W,
     {"padding": [[0, 0], [0, 0], [0, 0], [0, 1]]}),
    ("padding-float", TypeError, "padding", X, W, {"padding": 1.5}),
    ("padding-float-in-pair", TypeError, "padding", X, W, {"padding": ((1.5, 0), (0, 0))}),
    ("padding-bool", TypeError, "padding", X, W, {"padding": True}),
    ("padding-None", TypeError, "padding", X, W, {"padding": None}),
    ("padding-bytes", TypeError, "padding", X, W, {"padding": b"SAME"}),
    ("padding-dict", TypeError, "padding.*list or tuple.*dict", X, W,
     {"padding": {1: 2, 3: 4}}),
    ("padding-set", TypeError, "padding.*list or tuple.*set", X, W, {"padding": {1, 2}}),
    ("padding-huge", ValueError, r"padding must be at most 2\*\*31 - 1", X, W,
     {"padding": 10**30}),
    ("padding-huge-tblr", ValueError, r"padding must be at most", X, W,
     {"padding": ((0, 2**31), (0, 0))}),
    ("dilation-huge-same", ValueError, r"dilation 10+ makes the kernel's height span", X, W,
     {"dilation": 10**30, "padding": "SAME"}),
    ("dilation-huge-width", ValueError, r"dilation 10+ makes the kernel's width span", X, W,
     {"dilation": (1, 10**30), "padding": "SAME"}),
    ("x-masked", TypeError, r"\bx\b is a masked array.*filled", np.ma.masked_array(X), W, {}),
    ("w-masked", TypeError, r"\bw\b is a masked array.*filled", X, np.ma.masked_array(W), {}),
]
MALFORMED_PADDING = [(1, 2, 3), ((1, 2), (3,)), ((1, 2), (3, 4), (5, 6)), ((1, 2, 3), (4, 5)), [[1]]]
TOO_LARGE = [
    # (x shape, w shape, kwargs): the (dilated) kernel does not fit the padded input
    ((1, 3, 3, 1), (4, 3, 1, 1), {}),
    ((1, 3, 3, 1), (3, 4, 1, 1), {}),
    ((1, 3, 3, 1), (6, 3, 1, 1), {"padding": 1}),
    ((1, 3, 3, 1), (2, 6, 1, 1), {"padding": ((0, 0), (1, 1))}),
    ((1, 4, 4, 1), (3, 3, 1, 1), {"dilation": 2}),
    ((1, 4, 6, 1), (2, 3, 1, 1), {"dilation": (1, 3), "stride": 2}),
    ((1, 0, 5, 1), (1, 1, 1, 1), {}),  # an empty image under VALID
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_argument(case):
    _, exc, match, x, w, kwargs = case
    with pytest.raises(exc, match=match):
        conv.conv2d(x, w, **kwargs)


@pytest.mark.parametrize("case", [b for b in BAD if b[0] in (
    "padding-huge", "dilation-huge-same", "padding-dict", "x-masked")], ids=lambda b: b[0])
def test_bad_input_is_the_same_error_for_every_method(case):
    """The front end refuses it before any method runs, so no method overflows its own
    way (the compiled ones raised OverflowError where numpy returned a result)."""
    _, exc, match, x, w, kwargs = case
    for method in conv.list_methods() + ["auto"]:
        with pytest.raises(exc, match=match):
            conv.conv2d(x, w, method=method, **kwargs)


@pytest.mark.parametrize("which", ["x", "w", "view of x"])
def test_a_kernel_returning_its_input_breaks_the_contract(which, registered):
    """conv2d never returns an array that shares memory with x or w (a 1x1 kernel with
    C_in == C_out gives a result of x's shape, so the shape check alone lets it through)."""
    def kernel(p):
        if which == "x":
            return p.x
        if which == "w":
            return p.w.reshape(p.out_shape)
        return p.x[..., :]

    registered(conv.Method("returns_input", kernel))
    if which == "w":  # x (1, 1, 1, 1) and w (1, 1, 1, 1): w has the output's shape
        x, w = np.full((1, 1, 1, 1), 3.0), np.full((1, 1, 1, 1), 2.0)
    else:             # identity weights: returning x would even have the right values
        x = np.arange(2 * 3 * 3 * 4, dtype=np.float64).reshape(2, 3, 3, 4)
        w = np.eye(4).reshape(1, 1, 4, 4)
    with pytest.raises(conv.MethodError, match="shares memory with its input"):
        conv.conv2d(x, w, method="returns_input")


@pytest.mark.parametrize("padding", MALFORMED_PADDING, ids=str)
def test_malformed_padding(padding):
    with pytest.raises((ValueError, TypeError), match="padding"):
        conv.conv2d(X, W, padding=padding)


@pytest.mark.parametrize("xs, ws, kwargs", TOO_LARGE, ids=str)
def test_kernel_larger_than_padded_input(xs, ws, kwargs):
    # TensorFlow returns garbage or wrong shapes here; conv refuses clearly.
    with pytest.raises(ValueError, match="kernel.*larger than the padded input"):
        conv.conv2d(np.ones(xs), np.ones(ws), **kwargs)


@pytest.mark.parametrize("threads, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                          ("2", TypeError), (True, TypeError), (2.0, TypeError)],
                         ids=str)
def test_bad_threads(threads, exc):
    with pytest.raises(exc, match="threads"):
        conv.conv2d(X, W, threads=threads)


@pytest.mark.parametrize("which", ["x", "w"])
@pytest.mark.parametrize("ragged", [
    [[[[1.0]]], [[[1.0, 2.0]]]],
    [[[[1.0], [2.0]]], [[[1.0]]]],
    [[[[1.0]], [[1.0]]], [[[1.0]]]],
], ids=["channels", "width", "height"])
def test_ragged_nested_lists(which, ragged):
    args = (ragged, np.ones((1, 1, 1, 1))) if which == "x" else (np.ones((1, 2, 2, 1)), ragged)
    with pytest.raises(ValueError, match=rf"\b{which}\b.*ragged"):
        conv.conv2d(*args)


@pytest.mark.parametrize("which", ["x", "w"])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, object, "U3", "S3",
                                   "datetime64[s]", "timedelta64[s]"], ids=str)
def test_unsupported_dtypes(which, dtype):
    x, w = X.astype(dtype), W
    if which == "w":
        x, w = X, W.astype(dtype)
    with pytest.raises(TypeError, match=rf"\b{which}\b.*dtype"):
        conv.conv2d(x, w)


def test_none_and_strings_are_not_arrays():
    with pytest.raises(TypeError, match=r"\bx\b"):
        conv.conv2d(None, W)
    with pytest.raises(TypeError, match=r"\bw\b"):
        conv.conv2d(X, "abc")


def test_unknown_method_lists_installed_methods():
    with pytest.raises(ValueError, match="'nope'") as info:
        conv.conv2d(X, W, method="nope")
    for name in conv.list_methods():
        assert name in str(info.value)


@pytest.mark.parametrize("method", [None, 3, ["numpy"]], ids=str)
def test_method_must_be_a_string(method):
    with pytest.raises(TypeError, match="method"):
        conv.conv2d(X, W, method=method)


def test_bad_input_never_calls_the_kernel(registered):
    method, seen = _spy()
    registered(method)
    for _, exc, _, x, w, kwargs in BAD:
        with pytest.raises(exc):
            conv.conv2d(x, w, method="spy", **kwargs)
    assert seen == []


# ================================================================ dtypes
PROMOTION = [
    # x dtype, w dtype, dtype the kernel computes in, result dtype
    ("float32", "float32", "float32", "float32"),
    ("float64", "float64", "float64", "float64"),
    ("float32", "float64", "float64", "float64"),
    ("float64", "float32", "float64", "float64"),
    ("int8", "float32", "float32", "float32"),
    ("float32", "int16", "float32", "float32"),
    ("int32", "float32", "float64", "float64"),
    ("bool", "float32", "float32", "float32"),
    ("int64", "int64", "float64", "float64"),
    ("int8", "int8", "float64", "float64"),
    ("uint8", "int32", "float64", "float64"),
    ("bool", "bool", "float64", "float64"),
    ("float16", "float16", "float32", "float16"),
    ("float16", "int8", "float32", "float16"),
    ("float16", "float32", "float32", "float32"),
    ("float16", "float64", "float64", "float64"),
    ("int16", "float16", "float32", "float32"),
]


@pytest.mark.parametrize("xd, wd, compute, result", PROMOTION, ids=lambda v: str(v))
def test_dtype_promotion(xd, wd, compute, result, registered):
    method, seen = _spy()
    registered(method)
    x = (np.arange(2 * 4 * 4 * 2).reshape(2, 4, 4, 2) % 3).astype(xd)
    w = (np.arange(2 * 2 * 2 * 3).reshape(2, 2, 2, 3) % 2).astype(wd)
    assert np.result_type(xd, wd) == np.result_type(x, w)  # the test's premise: NumPy's rule
    out = conv.conv2d(x, w, method="spy")
    assert seen[-1].x.dtype == np.dtype(compute) and seen[-1].w.dtype == np.dtype(compute)
    assert out.dtype == np.dtype(result)
    # and a real method agrees with the exact reference in that dtype
    out = conv.conv2d(x, w, method="numpy")
    assert out.dtype == np.dtype(result)
    ref = kit.reference_conv2d(x, w)
    kit.assert_conv_close(out, ref, kit.tolerance_scale(x, w), result)


@pytest.mark.parametrize("method", METHODS)
def test_float16_is_accumulated_in_float32(method):
    # 2048 + 8 * 1: float16 accumulation would stall at 2048 (its spacing there is 2).
    x = np.array([2048.0] + [1.0] * 8, dtype=np.float16).reshape(1, 1, 1, 9)
    w = np.ones((1, 1, 9, 1), dtype=np.float16)
    out = conv.conv2d(x, w, method=method)
    assert out.dtype == np.float16
    assert out[0, 0, 0, 0] == 2056


@pytest.mark.parametrize("method", METHODS)
def test_integers_compute_in_float64(method):
    x = np.full((1, 1, 1, 1), 2**24 + 1, dtype=np.int64)  # not representable in float32
    w = np.ones((1, 1, 1, 2), dtype=np.int32)
    out = conv.conv2d(x, w, method=method)
    assert out.dtype == np.float64
    assert out.tolist() == [[[[2.0**24 + 1, 2.0**24 + 1]]]]


def test_float32_is_computed_natively(registered):
    method, seen = _spy()
    registered(method)
    x, w = np.ones((1, 3, 3, 2), np.float32), np.ones((2, 2, 2, 1), np.float32)
    conv.conv2d(x, w, method="spy")
    assert seen[-1].x.dtype == np.float32 and seen[-1].w.dtype == np.float32


# ================================================================ array-likes
def _tuples(a):
    return tuple(_tuples(v) for v in a) if isinstance(a, np.ndarray) and a.ndim else float(a)


def _layout_variants(x, w):
    yield "nested-lists", x.tolist(), w.tolist()
    yield "nested-tuples", _tuples(x), _tuples(w)
    yield "fortran", np.asfortranarray(x), np.asfortranarray(w)
    xn = np.ascontiguousarray(x[::-1, ::-1, ::-1, ::-1])
    wn = np.ascontiguousarray(w[::-1, :, ::-1, :])
    yield "negative-strides", xn[::-1, ::-1, ::-1, ::-1], wn[::-1, :, ::-1, :]
    xb = np.zeros((x.shape[0], 2 * x.shape[1], x.shape[2] + 2, 3 * x.shape[3]))
    xb[:, 1::2, 2:, ::3] = x
    yield "non-contiguous", xb[:, 1::2, 2:, ::3], np.broadcast_to(w, w.shape)
    xr, wr = x.copy(), w.copy()
    xr.flags.writeable = False
    wr.flags.writeable = False
    yield "read-only", xr, wr
    yield "big-endian", x.astype(">f8"), w.astype(">f8")
    yield "little-endian-explicit", x.astype("<f8"), w.astype("<f8")
    yield "transposed-view", np.ascontiguousarray(x.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0), w


@pytest.mark.parametrize("method", ["auto", "python"])
@pytest.mark.parametrize("variant", [v[0] for v in _layout_variants(np.ones((1, 1, 1, 1)),
                                                                      np.ones((1, 1, 1, 1)))])
def test_array_likes_and_layouts(variant, method):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6, 3))
    w = rng.standard_normal((3, 2, 3, 4))
    kwargs = dict(stride=(2, 1), padding="SAME", dilation=(1, 2))
    xv, wv = next((a, b) for name, a, b in _layout_variants(x, w) if name == variant)
    before = [np.array(a, copy=True) for a in (xv, wv)]
    out = conv.conv2d(xv, wv, method=method, **kwargs)
    assert out.dtype == np.float64 and out.dtype.isnative
    assert out.flags.c_contiguous and out.flags.writeable
    kit.assert_conv_close(out, kit.reference_conv2d(x, w, **kwargs),
                          kit.tolerance_scale(x, w, **kwargs), "float64")
    for a, b in zip((xv, wv), before):  # inputs untouched, bit for bit
        assert np.asarray(a).tobytes() == b.tobytes()


def test_inputs_are_never_written(registered):
    # A kernel that tries to write to its inputs cannot reach the caller's memory.
    def kernel(p):
        with pytest.raises(ValueError):
            p.x[...] = 0
        with pytest.raises(ValueError):
            p.w[...] = 0
        return np.zeros(p.out_shape, p.dtype)

    registered(conv.Method("writer", kernel, pads_itself=True))
    x, w = np.ones((1, 4, 4, 2)), np.ones((2, 2, 2, 2))
    conv.conv2d(x, w, method="writer", padding=1)
    assert (x == 1).all() and (w == 1).all()


def test_kernel_receives_contiguous_native_arrays(registered):
    method, seen = _spy()
    registered(method)
    x = np.asfortranarray(np.ones((2, 5, 6, 3), dtype=">f4"))
    w = np.ones((3, 3, 3, 2), dtype=np.float32)[::-1]
    conv.conv2d(x, w, method="spy", padding="SAME")
    p = seen[-1]
    for a in (p.x, p.w):
        assert a.flags.c_contiguous and a.dtype.isnative and not a.flags.writeable
    assert p.x.shape == (2, 7, 8, 3)  # zero-padded by the front end (pads_itself=False)
    assert p.padding == ((0, 0), (0, 0))


@pytest.mark.parametrize("case", ["unpadded", "zero-padded", "dilation phases", "bands"])
def test_no_array_a_kernel_receives_can_be_made_writeable(case, registered):
    """What docs/plugins.md promises: every array a kernel gets, including the copies
    conv makes (zero padding, dilation phases, bands for non-finite weights), refuses
    flags.writeable = True (the padded copy used to accept it)."""
    got = []

    def kernel(p):
        for a in (p.x, p.w):
            with pytest.raises(ValueError):
                a.flags.writeable = True
            with pytest.raises(ValueError):
                a[...] = 0
        got.append(p.x.shape)
        return np.zeros(p.out_shape, p.dtype)

    registered(conv.Method("tamper", kernel, supports_dilation=case != "dilation phases"))
    x, w = np.ones((1, 6, 6, 2)), np.ones((3, 3, 2, 2))
    kwargs = {"unpadded": {}, "zero-padded": {"padding": 1},
              "dilation phases": {"dilation": 2, "padding": "SAME"},
              "bands": {"padding": 1}}[case]
    if case == "bands":
        w[0, 0, 0, 0] = np.inf  # non-finite weights: padding by banded sub-problems
    conv.conv2d(x, w, method="tamper", **kwargs)
    assert got and (x == 1).all()


# ================================================================ padding and shapes
def test_same_puts_the_odd_pad_bottom_right():
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    w = np.ones((2, 2, 1, 1))
    out = conv.conv2d(x, w, padding="SAME")[0, :, :, 0]
    assert out.shape == (4, 4)
    assert out[0, 0] == 0 + 1 + 4 + 5  # no padding above or left
    assert out[3, 3] == 15  # the padded row and column are below and right
    assert out[3, 0] == 12 + 13


def _small_integers(rng, shape):
    """Integer-valued floats in [-4, 4]: every conv2d sum of them is exact, whatever the
    summation order or BLAS, so equal settings must give bit-identical results."""
    return rng.integers(-4, 5, shape).astype(np.float64)


def test_explicit_padding_forms_agree():
    rng = np.random.default_rng(0)
    x, w = _small_integers(rng, (1, 5, 6, 2)), _small_integers(rng, (3, 2, 2, 2))
    forms = [2, (2, 2), ((2, 2), (2, 2)), [[0, 0], [2, 2], [2, 2], [0, 0]]]
    outs = [conv.conv2d(x, w, padding=p, method="numpy") for p in forms]
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])
    hw = conv.conv2d(x, w, padding=(1, 3), method="numpy")
    assert np.array_equal(hw, conv.conv2d(x, w, padding=((1, 1), (3, 3)), method="numpy"))
    assert np.array_equal(conv.conv2d(x, w, padding=0), conv.conv2d(x, w, padding="VALID"))


def test_tensorflow_style_stride_and_dilation_lists():
    rng = np.random.default_rng(1)
    x, w = _small_integers(rng, (1, 9, 9, 2)), _small_integers(rng, (2, 2, 2, 1))
    a = conv.conv2d(x, w, stride=[1, 2, 3, 1], dilation=[1, 2, 1, 1], method="numpy")
    b = conv.conv2d(x, w, stride=(2, 3), dilation=(2, 1), method="numpy")
    assert np.array_equal(a, b)
    c = conv.conv2d(x, w, stride=np.int64(2), dilation=np.array([2, 1]), method="numpy")
    assert np.array_equal(c, conv.conv2d(x, w, stride=2, dilation=(2, 1), method="numpy"))


PADDINGS = ["VALID", "SAME", 0, 1, 2, (0, 2), (3, 1), ((1, 0), (0, 2)), ((0, 3), (2, 1)),
            [[0, 0], [1, 2], [2, 0], [0, 0]]]


@pytest.mark.parametrize("padding", PADDINGS, ids=str)
def test_output_shapes_equal_tensorflow(padding, tf_conv):
    checked = refused = 0
    for h, w, k, kw_, s, d in itertools.product((1, 4, 5, 7), (6,), (1, 2, 3), (2,),
                                                ((1, 1), (2, 2), (3, 1), (2, 3)),
                                                ((1, 1), (2, 2), (1, 2))):
        x = np.ones((1, h, w, 1), np.float32)
        ker = np.ones((k, kw_, 1, 2), np.float32)
        pads = kit.explicit_padding(padding, (h, w), (k, kw_), s, d)
        fits = all(size + sum(p) >= (kk - 1) * dd + 1
                   for size, p, kk, dd in zip((h, w), pads, (k, kw_), d))
        if padding == "SAME" or fits:
            out = conv.conv2d(x, ker, stride=s, padding=padding, dilation=d)
            assert out.shape == tf_conv(x, ker, s, padding, d).shape, (h, w, k, kw_, s, d)
            checked += 1
        else:  # TensorFlow's answer is garbage here; conv refuses
            with pytest.raises(ValueError, match="larger than the padded input"):
                conv.conv2d(x, ker, stride=s, padding=padding, dilation=d)
            refused += 1
    assert checked >= 40


# ================================================================ empty problems
EMPTY = [
    ((0, 5, 6, 2), (3, 3, 2, 4), {}, (0, 3, 4, 4)),
    ((0, 5, 6, 2), (3, 3, 2, 4), {"padding": "SAME"}, (0, 5, 6, 4)),
    ((0, 5, 6, 2), (3, 3, 2, 4), {"padding": "SAME", "stride": 2}, (0, 3, 3, 4)),
    ((0, 5, 6, 2), (2, 3, 2, 4), {"padding": ((1, 0), (2, 2)), "dilation": 2}, (0, 4, 6, 4)),
    ((2, 5, 6, 2), (3, 3, 2, 0), {}, (2, 3, 4, 0)),
    ((2, 5, 6, 2), (3, 3, 2, 0), {"padding": "SAME", "stride": (2, 3)}, (2, 3, 2, 0)),
    ((0, 5, 6, 2), (3, 3, 2, 0), {}, (0, 3, 4, 0)),
    ((1, 0, 6, 2), (3, 3, 2, 4), {"padding": "SAME"}, (1, 0, 6, 4)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("xs, ws, kwargs, shape", EMPTY, ids=str)
@pytest.mark.parametrize("method", METHODS)
def test_empty_problems(method, xs, ws, kwargs, shape, dtype):
    # TensorFlow returns wrong shapes for some of these: conv's documented behaviour instead.
    out = conv.conv2d(np.ones(xs, dtype), np.ones(ws, dtype), method=method, **kwargs)
    assert out.shape == shape
    assert out.dtype == np.dtype(dtype)
    assert kit.output_shape(xs, ws, **kwargs) == shape


@pytest.mark.parametrize("method", METHODS)
def test_no_input_channels_gives_zeros(method):
    out = conv.conv2d(np.ones((2, 5, 6, 0)), np.ones((3, 3, 0, 3)), method=method, padding=1)
    assert out.shape == (2, 5, 6, 3)
    assert (out == 0).all()


# ================================================================ threads
def _cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@pytest.mark.parametrize("env, expected", [("3", 3), ("1", 1), ("5,2", 5), (" 2 ", 2),
                                           ("99999999999999999999", 10**20)])
def test_default_threads_honours_omp_num_threads(monkeypatch, env, expected):
    """OMP_NUM_THREADS, capped at the CPUs this process may run on."""
    monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert _frontend.default_threads() == min(expected, _cpus())
    assert conv.build_info()["default_threads"] == min(expected, _cpus())


def test_threads_argument_is_capped_at_the_cpus_this_process_may_use(monkeypatch, registered):
    method, seen = _spy("spy_capped", parallel=True)
    registered(method)
    x, w = np.ones((1, 4, 4, 1)), np.ones((2, 2, 1, 1))
    for asked in (10_000, 10**30, _cpus() + 1):
        conv.conv2d(x, w, method="spy_capped", threads=asked)
        assert seen[-1].threads == _cpus(), asked
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1:
        one = {min(os.sched_getaffinity(0))}
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: one)  # as under taskset
        monkeypatch.setattr(_frontend, "_CPUS", [0, -1.0])  # a process started so
        conv.conv2d(x, w, method="spy_capped", threads=4)
        assert seen[-1].threads == 1
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        conv.conv2d(x, w, method="spy_capped")
        assert seen[-1].threads == 1


def test_a_changed_affinity_is_followed_within_the_time_a_reading_is_kept(monkeypatch):
    """available_cpus reads the affinity set at most every CPUS_KEPT_SECONDS (a thread
    count never changes a result); a narrowed set is followed once that time has passed."""
    clock = [1000.0]
    cpus = [{0, 1, 2, 3}]
    calls = []

    def affinity(pid):
        calls.append(pid)
        return cpus[0]

    monkeypatch.setattr(os, "sched_getaffinity", affinity, raising=False)
    monkeypatch.setattr(_frontend, "_monotonic", lambda: clock[0])
    monkeypatch.setattr(_frontend, "_CPUS", [0, -1.0])
    assert _frontend.available_cpus() == 4 and len(calls) == 1
    cpus[0] = {2}
    clock[0] += _frontend.CPUS_KEPT_SECONDS / 2
    assert _frontend.available_cpus() == 4 and len(calls) == 1  # kept
    assert _frontend.as_threads(3) == 3
    clock[0] += _frontend.CPUS_KEPT_SECONDS
    assert _frontend.available_cpus() == 1 and len(calls) == 2  # read again
    assert _frontend.as_threads(3) == 1 and _frontend.as_threads(None) == 1


@pytest.mark.parametrize("env", [None, "", "0", "abc", "-2"])
def test_default_threads_is_every_core_otherwise(monkeypatch, env):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert _frontend.default_threads() == cores


def test_threads_reach_the_kernel(monkeypatch, registered):
    method, seen = _spy("spy_parallel", parallel=True)
    registered(method)
    x, w = np.ones((1, 4, 4, 1)), np.ones((2, 2, 1, 1))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    conv.conv2d(x, w, method="spy_parallel")
    assert seen[-1].threads == min(3, _cpus())
    conv.conv2d(x, w, method="spy_parallel", threads=5)
    assert seen[-1].threads == min(5, _cpus())
    conv.conv2d(x, w, method="spy_parallel", threads=np.int32(1))
    assert seen[-1].threads == 1 and type(seen[-1].threads) is int


@pytest.mark.parametrize("name", ["stride", "dilation"])
def test_length_one_lists_mean_both_axes(name):
    """tf.nn.conv2d accepts [s] for stride and dilation; so does conv."""
    x = _small_integers(np.random.default_rng(3), (1, 9, 9, 2))
    w = _small_integers(np.random.default_rng(4), (2, 2, 2, 3))
    assert np.array_equal(conv.conv2d(x, w, **{name: [2]}), conv.conv2d(x, w, **{name: 2}))


def test_irrelevant_huge_stride_and_dilation():
    """A stride along an axis with one output, or a dilation along an axis with a one-tap
    kernel, cannot matter; conv accepts any size there (the kernels see 1)."""
    x = np.random.default_rng(5).standard_normal((1, 3, 3, 2))
    w = np.random.default_rng(6).standard_normal((1, 1, 2, 3))
    want = kit.reference_conv2d(x, w)[:, :1, :1, :]
    scale = kit.tolerance_scale(x, w)[:, :1, :1, :]
    got = {}
    for method in ("direct", "matmul", "numpy", "python", "auto"):
        got[method] = conv.conv2d(x, w, stride=2**62, dilation=2**62, method=method)
        assert got[method].shape == (1, 1, 1, 3), method
        # methods sum in different orders (numpy: BLAS's own): close to the exact sum
        kit.assert_conv_close(got[method], want, scale, "float64")
    # direct and matmul share one micro-kernel and summation order: bit for bit
    assert np.array_equal(got["direct"], got["matmul"])


@pytest.mark.parametrize("method", ["direct", "matmul", "numpy", "python"])
def test_empty_spatial_input_with_padding_is_zeros(method):
    """H or W = 0 with padding: every tap lands in the padding, every sum is empty."""
    w = np.ones((1, 1, 2, 3))
    for shape in ((1, 0, 2, 2), (1, 2, 0, 2), (1, 0, 0, 2)):
        out = conv.conv2d(np.ones(shape), w, padding=1, method=method)
        assert out.shape == (1, shape[1] + 2, shape[2] + 2, 3) and not out.any()
