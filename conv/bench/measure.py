"""One case's measurement: every contender (conv's methods, "auto", a measured plan, the
baselines) timed side by side in this process, with its errors against the reference."""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import conv

from .. import _introspect
from . import frameworks, planning
from .frameworks import TF_BASELINE, TORCH_BASELINE
from .reference import TOLERANCE, Reference, errors
from .report import one_line
from .shapes import Shape4, tup
from .timing import best_of

DEFAULT_REPEAT = 7
PYTHON_SLICE = 2  # images the pure-Python method runs on by default (1 with --quick)
PYTHON_MAX_RUNS = 3  # the sliced pure-Python run is repeated at most this often
#: Methods too slow for a whole batch: timed on a slice of it, and extrapolated.
SLICED_METHODS = frozenset({"python"})


@dataclass(frozen=True)
class Workload:
    """One problem to measure: a shape and a dtype (always VALID, stride 1)."""

    name: str
    x_shape: Shape4
    w_shape: Shape4
    dtype: str
    note: str = ""

    @property
    def out_shape(self) -> Shape4:
        return _introspect.valid_out_shape(self.x_shape, self.w_shape)

    @property
    def flops(self) -> int:
        return _introspect.flops(self.out_shape, self.w_shape)

    def describe(self) -> str:
        return (f"x {tup(self.x_shape)} * w {tup(self.w_shape)}, {self.dtype}, VALID, stride 1"
                + (f" ({self.note})" if self.note else ""))

    def inputs(self, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """Standard-normal x and w (as the article's np.random.randn), in this dtype."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(self.dtype)
        w = rng.standard_normal(self.w_shape).astype(self.dtype)
        return x, w


@dataclass
class Row:
    """One method on one case. Times are for the full batch (extrapolated when marked)."""

    method: str
    kind: str  # "baseline", "method", "auto" or "planned"
    shape: str
    x_shape: List[int]
    w_shape: List[int]
    dtype: str
    threads: int
    flops: int
    status: str = "ok"  # "ok", "skipped" or "failed"
    message: str = ""
    chosen: Optional[str] = None  # for "auto" and "planned": the method it ran
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
    planning_seconds: Optional[float] = None  # "planned": making the plan (not in seconds)
    plan_times: Optional[Dict[str, object]] = None  # "planned": the plan's .times

    @property
    def label(self) -> str:
        return f"{self.method} ({self.chosen})" if self.chosen else self.method


@dataclass
class Options:
    repeat: int = DEFAULT_REPEAT
    threads: int = 1
    python_images: Optional[int] = PYTHON_SLICE  # None: the whole batch (--full)
    with_torch: bool = False
    with_planned: bool = False  # a "planned" contender after "auto" (--suite)


@dataclass
class Timing:
    seconds: float  # for the images measured
    out: np.ndarray  # their outputs
    runs: int
    images: int
    plan: Optional[object] = None  # the conv.Plan called, for "planned"


# ---------------------------------------------------------------- contenders
#: Methods that run on a library whose idle threads keep spinning after a call (OpenBLAS
#: behind NumPy's matmul, TensorFlow's pool), slowing whatever runs next on the machine's
#: cores: run_case pauses SPIN_PAUSE_SECONDS after them, and after the frameworks' own
#: baselines. Measured: PyTorch's seed call took 13 ms instead of 0.5 ms right after
#: numpy's row, and the suite's rows right after the tensorflow method ran 2-3x slower.
SPINNING_METHODS = ("numpy", "tensorflow")
SPIN_PAUSE_SECONDS = 0.2


class Method:
    """A conv method through conv.conv2d, best of opts.repeat after a warm-up call."""

    kind = "method"

    def __init__(self, name: str):
        self.name = name
        self.spins = name in SPINNING_METHODS  # pause after it (run_case)

    def skip_reason(self, dtype: str) -> Optional[str]:
        method = conv.get_method(self.name)
        if dtype not in method.dtypes:
            return f"computes {', '.join(method.dtypes)} only"
        return None

    def chosen(self, x, w, threads) -> Optional[str]:
        return None

    def measure(self, x, w, opts: Options, progress, tag: str) -> Timing:
        seconds, out = best_of(
            lambda: conv.conv2d(x, w, method=self.name, threads=opts.threads), opts.repeat)
        return Timing(seconds, out, opts.repeat, x.shape[0])


class Auto(Method):
    """conv.conv2d(method="auto"); the row also says which method it ran."""

    kind = "auto"

    def skip_reason(self, dtype: str) -> Optional[str]:
        return None

    def chosen(self, x, w, threads) -> Optional[str]:
        try:
            return _introspect.auto_choice(x, w, threads)
        except Exception:  # noqa: BLE001 - the row itself reports what went wrong
            return None


class Planned(Method):
    """A plan made with conv.plan(x.shape, w, effort="measure") before timing, then called
    (best of opts.repeat after a warm-up call, as the others); planning is not in its time.
    The row says which method the plan chose and how long planning took."""

    kind = "planned"

    def __init__(self):
        super().__init__(planning.PLANNED)

    def skip_reason(self, dtype: str) -> Optional[str]:
        return None

    def measure(self, x, w, opts: Options, progress, tag: str) -> Timing:
        progress.update(f"{tag}: {self.name}: conv.plan(effort=\"{planning.EFFORT}\")",
                        important=True)
        plan = planning.measured_plan(x.shape, w, opts.threads)
        time.sleep(SPIN_PAUSE_SECONDS)  # planning timed the numpy and tensorflow methods too
        seconds, out = best_of(lambda: plan(x), opts.repeat)
        return Timing(seconds, out, opts.repeat, x.shape[0], plan)


class SlicedMethod(Method):
    """A method too slow for the batch: one image per call (so progress can be shown) on
    the first images of the batch; the best of a few runs of that slice."""

    def measure(self, x, w, opts: Options, progress, tag: str) -> Timing:
        n = x.shape[0]
        images = n if opts.python_images is None else min(n, opts.python_images)
        runs = 1 if opts.python_images is None else min(opts.repeat, PYTHON_MAX_RUNS)
        best = math.inf
        outs: List[np.ndarray] = []
        step = max(1, images // 10)
        for r in range(runs):
            total, outs, t_start = 0.0, [], time.perf_counter()
            for i in range(images):
                msg = f"{tag}: {self.name}, run {r + 1}/{runs}, image {i + 1}/{images}"
                if i:
                    left = (time.perf_counter() - t_start) / i * (images - i)
                    msg += f", ~{left:.0f} s left in this run"
                progress.update(msg, important=(i == 0 or (images >= 10 and i % step == 0)))
                t0 = time.perf_counter()
                out = conv.conv2d(x[i:i + 1], w, method=self.name, threads=opts.threads)
                total += time.perf_counter() - t0
                outs.append(out)
            best = min(best, total)
        return Timing(best, np.concatenate(outs, axis=0), runs, images)


class Baseline(Method):
    """A framework's own conv2d, outside conv: never skipped (it computes both dtypes)."""

    kind = "baseline"

    def __init__(self, name: str):
        super().__init__(name)
        self.spins = True  # both frameworks' thread pools spin after a call

    def skip_reason(self, dtype: str) -> Optional[str]:
        return None


class TensorFlowBaseline(Baseline):
    """tf.nn.conv2d called directly, as the article's reference (the "vs TF" baseline)."""

    def __init__(self):
        super().__init__(TF_BASELINE)

    def measure(self, x, w, opts: Options, progress, tag: str) -> Timing:
        seconds, out = best_of(frameworks.tensorflow_callable(x, w), opts.repeat)
        return Timing(seconds, out, opts.repeat, x.shape[0])


class TorchBaseline(Baseline):
    """torch.nn.functional.conv2d on x as a channels_last tensor and OIHW weights made
    before timing ("vs torch"; frameworks.torch_callable)."""

    def __init__(self, torch):
        super().__init__(TORCH_BASELINE)
        self.torch = torch

    def measure(self, x, w, opts: Options, progress, tag: str) -> Timing:
        call, to_nhwc = frameworks.torch_callable(self.torch, x, w, opts.threads)
        seconds, out = best_of(call, opts.repeat)
        return Timing(seconds, to_nhwc(out), opts.repeat, x.shape[0])


def contenders(methods: Sequence[str], opts: Options) -> List[Method]:
    """TensorFlow's baseline (when installed), the methods (with opts.with_planned, a
    measured plan right after "auto"), and PyTorch's baseline last (its OpenMP threads
    keep spinning after its calls)."""
    out: List[Method] = []
    if frameworks.tensorflow_available():
        out.append(TensorFlowBaseline())
    for name in methods:
        out.append(Auto(name) if name == "auto"
                   else SlicedMethod(name) if name in SLICED_METHODS else Method(name))
        if name == "auto" and opts.with_planned:
            out.append(Planned())
    torch = frameworks.torch() if opts.with_torch else None
    if torch is not None:
        out.append(TorchBaseline(torch))
    return out


# ---------------------------------------------------------------- one case
def run_case(case: Workload, methods: Sequence[str], ref: Reference, opts: Options,
             progress, peak=None) -> List[Row]:
    """Measure every method (and the TensorFlow/PyTorch baselines) on one case."""
    gc.collect()
    x, w = case.inputs()
    n = case.x_shape[0]
    tag = f"{case.name} {case.dtype}"
    progress.update(f"{tag}: reference ({ref.name})", important=True)
    reference = ref.fn(x, w)
    jobs = contenders(methods, opts)
    if peak is not None:  # re-measured per case: the best seen in the run counts
        progress.update(f"{tag}: measuring the machine's peak", important=True)
        peak.measure(case.dtype, repeat=3)

    rows: List[Row] = []
    for k, job in enumerate(jobs, 1):
        row = Row(method=job.name, kind=job.kind, shape=case.name, x_shape=list(case.x_shape),
                  w_shape=list(case.w_shape), dtype=case.dtype, threads=opts.threads,
                  flops=case.flops)
        rows.append(row)
        progress.update(f"{tag}: [{k}/{len(jobs)}] {job.name}", important=True)
        try:
            reason = job.skip_reason(case.dtype)
            if reason is not None:
                row.status, row.message = "skipped", reason
                continue
            row.chosen = job.chosen(x, w, opts.threads)
            try:
                t = job.measure(x, w, opts, progress, tag)
            finally:
                if job.spins:  # let its threads go idle before the next contender
                    time.sleep(SPIN_PAUSE_SECONDS)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken method must not stop the rest
            row.status = "failed"
            row.message = f"{type(exc).__name__}: {one_line(str(exc))}"
            progress.line(f"{tag}: {row.method} failed: {row.message}")
            continue
        row.runs, row.measured_images = t.runs, t.images
        if t.plan is not None:
            row.chosen, row.planning_seconds = t.plan.method, t.plan.planning_seconds
            row.plan_times = dict(t.plan.times)
        row.extrapolated = t.images < n
        row.seconds = t.seconds * n / t.images if row.extrapolated else t.seconds
        row.max_abs_err, row.max_rel_err = errors(t.out, reference[:t.images])
    _derive(rows, case)
    return rows


def _derive(rows: List[Row], case: Workload) -> None:
    """Milliseconds, GFLOP/s, the tolerance check and the speed-ups of the ok rows."""
    timed = [r for r in rows if r.status == "ok" and r.seconds]
    for row in rows:
        if row.status != "ok" or row.seconds is None:
            continue
        row.ms = row.seconds * 1e3
        row.gflops = case.flops / row.seconds / 1e9 if row.seconds > 0 else None
        rel = row.max_rel_err
        row.within_tolerance = bool(rel is not None and not math.isnan(rel)
                                    and rel <= TOLERANCE[case.dtype])
    by_name = {r.method: r for r in timed}
    for r in timed:
        for base, attr in ((TF_BASELINE, "speedup_vs_tensorflow"), ("python", "speedup_vs_python"),
                           (TORCH_BASELINE, "speedup_vs_torch")):
            if base in by_name:
                setattr(r, attr, by_name[base].seconds / r.seconds)
