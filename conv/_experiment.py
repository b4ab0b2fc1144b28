"""The main job: ``python -m conv`` reruns the article's experiment on this machine.

The article (OpenGenus, "2D convolution in Python") convolved x (100, 32, 32, 3) with
w (3, 3, 3, 16) in float32, VALID, stride 1, and compared tf.nn.conv2d, seven pure-Python
loops and a NumPy matmul over kernel-position slices, by error and by wall time. This
module does the same with every conv method installed here (plugins included) plus
``"auto"``: for each one the largest absolute and relative error against the reference,
the best-of-N time, GFLOP/s, the fraction of this CPU's measured FMA peak, and the
speed-up against TensorFlow and against pure Python. Everything is measured side by side in
one process.

* Reference: ``tf.nn.conv2d`` in the same dtype when TensorFlow is importable (as in the
  article), otherwise ``conv.testing.reference_conv2d`` (exact, extended precision).
* The pure-Python method runs on a slice of the batch and its full-batch time is
  extrapolated linearly (marked ``*``); ``--full`` runs the whole batch.
* ``--suite`` runs the public benchmark suite of issue 3 instead (both dtypes, best of 7,
  with the ratio to PyTorch when it is installed).
* Progress goes to stderr; stdout carries the tables, or one JSON document with ``--json``.
* Bad options give one line on stderr and exit status 2; nothing prints a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

Shape4 = Tuple[int, int, int, int]

#: Named problems: the article's shape and the public suite of issue 3 (all VALID, stride 1).
NAMED_SHAPES: Dict[str, Tuple[Shape4, Shape4]] = {
    "seed": ((100, 32, 32, 3), (3, 3, 3, 16)),
    "mid": ((8, 56, 56, 64), (3, 3, 64, 64)),
    "deep": ((8, 14, 14, 256), (3, 3, 256, 256)),
    "pointwise": ((8, 28, 28, 128), (1, 1, 128, 256)),
    "k5": ((16, 64, 64, 16), (5, 5, 16, 32)),
}
ARTICLE_SHAPE = "seed"
#: The article's wall times for one call on its own machine (float32, the seed shape, 100
#: images): its tf.nn.conv2d reference, its pure-Python py_conv, its matmul-slices
#: matrix_mult (conv's "python" and "numpy" methods are those two algorithms).
ARTICLE_SECONDS = {"tf.nn.conv2d": 0.018, "python": 45.4, "numpy": 0.0598}
SUITE_SHAPES = ("seed", "mid", "deep", "pointwise", "k5")

DEFAULT_REPEAT = 7
QUICK_REPEAT = 3
QUICK_BATCH = 10  # --quick runs the article's shape on this many images
PYTHON_SLICE = 2  # images the pure-Python method runs on by default (1 with --quick)
PYTHON_MAX_RUNS = 3  # the sliced pure-Python run is repeated at most this often

#: Largest relative error (max |out - ref| / max |ref|) accepted before a row is flagged.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}

TF_BASELINE = "tf.nn.conv2d"
TORCH_BASELINE = "torch"


class UsageError(Exception):
    """A bad command line: reported as one line on stderr, exit status 2."""


# ---------------------------------------------------------------- the problems
@dataclass(frozen=True)
class Case:
    """One problem to measure: a shape and a dtype (always VALID, stride 1)."""

    name: str
    x_shape: Shape4
    w_shape: Shape4
    dtype: str
    note: str = ""

    @property
    def out_shape(self) -> Shape4:
        n, h, w, _ = self.x_shape
        kh, kw, _, co = self.w_shape
        return (n, h - kh + 1, w - kw + 1, co)

    @property
    def flops(self) -> int:
        """2*N*OH*OW*KH*KW*C_in*C_out, as conv.Problem.flops counts them."""
        n, oh, ow, co = self.out_shape
        kh, kw, ci, _ = self.w_shape
        return 2 * n * oh * ow * kh * kw * ci * co

    def describe(self) -> str:
        return (f"x {_tup(self.x_shape)} * w {_tup(self.w_shape)}, {self.dtype}, VALID, stride 1"
                + (f" ({self.note})" if self.note else ""))


def _tup(shape: Sequence[int]) -> str:
    return "(" + ",".join(str(int(s)) for s in shape) + ")"


def parse_shape(text: str) -> Tuple[str, Shape4, Shape4]:
    """``seed``/``mid``/``deep``/``pointwise``/``k5``, ``N,H,W,CIN:KH,KW,COUT`` or
    ``N,H,W,CIN:KH,KW,CIN,COUT``. Returns (name, x_shape, w_shape); UsageError if bad."""
    s = text.strip().lower()
    if s in NAMED_SHAPES:
        x, w = NAMED_SHAPES[s]
        return s, x, w
    hint = (f"bad --shape {text!r}: expected N,H,W,CIN:KH,KW,COUT (e.g. 100,32,32,3:3,3,16) "
            f"or one of {', '.join(NAMED_SHAPES)}")
    if s.count(":") != 1:
        raise UsageError(hint)
    left, right = s.split(":")
    try:
        xs = [int(v) for v in left.replace("x", ",").split(",")]
        ws = [int(v) for v in right.replace("x", ",").split(",")]
    except ValueError:
        raise UsageError(hint) from None
    if len(xs) != 4 or len(ws) not in (3, 4):
        raise UsageError(hint)
    if len(ws) == 4:
        if ws[2] != xs[3]:
            raise UsageError(f"bad --shape {text!r}: the filter's C_in ({ws[2]}) must equal the "
                             f"input's ({xs[3]})")
        ws = [ws[0], ws[1], ws[3]]
    if min(xs + ws) < 1:
        raise UsageError(f"bad --shape {text!r}: every size must be >= 1")
    n, h, wd, ci = xs
    kh, kw, co = ws
    if kh > h or kw > wd:
        raise UsageError(f"bad --shape {text!r}: the {kh}x{kw} kernel is larger than the "
                         f"{h}x{wd} input (VALID padding leaves no output)")
    x_shape, w_shape = (n, h, wd, ci), (kh, kw, ci, co)
    for name, (nx, nw) in NAMED_SHAPES.items():
        if (nx, nw) == (x_shape, w_shape):
            return name, x_shape, w_shape
    return f"{n},{h},{wd},{ci}:{kh},{kw},{co}", x_shape, w_shape


def make_inputs(case: Case, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Standard-normal x and w (as the article's np.random.randn), in the case's dtype."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x_shape).astype(case.dtype)
    w = rng.standard_normal(case.w_shape).astype(case.dtype)
    return x, w


# ---------------------------------------------------- optional dependencies
class _SilenceFd2:
    """Send C-level stderr (fd 2) to a temporary file; replay it if the block fails.

    TensorFlow's C++ runtime logs start-up banners that TF_CPP_MIN_LOG_LEVEL does not
    silence; they would drown the progress lines.
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


