""""tensorflow": tf.nn.conv2d, the reference and baseline.

TensorFlow is imported on first use only (``import conv`` never imports it). It
pads itself, and what it does with padded taps next to a non-finite weight differs
between its builds (its float64 CPU kernel multiplies the padding's zeros, so an Inf
weight next to the border gives NaN; its float32 kernel did so on one machine and
skipped the padded taps on another), while conv's own methods always skip them.
TensorFlow keeps its own thread pool, so ``threads`` is not honoured.
"""
from __future__ import annotations

import os

import numpy as np

from .._contract import Method, Problem


def _kernel(p: Problem) -> np.ndarray:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    (t, b), (l, r) = p.padding
    padding = "VALID" if not (t or b or l or r) else [[0, 0], [t, b], [l, r], [0, 0]]
    out = tf.nn.conv2d(
        tf.constant(p.x),
        tf.constant(p.w),
        strides=[1, p.stride[0], p.stride[1], 1],
        padding=padding,
        dilations=[1, p.dilation[0], p.dilation[1], 1],
    )
    return np.asarray(out.numpy())


METHOD = Method(
    name="tensorflow",
    kernel=_kernel,
    description="tf.nn.conv2d (TensorFlow's own CPU kernels: oneDNN for float32, Eigen for float64).",
    pads_itself=True,
    requires=("tensorflow",),
    install_hint='pip install "conv2d-cpu[tf]"',
)
