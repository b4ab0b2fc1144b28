"""Wall time of conv.conv2d, per method.

Every row calls the public front end ``conv.conv2d(x, w, method=..., ...)`` on
inputs built (once per process) in ``setup``; only the call is timed.
"""
import conv

from .common import DTYPES, METHODS, PUBLIC_SHAPES, SHAPES, THREADS, inputs, skip_unless_runs, warm_up


class Conv2D:
    """The public-suite shapes (VALID, stride 1) plus "small", the only shape the
    pure-Python loops run on (their rows elsewhere are skipped, not missing).

    ``threads`` is passed to conv2d; methods that don't honour it (python, numpy,
    tensorflow: their libraries choose) are measured in the threads=2 row only.
    """

    params = [METHODS, list(SHAPES), DTYPES, THREADS]
    param_names = ["method", "shape", "dtype", "threads"]
    timeout = 120
    # Full runs: 3..10 samples per round, at most ~5 s of samples per round.
    repeat = (3, 10, 5.0)

    def setup(self, method, shape, dtype, threads):
        skip_unless_runs(method, shape, dtype, threads)
        self.x, self.w = inputs(shape, dtype)
        warm_up((method, shape, dtype, threads, "conv2d"), lambda: self.time_conv2d(method, shape, dtype, threads))

    def time_conv2d(self, method, shape, dtype, threads):
        conv.conv2d(self.x, self.w, method=method, threads=threads)


VARIANTS = {
    "stride2": dict(stride=2),
    "same": dict(padding="SAME"),
    "dilation2": dict(dilation=2),
}


class Conv2DVariants:
    """The public shapes (and "small", for python) strided by 2, SAME-padded, and
    dilated by 2. float32 and all cores (threads=None) only, to keep the suite short."""

    params = [METHODS, ["small"] + list(PUBLIC_SHAPES), list(VARIANTS)]
    param_names = ["method", "shape", "variant"]
    timeout = 120
    repeat = (3, 10, 5.0)

    def setup(self, method, shape, variant):
        skip_unless_runs(method, shape, "float32")
        self.x, self.w = inputs(shape, "float32")
        self.kwargs = VARIANTS[variant]
        warm_up((method, shape, variant, "variants"), lambda: self.time_conv2d(method, shape, variant))

    def time_conv2d(self, method, shape, variant):
        conv.conv2d(self.x, self.w, method=method, **self.kwargs)
