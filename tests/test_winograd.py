"""The "winograd" method: its compiled kernels in every loaded build, called directly, and
the method through conv.conv2d.

* Small-integer inputs make F(2x2, 3x3) exact in float64 (its transforms only add,
  subtract and halve), so those results must equal the exact convolution bit for bit:
  that tests the tiling, the padding, partial tiles and channel tails of every build.
* Everything else is held to the normwise bound the method declares
  (conv.testing.NORMWISE), against the exact extended-precision reference.
* Results never depend on the thread count, the tiles a task or the channel grouping.
* What Winograd does not compute (other kernels, strides, Inf/NaN anywhere) runs on
  "direct", and then equals it bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

import conv
import conv.testing as kit
from conv.methods import winograd
from conftest import vector_and_scalar_runs
from test_microkernels import EXTENSIONS

EXT_IDS = [mod.__name__.rsplit(".", 1)[1] for mod in EXTENSIONS]
DTYPES = ["float32", "float64"]

# (N, H, W, C_in, C_out, (top, bottom, left, right) padding): partial tiles at both edges,
# one-tile images, channel tails shorter than a vector, more channels than one tile
GEOMETRIES = [
    (1, 3, 3, 1, 1, (0, 0, 0, 0)),
    (2, 6, 7, 3, 5, (1, 1, 1, 1)),
    (1, 9, 11, 17, 40, (0, 0, 0, 0)),
    (3, 5, 8, 2, 33, (2, 0, 1, 2)),
    (1, 14, 14, 64, 64, (1, 1, 1, 1)),
    (2, 7, 7, 70, 17, (1, 1, 0, 0)),
    (1, 1, 1, 4, 3, (1, 1, 1, 1)),
]


def _run(mod, x, w, m, pads, threads=2, bt=0, gcot=0, ws=False):
    """Call one extension's kernels directly, in the tiles-outer order (weights transformed
    first) or the weights-stationary one (ws): (output, whether every value was finite)."""
    t, b, l, r = pads
    oh, ow = x.shape[1] + t + b - 2, x.shape[2] + l + r - 2
    out = np.full((x.shape[0], oh, ow, w.shape[3]), np.nan, dtype=x.dtype)
    zeros = np.zeros(max(1, x.shape[3]), dtype=x.dtype)
    if ws:
        vall = np.empty((m + 2) ** 2 * x.shape[0] * -(-oh // m) * -(-ow // m) * x.shape[3],
                        dtype=x.dtype)
        return out, mod.conv2d_winograd_ws(x, w, zeros, vall, out, m, t, l, threads)
    nr = mod.NR[x.dtype.name]
    u = np.empty(((m + 2) ** 2, -(-w.shape[3] // nr), w.shape[2], nr), dtype=x.dtype)
    mod.winograd_weights(w, u, m, threads)
    return out, mod.conv2d_winograd(x, u, zeros, out, t, l, threads, bt, gcot)


def _inputs(geometry, dtype, integers=False, seed=0):
    n, h, wd, ci, co, _ = geometry
    rng = np.random.default_rng(seed)
    if integers:
        return (rng.integers(-3, 4, (n, h, wd, ci)).astype(dtype),
                rng.integers(-3, 4, (3, 3, ci, co)).astype(dtype))
    return (rng.standard_normal((n, h, wd, ci)).astype(dtype),
            rng.standard_normal((3, 3, ci, co)).astype(dtype))


def _padding(pads):
    return ((pads[0], pads[1]), (pads[2], pads[3]))


@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_f2x2_is_exact_on_small_integers(mod, geometry):
    x, w = _inputs(geometry, "float64", integers=True)
    out, ok = _run(mod, x, w, 2, geometry[5])
    exact = kit.reference_conv2d(x, w, padding=_padding(geometry[5]))
    assert ok
    np.testing.assert_array_equal(out, exact)


@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_kernels_within_the_normwise_bound(mod, dtype, m, geometry):
    x, w = _inputs(geometry, dtype)
    out, ok = _run(mod, x, w, m, geometry[5])
    assert ok
    kit.assert_conv_normwise(out, kit.reference_conv2d(x, w, padding=_padding(geometry[5])))


@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 4])
def test_results_do_not_depend_on_threads_or_task_shape(mod, dtype, m):
    x, w = _inputs((2, 13, 10, 24, 70, (1, 1, 1, 1)), dtype)
    first, _ = _run(mod, x, w, m, (1, 1, 1, 1), threads=1)
    for threads, bt, gcot in ((2, 0, 0), (3, 0, 0), (2, 6, 1), (2, 12, 2), (1, 96, 3), (2, 6, 3)):
        again, ok = _run(mod, x, w, m, (1, 1, 1, 1), threads, bt, gcot)
        assert ok
        np.testing.assert_array_equal(again, first, err_msg=f"{threads} {bt} {gcot}")


@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("ws", [False, True], ids=["tiles-outer", "weights-stationary"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_nchw_output_is_the_nhwc_output_moved(mod, dtype, m, ws, geometry):
    """out_nchw: the output transform stores each channel's plane of an (N, C_out, OH, OW)
    output itself; the same values as the NHWC output, bit for bit, every element written
    (partial tiles at the right and bottom edges, channel tails, every task shape)."""
    x, w = _inputs(geometry, dtype, seed=5)
    want, ok = _run(mod, x, w, m, geometry[5], ws=ws)
    assert ok
    t, b, l, r = geometry[5]
    zeros = np.zeros(max(1, x.shape[3]), dtype=dtype)
    got = np.full((want.shape[0], want.shape[3]) + want.shape[1:3], np.nan, dtype=dtype)
    if ws:
        vall = np.empty((m + 2) ** 2 * x.shape[0] * -(-want.shape[1] // m)
                        * -(-want.shape[2] // m) * x.shape[3], dtype=dtype)
        assert mod.conv2d_winograd_ws(x, w, zeros, vall, got, m, t, l, 2, True)
        np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2))
        return
    nr = mod.NR[dtype]
    u = np.empty(((m + 2) ** 2, -(-w.shape[3] // nr), w.shape[2], nr), dtype=dtype)
    mod.winograd_weights(w, u, m, 2)
    for threads, bt, gcot in ((2, 0, 0), (1, 6, 1), (2, 12, 2)):
        got[...] = np.nan
        assert mod.conv2d_winograd(x, u, zeros, got, t, l, threads, bt, gcot, out_nchw=True)
        np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2),
                                      err_msg=f"{threads} {bt} {gcot}")


@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 4])
def test_weight_transform_is_g_g_gt(mod, dtype, m):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 3, 5, 37)).astype(dtype)
    G = {2: np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]),
         4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])}[m]
    want = np.einsum("ai,ijco,bj->abco", G, w.astype(np.float64), G)  # (m+2, m+2, 5, 37)
    nr = mod.NR[dtype]
    u = np.full(((m + 2) ** 2, -(-37 // nr), 5, nr), np.nan, dtype=dtype)
    mod.winograd_weights(w, u, m, 2)
    got = u.transpose(0, 2, 1, 3).reshape((m + 2) ** 2, 5, -1)
    np.testing.assert_allclose(got[:, :, :37], want.reshape((m + 2) ** 2, 5, 37),
                               rtol=np.finfo(dtype).eps, atol=np.finfo(dtype).eps)
    assert (got[:, :, 37:] == 0).all()  # the last tile's padding channels


@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("where", [(0, 0, 0, 0), (0, 4, 5, 1), (1, 8, 8, 2)])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_kernels_report_a_non_finite_input(mod, dtype, m, where, value):
    x, w = _inputs((2, 9, 9, 3, 4, None), dtype)
    x[where] = value
    _, ok = _run(mod, x, w, m, (1, 1, 1, 1))
    assert not ok


@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("m", [2, 4])
def test_kernels_report_an_overflow(mod, m):
    x, w = _inputs((1, 6, 6, 2, 3, None), "float32")
    x[0, 2, 2, 0] = 3e38  # finite, but its transform is not
    _, ok = _run(mod, x, w, m, (0, 0, 0, 0))
    assert not ok


def test_tile_size_keeps_the_float32_bound():
    assert winograd.tile_size("float64", 4096) == 4
    assert winograd.tile_size("float32", winograd.F4_MAX_C_IN_FLOAT32) == 4
    assert winograd.tile_size("float32", winograd.F4_MAX_C_IN_FLOAT32 + 1) == 2


def test_weights_stationary_rule():
    k = winograd.WS_TILES_PER_CHANNEL
    assert winograd.weights_stationary(16 * k, 256, 16, 4, 4)
    assert not winograd.weights_stationary(16 * k + 1, 256, 16, 4, 4)
    assert not winograd.weights_stationary(10 ** 6, 64, 10 ** 7, 4, 8)  # too much to keep


# ------------------------------------------------------------------ through conv2d
def test_the_method_declares_what_it_is():
    m = conv.get_method("winograd")
    assert m.accuracy == "normwise" and m.parallel and m.pads_itself
    assert not m.supports_dilation  # dilated 3x3: the front end's phase split
    assert set(m.dtypes) == {"float32", "float64"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [
    {"padding": "SAME"}, {"padding": "VALID"}, {"padding": ((2, 0), (1, 3))},
    {"padding": "SAME", "dilation": 2}, {"padding": "VALID", "dilation": (2, 3)},
], ids=str)
def test_conv2d_within_the_bound(dtype, kwargs):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 12, 13, 20)).astype(dtype)
    w = rng.standard_normal((3, 3, 20, 24)).astype(dtype)
    x0, w0 = x.copy(), w.copy()
    out = conv.conv2d(x, w, method="winograd", **kwargs)
    kit.assert_conv_normwise(out, kit.reference_conv2d(x, w, **kwargs))
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_uses_the_tile_size_rule(dtype):
    rng = np.random.default_rng(6)
    ci = winograd.F4_MAX_C_IN_FLOAT32 + 8
    x = rng.standard_normal((1, 6, 6, ci)).astype(dtype)
    w = rng.standard_normal((3, 3, ci, 8)).astype(dtype)
    out = conv.conv2d(x, w, method="winograd", padding="SAME")
    kit.assert_conv_normwise(out, kit.reference_conv2d(x, w, padding="SAME"))
    m = winograd.tile_size(dtype, ci)
    from conv.methods import _compiled
    direct, _ = _run(_compiled.kernels, x, w, m, (1, 1, 1, 1), threads=1)
    np.testing.assert_array_equal(out, direct)  # the size tile_size names


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [
    ((1, 9, 9, 3), (5, 5, 3, 4), {"padding": "SAME"}),
    ((1, 9, 9, 3), (3, 3, 3, 4), {"padding": "SAME", "stride": 2}),
    ((2, 9, 9, 3), (3, 1, 3, 4), {}),
], ids=["5x5", "stride 2", "3x1"])
def test_other_problems_run_on_direct(dtype, case):
    xs, ws, kwargs = case
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    np.testing.assert_array_equal(conv.conv2d(x, w, method="winograd", **kwargs),
                                  conv.conv2d(x, w, method="direct", **kwargs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "w", "x padded"])
def test_non_finite_values_run_on_direct(dtype, where):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 10, 11, 4)).astype(dtype)
    w = rng.standard_normal((3, 3, 4, 5)).astype(dtype)
    if where == "x":
        x[1, 5, 5, 2] = np.inf
        x[0, 0, 3, 1] = np.nan
    elif where == "w":
        w[1, 1, 0, 0] = -np.inf
    else:
        x[0, 0, 0, 0] = np.inf  # its tile holds padding: direct skips the padded taps
    out = conv.conv2d(x, w, method="winograd", padding="SAME")
    np.testing.assert_array_equal(out, conv.conv2d(x, w, method="direct", padding="SAME"))
    assert np.isfinite(out).any() and not np.isfinite(out).all()


# ------------------------------------------------ the plain-C build (no vector extensions)
_WINO_DRIVER = r"""
#include <stdio.h>
#include "_winograd.h"
/* One problem through both transforms, both element types: prints every output. */
#define RUN(T, DRV, NR)                                                                    \
    for (m = 2; m <= 4; m += 2) {                                                          \
        static T x[N * H * W * CI], w[9 * CI * CO], zeros[CI], out[N * H * W * CO];       \
        static T u[36 * ((CO + NR - 1) / NR) * CI * NR];                                   \
        conv_wino_weights pw = {w, u, CI, CO, (CO + NR - 1) / NR};                        \
        conv_wino_problem p;                                                               \
        for (i = 0; i < N * H * W * CI; i++) x[i] = (T)((i * 37) % 23) / 7 - (T)1.5;      \
        for (i = 0; i < 9 * CI * CO; i++) w[i] = (T)((i * 11) % 17) / 5 - (T)1.6;         \
        DRV##_weights(&pw, m, 1);                                                          \
        memset(&p, 0, sizeof p);                                                           \
        p.x = x; p.u = u; p.zeros = zeros; p.out = out;                                    \
        p.N = N; p.H = H; p.W = W; p.CI = CI; p.ncot = (CO + NR - 1) / NR; p.nr = NR;      \
        p.OH = H; p.OW = W; p.CO = CO; p.pt = 1; p.pl = 1; p.m = m;                        \
        DRV(&p, 1);                                                                        \
        if (p.nonfinite || p.failed) return 1;                                             \
        for (i = 0; i < N * H * W * CO; i++) printf("%.17g\n", (double)out[i]);            \
    }
