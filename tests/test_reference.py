"""conv.testing itself: the reference, the tolerance check, the grid, and check_method's teeth."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import conv
import conv.testing as kit

METHODS = conv.list_methods() + ["auto"]


def _pad_multiply_conv(x, w, stride, padding, dilation):
    """A second, naive reference: pad with zeros, then exactly rounded sums (math.fsum);
    grouped where x's C_in is a multiple of w's (output o reads group o // (C_out / groups))."""
    (t, b), (l, r) = kit.explicit_padding(padding, x.shape[1:3], w.shape[:2], stride, dilation)
    xp = np.pad(x.astype(np.float64), ((0, 0), (t, b), (l, r), (0, 0)))
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    n, oh, ow, co = kit.output_shape(x.shape, w.shape, stride, padding, dilation)
    kh, kw, ci, _ = w.shape
    per_group = co // (x.shape[3] // ci)
    out = np.empty((n, oh, ow, co))
    for b_, oy, ox, o in itertools.product(range(n), range(oh), range(ow), range(co)):
        first = (o // per_group) * ci  # x's first channel of output o's group
        out[b_, oy, ox, o] = math.fsum(
            float(xp[b_, oy * s[0] + i * d[0], ox * s[1] + j * d[1], first + c])
            * float(w[i, j, c, o])
            for i in range(kh) for j in range(kw) for c in range(ci)
        )
    return out


# ================================================================ the reference
@pytest.mark.parametrize("case", kit.CASES[:-2], ids=kit.case_ids(kit.CASES[:-2]))
def test_reference_matches_a_naive_exact_sum(case):
    x, w = kit.make_inputs(case, "float64", seed=11)
    ref = case.reference(x, w)
    naive = _pad_multiply_conv(x, w, case.stride, case.padding, case.dilation)
    assert ref.dtype == np.float64 and ref.shape == naive.shape == case.out_shape
    # both are (nearly) correctly rounded: far tighter than the float64 tolerance
    kit.assert_conv_close(ref, naive, 1e-3 * case.scale(x, w), "float64")


def test_reference_on_the_grid_matches_tensorflow_float64(tf_conv):
    for case in kit.CASES:
        x, w = kit.make_inputs(case, "float64", seed=5)
        expected = tf_conv(x, w, case.stride, case.padding, case.dilation)
        kit.assert_conv_close(expected, case.reference(x, w), case.scale(x, w), "float64")


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63,
                    reason="np.longdouble is not extended precision on this platform")
def test_reference_accumulates_in_extended_precision():
    x = np.array([1e16, 1.0, -1e16]).reshape(1, 1, 1, 3)
    w = np.ones((1, 1, 3, 1))
    assert (x.reshape(-1) @ w.reshape(-1)) != 1.0  # float64 loses the 1
    assert kit.reference_conv2d(x, w)[0, 0, 0, 0] == 1.0


def test_reference_skips_padded_taps():
    x = np.ones((1, 3, 3, 1))
    w = np.ones((3, 3, 1, 1))
    w[0, 0, 0, 0] = np.inf
    ref = kit.reference_conv2d(x, w, padding="SAME")
    # output (0, 0): the Inf tap sits in the padding, so it is skipped (not 0 * Inf = NaN)
    assert ref[0, 0, 0, 0] == 4.0
    assert ref[0, 1, 1, 0] == np.inf  # in range: Inf * 1
    x[0, 0, 0, 0] = 0.0
    assert np.isnan(kit.reference_conv2d(x, w, padding="SAME")[0, 1, 1, 0])  # in range: 0 * Inf


def _multiplies_padding_gives_nan(x, w, stride, padding, dilation):
    """Whether zero-padding x and multiplying every tap (as TensorFlow may) gives a NaN."""
    (t, b), (l, r) = kit.explicit_padding(padding, x.shape[1:3], w.shape[:2], stride, dilation)
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    (sh, sw), (dh, dw) = np.broadcast_to(stride, 2), np.broadcast_to(dilation, 2)
    _, oh, ow, _ = kit.output_shape(x.shape, w.shape, stride, padding, dilation)
    kh, kw = w.shape[:2]
    with np.errstate(all="ignore"):
        out = sum(np.einsum("nhwc,co->nhwo",
                            xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                               j * dw: j * dw + (ow - 1) * sw + 1: sw, :], w[i, j])
                  for i in range(kh) for j in range(kw))
    return bool(np.isnan(out).any())