_TF_CACHE: Dict[str, object] = {}


def _tensorflow():
    """The tensorflow module, imported once (quietly), or None when it is not importable."""
    if "tf" not in _TF_CACHE:
        tf = None
        try:
            if importlib.util.find_spec("tensorflow") is not None:
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                with _SilenceFd2():
                    import tensorflow as tf  # noqa: F811
        except Exception:  # noqa: BLE001 - a broken TensorFlow counts as absent
            tf = None
        _TF_CACHE["tf"] = tf
    return _TF_CACHE["tf"]


def tensorflow_available() -> bool:
    """True when TensorFlow can be imported here. (Tests monkeypatch this.)"""
    return _tensorflow() is not None


def _init_tensorflow(threads: int) -> str:
    """Ask TensorFlow for ``threads`` threads (possible only before its first op) and run one
    tiny op so its runtime start-up is neither timed nor printed. Returns a description."""
    tf = _tensorflow()
    if "init" in _TF_CACHE:
        return _TF_CACHE["init"]
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        desc = f"{threads} threads"
    except (RuntimeError, ValueError):
        desc = "TensorFlow's default threads (already initialized in this process)"
    with _SilenceFd2():
        tf.nn.conv2d(tf.zeros((1, 2, 2, 1)), tf.zeros((1, 1, 1, 1)), 1, "VALID").numpy()
    _TF_CACHE["init"] = desc
    return desc


def _torch():
    """The torch module, or None when PyTorch is not importable."""
    try:
        if importlib.util.find_spec("torch") is None:
            return None
        import torch

        return torch
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return None


def _matplotlib_available() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def _threadpool_limits(threads: int):
    """Limit NumPy's BLAS threads when threadpoolctl is installed; otherwise a no-op."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext(), False
    return threadpool_limits(limits=threads, user_api="blas"), True


# ------------------------------------------------------------------ reference
@dataclass
class Reference:
    name: str  # "tensorflow" or "exact"
    description: str
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray] = field(repr=False)


def _tf_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The article's reference_func: tf.nn.conv2d, VALID, stride 1, back to NumPy."""
    tf = _tensorflow()
    return tf.nn.conv2d(tf.constant(x), tf.constant(w), strides=1, padding="VALID").numpy()


def select_reference() -> Reference:
    """tf.nn.conv2d when TensorFlow is importable, else conv.testing.reference_conv2d."""
    if tensorflow_available():
        tf = _tensorflow()
        return Reference(
            "tensorflow",
            f"tf.nn.conv2d (TensorFlow {tf.__version__}) in the same dtype, as in the article",
            _tf_conv,
        )
    from .testing import reference_conv2d

    return Reference(
        "exact",
        "conv.testing.reference_conv2d (exact: extended-precision sums, rounded to float64), "
        "because TensorFlow is not installed",
        lambda x, w: reference_conv2d(x, w, stride=1, padding="VALID", dilation=1),
    )


