"""The optional baselines and tools: TensorFlow, PyTorch, matplotlib, threadpoolctl.

Each is looked up when asked for, and a missing or broken install counts as absent.
Callers use these functions through the module (``frameworks.tensorflow_available()``),
so tests can replace them.
"""
from __future__ import annotations

import contextlib
import importlib.util
from typing import Dict

import numpy as np

from .. import _introspect

#: The baselines' row names: TensorFlow called directly (the article's reference), PyTorch.
TF_BASELINE = "tf.nn.conv2d"
TORCH_BASELINE = "torch"

_TF: Dict[str, object] = {}


def tensorflow():
    """The tensorflow module, imported once (quietly), or None when it is not importable."""
    if "tf" not in _TF:
        tf = None
        try:
            if importlib.util.find_spec("tensorflow") is not None:
                tf = _introspect.tensorflow_module()
        except Exception:  # noqa: BLE001 - a broken TensorFlow counts as absent
            tf = None
        _TF["tf"] = tf
    return _TF["tf"]


def tensorflow_available() -> bool:
    """True when TensorFlow can be imported here."""
    return tensorflow() is not None


def init_tensorflow(threads: int) -> str:
    """Ask TensorFlow for ``threads`` threads (possible only before its first op) and run one
    tiny op so its runtime start-up is neither timed nor printed. Returns a description."""
    if "init" in _TF:
        return _TF["init"]
    tf = tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        desc = f"{threads} threads"
    except (RuntimeError, ValueError):
        desc = "TensorFlow's default threads (already initialized in this process)"
    x = np.zeros((1, 2, 2, 1), np.float32)
    _introspect.tensorflow_conv2d(x, np.zeros((1, 1, 1, 1), np.float32), quiet=True)
    _TF["init"] = desc
    return desc


def tensorflow_callable(x: np.ndarray, w: np.ndarray, stride: int = 1, pad: int = 0,
                        groups: int = 1):
    """tf.nn.conv2d(x, w) back to NumPy; by default VALID, stride 1: the article's
    reference_func. ``pad``: zeros on every side. ``groups``: w is (KH, KW, C_in / groups,
    C_out); a depthwise layer (w's C_in 1) runs tf.nn.depthwise_conv2d on w as its
    (KH, KW, C_in, multiplier) filter (TensorFlow's CPU kernel for depthwise problems),
    other grouped layers tf.nn.conv2d with the grouped w, which TensorFlow infers from the
    shapes (a TensorFlow that refuses it raises on the call)."""
    if groups > 1 and w.shape[2] == 1:
        return _tensorflow_depthwise(x, w.reshape(w.shape[0], w.shape[1], groups, -1),
                                     stride, pad)
    if stride == 1 and pad == 0:
        return lambda: _introspect.tensorflow_conv2d(x, w)
    strides, pads = (stride, stride), ((pad, pad), (pad, pad))
    return lambda: _introspect.tensorflow_conv2d(x, w, strides, pads)


def _tensorflow_depthwise(x: np.ndarray, w_dw: np.ndarray, stride: int, pad: int):
    """tf.nn.depthwise_conv2d(x, w_dw) back to NumPy, NumPy in and out as
    tensorflow_conv2d is (the conversions timed alike); TensorFlow's start-up has been
    done by init_tensorflow."""
    tf = tensorflow()
    pads = "VALID" if pad == 0 else [[0, 0], [pad, pad], [pad, pad], [0, 0]]
    strides = [1, stride, stride, 1]

    def call():
        out = tf.nn.depthwise_conv2d(tf.constant(x), tf.constant(w_dw), strides=strides,
                                     padding=pads)
        return np.asarray(out.numpy())

    return call


def torch():
    """The torch module, or None when PyTorch is not importable."""
    try:
        if importlib.util.find_spec("torch") is None:
            return None
        import torch

        return torch
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return None


def torch_callable(torch_module, x: np.ndarray, w: np.ndarray, threads: int,
                   stride: int = 1, pad: int = 0, groups: int = 1):
    """(call, to_nhwc): torch.nn.functional.conv2d on x as a channels_last tensor (the
    NHWC data seen as NCHW, PyTorch's layout for NHWC memory: its depthwise and oneDNN
    kernels run on it without a layout change) and OIHW weights, both made here, outside
    the timed region; and the conversion of its (channels_last) result back to NHWC.
    ``pad``: zeros on every side; ``groups``: PyTorch's, w being (KH, KW, C_in / groups,
    C_out)."""
    torch_module.set_num_threads(threads)
    xt = torch_module.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    wt = torch_module.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    conv2d = torch_module.nn.functional.conv2d

    def call():
        with torch_module.no_grad():
            return conv2d(xt, wt, stride=stride, padding=pad, groups=groups)

    def to_nhwc(out):
        return out.permute(0, 2, 3, 1).numpy()

    return call, to_nhwc


def matplotlib_available() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def threadpool_limits(threads: int):
    """(context, limited): NumPy's BLAS limited to ``threads`` when threadpoolctl is
    installed; otherwise a no-op context and False."""
    try:
        from threadpoolctl import threadpool_limits as limits
    except ImportError:
        return contextlib.nullcontext(), False
    return limits(limits=threads, user_api="blas"), True