@pytest.mark.parametrize("stride, padding, dilation", [
    (1, "SAME", 1), (1, "VALID", 1), (2, "SAME", 1), (1, "SAME", 2), ((2, 1), 1, (1, 2)),
    (3, ((2, 0), (0, 3)), 1), (2, ((0, 1), (1, 0)), 2), (1, 2, 1),
], ids=str)
def test_nonfinite_meets_padding_exactly_where_multiplying_the_padding_gives_nan(
        stride, padding, dilation):
    """One Inf weight at each tap in turn, x all ones: multiplying the padding's zeros gives
    a NaN exactly when the predicate says the Inf meets the padding; skipping padded taps
    (the reference) never does."""
    x = np.ones((1, 5, 6, 1))
    checked = set()
    for i, j in itertools.product(range(3), range(3)):
        w = np.ones((3, 3, 1, 1))
        w[i, j, 0, 0] = np.inf
        meets = kit.nonfinite_meets_padding(x, w, stride, padding, dilation)
        assert meets == _multiplies_padding_gives_nan(x, w, stride, padding, dilation), (i, j)
        assert not np.isnan(kit.reference_conv2d(x, w, stride, padding, dilation)).any()
        checked.add(meets)
    assert (True in checked) == (padding != "VALID")  # not vacuous: some tap meets it


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reference_inf_weight_beside_the_border_in_both_dtypes(dtype):
    """An Inf weight whose tap lands in the padding is skipped in either input dtype: the
    output there counts its in-range taps (finite), and is Inf where the tap is in range.
    (TensorFlow's result here differs between its builds, so it is not consulted.)"""
    x = np.ones((1, 4, 4, 1), dtype)
    w = np.ones((3, 3, 1, 1), dtype)
    w[0, 0, 0, 0] = np.inf
    for padding in ("SAME", 1, ((1, 0), (2, 1))):
        (t, _), (l, _) = kit.explicit_padding(padding, (4, 4), (3, 3))
        ref = kit.reference_conv2d(x, w, padding=padding)[0, :, :, 0]
        assert kit.nonfinite_meets_padding(x, w, padding=padding)
        for oy, ox in itertools.product(range(ref.shape[0]), range(ref.shape[1])):
            inside = [(i, j) for i in range(3) for j in range(3)
                      if 0 <= oy + i - t < 4 and 0 <= ox + j - l < 4]
            want = np.inf if (0, 0) in inside else float(len(inside))
            assert ref[oy, ox] == want, (padding, oy, ox, ref[oy, ox], want)
        assert np.isfinite(ref).any() and np.isinf(ref).any() and not np.isnan(ref).any()


def test_nonfinite_meets_padding():
    meets = kit.nonfinite_meets_padding
    x = np.ones((1, 4, 4, 1))
    w = np.ones((3, 3, 1, 2))
    assert not meets(x, w, padding="SAME")  # all finite
    w[1, 1, 0, 1] = np.inf  # the centre tap: in range for every output under SAME
    assert not meets(x, w, padding="SAME") and not meets(x, w)
    assert meets(x, w, padding=((0, 0), (2, 0)))  # two columns on the left: now it is not
    assert not meets(x, w, padding=((0, 0), (1, 0)))
    w[1, 1, 0, 1] = 1.0
    w[2, 2, 0, 0] = np.nan  # bottom-right tap
    assert not meets(x, w, padding=((1, 0), (1, 0)))  # padding above and left only
    assert meets(x, w, padding=((1, 1), (0, 0)))  # the last output row puts it below
    assert meets(x, w, padding="SAME")
    assert not meets(x, w)  # VALID
    x[0, 0, 0, 0] = np.nan  # NaN in x never meets the padding
    w[2, 2, 0, 0] = 1.0
    assert not meets(x, w, padding="SAME")
    # no outputs, nothing to meet
    assert not meets(np.ones((0, 4, 4, 1)), w + np.inf, padding="SAME")
    assert not meets(x, np.full((3, 3, 1, 0), np.inf), padding="SAME")