def errors(out: np.ndarray, ref: np.ndarray) -> Tuple[float, float]:
    """(max |out - ref|, max |out - ref| / max |ref|), computed in float64."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        return math.inf, math.inf
    with np.errstate(all="ignore"):
        diff = np.abs(out - ref)
        if np.isnan(diff).any():
            return math.nan, math.nan
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(ref).max()) if ref.size else 0.0
    if scale == 0.0:
        return max_abs, (0.0 if max_abs == 0.0 else math.inf)
    return max_abs, max_abs / scale


# --------------------------------------------------------------------- timing
def best_of(fn: Callable[[], object], repeat: int) -> Tuple[float, object]:
    """One untimed warm-up call (its result is returned), then the best of ``repeat``."""
    result = fn()
    best = math.inf
    enabled = gc.isenabled()
    gc.disable()  # no collection pauses inside the timed calls (collected once per case)
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return best, result


class Peak:
    """The machine's ceiling: GFLOP/s of conv's FMA loop (conv/methods/_peak.h) per dtype,
    on the run's threads, in the kernel build that is loaded (the same instructions the
    kernels use). It is timed up front and again before every case, and the best seen so
    far counts, so a burst of load from elsewhere does not lower the ceiling. None when
    the compiled kernels are unusable here (then there is no "% peak" column)."""

    def __init__(self, threads: int):
        self.threads = threads
        self._best: Dict[str, float] = {}
        try:
            from .methods import _compiled
        except ImportError:
            _compiled = None
        self._compiled = _compiled

    @property
    def build(self) -> str:
        return self._compiled.impl.SIMD if self._compiled is not None else "none"

    def measure(self, dtype: str, repeat: int) -> Optional[float]:
        if self._compiled is not None:
            g = self._compiled.fma_peak(dtype, self.threads, repeat=repeat)
            self._best[dtype] = max(self._best.get(dtype, 0.0), g)
        return self.gflops(dtype)

    def gflops(self, dtype: str) -> Optional[float]:
        return self._best.get(dtype)

    def all(self) -> Dict[str, float]:
        return dict(self._best)

    def describe(self, dtypes: Sequence[str]) -> str:
        """One line for the table's foot."""
        if not self._best:
            return "% peak: not measured (conv's compiled kernels are not usable here)"
        line = ("% peak: against this CPU's FMA peak, measured in this run by an FMA loop "
                f"in conv's loaded kernel build ({self.build}) on {self.threads} thread(s): "
                + ", ".join(f"{dt} {self._best[dt]:.0f} GFLOP/s"
                            for dt in dtypes if dt in self._best))
        from ._config import cpu_has

        if cpu_has("AVX512F") and "avx512" not in self.build:
            line += ("; this CPU also has AVX-512, which conv's kernels do not use, so "
                     "libraries that do (BLAS, oneDNN in TensorFlow and PyTorch) can pass 100%")
        return line


class Progress:
    """Progress lines on stderr (a single updating line on a terminal)."""

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self._open = False

    def line(self, msg: str) -> None:
        if not self.enabled:
            return
        self._end_update()
        print(f"conv: {msg}", file=self.stream, flush=True)

    def update(self, msg: str, *, important: bool = False) -> None:
        """Transient status: rewritten in place on a terminal, else printed if important."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write(f"\rconv: {msg}\x1b[K")
            self.stream.flush()
            self._open = True
        elif important:
            print(f"conv: {msg}", file=self.stream, flush=True)

    def clear(self) -> None:
        """Erase a transient status line (before writing to stdout on the same terminal)."""
        self._end_update()

    def _end_update(self) -> None:
        if self._open:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._open = False


# ----------------------------------------------------------------- measuring
@dataclass
class Row:
    """One method on one case. Times are for the full batch (extrapolated when marked)."""

    method: str
    kind: str  # "baseline", "method" or "auto"
    shape: str
    x_shape: List[int]
    w_shape: List[int]
    dtype: str
    threads: int
    flops: int
    status: str = "ok"  # "ok", "skipped" or "failed"
    message: str = ""
    chosen: Optional[str] = None  # for "auto": the method it ran
    runs: int = 0  # timed runs (best of)
    seconds: Optional[float] = None
    ms: Optional[float] = None
    gflops: Optional[float] = None
    peak_fraction: Optional[float] = None
    speedup_vs_tensorflow: Optional[float] = None
    speedup_vs_python: Optional[float] = None
    speedup_vs_torch: Optional[float] = None
    max_abs_err: Optional[float] = None
    max_rel_err: Optional[float] = None
    within_tolerance: Optional[bool] = None
    extrapolated: bool = False
    measured_images: Optional[int] = None

    @property
    def label(self) -> str:
        return f"auto ({self.chosen})" if self.chosen else self.method


@dataclass
class Options:
    repeat: int = DEFAULT_REPEAT
    threads: int = 1
    python_images: Optional[int] = PYTHON_SLICE  # None: the whole batch (--full)
    with_torch: bool = False


def usable_methods(with_python: bool = True) -> List[str]:
    """conv.list_methods() (plugins included), minus TensorFlow's when it is absent, + auto."""
    import conv

    tf_ok = tensorflow_available()
    names = []
    for name in conv.list_methods():
        if name == "python" and not with_python:
            continue
        if not tf_ok and _needs_tensorflow(name):
            continue
        names.append(name)
    return names + ["auto"]


def _unusable_methods() -> List[str]:
    """Declared method names that cannot run here (missing dependency or broken plugin)."""
    import conv
    from ._registry import REGISTRY

    usable = set(conv.list_methods())
    return [n for n in REGISTRY.names() if n not in usable]


def _needs_tensorflow(name: str) -> bool:
    import conv

    try:
        return name == "tensorflow" or "tensorflow" in conv.get_method(name).requires
    except Exception:  # noqa: BLE001
        return False


def resolve_methods(text: str) -> List[str]:
    """--methods a,b,c -> names, checked: UsageError for unknown or unusable ones."""
    import conv
    from ._registry import REGISTRY

    names = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            raise UsageError(f"bad --methods {text!r}: expected comma-separated method names")
        if name not in names:
            names.append(name)
    for name in names:
        if name == "auto":
            continue
        try:
            REGISTRY.usable(name)
        except Exception as exc:  # noqa: BLE001 - unknown, unavailable or broken
            raise UsageError(_one_line(str(exc)) + "; 'auto' is accepted too") from None
        if _needs_tensorflow(name) and not tensorflow_available():
            raise UsageError(f"method {name!r} needs TensorFlow, which is not installed "
                             f'(pip install "conv2d-cpu[tf]")')
    return names


