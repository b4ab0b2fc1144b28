"""Shared fixtures: TensorFlow (skipped with an install hint when absent), hypothesis
settings, and a clean run-time registry for tests that register methods."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import conv
import conv.testing as kit

TF_MISSING = (
    'TensorFlow is not installed, so the comparisons against tf.nn.conv2d cannot run; '
    'install it with: pip install "conv2d-cpu[tf]" (or pip install -e ".[test]")'
)

settings.register_profile(
    "conv",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "conv"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: takes tens of seconds (builds an extension); runs by default, "
        "deselect with -m 'not slow'",
    )


@pytest.fixture(scope="session")
def tf():
    """The tensorflow module; the test is skipped, saying how to install it, when absent."""
    try:
        import tensorflow
    except ImportError:
        pytest.skip(TF_MISSING)
    return tensorflow


def _pair(v):
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    v = tuple(int(u) for u in v)
    return v[1:3] if len(v) == 4 else v


def tf_conv2d(tf, x, w, stride=1, padding="VALID", dilation=1):
    """tf.nn.conv2d called directly: 'VALID'/'SAME' as strings, every other padding form as
    TensorFlow's explicit [[0, 0], [top, bottom], [left, right], [0, 0]] list."""
    if isinstance(padding, str):
        tf_pad = padding.upper()
    else:
        (t, b), (l, r) = kit.explicit_padding(padding, x.shape[1:3], w.shape[:2], stride, dilation)
        tf_pad = [[0, 0], [t, b], [l, r], [0, 0]]
    out = tf.nn.conv2d(
        tf.constant(x),
        tf.constant(w),
        strides=[1, *_pair(stride), 1],
        padding=tf_pad,
        dilations=[1, *_pair(dilation), 1],
    )
    return out.numpy()


def tf_float32_defect(x_shape, w_shape, stride=1, padding="VALID", dilation=1, dtype="float32"):
    """True in the region where TensorFlow 2.21's float32 CPU kernel (oneDNN) returns wrong
    values (seen: off by units, or uninitialised memory such as -4e28): a horizontal
    stride > 1 with a single output column, C_in = 1 and a batch of two or more. Measured
    over 4,320 small VALID problems: all 60 wrong results lie in this region (which also
    holds some right ones). conv is compared with the exact reference there instead."""
    if np.dtype(dtype) != np.float32:
        return False
    out = kit.output_shape(x_shape, w_shape, stride, padding, dilation)
    return _pair(stride)[1] > 1 and out[2] == 1 and x_shape[3] == 1 and x_shape[0] > 1


def tf_result_defined(x, w, stride=1, padding="VALID", dilation=1):
    """True where a test may compare with tf.nn.conv2d: where its result is defined and the
    same on every TensorFlow build seen. Not where a NaN/Inf weight meets a padded tap
    (kit.nonfinite_meets_padding; TensorFlow 2.21's float32 skipped padded taps on one
    machine and multiplied the padding's zeros, NaN, on another), and not in the float32
    defect region (tf_float32_defect). There conv is compared with the exact reference
    only, and TensorFlow's own values are not asserted at all."""
    x, w = np.asarray(x), np.asarray(w)
    return not (
        kit.nonfinite_meets_padding(x, w, stride, padding, dilation)
        or tf_float32_defect(x.shape, w.shape, stride, padding, dilation,
                             np.result_type(x, w))
    )


@pytest.fixture(scope="session")
def tf_conv(tf):
    """tf_conv(x, w, stride, padding, dilation) -> ndarray from tf.nn.conv2d itself."""
    return functools.partial(tf_conv2d, tf)


@functools.lru_cache(maxsize=None)
def _case_data(case, dtype, seed=0):
    x, w = kit.make_inputs(case, dtype, seed)
    ref = case.reference(x, w)
    scale = case.scale(x, w)
    for a in (x, w, ref, scale):
        a.flags.writeable = False
    return x, w, ref, scale


def case_data(case, dtype, seed=0):
    """(x, w, reference, scale) for a grid case; fresh writeable copies of x and w."""
    x, w, ref, scale = _case_data(case, np.dtype(dtype).name, seed)
    return x.copy(), w.copy(), ref, scale


@pytest.fixture
def registered():
    """register(method, replace=False): a run-time registration undone after the test."""
    names = []

    def register(method, replace=False):
        out = conv.register_method(method, replace=replace)
        names.append(method.name)
        return out

    yield register
    for name in dict.fromkeys(reversed(names)):
        try:
            conv.unregister_method(name)
        except ValueError:  # the test unregistered it itself
            pass


def normal_inputs(x_shape, w_shape, dtype=np.float64, seed=0):
    """x and w of these shapes, standard normal values from one seeded generator."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(x_shape).astype(dtype),
            rng.standard_normal(w_shape).astype(dtype))


def vector_and_scalar_runs(tmp_path, source, cflags):
    """Build the C program ``source`` against conv's kernel headers twice, with the GCC/Clang
    vector extensions and without them (CONV_NO_VECTOR_EXT: the plain C that other
    compilers get), run both, and return the numbers each printed:
    {"vector": array, "scalar": array}. Skips the test when no C compiler is found."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip("no C compiler found to build the driver")
    src = tmp_path / "driver.c"
    src.write_text(source)
    headers = Path(conv.__file__).parent / "methods"
    outputs = {}
    for name, flags in (("vector", []), ("scalar", ["-DCONV_NO_VECTOR_EXT"])):
        exe = tmp_path / name
        build = subprocess.run([cc, *cflags, "-Wno-psabi", *flags, f"-I{headers}", str(src),
                                "-o", str(exe)], capture_output=True, text=True)
        assert build.returncode == 0, build.stderr
        run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        outputs[name] = np.array(run.stdout.split(), dtype=np.float64)
    return outputs