int main(void) {
    enum { N = 2, H = 7, W = 9, CI = 5, CO = 19 };
    int i, m;
    RUN(float, conv_winograd_f, CONV_NR_F)
    RUN(double, conv_winograd_d, CONV_NR_D)
    return 0;
}
"""


def test_scalar_build_matches_vector_build(tmp_path):
    """The Winograd code that compilers without vector extensions get (forced here with
    CONV_NO_VECTOR_EXT) computes what the vector code computes, to rounding."""
    outputs = vector_and_scalar_runs(tmp_path, _WINO_DRIVER,
                                     ["-std=gnu99", "-O2", "-pthread"])
    vec, sca = outputs["vector"], outputs["scalar"]
    half = 2 * 7 * 9 * 19 * 2  # float32 results (both transforms) first, then float64
    assert vec.size == sca.size == 2 * half and np.isfinite(vec).all()
    for part, dtype in ((slice(0, half), "float32"), (slice(half, None), "float64")):
        scale = np.abs(vec[part]).max()
        assert np.abs(vec[part] - sca[part]).max() <= 1e3 * np.finfo(dtype).eps * scale


# ------------------------------------------------------------------ auto's rule
@pytest.mark.parametrize("x_shape, w_shape, kwargs, chosen", [
    ((8, 56, 56, 64), (3, 3, 64, 64), {}, "winograd"),            # mid
    ((1, 28, 28, 128), (3, 3, 128, 128), {"padding": "SAME"}, "winograd"),
    ((8, 28, 28, 16), (3, 3, 16, 128), {"padding": "SAME"}, "winograd"),
    ((100, 32, 32, 3), (3, 3, 3, 16), {}, "direct"),              # seed: 3 channels
    ((8, 56, 56, 16), (3, 3, 16, 16), {"padding": "SAME"}, "direct"),  # 32 channels in all
    ((1, 14, 14, 256), (3, 3, 256, 256), {"padding": "SAME"}, "winograd"),  # 196 pixels
    ((8, 7, 7, 512), (3, 3, 512, 512), {"padding": "SAME"}, "winograd"),  # 0.0015 a weight
    ((4, 7, 7, 512), (3, 3, 512, 512), {"padding": "SAME"}, "direct"),  # 0.00075 a weight
    ((1, 7, 7, 64), (3, 3, 64, 64), {"padding": "VALID"}, "direct"),  # 25 pixels
    ((8, 56, 56, 64), (3, 3, 64, 64), {"stride": 2}, "direct"),
    ((8, 56, 56, 64), (3, 3, 64, 64), {"dilation": 2}, "direct"),
    ((8, 56, 56, 64), (5, 5, 64, 64), {}, "direct"),
], ids=str)
def test_auto_rule(x_shape, w_shape, kwargs, chosen):
    from conv import _introspect
    for dtype in DTYPES:
        x, w = np.zeros(x_shape, dtype), np.zeros(w_shape, dtype)
        assert _introspect.auto_choice(x, w, 2, **kwargs) == chosen


@pytest.mark.parametrize("dtype, c_in", [("float32", 64), ("float32", winograd.F4_MAX_C_IN_FLOAT32),
                                         ("float64", 256), ("float64", 1024)])
@pytest.mark.parametrize("magnitude", ["normal", "mixed"])
def test_f4x4_keeps_the_bound_where_it_may_run(dtype, c_in, magnitude):
    """F(4x4) runs with up to F4_MAX_C_IN_FLOAT32 channels (float32) or any (float64): its
    kernels are held to the bound on the accuracy grid's inputs."""
    from conv.bench import accuracy
    x, w = accuracy.inputs((c_in, 3, magnitude), dtype)
    out, ok = _run(EXTENSIONS[-1], x, w, 4, (1, 1, 1, 1))
    assert ok
    kit.assert_conv_normwise(out, kit.reference_conv2d(x, w, padding="SAME"))


