"""Which build of conv is this? (OpenMP or serial, SIMD, versions.)"""
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


def _kernel_variant() -> str:
    """Which compiled kernel build is loaded (see conv.methods._compiled)."""
    try:
        from .methods import _compiled
    except ImportError as exc:  # a broken build: say so instead of failing
        return f"unavailable ({exc})"
    return f"{_compiled.impl.__name__} ({_compiled.impl.SIMD})"


def build_info() -> dict:
    """A dict describing this installation: version, OpenMP, SIMD, methods."""
    from . import __version__
    from . import _buildinfo
    from ._frontend import default_threads
    from ._registry import REGISTRY

    omp = _buildinfo.openmp_version()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "openmp": bool(omp),
        "openmp_version": omp or None,
        "omp_max_threads": _buildinfo.omp_max_threads(),
        "default_threads": default_threads(),
        "built_for_avx2_fma": _buildinfo.baseline_avx2_fma(),
        "cpu_avx2_fma": cpu_has("AVX2", "FMA3"),
        "kernels": _kernel_variant(),
        "methods": REGISTRY.list_methods(),
    }


def show_config() -> None:
    """Print build_info() one item a line."""
    for key, value in build_info().items():
        if key == "openmp" and not value:
            value = "False (serial build: every method runs on one thread)"
        print(f"{key:>20}: {value}")
