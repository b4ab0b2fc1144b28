"""The machine: its FMA peak, its copy bandwidth, its description, and whether a problem
fits in its memory."""
from __future__ import annotations

import math
import os
import platform
import time
from typing import Dict, Optional, Sequence

import numpy as np

import conv

from .. import _introspect
from . import frameworks
from .shapes import tup


class Peak:
    """The machine's ceiling: GFLOP/s of conv's FMA loop (conv/methods/_peak.h) per dtype,
    on the run's threads, in the kernel build that is loaded (the same instructions the
    kernels use). It is timed up front and again before every case, and the best seen so
    far counts, so a burst of load from elsewhere does not lower the ceiling. Nothing is
    measured when the compiled kernels are unusable here (then there is no "% peak")."""

    def __init__(self, threads: int):
        self.threads = threads
        self._best: Dict[str, float] = {}
        self.build = _introspect.kernel_build() or "none"

    def measure(self, dtype: str, repeat: int) -> Optional[float]:
        if self.build != "none":
            g = _introspect.fma_peak(dtype, self.threads, repeat=repeat)
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
        line += ("; GFLOP/s count the direct algorithm's flops, which winograd (fewer "
                 "multiplications) can exceed")
        if _introspect.cpu_has("AVX512F") and "avx512" not in self.build:
            line += ("; this CPU also has AVX-512, which conv's kernels do not use, so "
                     "libraries that do (BLAS, oneDNN in TensorFlow and PyTorch) can pass 100%")
        return line


#: --network's copy bandwidth: a NumPy copy of this many bytes, the best of COPY_REPEAT
COPY_BYTES = 256 * 2**20
COPY_REPEAT = 3


def copy_bandwidth(nbytes: int = COPY_BYTES, repeat: int = COPY_REPEAT) -> float:
    """GB/s of a NumPy copy of an ``nbytes`` array into another (NumPy copies on one
    thread): the bytes read plus the bytes written, over the best of ``repeat`` copies.
    Both arrays are written before the first copy, so no page fault is timed. The size is
    halved while the two arrays would take more than half the available memory."""
    avail = available_memory()
    while avail is not None and nbytes > 2**20 and 4 * nbytes > avail:
        nbytes //= 2
    src = np.ones(max(nbytes // 8, 1), np.float64)
    dst = np.zeros_like(src)
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / max(best, 1e-9) / 1e9


def describe(threads: int, tf_threads: Optional[str], blas_limited: bool) -> dict:
    """conv.build_info() plus the platform, the threads and the baselines' versions."""
    info = dict(conv.build_info())
    tf = frameworks.tensorflow() if frameworks.tensorflow_available() else None
    torch = frameworks.torch()
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


def available_memory() -> Optional[int]:
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


def check_memory(shapes, dtypes) -> None:
    """Refuse a problem whose arrays cannot fit in memory, before any work: x, w, the
    reference and two outputs (a method's and its copy), in the largest dtype asked
    (ValueError otherwise)."""
    avail = available_memory()
    if avail is None:
        return
    itemsize = max(np.dtype(dt).itemsize for dt in dtypes)
    for name, xs, ws in shapes:
        elements = math.prod(xs) + math.prod(ws) + 3 * math.prod(_introspect.valid_out_shape(xs, ws))
        need = elements * itemsize
        if need > avail:
            raise ValueError(
                f"--shape {name}: x {tup(xs)} * w {tup(ws)} needs about "
                f"{need / 1e9:,.1f} GB in {max(dtypes, key=lambda d: np.dtype(d).itemsize)}; "
                f"{avail / 1e9:,.1f} GB of memory is available")
