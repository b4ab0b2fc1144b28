"""Peak memory of conv.conv2d on the largest public shape.

asv's ``peakmem_`` is the peak resident set size of the whole benchmark process
(``ru_maxrss``): the interpreter, NumPy and conv, the inputs, the output and
whatever the method allocates. Rows are comparable with each other, except that
the "tensorflow" rows (and "auto" if it ever picks TensorFlow) also carry the
TensorFlow runtime, which no other method imports.
"""
import conv

from .common import DTYPES, LARGEST, METHODS, inputs, skip_unless_runs


class PeakMemConv2D:
    """Shape "mid" (8,56,56,64)x(3,3,64,64), VALID, the largest of the public suite
    (most input+output elements and most flops). All cores; python is skipped."""

    params = [METHODS, DTYPES]
    param_names = ["method", "dtype"]
    timeout = 120

    def setup(self, method, dtype):
        skip_unless_runs(method, LARGEST, dtype)
        self.x, self.w = inputs(LARGEST, dtype)

    def peakmem_conv2d(self, method, dtype):
        conv.conv2d(self.x, self.w, method=method)
