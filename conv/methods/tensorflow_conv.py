""""tensorflow": tf.nn.conv2d, the reference and baseline; conv's one place that calls it.

TensorFlow is imported on first use only (``import conv`` never imports it). It
pads itself, and what it does with padded taps next to a non-finite weight differs
between its builds (its float64 CPU kernel multiplies the padding's zeros, so an Inf
weight next to the border gives NaN; its float32 kernel did so on one machine and
skipped the padded taps on another), while conv's own methods always skip them.
TensorFlow keeps its own thread pool, so ``threads`` is not honoured.

The benchmark (conv.bench) times :func:`tf_conv2d` directly, without conv's front end,
as the article's reference.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import numpy as np

from .._contract import Method, Problem


class _SilenceFd2:
    """Send C-level stderr (fd 2) to a temporary file; replay it if the block fails.

    TensorFlow's C++ runtime logs start-up banners that TF_CPP_MIN_LOG_LEVEL does not
    silence; they would drown a tool's progress lines.
    """

    def __enter__(self):
        self._saved = None
        try:
            sys.stderr.flush()
            self._tmp = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._tmp.fileno(), 2)
        except (OSError, ValueError, AttributeError):
            self._saved = None
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._saved is None:
            return False
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if exc_type is not None:
            try:
                self._tmp.seek(0)
                sys.stderr.write(self._tmp.read().decode(errors="replace"))
            except (OSError, ValueError):
                pass
        self._tmp.close()
        return False


def import_tensorflow(quiet: bool = False):
    """The tensorflow module (ImportError when it is not installed). ``quiet`` also hides
    the C++ runtime's start-up lines on fd 2, for tools that print progress there."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if quiet and "tensorflow" not in sys.modules:
        with _SilenceFd2():
            import tensorflow as tf
    else:
        import tensorflow as tf
    return tf


def tf_conv2d(x: np.ndarray, w: np.ndarray, stride=(1, 1), padding=((0, 0), (0, 0)),
              dilation=(1, 1), quiet: bool = False) -> np.ndarray:
    """tf.nn.conv2d on NumPy arrays, back to NumPy; padding is explicit per side.
    ``quiet``: hide what TensorFlow's runtime prints on fd 2 meanwhile (its first op)."""
    tf = import_tensorflow(quiet)
    (t, b), (l, r) = padding
    pads = "VALID" if not (t or b or l or r) else [[0, 0], [t, b], [l, r], [0, 0]]
    with _SilenceFd2() if quiet else contextlib.nullcontext():
        out = tf.nn.conv2d(
            tf.constant(x),
            tf.constant(w),
            strides=[1, stride[0], stride[1], 1],
            padding=pads,
            dilations=[1, dilation[0], dilation[1], 1],
        )
        return np.asarray(out.numpy())


def _kernel(p: Problem) -> np.ndarray:
    return tf_conv2d(p.x, p.w, p.stride, p.padding, p.dilation)


METHOD = Method(
    name="tensorflow",
    kernel=_kernel,
    description="tf.nn.conv2d (TensorFlow's own CPU kernels: oneDNN for float32, Eigen for float64).",
    pads_itself=True,
    requires=("tensorflow",),
    install_hint='pip install "conv2d-cpu[tf]"',
)
