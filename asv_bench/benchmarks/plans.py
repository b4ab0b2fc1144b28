"""Plans (``conv.plan``): a call once every check, the choice of method and the weights'
preparation (packing, Winograd's transform) are made ahead, against ``conv.conv2d``,
which makes them on every call.

Plans here use effort="estimate" (auto's rule, nothing timed), so a plan runs the method
conv2d's "auto" runs and the difference is what planning takes off the call. Only the
call is timed; inputs and plans are made in ``setup``. At commits without ``conv.plan``
the plan rows are skipped.
"""
import functools
import importlib.util

import numpy as np

import conv

from .common import inputs, warm_up
from .network import RESNET50, _layer_inputs

#: The smallest useful problem, where a call's time is its overhead.
TINY_X, TINY_W = (1, 4, 4, 1), (3, 3, 1, 1)


def _need_plan():
    if not hasattr(conv, "plan"):
        raise NotImplementedError("conv.plan does not exist at this commit")


def _torch():
    """PyTorch, or NotImplementedError (asv: row skipped) when it is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise NotImplementedError("PyTorch is not installed")
    import torch

    return torch


@functools.lru_cache(maxsize=None)
def _tiny_inputs():
    rng = np.random.default_rng(20240501)
    x = rng.standard_normal(TINY_X).astype("float32")
    w = rng.standard_normal(TINY_W).astype("float32")
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


class CallOverhead:
    """Per-call overhead: x (1,4,4,1) float32 with w (3,3,1,1), VALID, default threads.
    "conv2d": conv.conv2d(x, w); "plan": a plan's call p(x); "torch":
    torch.nn.functional.conv2d on NCHW/OIHW tensors made in setup (skipped when PyTorch is
    not installed)."""

    params = [["conv2d", "plan", "torch"]]
    param_names = ["call"]

    def setup(self, call):
        x, w = _tiny_inputs()
        if call == "conv2d":
            self.fn = functools.partial(conv.conv2d, x, w)
        elif call == "plan":
            _need_plan()
            self.fn = functools.partial(conv.plan(x.shape, w), x)
        else:
            torch = _torch()
            xt = torch.from_numpy(np.array(x.transpose(0, 3, 1, 2), order="C"))  # writeable
            wt = torch.from_numpy(np.array(w.transpose(3, 2, 0, 1), order="C"))
            self.fn = functools.partial(torch.nn.functional.conv2d, xt, wt)
        warm_up(("overhead", call), self.fn)

    def time_call(self, call):
        self.fn()


class DeepLayer:
    """The "deep" shape, x (8,14,14,256) with w (3,3,256,256) float32, VALID, all cores:
    conv.conv2d(x, w), which prepares the weights on every call, against a plan's call,
    which prepared them once."""

    params = [["conv2d", "plan"]]
    param_names = ["call"]
    timeout = 120
    repeat = (3, 10, 5.0)

    def setup(self, call):
        x, w = inputs("deep", "float32")
        if call == "plan":
            _need_plan()
            self.fn = functools.partial(conv.plan(x.shape, w), x)
        else:
            self.fn = functools.partial(conv.conv2d, x, w)
        warm_up(("deep", call), self.fn)

    def time_call(self, call):
        self.fn()


@functools.lru_cache(maxsize=None)
def _resnet50_calls(kind, batch):
    """ResNet-50's layers as (call, how many times the network has it): conv2d with auto,
    or one plan per layer (made once per process)."""
    calls = []
    for _, h, c_in, k, s, p, c_out, count, *_ in RESNET50:  # *_: groups (1)
        x, w = _layer_inputs(h, c_in, k, c_out, batch)
        pads = ((p, p), (p, p))
        if kind == "plans":
            fn = functools.partial(conv.plan(x.shape, w, stride=s, padding=pads), x)
        else:
            fn = functools.partial(conv.conv2d, x, w, stride=s, padding=pads)
        calls.append((fn, count))
    return tuple(calls)


class ResNet50Plans:
    """ResNet-50 v1.5's 53 conv layers at batch 1, float32, all cores; one sample = the
    whole network once: conv.conv2d(method="auto") on each layer, against a sequence of
    plans (one per layer, made in setup) called on the same inputs."""

    params = [["conv2d", "plans"]]
    param_names = ["calls"]
    timeout = 300
    number = 1
    repeat = (1, 5, 20.0)

    def setup(self, calls):
        if calls == "plans":
            _need_plan()
        self.calls = _resnet50_calls(calls, 1)
        warm_up(("resnet50 plans", calls), lambda: self.time_network(calls))

    def time_network(self, calls):
        for fn, count in self.calls:
            for _ in range(count):
                fn()
