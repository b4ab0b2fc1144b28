"""The one internal interface conv's own tools use.

conv.bench (``python -m conv``) talks to the rest of conv through the public API
(``conv.conv2d``, ``conv.list_methods``, ``conv.get_method``, ``conv.build_info``) and,
for what a user never needs, through the names here and nothing else (output sizes and
flops from conv._geometry, CPU features, the CPUs this process may use, and the
functions below). Change them together with conv.bench.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from . import _auto
from ._geometry import flops, valid_out_shape  # noqa: F401 - part of this interface
from ._buildinfo import cpu_has  # noqa: F401 - part of this interface
from ._contract import Method
from ._frontend import available_cpus, normalize, specify  # noqa: F401 - part of this interface
from ._registry import REGISTRY
from .methods import tensorflow_conv

__all__ = ["auto_candidates", "auto_choice", "available_cpus", "cpu_has", "declared_methods",
           "flops", "fma_peak", "kernel_build", "normalize", "tensorflow_conv2d",
           "tensorflow_module", "usable_method", "valid_out_shape"]


def declared_methods() -> List[str]:
    """Every method name declared here, usable or not (a missing dependency, a broken
    plugin), sorted."""
    return REGISTRY.names()


def usable_method(name: str) -> Method:
    """The method registered as ``name``; ValueError (unknown), MethodError (broken) or
    MethodUnavailableError (a missing dependency) with a message meant for people."""
    return REGISTRY.usable(name)


def auto_choice(x: np.ndarray, w: np.ndarray, threads: int, **kwargs) -> str:
    """The name of the method ``conv.conv2d(x, w, method="auto", threads=threads,
    **kwargs)`` runs (kwargs: stride, padding, dilation)."""
    from ._plan import _choose_auto

    x = np.asarray(x)
    spec = specify(x.shape, x.dtype, np.asarray(w), threads=threads, **kwargs)
    return _choose_auto(spec, x.shape[0])[0].name


def auto_candidates() -> List[str]:
    """The methods "auto" may choose, in its order of preference."""
    return list(_auto.CANDIDATES)


def kernel_build() -> Optional[str]:
    """The SIMD level of the loaded compiled kernels ("avx2+fma", "sse2", ...), or None
    when they cannot be loaded here."""
    try:
        from .methods import _compiled
    except ImportError:
        return None
    return _compiled.kernels.SIMD


def fma_peak(dtype: str, threads: int, repeat: int) -> float:
    """GFLOP/s of the loaded kernel build's FMA loop on ``threads`` threads (the ceiling
    of the kernels' own arithmetic). Needs kernel_build() to be not None."""
    from .methods import _compiled

    return _compiled.fma_peak(dtype, threads, repeat=repeat)


def tensorflow_module():
    """TensorFlow, imported quietly (its C++ start-up lines hidden); ImportError when
    it is absent or broken."""
    return tensorflow_conv.import_tensorflow(quiet=True)


def tensorflow_conv2d(x: np.ndarray, w: np.ndarray, stride=(1, 1), padding=((0, 0), (0, 0)),
                      quiet: bool = False) -> np.ndarray:
    """tf.nn.conv2d(x, w) called directly (no conv front end), padding explicit per side
    (none: VALID); ``quiet`` hides what TensorFlow prints on fd 2 meanwhile."""
    return tensorflow_conv.tf_conv2d(x, w, stride, padding, quiet=quiet)
