"""Grouped convolution (x's C_in a multiple of w's, as TensorFlow infers it) and
conv.depthwise_conv2d, against the exact reference and TensorFlow."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import conv
import conv.testing as kit
from conftest import normal_inputs, tf_conv2d, tf_result_defined

METHODS = [m for m in conv.list_methods() if m != "tensorflow"] + ["auto"]
GEOMETRY = [
    dict(padding="VALID"),
    dict(padding="SAME"),
    dict(padding="SAME", stride=2),
    dict(padding=((1, 0), (2, 1)), dilation=2),
    dict(padding="SAME", stride=(2, 1), dilation=(1, 2)),
]


def _check(got, x, w, kwargs, dtype, method):
    want = kit.reference_conv2d(x, w, **kwargs)
    assert got.shape == want.shape and got.dtype == dtype
    kit.assert_conv_accurate(got, want, kit.tolerance_scale(x, w, **kwargs), dtype,
                             kit.method_accuracy(method, x, w, **kwargs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups", [1, 2, 3, 6])
@pytest.mark.parametrize("kwargs", GEOMETRY, ids=str)
@pytest.mark.parametrize("method", METHODS)
def test_grouped_against_the_exact_reference(method, kwargs, groups, dtype):
    """groups 1..C_in (6 input channels), two output channels a group."""
    x, w = normal_inputs((2, 9, 8, 6), (3, 3, 6 // groups, 2 * groups), dtype)
    got = conv.conv2d(x, w, method=method, **kwargs)
    _check(got, x, w, kwargs, dtype, method)
    # stating the count changes nothing; a plan gives the same bits
    np.testing.assert_array_equal(conv.conv2d(x, w, method=method, groups=groups, **kwargs),
                                  got)
    p = conv.plan(x.shape, w, method=method, **kwargs)
    assert p.groups == groups
    np.testing.assert_array_equal(p(x), got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", GEOMETRY[:4], ids=str)
@pytest.mark.parametrize("w_shape", [(3, 3, 2, 6), (1, 1, 1, 8), (2, 3, 4, 4)], ids=str)
def test_grouped_against_tensorflow(tf, w_shape, kwargs, dtype):
    x, w = normal_inputs((2, 9, 8, 8 if w_shape[2] != 2 else 6), w_shape, dtype)
    if not tf_result_defined(x, w, **kwargs):
        pytest.skip("TensorFlow's result is not defined the same on every build here")
    try:
        want = tf_conv2d(tf, x, w, **kwargs)
    except Exception as exc:  # noqa: BLE001 - TensorFlow refuses some grouped forms on CPU
        pytest.skip(f"TensorFlow refuses this grouped problem on the CPU: {exc}")
    got = conv.conv2d(x, w, **kwargs)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mult", [1, 2, 3])
@pytest.mark.parametrize("kwargs", [dict(padding="VALID"), dict(padding="SAME"),
                                    dict(padding="SAME", stride=2),
                                    dict(padding="SAME", dilation=2)], ids=str)
def test_depthwise_against_tensorflow(tf, kwargs, mult, dtype):
    x, w = normal_inputs((2, 10, 9, 5), (3, 3, 5, mult), dtype)
    s, d = kwargs.get("stride", 1), kwargs.get("dilation", 1)
    want = tf.nn.depthwise_conv2d(x, w, [1, s, s, 1], kwargs["padding"],
                                  dilations=[d, d]).numpy()
    got = conv.depthwise_conv2d(x, w, **kwargs)
    assert got.shape == want.shape == x.shape[:1] + got.shape[1:3] + (5 * mult,)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kwargs", [dict(padding=((0, 2), (1, 1)), stride=(1, 2)),
                                    dict(padding="VALID", dilation=(2, 1))], ids=str)
def test_depthwise_is_the_grouped_convolution(method, kwargs):
    """Output channel c * multiplier + m is input channel c with filter m: against the
    exact reference of the grouped form, in every method."""
    x, w = normal_inputs((2, 8, 9, 4), (3, 2, 4, 3), np.float64)
    got = conv.depthwise_conv2d(x, w, method=method, **kwargs)
    grouped = w.reshape(3, 2, 1, 12)
    _check(got, x, grouped, kwargs, np.float64, method)
    for c, m in itertools.product(range(4), range(3)):
        single = kit.reference_conv2d(x[..., c:c + 1], w[:, :, c:c + 1, m:m + 1], **kwargs)
        np.testing.assert_allclose(got[..., c * 3 + m], single[..., 0], rtol=1e-12, atol=1e-12)


def test_depthwise_out_and_inputs_untouched():
    x, w = normal_inputs((1, 6, 6, 3), (3, 3, 3, 2), np.float32)
    x0, w0 = x.copy(), w.copy()
    out = np.empty((1, 6, 6, 6), np.float32)
    assert conv.depthwise_conv2d(x, w, padding="SAME", out=out) is out
    np.testing.assert_array_equal(out, conv.depthwise_conv2d(x, w, padding="SAME"))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    assert conv.depthwise_conv2d(np.ones((1, 4, 4, 0)), np.ones((3, 3, 0, 2))).shape == (
        1, 2, 2, 0)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, exc, match", [
    ((1, 5, 5, 6), (3, 3, 4, 4), {}, ValueError,
     r"x has C_in=6 channels, which is not a multiple of w's C_in=4"),
    ((1, 5, 5, 6), (3, 3, 2, 4), {}, ValueError,
     r"makes 3 groups, but w's C_out=4 is not a multiple of 3"),
    ((1, 5, 5, 6), (3, 3, 2, 6), {"groups": 2}, ValueError,
     r"groups=2, but x's C_in=6 over w's C_in=2 makes 3 groups"),
    ((1, 5, 5, 6), (3, 3, 6, 6), {"groups": 3}, ValueError, r"groups=3.*makes 1 group\b"),
    ((1, 5, 5, 6), (3, 3, 2, 6), {"groups": 0}, ValueError, r"groups must be None or an int"),
    ((1, 5, 5, 6), (3, 3, 2, 6), {"groups": 3.0}, TypeError, r"groups must be an int"),
    ((1, 5, 5, 6), (3, 3, 2, 6), {"groups": True}, TypeError, r"groups must be an int"),
    ((1, 5, 5, 0), (3, 3, 2, 6), {}, ValueError, r"x has C_in=0"),
])
def test_bad_groups(x_shape, w_shape, kwargs, exc, match):
    for call in (lambda: conv.conv2d(np.ones(x_shape), np.ones(w_shape), **kwargs),
                 lambda: conv.plan(x_shape, np.ones(w_shape), **kwargs)):
        with pytest.raises(exc, match=match):
            call()


def test_bad_depthwise_filters():
    with pytest.raises(ValueError, match=r"w has C_in=3 channels but x has C_in=4"):
        conv.depthwise_conv2d(np.ones((1, 5, 5, 4)), np.ones((3, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"w must be 4-D \(KH, KW, C_in, multiplier\)"):
        conv.depthwise_conv2d(np.ones((1, 5, 5, 4)), np.ones((3, 3, 4)))
    with pytest.raises(ValueError, match=r"\bx\b must be 4-D"):
        conv.depthwise_conv2d(np.ones((5, 5, 4)), np.ones((3, 3, 4, 1)))


def test_a_method_that_supports_groups_gets_the_whole_problem(registered):
    seen = []

    def kernel(p):
        seen.append(p.groups)
        return kit.reference_conv2d(p.x, p.w, stride=p.stride, dilation=p.dilation,
                                    padding=p.padding).astype(p.x.dtype)

    registered(conv.Method("grouped_itself", kernel, supports_groups=True))
    registered(conv.Method("per_group", kernel))
    x, w = normal_inputs((1, 7, 7, 6), (3, 3, 2, 6), np.float64)
    a = conv.conv2d(x, w, method="grouped_itself", padding="SAME")
    b = conv.conv2d(x, w, method="per_group", padding="SAME")
    assert seen == [3, 1, 1, 1]
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)


def test_auto_runs_depthwise_problems_on_the_depthwise_kernel():
    from conv import _introspect

    x, w = normal_inputs((2, 12, 12, 16), (3, 3, 16, 2), np.float32)
    grouped = w.reshape(3, 3, 1, 32)
    assert _introspect.auto_choice(x, grouped, None, padding="SAME") == "depthwise"
    assert _introspect.auto_choice(x, np.ones((3, 3, 4, 8), np.float32), None) == "direct"
    np.testing.assert_array_equal(conv.depthwise_conv2d(x, w, padding="SAME"),
                                  conv.conv2d(x, grouped, padding="SAME", method="depthwise"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_depthwise_kernel_does_not_depend_on_threads(dtype):
    x, w = normal_inputs((4, 40, 37, 24), (3, 3, 24, 2), dtype)
    kwargs = dict(padding="SAME", stride=(1, 2), dilation=(2, 1))
    base = conv.depthwise_conv2d(x, w, method="depthwise", threads=1, **kwargs)
    _check(base, x, w.reshape(3, 3, 1, 48), kwargs, dtype, "depthwise")
    for threads in (2, 3, 2):
        np.testing.assert_array_equal(
            conv.depthwise_conv2d(x, w, method="depthwise", threads=threads, **kwargs), base)
