"""A real network: the 53 conv layers of ResNet-50 v1.5 (torchvision's layout, NHWC),
each called as often as the network has it, per method and batch size.

The layers come from conv/bench/shapes.py (loaded from this checkout, like the public
shapes), so every commit runs the same network. ``python -m conv --network resnet50``
prints the same layers one by one against TensorFlow and PyTorch.
"""
import functools

import numpy as np

import conv

from .common import METHODS, _bench_module, method_info, warm_up

RESNET50 = _bench_module("shapes").NETWORKS["resnet50"]


@functools.lru_cache(maxsize=None)
def _layer_inputs(h, c_in, k, c_out, batch):
    rng = np.random.default_rng(h * 1000 + c_in + c_out)
    x = rng.standard_normal((batch, h, h, c_in)).astype("float32")
    w = (rng.standard_normal((k, k, c_in, c_out)) / np.sqrt(k * k * c_in)).astype("float32")
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


class ResNet50:
    """float32, all cores; one sample = the whole network once (53 conv2d calls).
    "python" is skipped (hours)."""

    params = [[m for m in METHODS if m != "python"], [1, 8]]
    param_names = ["method", "batch"]
    timeout = 600
    number = 1
    repeat = (1, 5, 20.0)

    def setup(self, method, batch):
        info = method_info(method)  # NotImplementedError: not installed here
        if info is not None and "float32" not in info.dtypes:
            raise NotImplementedError(f"{method!r} does not compute float32")
        self.calls = []
        for _, h, c_in, k, s, p, c_out, count, *_ in RESNET50:  # *_: groups (1)
            x, w = _layer_inputs(h, c_in, k, c_out, batch)
            self.calls.append((x, w, s, ((p, p), (p, p)), count))
        warm_up(("resnet50", method, batch), lambda: self.time_network(method, batch))

    def time_network(self, method, batch):
        for x, w, s, pads, count in self.calls:
            for _ in range(count):
                conv.conv2d(x, w, method=method, stride=s, padding=pads)