def _auto_choice(x: np.ndarray, w: np.ndarray, threads: int) -> Optional[str]:
    """Which method "auto" runs on this problem (informative; None if it cannot be told)."""
    from . import _auto
    from ._frontend import normalize
    from ._registry import REGISTRY

    try:
        return _auto.choose(normalize(x, w, threads=threads), REGISTRY).name
    except Exception:  # noqa: BLE001 - the row itself reports what went wrong
        return None


def _python_timing(x, w, images: int, runs: int, threads: int, progress: Progress, tag: str):
    """The pure-Python method, one image per call (so progress can be shown), on the first
    ``images`` images; the best of ``runs`` total times, and the outputs of the last run."""
    import conv

    best = math.inf
    outs: List[np.ndarray] = []
    step = max(1, images // 10)
    for r in range(runs):
        total, outs, t_start = 0.0, [], time.perf_counter()
        for i in range(images):
            done = i
            msg = f"{tag}: python, run {r + 1}/{runs}, image {done + 1}/{images}"
            if done:
                left = (time.perf_counter() - t_start) / done * (images - done)
                msg += f", ~{left:.0f} s left in this run"
            progress.update(msg, important=(i == 0 or (images >= 10 and i % step == 0)))
            t0 = time.perf_counter()
            out = conv.conv2d(x[i:i + 1], w, method="python", threads=threads)
            total += time.perf_counter() - t0
            outs.append(out)
        best = min(best, total)
    return best, np.concatenate(outs, axis=0)


def run_case(case: Case, methods: Sequence[str], ref: Reference, opts: Options,
             progress: Progress, peak: Optional[Peak] = None) -> List[Row]:
    """Measure every method (and the TensorFlow/PyTorch baselines) on one case."""
    import conv

    gc.collect()
    x, w = make_inputs(case)
    n = case.x_shape[0]
    tag = f"{case.name} {case.dtype}"
    progress.update(f"{tag}: reference ({ref.name})", important=True)
    reference = ref.fn(x, w)

    def new_row(method, kind):
        return Row(method=method, kind=kind, shape=case.name, x_shape=list(case.x_shape),
                   w_shape=list(case.w_shape), dtype=case.dtype, threads=opts.threads,
                   flops=case.flops)

    jobs: List[Tuple[str, str]] = []
    if tensorflow_available():
        jobs.append((TF_BASELINE, "baseline"))
    jobs += [(m, "auto" if m == "auto" else "method") for m in methods]
    torch = _torch() if opts.with_torch else None
    if torch is not None:  # last: its OpenMP threads keep spinning after its calls
        jobs.append((TORCH_BASELINE, "baseline"))

    rows: List[Row] = []

    def fail(row, exc):
        row.status = "failed"
        row.message = f"{type(exc).__name__}: {_one_line(str(exc))}"
        progress.line(f"{tag}: {row.method} failed: {row.message}")

    if peak is not None:  # re-measured per case: the best seen in the run counts
        progress.update(f"{tag}: measuring the machine's peak", important=True)
        peak.measure(case.dtype, repeat=3)
    # Per method: one untimed call (start-up costs; its output gives the errors), then the
    # best of `repeat` consecutive timed calls (timeit-style).
    for k, (name, kind) in enumerate(jobs, 1):
        row = new_row(name, kind)
        rows.append(row)
        progress.update(f"{tag}: [{k}/{len(jobs)}] {name}", important=True)
        try:
            if kind == "method":
                method = conv.get_method(name)
                if case.dtype not in method.dtypes:
                    row.status = "skipped"
                    row.message = f"computes {', '.join(method.dtypes)} only"
                    continue
            if name == "python":
                images = n if opts.python_images is None else min(n, opts.python_images)
                runs = 1 if opts.python_images is None else min(opts.repeat, PYTHON_MAX_RUNS)
                seconds, out = _python_timing(x, w, images, runs, opts.threads, progress, tag)
                row.runs = runs
                row.measured_images = images
                if images < n:
                    row.extrapolated = True
                    seconds = seconds * n / images
                row.max_abs_err, row.max_rel_err = errors(out, reference[:images])
                row.seconds = seconds
                continue
            if name == TF_BASELINE:
                def fn():
                    return _tf_conv(x, w)
            elif name == TORCH_BASELINE:
                fn, to_nhwc = _torch_callable(torch, x, w, opts.threads)
            else:
                def fn(name=name):
                    return conv.conv2d(x, w, method=name, threads=opts.threads)
            if name == "auto":
                row.chosen = _auto_choice(x, w, opts.threads)
            row.seconds, out = best_of(fn, opts.repeat)
            row.runs = opts.repeat
            if name == TORCH_BASELINE:
                out = to_nhwc(out)
            row.measured_images = n
            row.max_abs_err, row.max_rel_err = errors(out, reference)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken method must not stop the rest
            fail(row, exc)

    for row in rows:
        if row.status != "ok" or row.seconds is None:
            continue
        row.ms = row.seconds * 1e3
        row.gflops = case.flops / row.seconds / 1e9 if row.seconds > 0 else None
        rel = row.max_rel_err
        row.within_tolerance = bool(rel is not None and not math.isnan(rel)
                                    and rel <= TOLERANCE[case.dtype])

    by_name = {r.method: r for r in rows if r.status == "ok" and r.seconds}
    for r in rows:
        if r.status != "ok" or not r.seconds:
            continue
        if TF_BASELINE in by_name:
            r.speedup_vs_tensorflow = by_name[TF_BASELINE].seconds / r.seconds
        if "python" in by_name:
            r.speedup_vs_python = by_name["python"].seconds / r.seconds
        if TORCH_BASELINE in by_name:
            r.speedup_vs_torch = by_name[TORCH_BASELINE].seconds / r.seconds
    return rows


def _torch_callable(torch, x, w, threads):
    """torch.nn.functional.conv2d on NCHW/OIHW copies made here, outside the timed region."""
    torch.set_num_threads(threads)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    conv2d = torch.nn.functional.conv2d

    def fn():
        with torch.no_grad():
            return conv2d(xt, wt)

    def to_nhwc(out):
        return out.numpy().transpose(0, 2, 3, 1)

    return fn, to_nhwc


# ----------------------------------------------------------------- formatting
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fmt_ms(ms: Optional[float]) -> str:
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _fmt_ratio(r: Optional[float]) -> str:
    if r is None:
        return "-"
    if r >= 100:
        return f"{r:,.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    if r >= 0.1:
        return f"{r:.2f}x"
    return f"{r:.2g}x"


def _fmt_err(e: Optional[float]) -> str:
    if e is None:
        return "-"
    if e == 0:
        return "0"
    if math.isnan(e) or math.isinf(e):
        return str(e)
    return f"{e:.1e}"


def _fmt_gflops(g: Optional[float]) -> str:
    if g is None:
        return "-"
    return f"{g:.3g}" if g < 100 else f"{g:.0f}"


def render_table(headers: Sequence[str], body: Sequence[Sequence[str]],
                 left: Sequence[int] = (0,)) -> str:
    """An aligned plain-text table; columns in ``left`` are left-aligned."""
    widths = [len(h) for h in headers]
    for line in body:
        for i, cell in enumerate(line):
            widths[i] = max(widths[i], len(cell))

    def fmt(cells):
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.ljust(widths[i]) if i in left else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(headers), "  ".join("-" * wd for wd in widths)]
    lines += [fmt(b) if b else "" for b in body]
    return "\n".join(lines)