@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("where", [(0, 0, 0, 0), (2, 1, 4, 36), (1, 2, 3, 17)])
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_weight_transform_reports_a_non_finite_weight(mod, dtype, m, where, value):
    w = np.random.default_rng(4).standard_normal((3, 3, 5, 37)).astype(dtype)
    nr = mod.NR[dtype]
    u = np.empty(((m + 2) ** 2, -(-37 // nr), 5, nr), dtype=dtype)
    assert mod.winograd_weights(w, u, m, 2)
    w[where] = value
    assert not mod.winograd_weights(w, u, m, 2)


# ------------------------------------------------------------ the weights-stationary order
@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_weights_stationary_order_gives_the_same_bits(mod, dtype, m, geometry):
    x, w = _inputs(geometry, dtype)
    want, ok = _run(mod, x, w, m, geometry[5])
    for threads in (1, 2, 3):
        got, ok_ws = _run(mod, x, w, m, geometry[5], threads, ws=True)
        assert ok and ok_ws
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mod", EXTENSIONS, ids=EXT_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("where", ["x", "w", "w tail"])
def test_weights_stationary_order_reports_non_finite(mod, dtype, m, where):
    x, w = _inputs((2, 9, 9, 3, 37, None), dtype)
    if where == "x":
        x[1, 4, 4, 2] = np.nan
    elif where == "w":
        w[0, 2, 1, 0] = np.inf
    else:
        w[2, 2, 2, 36] = -np.inf  # in the last, partial channel tile
    _, ok = _run(mod, x, w, m, (1, 1, 1, 1), ws=True)
    assert not ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_takes_either_order(dtype, monkeypatch):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 9, 9, 8)).astype(dtype)
    w = rng.standard_normal((3, 3, 8, 40)).astype(dtype)
    got = {}
    for k in (0, 10 ** 6):  # never, always
        monkeypatch.setattr(winograd, "WS_TILES_PER_CHANNEL", k)
        got[k] = conv.conv2d(x, w, method="winograd", padding="SAME")
    np.testing.assert_array_equal(got[0], got[10 ** 6])
    kit.assert_conv_normwise(got[0], kit.reference_conv2d(x, w, padding="SAME"))
    x[0, 3, 3, 3] = np.inf  # both orders fall back to direct
    np.testing.assert_array_equal(conv.conv2d(x, w, method="winograd", padding="SAME"),
                                  conv.conv2d(x, w, method="direct", padding="SAME"))