def test_reference_values_by_hand():
    x = np.arange(1, 17, dtype=np.float64).reshape(1, 4, 4, 1)
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    valid = kit.reference_conv2d(x, w)[0, :, :, 0]
    assert valid[0, 0] == 1 * 1 + 2 * 2 + 5 * 3 + 6 * 4
    assert valid.shape == (3, 3)
    strided = kit.reference_conv2d(x, w, stride=2)[0, :, :, 0]
    assert strided.tolist() == [[valid[0, 0], valid[0, 2]], [valid[2, 0], valid[2, 2]]]
    dilated = kit.reference_conv2d(x, w, dilation=(1, 3))[0, :, :, 0]
    assert dilated[0, 0] == 1 * 1 + 4 * 2 + 5 * 3 + 8 * 4 and dilated.shape == (3, 1)
    same = kit.reference_conv2d(x, w, padding="SAME")[0, :, :, 0]  # pad bottom/right
    assert same[:3, :3].tolist() == valid.tolist()
    assert same[3, 3] == 16 * 1


def test_reference_accepts_every_dtype_and_layout():
    x = np.arange(2 * 4 * 5 * 2).reshape(2, 4, 5, 2) % 5
    w = np.arange(2 * 3 * 2 * 3).reshape(2, 3, 2, 3) % 3
    expected = kit.reference_conv2d(x.astype(np.float64), w.astype(np.float64))
    for xa, wa in [(x, w), (x.astype(bool), w.astype(np.int8)), (x.tolist(), w.tolist()),
                   (np.asfortranarray(x), w[::1]), (x.astype(">f4"), w.astype(np.float16))]:
        got = kit.reference_conv2d(xa, wa)
        if np.asarray(xa).dtype == bool:
            assert np.array_equal(got, kit.reference_conv2d(x.astype(bool) * 1.0, w * 1.0))
        else:
            assert np.array_equal(got, expected)


def test_reference_rejects_bad_problems():
    with pytest.raises(ValueError):
        kit.reference_conv2d(np.ones((1, 2, 2, 1)), np.ones((3, 3, 1, 1)))
    with pytest.raises(ValueError):
        kit.reference_conv2d(np.ones((1, 4, 4, 2)), np.ones((3, 3, 1, 1)))
    with pytest.raises(TypeError):
        kit.reference_conv2d(np.ones((1, 4, 4, 1), complex), np.ones((3, 3, 1, 1)))
    with pytest.raises(ValueError):
        kit.reference_conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), padding="FULL")
    with pytest.raises(ValueError):
        kit.reference_conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), stride=0)


def test_reference_empty_problems():
    assert kit.reference_conv2d(np.ones((0, 5, 5, 2)), np.ones((3, 3, 2, 4))).shape == (0, 3, 3, 4)
    assert kit.reference_conv2d(np.ones((2, 5, 5, 2)), np.ones((3, 3, 2, 0)),
                                padding="SAME").shape == (2, 5, 5, 0)
    z = kit.reference_conv2d(np.ones((2, 5, 5, 0)), np.ones((3, 3, 0, 4)))
    assert z.shape == (2, 3, 3, 4) and (z == 0).all()


def test_tolerance_scale_is_the_reference_of_absolute_values():
    x, w = kit.make_inputs(kit.CASES[1], "float64")
    scale = kit.tolerance_scale(x, w, 1, "SAME", 1)
    assert np.array_equal(scale, kit.reference_conv2d(np.abs(x), np.abs(w), padding="SAME"))
    assert (scale >= np.abs(kit.reference_conv2d(x, w, padding="SAME"))).all()