def _markers(row: Row) -> Tuple[str, str]:
    star = "*" if row.extrapolated else ""
    bang = "!" if row.within_tolerance is False else ""
    return star, bang


def format_article_table(rows: Sequence[Row], ceiling: Optional[float]) -> str:
    """The default (article) table for one case."""
    has_tf = any(r.method == TF_BASELINE and r.status == "ok" for r in rows)
    has_py = any(r.method == "python" and r.status == "ok" for r in rows)
    has_torch = any(r.method == TORCH_BASELINE and r.status == "ok" for r in rows)
    headers = ["method", "max abs err", "max rel err", "time (ms)", "GFLOP/s", "% peak"]
    if has_tf:
        headers.append("vs TF")
    if has_torch:
        headers.append("vs torch")
    if has_py:
        headers.append("vs python")
    body = []
    for r in rows:
        if r.status != "ok":
            continue
        star, bang = _markers(r)
        cells = [r.label, _fmt_err(r.max_abs_err), _fmt_err(r.max_rel_err) + bang,
                 _fmt_ms(r.ms) + star, _fmt_gflops(r.gflops), _fmt_peak(r, ceiling)]
        if has_tf:
            cells.append(_fmt_ratio(r.speedup_vs_tensorflow))
        if has_torch:
            cells.append(_fmt_ratio(r.speedup_vs_torch))
        if has_py:
            cells.append(_fmt_ratio(r.speedup_vs_python))
        body.append(cells)
    return render_table(headers, body)


def _fmt_peak(row: Row, ceiling: Optional[float]) -> str:
    if row.gflops is None or not ceiling:
        return "-"
    pct = 100.0 * row.gflops / ceiling
    return "<1%" if pct < 0.5 else f"{pct:.0f}%"


def format_suite_table(rows: Sequence[Row], ceilings: Dict[str, float]) -> str:
    """The --suite table: every case, one block each."""
    has_tf = any(r.method == TF_BASELINE and r.status == "ok" for r in rows)
    has_torch = any(r.method == TORCH_BASELINE and r.status == "ok" for r in rows)
    headers = ["shape", "dtype", "method", "ms", "GFLOP/s", "% peak"]
    if has_tf:
        headers.append("vs TF")
    if has_torch:
        headers.append("vs torch")
    headers.append("max rel err")
    body: List[List[str]] = []
    previous = None
    for r in rows:
        if r.status != "ok":
            continue
        key = (r.shape, r.dtype)
        if previous is not None and key != previous:
            body.append([])
        first = key != previous
        previous = key
        star, bang = _markers(r)
        cells = [r.shape if first else "", r.dtype if first else "", r.label,
                 _fmt_ms(r.ms) + star, _fmt_gflops(r.gflops),
                 _fmt_peak(r, ceilings.get(r.dtype))]
        if has_tf:
            cells.append(_fmt_ratio(r.speedup_vs_tensorflow))
        if has_torch:
            cells.append(_fmt_ratio(r.speedup_vs_torch))
        cells.append(_fmt_err(r.max_rel_err) + bang)
        body.append(cells)
    return render_table(headers, body, left=(0, 1, 2))


