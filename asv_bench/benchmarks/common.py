"""Shared by every benchmark module: the shapes, the timing loop, the method list,
cached inputs.

No benchmarks live here (asv only collects ``time_``/``track_``/``peakmem_``...
names, and there are none).
"""
import functools
import importlib
import importlib.util
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # fewer TensorFlow log lines in asv's stderr

import conv  # noqa: E402



def _bench_module(name):
    """conv/bench/<name>.py (standard library only), one source with ``python -m conv``.

    Loaded from this checkout by path, so every commit asv measures (older ones have no
    conv.bench) gets the same shapes and the same timing loop; the installed
    conv.bench.<name> when the checkout's file is not there."""
    path = Path(__file__).resolve().parents[2] / "conv" / "bench" / f"{name}.py"
    if path.is_file():
        spec = importlib.util.spec_from_file_location(f"_asv_conv_bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(f"conv.bench.{name}")


timing = _bench_module("timing")
# The public suite of the kernels issue (all VALID, stride 1): (x NHWC, w HWIO).
PUBLIC_SHAPES = dict(_bench_module("shapes").NAMED_SHAPES)
# Small enough for the pure-Python loops (~10 ms); every method runs it, so the
# "python" rows have numbers to compare against.
SMALL = {"small": ((1, 12, 12, 3), (3, 3, 3, 8))}
SHAPES = {**SMALL, **PUBLIC_SHAPES}
PYTHON_SHAPES = set(SMALL)

# The largest public problem (input + output elements, and flops): mid.
LARGEST = "mid"
SEED = "seed"

DTYPES = ["float32", "float64"]
THREADS = [1, 2]

# conv's own methods in a fixed order (so asv's parameter grid, and its graphs,
# stay the same from commit to commit), then whatever plugins are installed,
# then "auto". A method not installed at a given commit gives skipped rows.
KNOWN_METHODS = ["python", "numpy", "tensorflow", "direct", "matmul", "winograd"]


def _installed_methods():
    try:
        return list(conv.list_methods())
    except Exception:  # noqa: BLE001 - an old commit without list_methods
        return []


INSTALLED = _installed_methods()
METHODS = KNOWN_METHODS + sorted(set(INSTALLED) - set(KNOWN_METHODS)) + ["auto"]


def method_info(method):
    """The conv.Method for ``method`` ("auto" -> None).

    NotImplementedError (asv: row skipped) when the method is not declared at
    this commit or its optional dependency (e.g. TensorFlow) is not installed.
    A method that is declared but broken (its module fails to import) raises
    conv.MethodError: the benchmark fails, as it should.
    """
    if method == "auto":
        return None
    try:
        info = conv.get_method(method)
    except ValueError:  # unknown name: not part of conv at this commit
        raise NotImplementedError(f"conv method {method!r} does not exist here (have {INSTALLED})")
    if not info.is_available():
        raise NotImplementedError(f"conv method {method!r} needs {info.missing_requirements()}")
    return info


def skip_unless_runs(method, shape, dtype, threads=None):
    """Raise NotImplementedError (asv shows the row as skipped) for combinations
    that are not measured: uninstalled methods, dtypes a method does not compute,
    "python" on anything but the small shape, and threads=1 for methods that do
    not honour ``threads`` (they are measured once, in the threads=2 row)."""
    info = method_info(method)
    if method == "python" and shape not in PYTHON_SHAPES:
        raise NotImplementedError(f"'python' runs only on {sorted(PYTHON_SHAPES)} (too slow for {shape!r})")
    if info is not None and dtype not in info.dtypes:
        raise NotImplementedError(f"{method!r} does not compute {dtype}")
    if threads is not None and threads != max(THREADS) and info is not None and not info.parallel:
        raise NotImplementedError(
            f"{method!r} ignores threads= (its library picks its own); measured in the threads={max(THREADS)} row"
        )
    return info


@functools.lru_cache(maxsize=None)
def inputs(shape, dtype):
    """(x, w) for a named shape: standard normal, fixed seed, C-contiguous, read-only.

    Cached per process, so asv's per-sample setup re-runs cost nothing."""
    xs, ws = SHAPES[shape]
    rng = np.random.default_rng(20240501)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


_warm = set()


def warm_up(key, fn):
    """Call ``fn`` once per process per ``key`` (TensorFlow's first-call setup,
    the thread pool, page faults on the output), outside the timed code."""
    if key not in _warm:
        fn()
        _warm.add(key)