# ================================================================ TF's padding rules
@pytest.mark.parametrize("size, k, s, d, pads", [
    (7, 3, 2, 1, (1, 1)),
    (8, 3, 2, 1, (0, 1)),  # the odd one at the bottom/right
    (8, 1, 3, 1, (0, 0)),  # total would be negative: max(..., 0)
    (7, 2, 3, 1, (0, 1)),
    (5, 4, 1, 1, (1, 2)),
    (8, 3, 1, 2, (2, 2)),
    (9, 3, 2, 2, (2, 2)),
    (8, 3, 2, 2, (1, 2)),
    (2, 3, 1, 1, (1, 1)),  # kernel larger than the input
    (1, 1, 1, 1, (0, 0)),
])
def test_same_padding_rule(size, k, s, d, pads):
    got = kit.explicit_padding("SAME", (size, 5), (k, 1), (s, 1), (d, 1))
    assert got[0] == pads
    assert kit.output_shape((1, size, 5, 1), (k, 1, 1, 1), (s, 1), "SAME", (d, 1))[1] == -(-size // s)


def test_explicit_padding_forms():
    ep = kit.explicit_padding
    assert ep("VALID", (5, 5), (3, 3)) == ((0, 0), (0, 0))
    assert ep(2, (5, 5), (3, 3)) == ((2, 2), (2, 2))
    assert ep((1, 3), (5, 5), (3, 3)) == ((1, 1), (3, 3))
    assert ep(((1, 2), (3, 4)), (5, 5), (3, 3)) == ((1, 2), (3, 4))
    assert ep([[0, 0], [1, 2], [3, 4], [0, 0]], (5, 5), (3, 3)) == ((1, 2), (3, 4))
    for bad in ("FULL", -1, (1, -1), ((1, 2), (3,)), [[1, 0], [0, 0], [0, 0], [0, 0]]):
        with pytest.raises(ValueError):
            ep(bad, (5, 5), (3, 3))


def test_output_shape_matches_tensorflow(tf_conv):
    for h, k, s, d, padding in itertools.product((1, 3, 6, 7), (1, 2, 3), (1, 2, 3), (1, 2),
                                                 ("VALID", "SAME", 1, ((0, 2), (1, 0)))):
        xs, ws = (1, h, 6, 1), (k, 2, 1, 1)
        try:
            shape = kit.output_shape(xs, ws, s, padding, d)
        except ValueError:
            continue  # kernel larger than the padded input: TensorFlow's answer is garbage
        got = tf_conv(np.ones(xs, np.float32), np.ones(ws, np.float32), s, padding, d).shape
        assert shape == got, (h, k, s, d, padding)


# ================================================================ assert_conv_close
def test_assert_conv_close_tolerances():
    e = np.array([1.0, -2.0, 0.0])
    scale = np.array([10.0, 10.0, 1.0])
    kit.assert_conv_close(e + 0.9e-5 * scale, e, scale, "float32")
    with pytest.raises(AssertionError, match=r"index \(0,\).*ratio"):
        kit.assert_conv_close(e + np.array([1.1e-5 * 10, 0, 0]), e, scale, "float32")
    kit.assert_conv_close(e + 0.9e-12 * scale, e, scale, "float64")
    with pytest.raises(AssertionError, match=r"index \(1,\)"):
        kit.assert_conv_close(e + np.array([0, 2e-11, 0]), e, scale, "float64")
    # a zero scale demands an exact zero
    with pytest.raises(AssertionError, match=r"index \(2,\)"):
        kit.assert_conv_close(np.array([1.0, -2.0, 1e-30]), e, np.array([10.0, 10.0, 0.0]),
                              "float32")


def test_assert_conv_close_reports_the_worst_element():
    e = np.zeros((2, 3, 4, 5))
    a = e.copy()
    a[0, 1, 2, 3] = 1.0
    a[1, 2, 3, 4] = 3.0
    with pytest.raises(AssertionError, match=r"2 of 120.*index \(1, 2, 3, 4\).*3\.0"):
        kit.assert_conv_close(a, e, np.ones_like(e), "float64")


@pytest.mark.parametrize("actual, expected, what", [
    ([np.nan, 1.0], [1.0, 1.0], "NaN"),
    ([1.0, 1.0], [1.0, np.nan], "NaN"),
    ([np.inf, 1.0], [-np.inf, 1.0], "Inf"),
    ([np.inf, 1.0], [1.0, 1.0], "Inf"),
    ([1.0, 1.0], [1.0, -np.inf], "Inf"),
    ([np.nan, 1.0], [np.inf, 1.0], "NaN"),
])
def test_assert_conv_close_nan_inf_positions_must_match(actual, expected, what):
    with pytest.raises(AssertionError, match=what):
        kit.assert_conv_close(np.array(actual), np.array(expected), np.ones(2), "float64")


def test_assert_conv_close_accepts_matching_nan_inf():
    v = np.array([np.nan, np.inf, -np.inf, 2.0])
    kit.assert_conv_close(v.astype(np.float32), v, np.array([np.nan, np.inf, np.inf, 2.0]),
                          "float32")


def test_assert_conv_close_shape_mismatch():
    with pytest.raises(AssertionError, match="shape"):
        kit.assert_conv_close(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 2)), 1.0, "float64")


# ================================================================ the grid
def _pairs(v):
    return tuple(np.broadcast_to(np.asarray(v)[[1, 2]] if np.ndim(v) and len(v) == 4 else v, 2))


