"""conv2d and depthwise_conv2d on Dask arrays: lazy, exact over every chunking, errors at
call time, a real dask.distributed cluster."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import conv
import conv.testing as kit
from conftest import normal_inputs
from test_frontend import BAD, TOO_LARGE

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

METHODS = [m for m in conv.list_methods() if m not in ("tensorflow", "python")]
GEOMETRY = [
    dict(padding="SAME"),
    dict(padding="VALID", stride=2),
    dict(padding="SAME", stride=(2, 3), dilation=(2, 1)),
    dict(padding=((3, 1), (0, 4)), dilation=2, stride=3),
    dict(padding="VALID", stride=4),
]


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def lazy(x, chunks):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", conv.ChunkWarning)
        return da.from_array(x, chunks=chunks)


def run(x, w, chunks, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", conv.ChunkWarning)
        y = conv.conv2d(lazy(x, chunks), w, **kwargs)
    assert isinstance(y, da.Array)
    return y, y.compute()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", [(1, -1, -1, -1), (2, 5, 7, -1), (1, 3, 4, -1),
                                    (3, 1, 2, -1), (1, 6, 1, 2), (1, 8, 9, -1)], ids=str)
@pytest.mark.parametrize("kwargs", GEOMETRY, ids=str)
def test_direct_is_the_in_memory_result_bit_for_bit(kwargs, chunks, dtype):
    """Batch and spatial chunkings, chunks smaller than the halo (rechunked), channels
    split over chunks (rechunked): the in-memory call's bits."""
    x, w = normal_inputs((3, 17, 19, 4), (3, 2, 4, 5), dtype)
    want = conv.conv2d(x, w, method="direct", **kwargs)
    y, got = run(x, w, chunks, method="direct", **kwargs)
    assert y.shape == want.shape and y.dtype == want.dtype
    assert sum(y.chunks[1]) == want.shape[1] and sum(y.chunks[2]) == want.shape[2]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kwargs", [dict(padding="SAME", stride=2, dilation=2),
                                    dict(padding="VALID", dilation=(1, 3))], ids=str)
def test_every_cut_through_the_kernels_reach(kwargs):
    """Two chunks along H (and along W), cut at every offset: bit for bit."""
    x, w = normal_inputs((1, 13, 11, 3), (3, 3, 3, 2), np.float32)
    want = conv.conv2d(x, w, method="direct", **kwargs)
    for cut in range(1, 13):
        got = run(x, w, (1, (cut, 13 - cut), (min(cut, 10), 11 - min(cut, 10)), -1),
                  method="direct", **kwargs)[1]
        np.testing.assert_array_equal(got, want, err_msg=f"cut at {cut}")