def footnotes(rows: Sequence[Row], suite: bool) -> List[str]:
    notes = []
    for r in rows:
        if r.extrapolated:
            notes.append(
                f"* {r.method} ({r.shape} {r.dtype}): extrapolated linearly from "
                f"{r.measured_images} of {r.x_shape[0]} images (best of {r.runs}); "
                f"--full runs the whole batch")
    for r in rows:
        if r.status == "ok" and not r.extrapolated and r.runs and any(
                o.runs > r.runs for o in rows if o.dtype == r.dtype and o.shape == r.shape):
            notes.append(f"{r.method} ({r.shape} {r.dtype}): best of {r.runs} run(s) only "
                         f"({r.measured_images} images)")
    ok = {r.method for r in rows if r.status == "ok"}
    if TF_BASELINE in ok and "tensorflow" in ok:
        notes.append(f"{TF_BASELINE}: TensorFlow called directly, as the article's reference "
                     "(the baseline of \"vs TF\"); tensorflow: the same TensorFlow kernel as a "
                     "conv method, through conv.conv2d (argument checks, padding, conversion): "
                     "a gap between the two rows is that overhead plus timing noise")
    if TORCH_BASELINE in ok:
        notes.append(f"{TORCH_BASELINE}: torch.nn.functional.conv2d on NCHW copies made "
                     "before timing, the baseline of \"vs torch\"")
    if any(r.within_tolerance is False for r in rows):
        notes.append("! error above tolerance (max rel err > "
                     + ", ".join(f"{v:g} for {k}" for k, v in TOLERANCE.items()) + ")")
    for r in rows:
        if r.status == "skipped":
            notes.append(f"not run: {r.method} on {r.shape} {r.dtype} ({r.message})")
        elif r.status == "failed":
            notes.append(f"FAILED: {r.method} on {r.shape} {r.dtype}: {r.message}")
    return notes


# ----------------------------------------------------------------------- plot
def plot(rows: Sequence[Row], path: str, title: str) -> None:
    """Bar chart of time per method (log scale), one group of bars per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == "ok" and r.seconds]
    cases: List[Tuple[str, str]] = []
    methods: List[str] = []
    for r in ok:
        if (r.shape, r.dtype) not in cases:
            cases.append((r.shape, r.dtype))
        if r.method not in methods:
            methods.append(r.method)
    single = len(cases) == 1
    fig_w = max(7.0, (len(methods) if single else len(cases) * len(methods) * 0.4) + 4)
    fig, ax = plt.subplots(figsize=(min(fig_w, 18), 5))
    cmap = plt.get_cmap("tab10")
    width = 0.8 / len(methods) if not single else 0.7
    for mi, m in enumerate(methods):
        xs, ys, hatches = [], [], []
        for ci, key in enumerate(cases):
            r = next((r for r in ok if (r.shape, r.dtype) == key and r.method == m), None)
            if r is None:
                continue
            xs.append(mi if single else ci - 0.4 + width * (mi + 0.5))
            ys.append(r.ms)
            hatches.append("//" if r.extrapolated else "")
        label = next((r.label for r in ok if r.method == m), m)
        bars = ax.bar(xs, ys, width=width, color=cmap(mi % 10), label=label,
                      edgecolor="black", linewidth=0.5)
        for bar, hatch, y in zip(bars, hatches, ys):
            bar.set_hatch(hatch)
            if single or len(cases) <= 4:
                ax.annotate(_fmt_ms(y) + ("*" if hatch else ""), (bar.get_x() + bar.get_width() / 2, y),
                            ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                            textcoords="offset points")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    all_ms = [r.ms for r in ok]
    if all_ms:
        ax.set_ylim(min(all_ms) / 2, max(all_ms) * 3)
    ax.set_ylabel("time (ms, log scale; lower is better)")
    if single:
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([next((r.label for r in ok if r.method == m), m) for m in methods],
                           rotation=20, ha="right")
    else:
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([f"{s}\n{d}" for s, d in cases])
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="method",
                  title_fontsize=8)
    ax.set_title(title, fontsize=10)
    if any(r.extrapolated for r in ok):
        fig.text(0.01, 0.01, "* hatched: extrapolated from a slice of the batch", fontsize=8)
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------ CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(f"{_one_line(message)} (see {self.prog} --help)")


EPILOG = f"""\
shapes (--shape, repeatable; every problem is VALID, stride 1, x and w standard normal):
  N,H,W,CIN:KH,KW,COUT   e.g. 100,32,32,3:3,3,16 (KH,KW,CIN,COUT is accepted too)
""" + "".join(f"  {k:<21}  x {_tup(v[0])}, w {_tup(v[1])}\n" for k, v in NAMED_SHAPES.items()) + f"""
errors: max |out - ref| and max |out - ref| / max |ref| against tf.nn.conv2d in the same
dtype when TensorFlow is installed, else conv.testing.reference_conv2d (exact).
vs TF, vs python, vs torch: that baseline's time / this time (> 1 is faster).
% peak: against this CPU's FMA peak, measured in the same run by an FMA loop in conv's
  loaded kernel build on the same threads (a direct algorithm cannot exceed it).