def test_grid_coverage():
    cases = kit.CASES
    assert len({c.id for c in cases + kit.ARTICLE_CASES}) == len(cases) + len(kit.ARTICLE_CASES)
    strides = {s for c in cases for s in _pairs(c.stride)}
    dilations = {d for c in cases for d in _pairs(c.dilation)}
    assert {1, 2, 3} <= strides and {1, 2} <= dilations
    assert any(max(_pairs(c.stride)) > 1 and max(_pairs(c.dilation)) > 1 for c in cases)
    assert any(_pairs(c.stride)[0] != _pairs(c.stride)[1] for c in cases)
    assert any(_pairs(c.dilation)[0] != _pairs(c.dilation)[1] for c in cases)

    def form(p):
        if isinstance(p, str):
            return p
        if isinstance(p, int):
            return "int"
        if len(p) == 4:
            return "tf4"
        return "hw" if isinstance(p[0], int) else "tblr"

    assert {form(c.padding) for c in cases} == {"VALID", "SAME", "int", "hw", "tblr", "tf4"}
    kernels = {c.w_shape[:2] for c in cases}
    assert (1, 1) in kernels
    assert any(kh == kw and kh % 2 == 1 and kh > 1 for kh, kw in kernels)  # odd square
    assert any(kh == kw and kh % 2 == 0 for kh, kw in kernels)  # even square
    assert any(kh != kw for kh, kw in kernels)  # non-square
    assert any(c.x_shape[0] == 1 for c in cases)
    assert any(c.x_shape[3] == 1 for c in cases)
    assert any(c.w_shape[3] == 1 for c in cases)
    assert any(c.x_shape[1:3] == c.w_shape[:2] for c in cases)  # kernel == input
    assert any(c.x_shape[1] < c.w_shape[0] for c in cases)  # kernel > input, padded to fit
    assert any(c.x_shape[1:] == (32, 32, 3) and c.w_shape == (3, 3, 3, 16) for c in cases)
    assert any(c.x_shape == (100, 32, 32, 3) for c in kit.ARTICLE_CASES)
    for c in cases + kit.ARTICLE_CASES:
        assert c.out_shape[1] >= 1 and c.out_shape[2] >= 1, c.id
    # SAME cases with an odd total pad, so bottom/right placement is exercised
    assert any(c.padding == "SAME" and (c.pads[0][0] != c.pads[0][1] or c.pads[1][0] != c.pads[1][1])
               for c in cases)


def test_grid_is_small_enough_for_the_python_method():
    assert sum(c.macs for c in kit.CASES) < 3_000_000
    assert max(c.macs for c in kit.CASES) < 2_000_000


def test_make_inputs_is_deterministic():
    case = kit.CASES[0]
    x1, w1 = kit.make_inputs(case, "float32")
    x2, w2 = kit.make_inputs(case, "float32")
    assert x1.dtype == np.float32 and x1.shape == case.x_shape and w1.shape == case.w_shape
    assert np.array_equal(x1, x2) and np.array_equal(w1, w2)
    x3, _ = kit.make_inputs(case, "float32", seed=1)
    assert not np.array_equal(x1, x3)
    x64, _ = kit.make_inputs(case, "float64")
    assert np.array_equal(x64.astype(np.float32), x1)
    assert x1.flags.c_contiguous and x1.flags.writeable
    assert -1 <= x1.min() and x1.max() < 1
    assert kit.get_case(case.id) is case
    assert kit.case_ids()[0] == case.id


# ================================================================ check_method
@pytest.mark.parametrize("method", METHODS)
def test_check_method_passes_every_installed_method(method):
    # Both dtypes for every method; for "tensorflow" the kit itself leaves out the NaN/Inf
    # cases where a non-finite weight meets a padded tap (see check_method's docstring).
    kit.check_method(method)


def test_check_method_article_shapes_fast_methods():
    for method in ("direct", "auto"):
        kit.check_method(method, dtypes=["float32"], cases=kit.ARTICLE_CASES[1:])


def _numpy_kernel(p):
    return conv.get_method("numpy").kernel(p)


def _drop_last_channel(p):
    out = _numpy_kernel(p)
    if p.x.shape[3] > 1:
        w = p.w.copy()
        w[:, :, -1, :] = 0
        out = conv.get_method("numpy").kernel(
            conv.Problem(p.x, w, p.stride, p.dilation, p.padding, p.threads, p.out_shape))
    return out


