"""How far each method stands from TensorFlow and from the pure-Python loops.

Ratios stay meaningful on a noisy machine where seconds do not: both sides are
timed in the same ``track_`` call, interleaved call by call (method, baseline,
method, baseline, ...), and each side keeps its best (minimum) time, timeit-style.
Shape: the seed problem (100,32,32,3)x(3,3,3,16), VALID, stride 1, all cores.

The tracked value is ``method time / baseline time``; the speed-up is its
inverse (0.25 = 4x faster than the baseline). The ratio is recorded this way
round because asv treats a larger number as worse (``asv continuous`` and
``asv compare`` flag increases; asv has no "higher is better" flag, see
airspeed-velocity/asv#1617), so a slower commit shows up as a regression here
too, exactly as in the ``time_`` rows.
"""
import conv

from .common import DTYPES, METHODS, SEED, inputs, method_info, timing

# Per side: at least MIN calls, then more until MAX calls or MAX_TIME seconds
# of calls, whichever first; the best (minimum) call counts.
REPEAT = (7, 50, 1.5)         # compiled / BLAS / TensorFlow methods: best of 7..50
PYTHON_REPEAT = (3, 3, 0.0)   # the pure-Python loops on one image: best of 3


def _seed_batch(dtype):
    x, w = inputs(SEED, dtype)
    return x, w, x.shape[0]


def _runner(method, dtype):
    """(call, scale): ``call()`` runs ``method`` on the seed problem; its time
    times ``scale`` estimates the full batch. "python" runs one image of the
    batch and is extrapolated linearly (its loops are per image, so the time
    is proportional to the batch size); every other method runs the full batch."""
    x, w, n = _seed_batch(dtype)
    if method == "python":
        x1 = x[:1]
        return (lambda: conv.conv2d(x1, w, method="python")), float(n)
    return (lambda: conv.conv2d(x, w, method=method)), 1.0


class _Ratio:
    params = [METHODS, DTYPES]
    param_names = ["method", "dtype"]
    timeout = 180
    baseline = None

    def setup(self, method, dtype):
        if method == self.baseline:
            raise NotImplementedError(f"{method!r} is the baseline itself")
        for name in (method, self.baseline):
            info = method_info(name)  # NotImplementedError if not installed
            if info is not None and dtype not in info.dtypes:
                raise NotImplementedError(f"{name!r} does not compute {dtype}")
        self.run_method, self.scale_method = _runner(method, dtype)
        self.run_base, self.scale_base = _runner(self.baseline, dtype)
        self.run_method()  # first calls outside the measurement: imports,
        self.run_base()    # TensorFlow's one-off setup, the thread pool

    def _ratio(self, method):
        rep_m = PYTHON_REPEAT if method == "python" else REPEAT
        rep_b = PYTHON_REPEAT if self.baseline == "python" else REPEAT
        t_m, t_b = timing.side_by_side((self.run_method, self.run_base), (rep_m, rep_b))
        return (t_m * self.scale_method) / (t_b * self.scale_base)


class VsTensorFlow(_Ratio):
    baseline = "tensorflow"

    def track_time_ratio(self, method, dtype):
        """Seed shape: best time of ``method`` / best time of "tensorflow",
        measured interleaved in this call (each side the minimum of 7..50 calls,
        ~1.5 s). Below 1: faster than TensorFlow; the speed-up is 1 / value.
        For method "python" the full-batch time is extrapolated, not measured:
        the best of 3 runs on one image of the batch, times the batch size (100)."""
        return self._ratio(method)

    track_time_ratio.unit = "time / tensorflow's time"


class VsPython(_Ratio):
    baseline = "python"

    def track_time_ratio(self, method, dtype):
        """Seed shape: best time of ``method`` on the full batch (minimum of 7..50
        calls, ~1.5 s) / the pure-Python loops' full-batch time, measured
        interleaved in this call; the speed-up over Python is 1 / value.
        The Python time is extrapolated, not measured: the best of 3 runs on one
        image of the batch (1,32,32,3), times the batch size (100), since the
        loops run image by image."""
        return self._ratio(method)

    track_time_ratio.unit = "time / python's time"
