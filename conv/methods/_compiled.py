"""The compiled kernels: pick the build this CPU can run, pack weights, call a driver."""
from __future__ import annotations

import importlib
import os

import numpy as np

from .._config import cpu_has
from .._contract import Problem


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _load_variant():
    """The AVX2+FMA build when NumPy's run-time detection finds both, else the portable
    build. CONV_FORCE_PORTABLE=1 skips the AVX2 build (to test the portable one)."""
    force = _env_flag("CONV_FORCE_PORTABLE")
    if not force and cpu_has("AVX2", "FMA3"):
        try:
            return importlib.import_module("conv.methods._kernels_avx2")
        except ImportError:  # not built for this platform
            pass
    return importlib.import_module("conv.methods._kernels")


impl = _load_variant()


def pack_weights(w: np.ndarray) -> np.ndarray:
    """(KH, KW, C_in, C_out) -> (C_out tiles, KH, KW, C_in, NR), zero-filled past C_out,
    so the micro-kernel streams one channel tile's weights contiguously."""
    kh, kw, ci, co = w.shape
    nr = impl.NR[w.dtype.name]
    tiles = -(-co // nr)
    if tiles * nr != co:
        padded = np.zeros((kh, kw, ci, tiles * nr), dtype=w.dtype)
        padded[..., :co] = w
        w = padded
    return np.ascontiguousarray(w.reshape(kh, kw, ci, tiles, nr).transpose(3, 0, 1, 2, 4))


# Below this much work per thread, starting an OpenMP team costs more than it saves
# (and on a busy machine the team waits for a thread the OS has not scheduled yet).
FLOPS_PER_THREAD = 2_000_000


# GNU OpenMP is not fork-safe: a child forked after a parallel region hangs in its next
# one. In such a child the kernels run on one thread (as PyTorch does); results are the
# same, since they never depend on the thread count.
_forked_child = False


def _after_fork_in_child() -> None:
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threads_for(p: Problem) -> int:
    """p.threads, capped so each thread gets at least FLOPS_PER_THREAD of work, and 1 in
    a forked child. The kernels' results do not depend on the thread count."""
    if _forked_child:
        return 1
    return max(1, min(p.threads, p.flops // FLOPS_PER_THREAD))


def run(driver, p: Problem) -> np.ndarray:
    out = np.empty(p.out_shape, dtype=p.dtype)
    wp = pack_weights(p.w)
    zeros = np.zeros(max(1, p.w.shape[1] * p.w.shape[2]), dtype=p.dtype)
    driver(
        p.x, wp, zeros, out, p.stride[0], p.stride[1], p.dilation[0], p.dilation[1],
        p.padding[0][0], p.padding[1][0],
        bool(np.isfinite(p.w).all()),  # padded taps may read zeros instead of being skipped
        wp.nbytes <= p.x.nbytes,  # input blocks outer when all weights are the smaller operand
        threads_for(p),
    )
    return out
