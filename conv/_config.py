"""Which build of conv is this? (threads: pool or serial; SIMD; versions.)"""
from __future__ import annotations

import sys

import numpy as np


def _cpu_features():
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return __cpu_features__


def cpu_has(*features: str) -> bool:
    """True when this CPU has all the named features, by NumPy's run-time detection."""
    found = _cpu_features()
    return all(found.get(f, False) for f in features)


def _kernel_builds() -> tuple:
    """(the kernel build in use as "module (SIMD)", the kernel modules installed, its
    threading).

    On x86-64 two builds are installed, portable and AVX2+FMA, and conv.methods._compiled
    loads the one this CPU can run. The others are only looked up, never imported: the
    AVX2 build's own initialisation would crash a CPU without AVX2."""
    import importlib.util

    try:
        from .methods import _compiled
    except ImportError as exc:  # a broken build: say so instead of failing
        return f"unavailable ({exc})", "unavailable", "unavailable"
    installed = [name for name in ("conv.methods._kernels", "conv.methods._kernels_avx2")
                 if importlib.util.find_spec(name) is not None]
    return (f"{_compiled.impl.__name__} ({_compiled.impl.SIMD})", ", ".join(installed),
            _compiled.impl.POOL)


def build_info() -> dict:
    """A dict describing this installation: version, threading, SIMD, methods.

    ``threading`` is how the loaded kernels run in parallel: "pthreads" (conv's own pool,
    every POSIX system), "openmp" (elsewhere, when the compiler has it) or "serial"."""
    from . import __version__
    from . import _buildinfo
    from ._frontend import default_threads
    from ._registry import REGISTRY

    kernels, installed, threading = _kernel_builds()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "threading": threading,
        "serial_build": _buildinfo.serial(),
        "default_threads": default_threads(),
        "cpu_avx2_fma": cpu_has("AVX2", "FMA3"),
        "kernels": kernels,
        "kernel_builds": installed,
        "methods": REGISTRY.list_methods(),
    }


def show_config() -> None:
    """Print build_info() one item a line."""
    for key, value in build_info().items():
        if key == "threading" and value == "serial":
            value = "serial (this build runs every method on one thread)"
        print(f"{key:>20}: {value}")