exit status: 0 ok; 1 a method failed or exceeded the error tolerance; 2 bad options.
"""


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    if prog is None:
        argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        prog = "conv" if argv0 == "conv" else "python -m conv"
    p = _Parser(
        prog=prog,
        description="Rerun the article's conv2d experiment on this machine: every conv method "
                    "(plugins included) and 'auto' against TensorFlow and pure Python, by error "
                    "and time.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shape", action="append", metavar="SHAPE",
                   help="problem to run (default: the article's, seed; see below)")
    p.add_argument("--dtype", choices=("float32", "float64", "both"), default=None,
                   help="default float32 (the article's); both with --suite")
    p.add_argument("--methods", metavar="A,B,C",
                   help="only these methods (names from conv.list_methods(), or auto)")
    p.add_argument("--threads", type=_positive("--threads"), metavar="N",
                   help="threads for conv, TensorFlow and PyTorch (default: every core)")
    p.add_argument("--repeat", type=_positive("--repeat"), metavar="N",
                   help=f"best of N timed runs (default {DEFAULT_REPEAT}, {QUICK_REPEAT} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help=f"best of {QUICK_REPEAT}; python on 1 image; the article's shape on "
                        f"{QUICK_BATCH} images (--shape and --suite shapes are kept)")
    p.add_argument("--full", action="store_true",
                   help=f"run the pure-Python method on the whole batch (default: "
                        f"{PYTHON_SLICE} images, extrapolated)")
    p.add_argument("--suite", action="store_true",
                   help="the public benchmark suite (seed, mid, deep, pointwise, k5; both dtypes; "
                        "ratios to TensorFlow and PyTorch; python only if named in --methods)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (machine, reference, rows) instead of tables")
    p.add_argument("--plot", metavar="FILE.png",
                   help='bar chart of time per method, log scale (needs pip install "conv2d-cpu[plot]")')
    return p


def _positive(option: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
        return value

    parse.__name__ = option.lstrip("-")
    return parse


def _machine(threads: int, tf_threads: Optional[str], blas_limited: bool) -> dict:
    import conv

    info = dict(conv.build_info())
    tf = _tensorflow() if tensorflow_available() else None
    torch = _torch()
    info.update({
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "tensorflow": getattr(tf, "__version__", None),
        "tensorflow_threads": tf_threads,
        "torch": getattr(torch, "__version__", None),
        "numpy_blas_threads": threads if blas_limited else "BLAS default",
    })
    return info


def _jsonable(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m conv`` and the ``conv`` script. Returns the exit status."""
    try:
        return _main(argv)
    except UsageError as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - never a traceback
        _error(f"{type(exc).__name__}: {_one_line(str(exc))}")
        return 1


def _check_plot_path(path: str) -> None:
    """--plot: matplotlib installed, a known image format, a regular file that can be
    written; all checked before any work (UsageError otherwise)."""
    if not _matplotlib_available():
        raise UsageError('--plot needs matplotlib: pip install "conv2d-cpu[plot]"')
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = sorted(FigureCanvasAgg(Figure()).get_supported_filetypes())
    if os.path.isdir(path):
        raise UsageError(f"--plot {path!r} is a directory; name a file, e.g. "
                         f"{os.path.join(path, 'times.png')!r}")
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in formats:
        raise UsageError(f"--plot {path!r}: unknown image format {ext or '(none)'!r}; "
                         f"end the name with one of: {', '.join('.' + f for f in formats)}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--plot {path!r}: directory {parent!r} does not exist")
    if os.path.exists(path):
        if not os.path.isfile(path):
            raise UsageError(f"--plot {path!r} is not a regular file")
        if not os.access(path, os.W_OK):
            raise UsageError(f"--plot {path!r}: the file is not writable")
        return
    try:  # create it for a moment: the only sure test that the directory takes a file
        with open(path, "xb"):
            pass
        os.remove(path)
    except OSError as exc:
        raise UsageError(f"--plot {path!r}: cannot write there ({exc.strerror})") from None


