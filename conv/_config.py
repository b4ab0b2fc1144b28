"""Which build of conv is this? (threads: pool or serial; SIMD; versions.)"""
from __future__ import annotations

import sys

import numpy as np

from . import _buildinfo


def _kernel_builds() -> tuple:
    """(the kernel build in use as "module (SIMD)", the kernel modules installed, its
    threading). On x86-64 three builds are installed, portable, AVX2+FMA and AVX-512, and
    conv.methods._compiled loads the widest this CPU can run."""
    try:
        from .methods import _compiled
    except ImportError as exc:  # a broken build: say so instead of failing
        return f"unavailable ({exc})", "unavailable", "unavailable"
    return (f"{_compiled.kernels.__name__} ({_compiled.kernels.SIMD})",
            ", ".join(_compiled.installed_builds()), _compiled.kernels.POOL)


def build_info() -> dict:
    """A dict describing this installation: version, threading, SIMD, methods.

    ``threading`` is how the loaded kernels run in parallel: "pthreads" (conv's own pool,
    every POSIX system), "openmp" (elsewhere, when the compiler has it) or "serial"."""
    from . import __version__
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
        "cpu_avx2_fma": _buildinfo.cpu_has("AVX2", "FMA3"),
        "cpu_avx512f": _buildinfo.cpu_has("AVX512F"),
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
