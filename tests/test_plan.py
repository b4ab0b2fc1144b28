"""Plans (conv.plan), out=, the prepare hook, measured choices and wisdom."""
from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import conv
import conv.testing as kit
from conv import _introspect, _plan, _wisdom

from conftest import normal_inputs
from test_frontend import BAD, W, X

FAST = [m for m in conv.list_methods() if m not in ("python", "tensorflow")]


@pytest.fixture(autouse=True)
def no_wisdom():
    """Each test starts and ends with no wisdom in memory."""
    conv.forget_wisdom()
    yield
    conv.forget_wisdom()


# ======================================================= same as conv2d, bit for bit
GEOMETRY = list(itertools.product(
    ["VALID", "SAME", ((1, 2), (0, 1))],  # padding
    [1, 2, (2, 1)],                       # stride
    [1, 2],                               # dilation
))


@pytest.mark.parametrize("method", FAST + ["auto"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding, stride, dilation", GEOMETRY, ids=str)
def test_a_plan_gives_conv2d_bit_for_bit(method, dtype, padding, stride, dilation):
    x, w = normal_inputs((3, 9, 8, 5), (3, 3, 5, 17), dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    for batch in (None, 3):
        p = conv.plan((batch, 9, 8, 5), w, method=method, **kw)
        got = p(x)
        want = conv.conv2d(x, w, method=p.method, **kw)
        assert got.dtype == want.dtype == dtype and got.shape == p.out_shape(3)
        np.testing.assert_array_equal(got, want)
        # and within the method's accuracy of the exact result
        kit.assert_conv_accurate(got, kit.reference_conv2d(x, w, **kw),
                                 kit.tolerance_scale(x, w, **kw), dtype,
                                 conv.get_method(p.method).accuracy)


def test_the_pure_python_method_and_a_1x1_kernel_plan_too():
    x, w = normal_inputs((2, 5, 6, 3), (1, 1, 3, 4))
    p = conv.plan((None, 5, 6, 3), w, method="python", stride=2)
    np.testing.assert_array_equal(p(x), conv.conv2d(x, w, method="python", stride=2))


@pytest.mark.parametrize("method", FAST)
@pytest.mark.parametrize("padding", ["SAME", ((2, 0), (1, 1))], ids=str)
def test_nonfinite_weights_plan_like_conv2d(method, padding):
    """Inf/NaN weights with padding: methods conv pads for run band by band (each band its
    own prepared kernel), and the NaN/Inf pattern is conv2d's."""
    x, w = normal_inputs((2, 6, 7, 3), (3, 3, 3, 4))
    w[0, 1, 2, 1] = np.inf
    w[2, 2, 0, 3] = np.nan
    for dilation in (1, 2):
        p = conv.plan(x.shape, w, method=method, padding=padding, dilation=dilation)
        np.testing.assert_array_equal(
            p(x), conv.conv2d(x, w, method=method, padding=padding, dilation=dilation))


def test_winograd_plans_keep_their_transformed_weights_and_fall_back_exactly():
    """Tiles-outer order (many tiles): the transform is kept between calls; an Inf in x
    sends that call to direct's packed weights, exactly as conv2d does."""
    x, w = normal_inputs((8, 16, 16, 24), (3, 3, 24, 20), np.float32)
    p = conv.plan((None, 16, 16, 24), w, method="winograd", padding="SAME")
    first = p(x)
    np.testing.assert_array_equal(first, conv.conv2d(x, w, method="winograd", padding="SAME"))
    np.testing.assert_array_equal(p(x), first)
    bad = x.copy()
    bad[1, 3, 4, 5] = np.inf
    np.testing.assert_array_equal(p(bad), conv.conv2d(bad, w, method="winograd",
                                                      padding="SAME"))
    np.testing.assert_array_equal(p(bad), conv.conv2d(bad, w, method="direct", padding="SAME"))


def test_float16_integer_and_dtype_argument():
    x, w = normal_inputs((1, 6, 6, 2), (3, 3, 2, 3))
    x16, w16 = x.astype(np.float16), w.astype(np.float16)
    p = conv.plan(x16.shape, w16)
    assert p.dtype == np.float16 and p.compute_dtype == np.float32
    np.testing.assert_array_equal(p(x16), conv.conv2d(x16, w16))
    out = np.empty(p.out_shape(), np.float16)
    assert p(x16, out=out) is out
    np.testing.assert_array_equal(out, conv.conv2d(x16, w16))
    xi = np.arange(72).reshape(1, 6, 6, 2)
    pi = conv.plan(xi.shape, w.astype(np.float32), dtype=xi.dtype)
    assert pi.dtype == np.float64
    np.testing.assert_array_equal(pi(xi), conv.conv2d(xi, w.astype(np.float32)))
    with pytest.raises(TypeError, match=r"x has dtype float64.*dtype='float64'"):
        conv.plan(x.shape, w.astype(np.float32))(x)


def test_empty_batches_and_empty_outputs():
    w = np.ones((3, 3, 2, 4))
    p = conv.plan((None, 5, 5, 2), w)
    assert p(np.ones((0, 5, 5, 2))).shape == (0, 3, 3, 4)
    p0 = conv.plan((None, 5, 5, 2), np.ones((3, 3, 2, 0)))
    assert p0(np.ones((2, 5, 5, 2))).shape == (2, 3, 3, 0)
    pz = conv.plan((None, 0, 0, 2), w, padding=2)
    np.testing.assert_array_equal(pz(np.ones((1, 0, 0, 2))), np.zeros((1, 2, 2, 4)))  # all padding


# ============================================================== the plan's own copy
def test_changing_w_after_planning_changes_nothing():
    x, w = normal_inputs((2, 6, 6, 3), (3, 3, 3, 5))
    p = conv.plan(x.shape, w)
    before = p(x)
    w *= -7
    np.testing.assert_array_equal(p(x), before)


def test_inputs_are_never_modified():
    x, w = normal_inputs((2, 6, 6, 3), (3, 3, 3, 5))
    xc, wc = x.copy(), w.copy()
    p = conv.plan(x.shape, w, padding="SAME")
    p(x)
    p(x, out=np.empty(p.out_shape()))
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(w, wc)


def test_read_only_and_stridednormal_inputs():
    x, w = normal_inputs((2, 6, 6, 3), (3, 3, 3, 5))
    w.flags.writeable = False
    p = conv.plan((None, 6, 6, 3), w)
    xf = np.asfortranarray(x)
    xf.flags.writeable = False
    np.testing.assert_array_equal(p(xf), conv.conv2d(x, w))
    np.testing.assert_array_equal(p(x[:, ::1]), conv.conv2d(x, w))


# ========================================================================== out=
def _out_cases(shape, dtype):
    f_order = np.empty(shape, dtype, order="F")
    readonly = np.empty(shape, dtype)
    readonly.flags.writeable = False
    return [
        ("list", TypeError, "out must be None or a numpy.ndarray", [[0.0]]),
        ("shape", ValueError, "out has shape", np.empty(shape[:3] + (shape[3] + 1,), dtype)),
        ("dtype", ValueError, "out has dtype", np.empty(shape, np.float32 if dtype == np.float64
                                                        else np.float64)),
        ("layout", ValueError, "C-contiguous", f_order),
        ("readonly", ValueError, "writeable", readonly),
    ]


@pytest.mark.parametrize("how", ["conv2d", "plan"])
def test_out_receives_the_result(how):
    x, w = normal_inputs((2, 7, 7, 3), (3, 3, 3, 4))
    want = conv.conv2d(x, w, padding="SAME", stride=2)
    out = np.full(want.shape, np.nan)
    if how == "conv2d":
        got = conv.conv2d(x, w, padding="SAME", stride=2, out=out)
    else:
        got = conv.plan(x.shape, w, padding="SAME", stride=2)(x, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("how", ["conv2d", "plan"])
@pytest.mark.parametrize("case", _out_cases((2, 3, 3, 4), np.float64), ids=lambda c: c[0])
def test_bad_out(how, case):
    _, exc, match, out = case
    x, w = normal_inputs((2, 5, 5, 3), (3, 3, 3, 4))
    with pytest.raises(exc, match=match):
        if how == "conv2d":
            conv.conv2d(x, w, out=out)
        else:
            conv.plan(x.shape, w)(x, out=out)


@pytest.mark.parametrize("how", ["conv2d", "plan"])
def test_out_overlapping_an_input_is_refused(how):
    x = np.random.default_rng(1).standard_normal((1, 4, 4, 3))
    w = np.eye(3).reshape(1, 1, 3, 3)  # the output has x's shape
    big = np.zeros(x.size + 2 * 9)
    with pytest.raises(ValueError, match="overlaps an input"):
        if how == "conv2d":
            conv.conv2d(x, w, out=x)
        else:
            conv.plan(x.shape, w)(x, out=x)
    if how == "conv2d":  # w is the caller's array: refused too
        wv, ov = big[:9].reshape(1, 1, 3, 3), big[:48].reshape(1, 4, 4, 3)
        wv[...] = w
        with pytest.raises(ValueError, match="overlaps an input"):
            conv.conv2d(x, wv, out=ov)


def test_a_run_that_ignores_out_is_copied_into_it(registered):
    def prepare(template):
        return lambda p, out: np.full(p.out_shape, 2.0, dtype=p.x.dtype)

    registered(conv.Method("ignores_out", lambda p: np.full(p.out_shape, 2.0, p.x.dtype),
                           prepare=prepare))
    p = conv.plan((1, 3, 3, 1), np.ones((1, 1, 1, 2)), method="ignores_out")
    out = np.zeros((1, 3, 3, 2))
    assert p(np.ones((1, 3, 3, 1)), out=out) is out
    assert (out == 2).all()


def test_kernel_writes_out_gets_the_callers_buffer(registered):
    """kernel_writes_out: conv2d calls kernel(problem, out) with the caller's out= buffer
    (None without one, or behind an emulation such as the stride split), and a method
    without it is called with the problem alone, its result copied into the buffer."""
    seen = []

    def fills(p, out=None):
        seen.append(out)
        y = np.empty(p.out_shape, p.x.dtype) if out is None else out
        y[...] = 3.0
        return y

    registered(conv.Method("fills_out", fills, kernel_writes_out=True))
    registered(conv.Method("fills_dense", fills, kernel_writes_out=True, supports_stride=False))
    registered(conv.Method("new_array", lambda p: fills(p)))
    x, w = np.ones((1, 4, 4, 1)), np.ones((1, 1, 1, 2))
    for name, stride, given in (("fills_out", 1, True), ("fills_dense", 2, False),
                                ("new_array", 1, False)):
        seen.clear()
        buf = np.zeros((1, 4 // stride, 4 // stride, 2))
        assert conv.conv2d(x, w, method=name, stride=stride, out=buf) is buf
        assert (buf == 3).all() and seen == [buf if given else None], name
        seen.clear()
        assert (conv.conv2d(x, w, method=name, stride=stride) == 3).all()
        assert seen == [None], name


@pytest.mark.parametrize("method", ["direct", "matmul", "winograd", "depthwise"])
def test_builtin_kernels_fill_conv2ds_out_in_place(method, monkeypatch):
    """The built-in kernels declare kernel_writes_out: given conv2d's out= buffer they
    compute into it and return it (nothing to copy), conv2d's result bit for bit."""
    assert conv.get_method(method).kernel_writes_out
    x, w = normal_inputs((2, 9, 9, 6), (3, 3, 6, 5) if method != "depthwise" else (3, 3, 1, 6))
    kw = {"padding": "SAME", "groups": 6} if method == "depthwise" else {"padding": "SAME"}
    want = conv.conv2d(x, w, method=method, **kw)
    in_place = []
    call = conv._plan._Kernel.__call__

    def spy(self, problem, out):  # what the kernel itself returns for this out
        in_place.append(out is not None and self.method.kernel(problem, out) is out)
        return call(self, problem, out)

    monkeypatch.setattr(conv._plan._Kernel, "__call__", spy)
    buf = np.full(want.shape, np.nan)
    assert conv.conv2d(x, w, method=method, out=buf, **kw) is buf
    np.testing.assert_array_equal(buf, want)
    assert in_place == [True]


# ======================================================================= bad input
@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_plans_refuse_what_conv2d_refuses(case):
    """Argument errors when planning, x's errors when called: the same types and words."""
    _, exc, match, x, w, kwargs = case
    shape = np.shape(x) if np.ndim(x) == 4 else X.shape
    with pytest.raises(exc, match=match):
        conv.plan(shape, w, **kwargs)(x)


@pytest.mark.parametrize("x_shape, exc, match", [
    ((1, 5, 5), ValueError, "x_shape must be 4-D"),
    (5, TypeError, "x_shape must be a tuple"),
    ((1, 5, -5, 2), ValueError, "ints >= 0"),
    ((1, 5, 5.0, 2), ValueError, "ints >= 0"),
    ((1, None, 5, 2), ValueError, "its batch entry may be None"),
    ((True, 5, 5, 2), ValueError, "ints >= 0"),
])
def test_bad_x_shape(x_shape, exc, match):
    with pytest.raises(exc, match=match):
        conv.plan(x_shape, W)


def test_bad_plan_arguments():
    with pytest.raises(ValueError, match="effort must be one of"):
        conv.plan(X.shape, W, effort="exhaustive")
    with pytest.raises(TypeError, match="method must be a str"):
        conv.plan(X.shape, W, method=None)
    with pytest.raises(ValueError, match="unknown conv2d method 'nope'"):
        conv.plan(X.shape, W, method="nope")
    with pytest.raises(TypeError, match="dtype must be a NumPy dtype"):
        conv.plan(X.shape, W, dtype="not a dtype")


def test_called_with_the_wrong_x():
    p = conv.plan((2, 5, 5, 2), W)
    with pytest.raises(ValueError, match=r"this plan was made for x of shape \(2, 5, 5, 2\)"):
        p(np.ones((3, 5, 5, 2)))
    with pytest.raises(ValueError, match=r"x has shape \(2, 6, 5, 2\)"):
        p(np.ones((2, 6, 5, 2)))
    with pytest.raises(ValueError, match=r"\bx\b must be 4-D"):
        p(np.ones((5, 5, 2)))
    q = conv.plan((None, 5, 5, 2), W)
    assert q(np.ones((7, 5, 5, 2))).shape == q.out_shape(7) == (7, 3, 3, 3)
    with pytest.raises(ValueError, match="pass n"):
        q.out_shape()
    with pytest.raises(ValueError, match="n must be an int"):
        q.out_shape(-1)
    with pytest.raises(ValueError, match="takes a batch of 2"):
        p.out_shape(3)


def test_repr_and_facts():
    p = conv.plan((None, 5, 5, 2), W, padding="SAME", stride=2, threads=1)
    text = repr(p)
    for part in ("conv.Plan", repr(p.method), "N=any", "stride (2, 2)",
                 "padding ((1, 1), (1, 1))", "1 thread;", "auto's rule", "planned in"):
        assert part in text
    assert (p.x_shape, p.w_shape, p.stride, p.dilation, p.threads) == (
        (None, 5, 5, 2), (3, 3, 2, 3), (2, 2), (1, 1), 1)
    assert p.effort == "estimate" and p.times == {} and p.planning_seconds > 0


# ==================================================== threads, pickling, processes
def test_one_plan_called_from_several_threads_at_once():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 3, 24, 20)).astype(np.float32)
    xs = [rng.standard_normal((8, 16, 16, 24)).astype(np.float32) for _ in range(6)]
    for method in ("winograd", "direct"):
        p = conv.plan((None, 16, 16, 24), w, method=method, padding="SAME")
        want = [conv.conv2d(x, w, method=method, padding="SAME") for x in xs]
        got, errors = {}, []
        start = threading.Barrier(len(xs))

        def work(i):
            try:
                start.wait()
                for _ in range(5):
                    got[i] = p(xs[i])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for i in range(len(xs)):
            np.testing.assert_array_equal(got[i], want[i])


@pytest.mark.parametrize("method", ["auto", "winograd", "numpy"])
def test_plans_pickle_and_repack(method):
    x, w = normal_inputs((4, 10, 10, 16), (3, 3, 16, 16), np.float32)
    p = conv.plan((None, 10, 10, 16), w, method=method, padding="SAME", threads=1)
    q = pickle.loads(pickle.dumps(p))
    assert (q.method, q.threads, q.x_shape, q.padding) == (p.method, 1, p.x_shape, p.padding)
    np.testing.assert_array_equal(q(x), p(x))


def test_conv2d_internal_plans_are_not_exposed():
    """conv2d's own one-call path keeps no Plan; a Plan made by conv.plan pickles."""
    assert isinstance(conv.plan(X.shape, W), conv.Plan)


def _call_in_worker(args):
    p, x = args
    return p(x)


def test_a_plan_travels_to_another_process():
    x, w = normal_inputs((2, 8, 8, 4), (3, 3, 4, 6), np.float32)
    p = conv.plan((None, 8, 8, 4), w, padding="SAME")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.map(_call_in_worker, [(p, x)])[0]
    np.testing.assert_array_equal(got, p(x))


# ============================================================ the prepare hook
def _counting_method(name, **caps):
    calls = {"prepare": 0, "run": 0, "kernel": 0}

    def kernel(p):
        calls["kernel"] += 1
        return kit.reference_conv2d(p.x, p.w, stride=p.stride, dilation=p.dilation,
                                    padding=p.padding).astype(p.x.dtype)

    def prepare(template):
        calls["prepare"] += 1
        assert template.x.shape[0] == 0 and template.out_shape[0] == 0
        assert not template.x.flags.writeable
        w = template.w.copy()

        def run(p, out):
            calls["run"] += 1
            assert np.array_equal(p.w, w, equal_nan=True)
            res = kernel(p)
            calls["kernel"] -= 1
            if out is None:
                return res
            out[...] = res
            return out
        return run

    return conv.Method(name, kernel, prepare=prepare, **caps), calls


def test_prepare_runs_once_per_plan_and_run_once_per_kernel_call(registered):
    method, calls = _counting_method("counted", supports_dilation=False, pads_itself=True)
    registered(method)
    x, w = normal_inputs((2, 9, 9, 2), (3, 3, 2, 3))
    p = conv.plan((None, 9, 9, 2), w, method="counted", dilation=2, padding="SAME")
    assert calls == {"prepare": 1, "run": 0, "kernel": 0}
    for _ in range(3):
        got = p(x)
    assert calls["prepare"] == 1 and calls["run"] == 3 * 4  # four dilation phases a call
    np.testing.assert_allclose(got, kit.reference_conv2d(x, w, dilation=2, padding="SAME"),
                               rtol=1e-12, atol=1e-12)
    conv.conv2d(x, w, method="counted", dilation=2, padding="SAME")
    assert calls["prepare"] == 1 and calls["kernel"] == 4  # conv2d calls the kernel


@pytest.mark.parametrize("bad, match", [
    (lambda template: 42, "prepare hook returned int"),
    (lambda template: (lambda p, out: np.zeros((1, 1, 1, 1))), "broke the kernel contract"),
    (lambda template: (lambda p, out: p.x), "shares memory"),
])
def test_a_prepare_hook_that_breaks_the_contract(registered, bad, match):
    registered(conv.Method("bad_prepare", lambda p: np.zeros(p.out_shape, p.x.dtype),
                           prepare=bad))
    with pytest.raises(conv.MethodError, match=match):
        conv.plan((1, 3, 3, 2), np.eye(2).reshape(1, 1, 2, 2), method="bad_prepare")(
            np.ones((1, 3, 3, 2)))


def test_prepare_must_be_callable():
    with pytest.raises(TypeError, match="Method.prepare must be None or callable"):
        conv.Method("m", lambda p: None, prepare=3)


def test_check_method_covers_the_prepare_hook(registered):
    """The conformance kit runs a method's plan next to its kernel."""
    method, calls = _counting_method("kit_counted")
    registered(method)
    kit.check_method("kit_counted", dtypes=("float64",), cases=kit.CASES[:3])
    assert calls["prepare"] > 0 and calls["run"] > 0


# ================================================================ effort, wisdom
PROBLEM = dict(x_shape=(2, 12, 12, 16), w_shape=(3, 3, 16, 16), padding="SAME")


def _measured(effort="measure", **kw):
    x, w = normal_inputs(PROBLEM["x_shape"], PROBLEM["w_shape"], np.float32)
    p = conv.plan(PROBLEM["x_shape"], w, padding="SAME", effort=effort, **kw)
    return p, x, w


def test_measure_times_every_installed_method_and_keeps_the_fastest():
    p, x, w = _measured()
    seconds = {k: v for k, v in p.times.items() if isinstance(v, float)}
    assert "python" not in p.times
    assert set(FAST) <= set(p.times)
    fastest = min(seconds, key=seconds.get)
    # the fastest, or auto's rule's choice when within TIE of it
    assert p.method == fastest or seconds[p.method] <= (1 + _plan.TIE) * seconds[fastest]
    assert p.reason == "fastest measured (effort='measure')" and p.planning_seconds > 0
    np.testing.assert_array_equal(p(x), conv.conv2d(x, w, padding="SAME", method=p.method))
    # and the choice is now wisdom: auto uses it, a new plan takes it without measuring
    assert _introspect.auto_choice(x, w, None, padding="SAME") == p.method
    q = conv.plan(PROBLEM["x_shape"], w, padding="SAME", effort="measure")
    assert q.reason == "from wisdom" and q.method == p.method


def test_a_near_tie_goes_to_the_rules_choice(registered, monkeypatch):
    """Two methods of the same speed: noise decides which measures faster, so a time
    within TIE of the fastest keeps auto's rule's choice (direct, on this problem)."""
    direct = conv.get_method("direct")
    registered(conv.Method("twin", direct.kernel, parallel=True, pads_itself=True))
    x, w = normal_inputs(PROBLEM["x_shape"], PROBLEM["w_shape"], np.float32)
    assert _introspect.auto_choice(x, w, None, padding="SAME") == "direct"
    monkeypatch.setattr(_plan, "TIE", 100.0)  # everything ties
    p, _, _ = _measured()
    assert p.method == "direct" and "twin" in p.times
    conv.forget_wisdom()
    monkeypatch.setattr(_plan, "TIE", 0.0)  # no ties: the fastest, whichever it is
    p, _, _ = _measured()
    seconds = {k: v for k, v in p.times.items() if isinstance(v, float)}
    assert p.method == min(seconds, key=seconds.get)


def test_patient_also_measures_thread_counts():
    p, x, w = _measured("patient", threads=2)
    if _introspect.available_cpus() >= 2:
        assert "direct/1t" in p.times and "direct/2t" in p.times
    label = f"{p.method}/{p.threads}t"
    seconds = {k: v for k, v in p.times.items() if isinstance(v, float)}
    fastest = min(seconds, key=seconds.get)
    assert label == fastest or seconds[label] <= (1 + _plan.TIE) * seconds[fastest]


def test_a_method_given_with_patient_effort_measures_its_threads():
    x, w = normal_inputs((1, 12, 12, 8), (3, 3, 8, 8))
    p = conv.plan(x.shape, w, method="direct", effort="patient", threads=2)
    assert p.method == "direct"
    if _introspect.available_cpus() >= 2:
        assert set(p.times) == {"direct/1t", "direct/2t"}


def test_measure_leaves_out_failing_and_inaccurate_methods(registered):
    def boom(p):
        raise RuntimeError("boom")

    registered(conv.Method("fails", boom))
    registered(conv.Method("wrong", lambda p: np.zeros(p.out_shape, p.x.dtype)))
    p, _, _ = _measured()
    assert p.times["fails"].startswith("failed: RuntimeError: boom")
    assert p.times["wrong"].startswith("left out: outside the accuracy contract")
    assert p.method not in ("fails", "wrong")


def _export(tmp_path):
    _measured()
    path = tmp_path / "wisdom.json"
    assert conv.export_wisdom(path) == 1
    return path


def test_wisdom_round_trip_and_what_auto_does_with_it(tmp_path):
    path = _export(tmp_path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "conv-wisdom" and doc["version"] == 1
    entry = doc["entries"][0]
    assert entry["problem"]["x_shape"] == list(PROBLEM["x_shape"])
    assert entry["environment"]["methods"]["direct"].startswith("conv2d-cpu")
    conv.forget_wisdom()
    x, w = normal_inputs(PROBLEM["x_shape"], PROBLEM["w_shape"], np.float32)
    rule = _introspect.auto_choice(x, w, None, padding="SAME")
    # a hand-edited entry: auto follows it ("numpy" is never auto's rule here)
    entry["method"] = "numpy"
    path.write_text(json.dumps(doc))
    assert conv.import_wisdom(path) == {"imported": 1, "ignored": 0}
    assert _introspect.auto_choice(x, w, None, padding="SAME") == "numpy"
    np.testing.assert_array_equal(conv.conv2d(x, w, padding="SAME"),
                                  conv.conv2d(x, w, padding="SAME", method="numpy"))
    assert conv.plan(x.shape, w, padding="SAME").reason == "from wisdom"
    # the batch size is part of the key: an entry for any batch size (None) serves plans
    # made for any batch size, not a call with a batch of 2
    conv.forget_wisdom()
    entry["problem"]["x_shape"][0] = None
    path.write_text(json.dumps(doc))
    conv.import_wisdom(path)
    assert _introspect.auto_choice(x, w, None, padding="SAME") == rule
    assert conv.plan((None,) + x.shape[1:], w, padding="SAME").method == "numpy"
    conv.forget_wisdom()
    assert _introspect.auto_choice(x, w, None, padding="SAME") == rule


@pytest.mark.parametrize("field, value", [
    ("cpu", "Some Other CPU 9000"), ("conv", "0.0.1"), ("simd", []),
    ("methods", {"direct": "conv2d-cpu 0.1.0"}), ("kernels", "conv.methods._kernels (sse2)"),
])
def test_wisdom_from_another_environment_is_ignored(tmp_path, field, value):
    path = _export(tmp_path)
    doc = json.loads(path.read_text())
    doc["entries"][0]["environment"][field] = value
    path.write_text(json.dumps(doc))
    conv.forget_wisdom()
    assert conv.import_wisdom(path) == {"imported": 0, "ignored": 1}
    assert not _wisdom.ENTRIES


def test_wisdom_stops_matching_when_the_set_of_methods_changes(registered):
    p, x, w = _measured()
    assert _introspect.auto_choice(x, w, None, padding="SAME") == p.method
    registered(conv.Method("newcomer", lambda q: np.zeros(q.out_shape, q.x.dtype)))
    assert conv.plan(x.shape, w, padding="SAME").reason == "auto's rule"
    conv.unregister_method("newcomer")
    assert conv.plan(x.shape, w, padding="SAME").reason == "from wisdom"


def test_a_repeated_conv2d_call_follows_what_changed_since(registered, monkeypatch):
    """conv2d remembers a recent call's checked arguments and choice (the same arguments
    again skip that work), but not past a change: a method registered under the name
    called, a wisdom entry recorded or forgotten, the thread count the environment sets;
    and arguments that compare equal but are refused apart (1 and True) stay apart."""
    from conv._frontend import as_threads, available_cpus, specify
    x, w = normal_inputs(PROBLEM["x_shape"], PROBLEM["w_shape"], np.float32)
    seen = []

    def tagged(tag):
        def kernel(p):
            seen.append(p.threads)
            return np.full(p.out_shape, float(tag), p.x.dtype)
        return kernel

    registered(conv.Method("memo_spy", tagged(1), parallel=True))
    for _ in range(2):
        assert (conv.conv2d(x, w, padding="SAME", method="memo_spy") == 1).all()
    assert seen == [as_threads(None)] * 2
    registered(conv.Method("memo_spy", tagged(2), parallel=True), replace=True)
    assert (conv.conv2d(x, w, padding="SAME", method="memo_spy") == 2).all()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    conv.conv2d(x, w, padding="SAME", method="memo_spy")
    monkeypatch.delenv("OMP_NUM_THREADS")
    conv.conv2d(x, w, padding="SAME", method="memo_spy")
    assert seen[-2:] == [1, available_cpus()]
    # wisdom: auto follows an entry recorded after its last call, and forgets it
    rule = conv.conv2d(x, w, padding="SAME")
    assert not (rule == 2).all()
    spec = specify(x.shape, x.dtype, w, padding="SAME")
    _wisdom.record(spec, x.shape[0], "memo_spy", spec.threads, "measure", {})
    assert (conv.conv2d(x, w, padding="SAME") == 2).all()
    conv.forget_wisdom()
    np.testing.assert_array_equal(conv.conv2d(x, w, padding="SAME"), rule)
    # equal but not the same: stride=True is refused however often stride=1 was taken
    conv.conv2d(x, w, padding="SAME", stride=1)
    with pytest.raises(TypeError, match="stride"):
        conv.conv2d(x, w, padding="SAME", stride=True)


CORRUPT = [
    ("truncated", lambda text: text[: len(text) // 2], "not JSON"),
    ("not-an-object", lambda text: "[1, 2]", "format"),
    ("other-format", lambda text: text.replace('"conv-wisdom"', '"fftw-wisdom"'), "format"),
    ("other-version", lambda text: text.replace('"version": 1', '"version": 99'), "version"),
    ("bad-threads", lambda text: text.replace('"threads": 2', '"threads": "two"'), "threads"),
    ("bad-shape", lambda text: text.replace('"w_shape": [3', '"w_shape": [-3'), "w_shape"),
]


@pytest.mark.parametrize("name, spoil, match", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_a_corrupt_wisdom_file_is_refused_and_changes_nothing(tmp_path, name, spoil, match):
    good = _export(tmp_path)
    text = good.read_text()
    assert spoil(text) != text
    before = dict(_wisdom.ENTRIES)
    bad = tmp_path / "bad.json"
    bad.write_text(spoil(text))
    with pytest.raises(ValueError, match=f"not a conv wisdom file.*{match}"):
        conv.import_wisdom(bad)
    assert _wisdom.ENTRIES == before


def test_missing_wisdom_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        conv.import_wisdom(tmp_path / "nothing.json")


def _python(code, cwd, **env):
    """A fresh interpreter, away from the source tree (which would shadow the installed,
    compiled conv)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=300, cwd=cwd)


def test_conv_wisdom_is_imported_with_conv(tmp_path):
    path = _export(tmp_path)
    code = "import conv, conv._wisdom as w; print(len(w.ENTRIES))"
    run = _python(code, tmp_path, CONV_WISDOM=str(path))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1"]


@pytest.mark.parametrize("content", [None, "{not json"])
def test_a_bad_conv_wisdom_is_a_warning_not_a_failed_import(tmp_path, content):
    path = tmp_path / "w.json"
    if content is not None:
        path.write_text(content)
    code = ("import warnings; warnings.simplefilter('always')\n"
            "import conv, conv._wisdom as w; print(len(w.ENTRIES)); "
            "print(conv.conv2d([[[[1.0]]]], [[[[2.0]]]]).item())")
    run = _python(code, tmp_path, CONV_WISDOM=str(path))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "2.0"]
    assert "WisdomWarning" in run.stderr and "CONV_WISDOM" in run.stderr


def test_forget_wisdom():
    _measured()
    assert _wisdom.ENTRIES
    conv.forget_wisdom()
    assert not _wisdom.ENTRIES


def test_wisdom_warning_is_public():
    assert issubclass(conv.WisdomWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _wisdom.load_from_environment()  # unset: nothing happens


def test_spec_with_w_is_replace():
    """Spec.with_w (conv2d's remembered calls) is Spec.replace(w=...): every field kept."""
    from conv._frontend import specify
    w = np.ones((3, 3, 2, 4), np.float32)
    spec = specify((None, 9, 8, 4), np.float32, w, stride=2, padding="SAME", dilation=1,
                   threads=1, groups=2)
    w2 = np.zeros_like(w)
    a, b = spec.with_w(w2), spec.replace(w=w2)
    assert a.w is w2 and b.w is w2
    assert all(getattr(a, n) == getattr(b, n) for n in type(spec).__slots__ if n != "w")