@pytest.mark.parametrize("method", METHODS + ["auto"])
@pytest.mark.parametrize("kwargs", GEOMETRY[:3], ids=str)
def test_every_method_within_its_contract(method, kwargs):
    x, w = normal_inputs((2, 14, 15, 6), (3, 3, 6, 4), np.float32)
    y, got = run(x, w, (1, 5, 6, -1), method=method, **kwargs)
    exact = kit.reference_conv2d(x, w, **kwargs)
    kit.assert_conv_accurate(got, exact, kit.tolerance_scale(x, w, **kwargs), np.float32,
                             kit.method_accuracy(method, x, w, **kwargs))
    # chunked along the batch alone, each image is the in-memory call's (same method)
    chosen = method if method != "auto" else None
    whole = conv.conv2d(x, w, method=chosen or "auto", **kwargs)
    if chosen in ("direct", "depthwise", "winograd", "matmul"):
        np.testing.assert_array_equal(run(x, w, (1, -1, -1, -1), method=method, **kwargs)[1],
                                      whole)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_groups_depthwise_and_layouts(layout):
    x, w = normal_inputs((2, 12, 10, 6), (3, 3, 2, 9), np.float64)
    dw = normal_inputs((1, 1, 1, 1), (3, 3, 6, 2), np.float64)[1]
    xin = x if layout == "NHWC" else np.ascontiguousarray(np.moveaxis(x, 3, 1))
    chunks = (1, 5, 4, -1) if layout == "NHWC" else (1, -1, 5, 4)
    got = run(xin, w, chunks, padding="SAME", groups=3, data_format=layout,
              method="direct")[1]
    np.testing.assert_array_equal(got, conv.conv2d(xin, w, padding="SAME", groups=3,
                                                   data_format=layout, method="direct"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", conv.ChunkWarning)
        y = conv.depthwise_conv2d(lazy(xin, chunks), dw, padding="SAME", stride=2,
                                  data_format=layout)
    want = conv.depthwise_conv2d(xin, dw, padding="SAME", stride=2, data_format=layout)
    np.testing.assert_array_equal(y.compute(), want)


def test_input_dtypes_follow_conv2d():
    x, w = normal_inputs((2, 8, 8, 3), (3, 3, 3, 2), np.float32)
    for xd, wd in [(np.float16, np.float16), (np.int32, np.float64), (np.float32, np.float64)]:
        xi, wi = (x * 4).astype(xd), w.astype(wd)
        y, got = run(xi, wi, (1, 3, 5, -1), padding="SAME", method="direct")
        want = conv.conv2d(xi, wi, padding="SAME", method="direct")
        assert y.dtype == want.dtype == got.dtype
        np.testing.assert_array_equal(got, want)


def test_empty_results_and_no_channels():
    x, w = normal_inputs((0, 8, 8, 3), (3, 3, 3, 2), np.float32)
    assert run(x, w, (1, 4, 4, -1))[1].shape == (0, 6, 6, 2)
    x, w = normal_inputs((2, 8, 8, 3), (3, 3, 3, 0), np.float32)
    assert run(x, w, (1, 4, 4, -1))[1].shape == (2, 6, 6, 0)
    x, w = normal_inputs((2, 8, 8, 0), (3, 3, 0, 2), np.float32)
    got = run(x, w, (1, 4, 4, -1), padding="SAME")[1]
    np.testing.assert_array_equal(got, np.zeros((2, 8, 8, 2), np.float32))


def test_nothing_runs_at_call_time():
    calls = []

    def make():
        calls.append(1)
        return np.ones((2, 8, 8, 3), np.float32)

    x = da.from_delayed(dask.delayed(make)(), shape=(2, 8, 8, 3), dtype=np.float32)
    y = conv.conv2d(x, np.ones((3, 3, 3, 2), np.float32), padding="SAME")
    assert calls == [] and y.shape == (2, 8, 8, 2)
    np.testing.assert_array_equal(y.compute()[:, 3, 3], np.full((2, 2), 27, np.float32))
    assert calls == [1]


def test_the_weights_travel_once():
    """One delayed object carries the weights for every block: the graph holds w once."""
    x, w = normal_inputs((4, 16, 16, 3), (3, 3, 3, 2), np.float32)
    y = conv.conv2d(lazy(x, (1, 8, 8, -1)), w, padding="SAME")
    graph = dict(y.__dask_graph__())
    runners = [k for k, v in graph.items() if type(v).__name__ == "_Runner"
               or type(getattr(v, "value", None)).__name__ == "_Runner"]
    assert len(runners) == 1, runners


@pytest.mark.parametrize("bad, exc, match", [
    (dict(w=np.ones((3, 3, 2, 2))), ValueError, "not a multiple of w's C_in=2"),
    (dict(padding="FULL"), ValueError, "padding"),
    (dict(stride=0), ValueError, "stride"),
    (dict(method="nope"), Exception, "nope"),
    (dict(data_format="nchw"), ValueError, "data_format"),
    (dict(out=np.empty((2, 6, 6, 2))), TypeError, "out= is not supported with a Dask"),
    (dict(groups=2), ValueError, "groups=2"),
])
def test_bad_input_fails_at_call_time(bad, exc, match):
    x = lazy(np.ones((2, 8, 8, 3), np.float32), (1, 4, 4, -1))
    kwargs = dict(w=np.ones((3, 3, 3, 2), np.float32))
    kwargs.update(bad)
    with pytest.raises(exc, match=match):
        conv.conv2d(x, **kwargs)


DASK_BAD = [b for b in BAD if type(b[3]) is np.ndarray and b[3].ndim >= 1]


@pytest.mark.parametrize("case", DASK_BAD, ids=[b[0] for b in DASK_BAD])
def test_conv2ds_whole_bad_input_list_fails_at_call_time_on_dask_arrays(case):
    """test_frontend's list of malformed calls, x as a Dask array: the same errors, raised
    when conv2d is called (nothing is computed)."""
    _, exc, match, x, w, kwargs = case
    with pytest.raises(exc, match=match):
        conv.conv2d(da.from_array(x), w, **kwargs)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", TOO_LARGE, ids=str)
def test_kernels_larger_than_the_input_fail_at_call_time(x_shape, w_shape, kwargs):
    with pytest.raises(ValueError, match="kernel.*larger than the padded input"):
        conv.conv2d(da.zeros(x_shape), np.ones(w_shape), **kwargs)


def test_unknown_chunk_sizes_and_wrong_rank():
    x = da.ones((10, 8, 8, 3), chunks=(5, 4, 4, 3))
    unknown = x[x[:, 0, 0, 0] > 0]  # boolean indexing: nan chunk sizes
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        conv.conv2d(unknown, np.ones((3, 3, 3, 2)))
    with pytest.raises(ValueError, match="4-D"):
        conv.conv2d(da.ones((8, 8, 3)), np.ones((3, 3, 3, 2)))


def test_channels_split_are_rechunked_with_a_warning():
    x, w = normal_inputs((1, 6, 6, 4), (3, 3, 4, 2), np.float32)
    with pytest.warns(conv.ChunkWarning, match="channels are split over 2 chunks"):
        y = conv.conv2d(da.from_array(x, chunks=(1, 6, 6, 2)), w)
    np.testing.assert_array_equal(y.compute(), conv.conv2d(x, w))
    with pytest.warns(conv.ChunkWarning, match="smaller than the kernel's halo"):
        conv.conv2d(da.from_array(x, chunks=(1, 1, 6, 4)), w)


def test_threads_per_task_follow_the_scheduler():
    """Tasks x threads never exceed the CPUs: all of them on the synchronous scheduler,
    an equal share each on a thread pool; threads= overrides."""
    from conv import _dask
    from conv._frontend import as_threads

    cpus = as_threads(None)
    assert _dask.task_threads(None) == cpus
    assert _dask.task_threads(3) == min(3, cpus)
    x = da.zeros((4,), chunks=1)
    with dask.config.set(scheduler="threads", num_workers=2):
        seen = x.map_blocks(lambda b: np.full(b.shape, _dask.task_threads(None)),
                            dtype=int).compute()
    assert set(seen) == {max(1, cpus // 2)}


def test_import_conv_does_not_import_dask(tmp_path):
    code = "import sys, conv; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout.strip()
    assert out == "False"


@pytest.fixture
def environment_kept():
    """Starting a LocalCluster leaves OMP_NUM_THREADS=1 and friends (meant for its
    workers) in this process's environment, which conv honours: put it back after."""
    saved = dict(os.environ)
    yield
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    os.environ.update(saved)


def test_a_distributed_cluster_of_two_processes(environment_kept):
    distributed = pytest.importorskip("distributed")
    x, w = normal_inputs((4, 20, 18, 3), (3, 3, 3, 4), np.float32)
    want = conv.conv2d(x, w, padding="SAME", method="direct")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        y = conv.conv2d(lazy(x, (1, 10, 9, -1)), w, padding="SAME", method="direct")
        got = client.compute(y).result()
        threads = client.run(lambda: __import__("conv._dask")._dask.task_threads(None))
    np.testing.assert_array_equal(got, want)
    # two single-thread workers share this host's CPUs: each task gets half of them
    # (dask.distributed's OMP_NUM_THREADS=1 in its workers is not what decides)
    from conv._frontend import available_cpus

    assert set(threads.values()) == {max(1, available_cpus() // 2)}, threads


def test_an_unconvertible_array_type_names_what_is_accepted():
    """A GPU array (CuPy's refuses implicit conversion to NumPy) is a TypeError that
    says which array types conv takes."""

    class DeviceArray:
        shape = (1, 4, 4, 1)

        def __array__(self, *args, **kwargs):
            raise TypeError("Implicit conversion to a NumPy array is not allowed")

    with pytest.raises(TypeError, match=r"x is a .*DeviceArray.*conv takes NumPy arrays.*"
                                        r"dask\.array\.Array"):
        conv.conv2d(DeviceArray(), np.ones((1, 1, 1, 1)))


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_a_plan_called_with_a_dask_array(layout):
    """p(x) for a Dask x: lazy, the plan's method, arguments and dtypes; the same bits as
    p on the computed array; the plan's shape and dtype checks apply."""
    x, w = normal_inputs((3, 11, 12, 4), (3, 3, 2, 6), np.float16)
    xin = x if layout == "NHWC" else np.ascontiguousarray(np.moveaxis(x, 3, 1))
    p = conv.plan((None,) + xin.shape[1:], w, padding="SAME", stride=2, groups=2,
                  method="direct", data_format=layout)
    chunks = (1, 4, 6, -1) if layout == "NHWC" else (1, -1, 4, 6)
    y = p(lazy(xin, chunks))
    assert isinstance(y, da.Array) and y.dtype == np.float16
    np.testing.assert_array_equal(y.compute(), p(xin))
    with pytest.raises(ValueError, match="this plan was made for x of shape"):
        p(lazy(xin[:, :-1] if layout == "NHWC" else xin[:, :, :-1], -1))
    with pytest.raises(TypeError, match="this plan computes in float32"):
        p(lazy(xin.astype(np.float64), -1))
    with pytest.raises(TypeError, match="out= is not supported with a Dask array"):
        p(lazy(xin, -1), out=np.empty(p.out_shape(3), np.float16))