def _available_memory() -> Optional[int]:
    """Bytes of memory available now (Linux's MemAvailable), else physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _check_memory(shapes, dtypes) -> None:
    """Refuse a problem whose arrays cannot fit in memory, before any work: x, w, the
    reference and two outputs (a method's and its copy), in the largest dtype asked."""
    avail = _available_memory()
    if avail is None:
        return
    itemsize = max(np.dtype(dt).itemsize for dt in dtypes)
    for name, xs, ws in shapes:
        oh, ow = xs[1] - ws[0] + 1, xs[2] - ws[1] + 1
        elements = math.prod(xs) + math.prod(ws) + 3 * xs[0] * oh * ow * ws[3]
        need = elements * itemsize
        if need > avail:
            raise UsageError(
                f"--shape {name}: x {_tup(xs)} * w {_tup(ws)} needs about "
                f"{need / 1e9:,.1f} GB in {max(dtypes, key=lambda d: np.dtype(d).itemsize)}; "
                f"{avail / 1e9:,.1f} GB of memory is available")


def _error(msg: str) -> None:
    try:
        sys.stderr.write(f"conv: error: {_one_line(msg)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


ARTICLE_LABELS = {"tf.nn.conv2d": "tf.nn.conv2d", "python": "py_conv (= python)",
                  "numpy": "matrix_mult (= numpy)"}


def _is_article_case(case: Case) -> bool:
    return (case.x_shape, case.w_shape) == NAMED_SHAPES[ARTICLE_SHAPE] and case.dtype == "float32"


def _main(argv: Optional[Sequence[str]]) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    import conv

    # ---- validate everything before the long work starts
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        raise UsageError("stdout is closed: the tables would go nowhere")
    shapes = [parse_shape(s) for s in args.shape] if args.shape else None
    if args.plot:
        _check_plot_path(args.plot)
    if args.methods is not None:
        methods = resolve_methods(args.methods)
    else:
        methods = usable_methods(with_python=not args.suite)
    from ._frontend import available_cpus

    if args.threads is not None and args.threads > available_cpus():
        raise UsageError(f"--threads {args.threads}: this process may run on "
                         f"{available_cpus()} CPU(s); give at most that")
    threads = args.threads or conv.build_info()["default_threads"]
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    dtype = args.dtype or ("both" if args.suite else "float32")
    dtypes = ["float32", "float64"] if dtype == "both" else [dtype]

    if shapes is None:
        names = SUITE_SHAPES if args.suite else (ARTICLE_SHAPE,)
        shapes = [(nm, *NAMED_SHAPES[nm]) for nm in names]
    _check_memory(shapes, dtypes)
    cases = []
    for name, xs, ws in shapes:
        note = ""
        if args.quick and not args.suite and not args.shape and xs[0] > QUICK_BATCH:
            note = f"--quick: {QUICK_BATCH} of the article's {xs[0]} images"
            xs = (QUICK_BATCH,) + tuple(xs[1:])
        for dt in dtypes:
            cases.append(Case(name, tuple(xs), tuple(ws), dt, note))

    opts = Options(
        repeat=repeat,
        threads=threads,
        python_images=None if args.full else (1 if args.quick else PYTHON_SLICE),
        with_torch=True,  # a "vs torch" column whenever PyTorch is installed
    )
    progress = Progress()
    out = sys.stdout

    # ---- the reference, the baselines' threads, the machine's peak
    tf_ok = tensorflow_available()
    tf_threads = _init_tensorflow(threads) if tf_ok else None
    reference = select_reference()
    blas_ctx, blas_limited = _threadpool_limits(threads)
    with blas_ctx:
        peak = Peak(threads)
        for dt in dtypes:
            progress.update(f"measuring the machine's peak (FMA loop, {dt})", important=True)
            peak.measure(dt, repeat=3 if args.quick else 5)
        machine = _machine(threads, tf_threads, blas_limited)

        if not args.json:
            progress.clear()
            title = ("conv benchmark suite" if args.suite
                     else "conv: the article's experiment (OpenGenus, \"2D convolution in Python\")")
            print(f"{title}, conv {conv.__version__}", file=out)
            print(f"machine: {machine['platform']}, {machine['cpu_count']} CPUs, "
                  f"{threads} threads ({machine['threading']}), "
                  f"numpy {machine['numpy']}"
                  + (f", TensorFlow {machine['tensorflow']}" if machine["tensorflow"] else "")
                  + (f", PyTorch {machine['torch']}" if machine["torch"] else ""),
                  file=out)
            if not tf_ok:
                print("TensorFlow: not installed - no TensorFlow column "
                      '(pip install "conv2d-cpu[tf]" to add it)', file=out)
            if not machine["torch"]:
                print("PyTorch: not installed - no PyTorch row or \"vs torch\" column "
                      "(pip install torch to add them)", file=out)
            print(f"reference: {reference.description}", file=out)
            unusable = _unusable_methods()
            print("methods: " + ", ".join(methods)
                  + (f" (declared but not usable here: {', '.join(unusable)})" if unusable else ""),
                  file=out)
            print(f"timing: best of {repeat} consecutive calls after a warm-up call, "
                  "all in this process", file=out, flush=True)

        rows: List[Row] = []
        for case in cases:
            case_rows = run_case(case, methods, reference, opts, progress, peak)
            rows += case_rows
            if not args.json and not args.suite:
                progress.clear()
                print(f"\n{case.name}: {case.describe()}", file=out)
                print(format_article_table(case_rows, peak.gflops(case.dtype)), file=out)
                print(peak.describe([case.dtype]), file=out, flush=True)
                if _is_article_case(case):
                    print("the article, on its machine (one call each): " + ", ".join(
                        f"{ARTICLE_LABELS[k]} {_fmt_ms(v * 1e3)} ms"
                        for k, v in ARTICLE_SECONDS.items()), file=out, flush=True)
    ceilings = peak.all()
    for r in rows:
        if r.gflops and ceilings.get(r.dtype):
            r.peak_fraction = r.gflops / ceilings[r.dtype]
    progress.clear()

    if args.json:
        doc = {
            "conv_version": conv.__version__,
            "mode": "suite" if args.suite else "article",
            "machine": machine,
            "reference": {"name": reference.name, "description": reference.description},
            "tensorflow_available": tf_ok,
            "settings": {"repeat": repeat, "threads": threads, "quick": args.quick,
                         "full": args.full, "dtypes": dtypes, "methods": methods,
                         "python_images": opts.python_images, "tolerance": TOLERANCE},
            "ceiling_gflops": ceilings,
            "article_seconds": {"shape": ARTICLE_SHAPE, "dtype": "float32", **ARTICLE_SECONDS},
            "cases": [dict(asdict(c), x_shape=list(c.x_shape), w_shape=list(c.w_shape),
                           flops=c.flops) for c in cases],
            "rows": [dict(asdict(r), label=r.label) for r in rows],
        }
        json.dump(_jsonable(doc), out, indent=2, allow_nan=False)
        out.write("\n")
    else:
        if args.suite:
            print("", file=out)
            print(format_suite_table(rows, ceilings), file=out)
        notes = footnotes(rows, args.suite)
        if args.suite:
            notes.append(peak.describe(dtypes))
        notes.append("vs X = X's time / this time (> 1 is faster); "
                     "errors: max |out - ref| and max |out - ref| / max |ref|")
        print("", file=out)
        for note in notes:
            print(note, file=out)
    out.flush()

    if args.plot:
        title = ("conv2d time per method" + (" (suite)" if args.suite else
                 f": {cases[0].describe()}" if len(cases) == 1 else ""))
        plot(rows, args.plot, title)
        progress.line(f"wrote {args.plot}")

    failed = [r for r in rows if r.status == "failed" or r.within_tolerance is False]
    return 1 if failed else 0