def _vandal(p):
    out = _numpy_kernel(p)
    x = p.x
    while x.base is not None and isinstance(x.base, np.ndarray):
        x = x.base
    x.flags.writeable = True
    x.reshape(-1)[0] += 1.0
    return out


def _multiply_padded_zeros(p):
    xp = np.pad(p.x, ((0, 0), p.padding[0], p.padding[1], (0, 0)))
    q = conv.Problem(xp, p.w, p.stride, p.dilation, ((0, 0), (0, 0)), p.threads, p.out_shape)
    with np.errstate(all="ignore"):
        return _numpy_kernel(q)


def _swap_same_pads(p):
    (t, b), (l, r) = p.padding
    q = conv.Problem(p.x, p.w, p.stride, p.dilation, ((b, t), (r, l)), p.threads, p.out_shape)
    return _numpy_kernel(q)


def _ignore_stride_offset(p):
    out = _numpy_kernel(p)
    if p.stride != (1, 1):
        out = np.roll(out, 1, axis=1)
    return out


def _bad_with_threads(p):
    # right with the default thread count (which the grid uses), wrong with any other
    from conv._frontend import default_threads

    out = _numpy_kernel(p)
    return out if p.threads == default_threads() else out * (1 + 1e-3)


def _float16_accumulation(p):
    q = conv.Problem(p.x.astype(np.float16), p.w.astype(np.float16), p.stride, p.dilation,
                     p.padding, p.threads, p.out_shape)
    return conv.get_method("python").kernel(q).astype(p.dtype)


def _crash_on_dilation(p):
    if p.dilation != (1, 1):
        raise IndexError("out of bounds")
    return _numpy_kernel(p)


def _nan_to_zero(p):
    return np.nan_to_num(_numpy_kernel(p), nan=0.0)


MUTANTS = [
    ("drop_last_channel", _drop_last_channel, {}, r"case '.*'"),
    # conv hands kernels views over read-only buffers, so the vandal is stopped before it
    # writes ("WRITEABLE"); the kit would report "modified" had it got through.
    ("vandal", _vandal, {}, "modified|WRITEABLE"),
    ("multiply_padded_zeros", _multiply_padded_zeros, {}, "NaN/Inf case"),
    ("swap_same_pads", _swap_same_pads, {}, r"case '.*same.*'|case '.*pad"),
    ("ignore_stride_offset", _ignore_stride_offset, {}, r"case '.*-s\d"),
    ("bad_with_threads", _bad_with_threads, {"parallel": True}, r"threads=\d"),
    ("float16_accumulation", _float16_accumulation, {}, "float32"),
    ("crash_on_dilation", _crash_on_dilation, {}, "IndexError"),
    ("nan_to_zero", _nan_to_zero, {}, "NaN"),
]


@pytest.mark.parametrize("name, kernel, extra, match", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_check_method_catches_broken_methods(name, kernel, extra, match, registered):
    registered(conv.Method(f"mutant_{name}", kernel, pads_itself=True, **extra))
    with pytest.raises(AssertionError, match=f"mutant_{name}") as info:
        kit.check_method(f"mutant_{name}")
    assert __import__("re").search(match, str(info.value)), str(info.value)


def test_check_method_catches_a_wrong_output_dtype(registered):
    registered(conv.Method("mutant_dtype", lambda p: _numpy_kernel(p).astype(np.float16),
                           pads_itself=True))
    with pytest.raises(AssertionError, match="mutant_dtype"):
        kit.check_method("mutant_dtype")


def test_check_method_spares_tensorflow_only_where_nonfinite_meets_padding(registered):
    """The kit's one exception, for conv's "tensorflow" method (tf.nn.conv2d itself), is
    exact: a stand-in that multiplies the padding's zeros passes under that name (it fails
    under any other: the multiply_padded_zeros mutant above), and one that loses NaNs
    still fails under it, on the NaN/Inf case without padding."""
    registered(conv.Method("tensorflow", _multiply_padded_zeros, pads_itself=True),
               replace=True)
    kit.check_method("tensorflow")
    registered(conv.Method("tensorflow", _nan_to_zero, pads_itself=True), replace=True)
    with pytest.raises(AssertionError, match=r"'tensorflow', NaN/Inf case 'nan-inf-valid'"):
        kit.check_method("tensorflow")


def test_check_method_unknown_method():
    with pytest.raises(ValueError, match="no_such_method"):
        kit.check_method("no_such_method")
