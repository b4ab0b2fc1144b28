"""data_format="NCHW" on conv2d, depthwise_conv2d and plans, the compiled layout change
behind it (methods/_layout.h), and the depthwise kernel's register-blocked path."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import conv
import conv.testing as kit
from conftest import normal_inputs, tf_result_defined
from test_groups import GEOMETRY
from test_microkernels import EXTENSIONS

METHODS = [m for m in conv.list_methods() if m not in ("tensorflow", "python")] + ["auto"]


def nchw(a):
    return np.ascontiguousarray(np.moveaxis(a, 3, 1))


def nhwc(a):
    return np.moveaxis(a, 1, 3)


@pytest.mark.parametrize("mod", EXTENSIONS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 5), (3, 9, 17), (2, 33, 40), (1, 64, 64),
                                   (2, 100, 7), (1, 7, 100), (2, 1100, 37), (1, 37, 1100),
                                   (2, 3, 5000), (1, 5, 4100), (3, 2, 2049), (1, 4, 2100),
                                   (2, 6, 70), (1, 1, 4097)],
                         ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_swap_axes_is_the_transpose(mod, dtype, shape, threads):
    """Every build's layout change, whole squares and the rows and columns left over, and
    fewer rows than a square (few channels) over more columns than a task moves."""
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out = np.full((shape[0], shape[2], shape[1]), np.nan, dtype)
    mod.swap_axes(x, out, threads)
    np.testing.assert_array_equal(out, x.transpose(0, 2, 1))
    with pytest.raises(ValueError, match="swap_axes"):
        mod.swap_axes(x, np.empty((shape[0], shape[2] + 1, shape[1]), dtype), threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("kwargs", GEOMETRY, ids=str)
@pytest.mark.parametrize("method", METHODS)
def test_nchw_is_the_nhwc_result_transposed(method, kwargs, groups, dtype):
    """Bit for bit, for every method (the arithmetic is the NHWC call's), and within the
    method's accuracy of the exact reference."""
    x, w = normal_inputs((2, 9, 8, 6), (3, 3, 6 // groups, 2 * groups), dtype)
    xc = nchw(x)
    got = conv.conv2d(xc, w, method=method, data_format="NCHW", **kwargs)
    want = conv.conv2d(x, w, method=method, **kwargs)
    assert got.shape == (want.shape[0], want.shape[3], want.shape[1], want.shape[2])
    assert got.flags.c_contiguous and got.dtype == dtype
    np.testing.assert_array_equal(nhwc(got), want)
    exact = kit.reference_conv2d(x, w, **kwargs)
    kit.assert_conv_accurate(nhwc(got), exact, kit.tolerance_scale(x, w, **kwargs), dtype,
                             kit.method_accuracy(method, x, w, **kwargs))
    # a plan of the same problem, with and without out=, any batch size
    p = conv.plan((None,) + xc.shape[1:], w, method=method, data_format="NCHW", **kwargs)
    assert p.data_format == "NCHW" and p.x_shape == (None,) + xc.shape[1:]
    assert p.out_shape(2) == got.shape
    np.testing.assert_array_equal(p(xc), got)
    buf = np.empty_like(got)
    assert p(xc, out=buf) is buf
    np.testing.assert_array_equal(buf, got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mult", [1, 2, 3])
@pytest.mark.parametrize("kwargs", GEOMETRY[:4], ids=str)
def test_depthwise_nchw_against_tensorflow(tf, kwargs, mult, dtype):
    """TensorFlow has no NCHW depthwise convolution on the CPU: its NHWC result,
    transposed."""
    x, w = normal_inputs((2, 10, 9, 5), (3, 3, 5, mult), dtype)
    if not tf_result_defined(x, w.reshape(3, 3, 1, 5 * mult), **kwargs):
        pytest.skip("TensorFlow's result is not defined the same on every build here")
    s = kwargs.get("stride", 1)
    d = kwargs.get("dilation", 1)
    pad = kwargs["padding"]
    if not isinstance(pad, str):
        pad = [[0, 0], list(pad[0]), list(pad[1]), [0, 0]]
    want = tf.nn.depthwise_conv2d(x, w, [1, s, s, 1], pad, dilations=[d, d]).numpy()
    got = conv.depthwise_conv2d(nchw(x), w, data_format="NCHW", **kwargs)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(nhwc(got), want, rtol=tol, atol=tol * np.abs(want).max())
    p = conv.plan(nchw(x).shape, w, depthwise=True, data_format="NCHW", dtype=dtype, **kwargs)
    assert p.method == "depthwise" and p.groups == 5
    np.testing.assert_array_equal(p(nchw(x)), got)


def test_nchw_inputs_untouched_and_any_layout():
    """A read-only, non-contiguous NCHW view is accepted and left as it was; float16 is
    computed in float32 and rounded once, as in NHWC; pickled plans keep the layout."""
    x, w = normal_inputs((2, 7, 8, 4), (3, 3, 4, 5), np.float32)
    big = nchw(np.concatenate([x, x], axis=2))
    view = big[:, :, :, ::2]  # (2, 4, 7, 8), not contiguous
    view.flags.writeable = False
    before = view.copy()
    got = conv.conv2d(view, w, padding="SAME", data_format="NCHW")
    np.testing.assert_array_equal(view, before)
    np.testing.assert_array_equal(
        nhwc(got), conv.conv2d(np.ascontiguousarray(nhwc(view)), w, padding="SAME"))
    half = conv.conv2d(view.astype(np.float16), w.astype(np.float16), padding="SAME",
                       data_format="NCHW")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(
        nhwc(half), conv.conv2d(np.ascontiguousarray(nhwc(view)).astype(np.float16),
                                w.astype(np.float16), padding="SAME"))
    p = conv.plan(view.shape, w, padding="SAME", data_format="NCHW")
    q = pickle.loads(pickle.dumps(p))
    assert q.data_format == "NCHW" and q.x_shape == view.shape
    np.testing.assert_array_equal(q(view), got)
    assert "NCHW" in repr(p)


def test_nchw_empty_batch_and_scratch_reuse():
    """An empty batch gives an empty NCHW result; repeated calls of different sizes through
    the reused scratch arrays stay right."""
    w = normal_inputs((1, 1, 1, 1), (3, 3, 3, 4), np.float32)[1]
    assert conv.conv2d(np.zeros((0, 3, 6, 6), np.float32), w,
                       data_format="NCHW").shape == (0, 4, 4, 4)
    for shape in [(3, 12, 12, 3), (1, 5, 5, 3), (2, 9, 20, 3), (1, 5, 5, 3)]:
        x = normal_inputs(shape, (1, 1, 1, 1), np.float32, seed=shape[2])[0]
        np.testing.assert_array_equal(nhwc(conv.conv2d(nchw(x), w, data_format="NCHW")),
                                      conv.conv2d(x, w))


@pytest.mark.parametrize("bad, exc, match", [
    (dict(data_format="nchw"), ValueError, "data_format must be 'NHWC' or 'NCHW'"),
    (dict(data_format="NCWH"), ValueError, "data_format must be 'NHWC' or 'NCHW'"),
    (dict(data_format=None), TypeError, "data_format must be 'NHWC' or 'NCHW'"),
])
def test_bad_data_format(bad, exc, match):
    x, w = normal_inputs((1, 3, 5, 5), (3, 3, 3, 2), np.float32)
    with pytest.raises(exc, match=match):
        conv.conv2d(x, w, **bad)
    with pytest.raises(exc, match=match):
        conv.plan(x.shape, w, **bad)
    with pytest.raises(exc, match=match):
        conv.depthwise_conv2d(x, w[:, :, :, :1], **bad)


def test_nchw_errors_speak_nchw():
    x, w = normal_inputs((2, 5, 8, 8), (3, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"x is NCHW \(2, 5, 8, 8\)"):
        conv.conv2d(x, w, data_format="NCHW")
    with pytest.raises(ValueError, match=r"x must be 4-D NCHW \(N, C_in, H, W\)"):
        conv.conv2d(x[0], w, data_format="NCHW")
    with pytest.raises(ValueError, match=r"has C_in=3 channels but x has C_in=5 \(x is NCHW"):
        conv.depthwise_conv2d(x, np.ones((3, 3, 3, 1), np.float32), data_format="NCHW")
    p = conv.plan((2, 4, 8, 8), np.ones((3, 3, 4, 1), np.float32), data_format="NCHW")
    with pytest.raises(ValueError, match=r"made for x of shape \(2, 4, 8, 8\) \(NCHW\)"):
        p(np.ones((2, 8, 8, 4), np.float32))
    out = np.empty((2, 6, 6, 1), np.float32)  # NHWC-shaped: wrong for NCHW
    with pytest.raises(ValueError, match=r"this convolution's output is \(2, 1, 6, 6\)"):
        p(np.ones((2, 4, 8, 8), np.float32), out=out)


def test_depthwise_plan_arguments():
    x, w = normal_inputs((2, 6, 6, 4), (3, 3, 4, 2), np.float32)
    with pytest.raises(ValueError, match="groups may not be given with depthwise=True"):
        conv.plan(x.shape, w, depthwise=True, groups=4)
    with pytest.raises(TypeError, match="depthwise must be True or False"):
        conv.plan(x.shape, w, depthwise=1)
    p = conv.plan(x.shape, w, depthwise=True, padding="SAME")
    np.testing.assert_array_equal(p(x), conv.depthwise_conv2d(x, w, padding="SAME",
                                                              method=p.method))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [dict(padding="SAME"), dict(padding="VALID"),
                                    dict(padding="SAME", stride=2),
                                    dict(padding="VALID", stride=2),
                                    dict(padding=((1, 1), (1, 1)), stride=2),
                                    dict(padding=((2, 0), (3, 1)), dilation=(1, 2)),
                                    dict(padding="SAME", stride=(1, 3))], ids=str)
@pytest.mark.parametrize("shape", [(2, 5, 37, 35), (1, 3, 20, 16), (1, 4, 9, 7),
                                   (1, 3, 41, 32)], ids=str)
def test_depthwise_blocks_and_borders(shape, kwargs, dtype):
    """Rows wide enough for whole register blocks, fewer-pixel blocks and border pixels,
    channel counts with and without a remainder past the last vector: the same sums as
    the per-pixel path (the multiplier-2 problem, which takes only that path, with one
    of its two filters zero, gives the multiplier-1 result exactly), and within the
    accuracy bound of the exact reference."""
    x, w = normal_inputs(shape, (3, 3, shape[3], 1), dtype)
    got = conv.depthwise_conv2d(x, w, method="depthwise", **kwargs)
    w2 = np.concatenate([w, np.zeros_like(w)], axis=3)
    np.testing.assert_array_equal(
        conv.depthwise_conv2d(x, w2, method="depthwise", **kwargs)[..., ::2], got)
    exact = kit.reference_conv2d(x, w.reshape(3, 3, 1, shape[3]), **kwargs)
    kit.assert_conv_accurate(got, exact, kit.tolerance_scale(x, w, **kwargs), dtype,
                             kit.method_accuracy("depthwise", x, w.reshape(3, 3, 1, shape[3]),
                                                 **kwargs))


def _at_offset(a, offset):
    """A C-contiguous copy of ``a`` starting ``offset`` elements past a 64-byte boundary."""
    buf = np.empty(a.size + 64, dtype=a.dtype)
    start = (-buf.ctypes.data % 64) // a.itemsize + offset
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 64 == offset * a.itemsize
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [dict(padding="SAME"), dict(padding="VALID"),
                                    dict(padding=((1, 1), (2, 0))),
                                    dict(padding=((1, 0), (1, 0))),
                                    dict(padding=((0, 1), (0, 1)))], ids=str)
@pytest.mark.parametrize("shape", [(2, 5, 37, 32), (1, 4, 13, 144), (1, 3, 4, 48),
                                   (1, 3, 3, 16), (1, 4, 20, 40)], ids=str)
def test_depthwise_at_every_alignment_of_x(shape, kwargs, dtype):
    """x starting any whole number of elements past a 64-byte boundary (NumPy's large
    arrays start 16 bytes past one), so that the kernel's aligned path (vectors started
    early, filters rotated) takes every shift, with interiors of 1, 2 and many pixels,
    and border pixels with one padded tap column on the left, the right or both (taken
    with a neighbour or alone): the per-pixel path's sums bit for bit, whatever the
    threads and the output's alignment."""
    x, w = normal_inputs(shape, (3, 3, shape[3], 1), dtype)
    w2 = np.concatenate([w, np.zeros_like(w)], axis=3)  # multiplier 2: per-pixel path only
    want = conv.depthwise_conv2d(x, w2, method="depthwise", **kwargs)[..., ::2]
    p = conv.plan(shape, w, depthwise=True, method="depthwise", **kwargs)
    for offset in range(64 // x.itemsize):
        xo = _at_offset(x, offset)
        for threads in (1, 2):
            got = conv.depthwise_conv2d(xo, w, method="depthwise", threads=threads, **kwargs)
            np.testing.assert_array_equal(got, want, err_msg=f"offset {offset}")
        out = _at_offset(np.zeros(want.shape, dtype), (offset * 5) % (64 // x.itemsize))
        np.testing.assert_array_equal(p(xo, out=out), want, err_msg=f"plan, offset {offset}")
        assert np.array_equal(xo, x)


@pytest.mark.parametrize("mod", EXTENSIONS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    ((2, 6, 37, 32), (3, 3, 1, 32), 1, (1, 1)),    # register-blocked, border pixels
    ((1, 5, 13, 144), (3, 3, 1, 144), 1, (0, 0)),  # VALID
    ((1, 9, 10, 24), (3, 3, 1, 24), 2, (1, 1)),    # stride 2: its register blocks
    ((2, 4, 7, 6), (3, 3, 1, 18), 1, (1, 1)),      # multiplier 3
    ((1, 5, 6, 8), (3, 3, 2, 12), 1, (1, 1)),      # grouped, 2 channels a group
    ((1, 3, 40, 5), (5, 5, 1, 5), 1, (2, 2)),      # 5x5, channels short of a vector
], ids=str)
@pytest.mark.parametrize("offset", [0, 1])
def test_depthwise_kernel_stores_nchw(mod, dtype, case, offset):
    """out_nchw: the depthwise kernel moves each output row into the channels' planes of
    an (N, C_out, OH, OW) output; the NHWC call's values bit for bit, every element
    written, on every path (register-blocked with its border pixels and x off a vector
    boundary, per pixel, grouped) and both thread counts."""
    xs, ws, s, (pt, pl) = case
    x, w = normal_inputs(xs, ws, dtype, seed=sum(xs))
    x = _at_offset(x, offset)
    oh = (xs[1] + 2 * pt - ws[0]) // s + 1
    ow = (xs[2] + 2 * pl - ws[1]) // s + 1
    want = np.full((xs[0], oh, ow, ws[3]), np.nan, dtype)
    mod.conv2d_depthwise(x, w, want, s, s, 1, 1, pt, pl, 1)
    assert not np.isnan(want).any()
    for threads in (1, 2):
        got = np.full((xs[0], ws[3], oh, ow), np.nan, dtype)
        mod.conv2d_depthwise(x, w, got, s, s, 1, 1, pt, pl, threads, True)
        np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="conv2d_depthwise"):
        mod.conv2d_depthwise(x, w, np.empty((xs[0], ws[3] + 1, oh, ow), dtype), s, s, 1, 1,
                             pt, pl, 1, True)


@pytest.mark.parametrize("mod", EXTENSIONS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    ((2, 6, 53, 32), (3, 3), (1, 1), (1, 1), (1, 1)),    # SAME: vectors, the last overlaps
    ((1, 5, 70, 3), (3, 3), (1, 1), (1, 1), (0, 0)),     # VALID, a block of 4 vectors
    ((1, 2, 200, 2), (3, 3), (1, 1), (1, 1), (1, 1)),    # several blocks
    ((1, 9, 50, 4), (3, 3), (2, 1), (1, 1), (1, 1)),     # stride 2 down the columns
    ((1, 7, 61, 5), (3, 3), (1, 1), (2, 3), (2, 3)),     # dilated
    ((1, 8, 60, 5), (5, 5), (1, 1), (1, 1), (2, 2)),     # 5x5
    ((2, 6, 55, 3), (7, 7), (1, 1), (1, 1), (3, 3)),     # 7x7, rows padded top and bottom
    ((1, 3, 49, 2), (1, 1), (1, 1), (1, 1), (0, 0)),     # 1x1
    ((1, 4, 60, 3), (2, 4), (1, 1), (1, 1), (0, 2)),     # left padding only
], ids=str)
@pytest.mark.parametrize("offset", [0, 1])
def test_depthwise_kernel_reads_nchw_planes(mod, dtype, case, offset):
    """x_nchw: depthwise with multiplier 1 at row stride 1 convolves each channel plane of
    NCHW x as it lies, vectorized along its rows; the NHWC kernel's values bit for bit
    (the same taps in the same order), every element written, Inf/NaN in x and w carried
    alike, both thread counts; what it does not take is refused."""
    xs, (kh, kw), (sh, sw), (dh, dw), (pt, pl) = case
    x, w = normal_inputs(xs, (kh, kw, 1, xs[3]), dtype, seed=sum(xs))
    x[0, 1, 2, 0], x[-1, -1, -1, -1] = np.nan, np.inf
    w[0, -1, 0, -1] = -np.inf
    oh = (xs[1] + 2 * pt - (kh - 1) * dh - 1) // sh + 1
    ow = (xs[2] + 2 * pl - (kw - 1) * dw - 1) // sw + 1
    want = np.full((xs[0], oh, ow, xs[3]), np.nan, dtype)
    mod.conv2d_depthwise(x, w, want, sh, sw, dh, dw, pt, pl, 1)
    planes = _at_offset(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), offset)
    item = x.itemsize
    assert mod.planes_apply(kh, kw, 1, xs[3], xs[3], sw, ow, item)
    for threads in (1, 2):
        got = np.full((xs[0], xs[3], oh, ow), -7.0, dtype)
        mod.conv2d_depthwise(planes, w, got, sh, sw, dh, dw, pt, pl, threads, True, True)
        np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2), err_msg=f"{threads}")
    assert not mod.planes_apply(kh, kw, 1, 2 * xs[3], xs[3], sw, ow, item)  # multiplier 2
    assert not mod.planes_apply(kh, kw, 1, xs[3], xs[3], 2, ow, item)       # row stride 2
    assert not mod.planes_apply(kh, kw, 1, xs[3], xs[3], 1, ow, item, False)  # NHWC out
    assert not mod.planes_apply(kh, kw, 1, xs[3], xs[3], 1, 10, item)  # under 3 vectors
    with pytest.raises(ValueError, match="x_nchw"):
        mod.conv2d_depthwise(planes, w, np.empty((xs[0], oh, ow, xs[3]), dtype), sh, sw,
                             dh, dw, pt, pl, 1, False, True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_depthwise_outputs_start_as_far_off_a_line_as_x(dtype):
    """A new output of 1 MB or more starts as many bytes past a 64-byte boundary as x
    (the kernel's aligned loads and stores then go together); the result is the per-pixel
    path's, bit for bit."""
    from conv.methods import _compiled
    x, w = normal_inputs((1, 41, 40, 160), (3, 3, 160, 1), dtype)
    w2 = np.concatenate([w, np.zeros_like(w)], axis=3)
    want = conv.depthwise_conv2d(x, w2, method="depthwise", padding="SAME")[..., ::2]
    assert want.nbytes >= _compiled.ALIGN_MIN_BYTES
    for offset in (0, 1, 2, 3):
        xo = _at_offset(x, offset)
        got = conv.depthwise_conv2d(xo, w, method="depthwise", padding="SAME")
        assert got.ctypes.data % 64 == offset * x.itemsize
        assert got.flags.c_contiguous and got.flags.writeable and got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        small = _compiled.empty_aligned_as((3, 5), xo)  # below the threshold: plain
        assert small.shape == (3, 5) and small.dtype == dtype and small.base is None


@pytest.mark.parametrize("kwargs", [dict(padding="SAME"), dict(padding="VALID", stride=2),
                                    dict(padding="SAME", stride=2)], ids=str)
def test_large_depthwise_problems_prefetch_the_same_sums(kwargs):
    """Above DW_PREFETCH_BYTES (x and out together) the register-blocked rows prefetch
    the input rows ahead of them: the per-pixel path's sums bit for bit, and each image
    the same as alone (a problem under the threshold), on 1 and 2 threads."""
    from conv.methods import _compiled
    x, w = normal_inputs((4, 48, 64, 176), (3, 3, 176, 1), np.float32)
    got = conv.depthwise_conv2d(x, w, method="depthwise", **kwargs)
    assert x.nbytes + got.nbytes > _compiled.kernels.DW_PREFETCH_BYTES
    w2 = np.concatenate([w, np.zeros_like(w)], axis=3)
    np.testing.assert_array_equal(
        conv.depthwise_conv2d(x, w2, method="depthwise", **kwargs)[..., ::2], got)
    np.testing.assert_array_equal(
        conv.depthwise_conv2d(x, w, method="depthwise", threads=1, **kwargs), got)
    for n in (0, 3):
        alone = conv.depthwise_conv2d(x[n:n + 1], w, method="depthwise", **kwargs)
        assert x[n:n + 1].nbytes + alone.nbytes < _compiled.kernels.DW_PREFETCH_BYTES
        np.testing.assert_array_equal(alone[0], got[n])


def test_address_is_the_first_elements():
    """kernels.address (the aligned allocations ask it) is ctypes.data: plain, read-only,
    offset, strided and reversed views, both builds' dtypes."""
    from conv.methods import _compiled
    from conv._frontend import kernel_array
    base = np.arange(4 * 6 * 8, dtype=np.float64).reshape(4, 6, 8)
    views = [base, base[1:], base[:, 2:, 3:], base[..., ::2], base[::-1], base.T,
             kernel_array(base[1:]), base.astype(np.float32)[2:, 1]]
    for v in views:
        assert _compiled.kernels.address(v) == v.ctypes.data


def test_a_kernel_calling_conv_in_nchw_does_not_share_the_scratch(registered):
    """A method whose kernel calls conv.conv2d(data_format="NCHW") itself, inside an outer
    NCHW call on the same thread: each call keeps its own scratch arrays."""

    def kernel(p):
        conv.conv2d(np.ascontiguousarray(np.moveaxis(2 * p.x, 3, 1)), p.w, method="direct",
                    data_format="NCHW")
        return conv.conv2d(p.x, p.w, method="direct")  # p.x read after the inner call

    registered(conv.Method("nested", kernel, prepare=lambda template: lambda p, out: kernel(p)))
    x, w = normal_inputs((2, 9, 8, 3), (3, 3, 3, 4), np.float32)
    got = conv.plan(nchw(x).shape, w, method="nested", data_format="NCHW")(nchw(x))
    np.testing.assert_array_equal(nhwc(got), conv.conv2d(x, w, method="direct"))


@pytest.mark.parametrize("method", ["direct", "winograd", "matmul", "numpy"])
@pytest.mark.parametrize("c_in", [1, 5])
@pytest.mark.parametrize("planned", [False, True])
@pytest.mark.parametrize("k, hw", [(3, (11, 10)), (1, (8, 12)), (1, (11, 10))], ids=str)
def test_nchw_results_are_stored_by_the_kernels(monkeypatch, method, c_in, planned, k, hw):
    """direct and winograd store an NCHW result channel by channel themselves: a call
    moves x alone (nothing at all when x has one channel, which NCHW lays out as NHWC);
    the others' results are moved back. A 1x1 kernel on direct (winograd runs it there)
    reads NCHW x as it is where its pixel panels fit the image (8x12: whole panels):
    nothing is moved. depthwise convolves x's planes as they lie where output rows are
    wide (64) at row stride 1 (nothing moved); else it stores its rows NCHW: x alone is
    moved. The results are the NHWC call's, bit for bit, also into out= and through a
    float32 computation of float16 inputs."""
    from conv.methods import _compiled

    nr, pixels = _compiled.kernels.NR["float32"], hw[0] * hw[1]
    if method in ("direct", "winograd"):
        native = k == 1 and (-(-pixels // nr) * nr - pixels
                             <= _compiled.PW_NCHW_MAX_IDLE * pixels)
        moves = 0 if native else int(c_in > 1)
    else:
        moves = 1 + int(c_in > 1)
    from conv import _plan

    moved = []

    def counting(x, a, out, threads):
        moved.append(x.shape)
        return real(x, a, out, threads)

    real = _plan._swap
    monkeypatch.setattr(_plan, "_swap", counting)
    x, w = normal_inputs((2,) + hw + (c_in,), (k, k, c_in, 37), np.float32)
    want = conv.conv2d(x, w, method=method, padding="SAME")
    run = (conv.plan(nchw(x).shape, w, method=method, padding="SAME", data_format="NCHW")
           if planned else
           lambda a, out=None: conv.conv2d(a, w, method=method, padding="SAME",
                                           data_format="NCHW", out=out))
    moved.clear()
    got = run(nchw(x))
    assert len(moved) == moves, moved
    np.testing.assert_array_equal(nhwc(got), want)
    if method == "direct" and k == 3:  # depthwise calls
        wd = np.ascontiguousarray(w[:, :, :, :1])  # (3, 3, c_in, 1)
        xw = normal_inputs((2, 5, 64, c_in), (1, 1, 1, 1), np.float32)[0]
        for xd, kwargs, planes in ((xw, dict(), True), (xw, dict(stride=(2, 1)), True),
                                   (xw, dict(stride=2), False), (x, dict(), False)):
            dwant = conv.depthwise_conv2d(xd, wd, padding="SAME", **kwargs)
            moved.clear()
            dgot = conv.depthwise_conv2d(nchw(xd), wd, padding="SAME", data_format="NCHW",
                                         **kwargs)
            # wide rows at row stride 1: the planes as they lie; else x moved, the rows
            # stored NCHW
            assert len(moved) == int(c_in > 1 and not planes), (kwargs, moved)
            np.testing.assert_array_equal(nhwc(dgot), dwant)
    buf = np.full_like(got, np.nan)
    assert run(nchw(x), out=buf) is buf
    np.testing.assert_array_equal(buf, got)
    half = conv.conv2d(nchw(x).astype(np.float16), w.astype(np.float16), method=method,
                       padding="SAME", data_format="NCHW")
    np.testing.assert_array_equal(
        nhwc(half), conv.conv2d(x.astype(np.float16), w.astype(np.float16), method=method,
                                padding="SAME"))
