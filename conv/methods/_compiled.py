"""The compiled kernels: pick the build this CPU can run, pack weights, call a driver."""
from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import time

import numpy as np

from .._buildinfo import cpu_has
from .._contract import Problem
from .._env import env_flag
from .._frontend import DTYPE_NAMES, to_layout

#: The kernel builds, widest first, with the CPU features each needs.
BUILDS = (
    ("conv.methods._kernels_avx512", ("AVX512F", "AVX2", "FMA3")),
    ("conv.methods._kernels_avx2", ("AVX2", "FMA3")),
    ("conv.methods._kernels", ()),
)


def usable_builds() -> list:
    """The builds this CPU (and OS) can run, widest first, by module name, as the
    environment allows: CONV_FORCE_PORTABLE=1 leaves the portable build only (to test
    it), CONV_NO_AVX512=1 skips the AVX-512 build (to compare it with the AVX2 one)."""
    names = []
    for name, features in BUILDS:
        if features and env_flag("CONV_FORCE_PORTABLE"):
            continue
        if "AVX512F" in features and env_flag("CONV_NO_AVX512"):
            continue
        if cpu_has(*features):
            names.append(name)
    return names


def _load_build():
    """The widest usable build that is installed (the portable one always is)."""
    for name in usable_builds():
        try:
            return importlib.import_module(name)
        except ImportError:  # not built for this platform
            continue
    return importlib.import_module("conv.methods._kernels")


#: The loaded kernel extension (conv/methods/_kernels.pxi, compiled for one ISA).
kernels = _load_build()


def installed_builds() -> list:
    """The kernel extensions installed, by module name, portable first. Only looked up,
    never imported: a wide build's own initialisation would crash a CPU without its ISA."""
    return [name for name, _ in reversed(BUILDS) if importlib.util.find_spec(name) is not None]


#: A narrower tile is used only when the widest would compute at least this many times
#: as many output channels (most of them padding): on the AVX-512 build (16 float32
#: lanes a vector) C_out = 16 runs on one-vector 8x16 tiles, not on half-empty 8x32
#: ones, while C_out = 48 stays on 8x32 tiles (64 channels against 48).
NARROW_TILE_GAIN = 1.5


@functools.lru_cache(maxsize=1024)
def tile_width(dtype: str, c_out: int) -> int:
    """The tile width (output channels a tile) to run ``c_out`` channels on: the widest
    of the build's TILE_WIDTHS unless a narrower one pads far fewer channels."""
    widths = kernels.TILE_WIDTHS[dtype]
    padded = [-(-c_out // nr) * nr for nr in widths]
    best = 0
    for k in range(1, len(widths)):
        if padded[0] >= NARROW_TILE_GAIN * padded[k]:
            best = k
    return widths[best]


#: Weights below this many elements are packed on one thread (waking a worker costs more).
PACK_ELEMENTS_PER_THREAD = 1 << 16


def pack_checked(w: np.ndarray, nr: int, threads: int = 1):
    """(packed, finite): (KH, KW, C_in, C_out) -> (C_out tiles, KH, KW, C_in, nr),
    zero-filled past C_out, so the micro-kernel streams one channel tile's weights
    contiguously; and whether every weight is finite, from the same pass (in C)."""
    kh, kw, ci, co = w.shape
    wp = empty_aligned((-(-co // nr), kh, kw, ci, nr), w.dtype)
    threads = max(1, min(threads, w.size // PACK_ELEMENTS_PER_THREAD))
    finite = kernels.pack_weights(np.ascontiguousarray(w).reshape(kh * kw * ci, co),
                                  wp.reshape(wp.shape[0], kh * kw * ci, nr), threads)
    return wp, finite


def pack_weights(w: np.ndarray, nr: int) -> np.ndarray:
    """pack_checked's packed weights alone."""
    return pack_checked(w, nr)[0]


# Below this much work per thread, waking a worker costs more than it saves.
FLOPS_PER_THREAD = 2_000_000


def threads_for(p: Problem) -> int:
    """p.threads, capped so each thread gets at least FLOPS_PER_THREAD of work. The
    kernels' results do not depend on the thread count.

    Forked children need no rule: conv's pool (_pool.h) starts its workers lazily and a
    forked child starts its own, so a child may use every thread, whatever its parent
    had run before the fork."""
    return max(1, min(p.threads, p.flops // FLOPS_PER_THREAD))


def fma_peak(dtype: str, threads: int, seconds: float = 0.02, repeat: int = 5) -> float:
    """GFLOP/s of this build's FMA loop (conv/methods/_peak.h) on ``threads`` threads, the
    best of ``repeat`` runs of about ``seconds`` each: the ceiling the kernels' own
    arithmetic can reach on this CPU with this build (portable, AVX2+FMA or AVX-512)."""
    threads = min(max(1, int(threads)), 128)

    def best_of(iterations, runs):  # (fastest seconds, flops) of `runs` runs
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            flops = kernels.fma_loop(dtype, iterations, threads)
            times.append(time.perf_counter() - t0)
        return min(times), flops

    iterations = 1 << 14
    elapsed, _ = best_of(iterations, 2)
    while elapsed < seconds / 4 and iterations < 1 << 40:  # grow until measurable
        iterations *= 4
        elapsed, _ = best_of(iterations, 2)
    for _ in range(3):
        iterations = max(1, int(iterations * seconds / max(elapsed, 1e-9)))
        elapsed, flops = best_of(iterations, repeat)
        if elapsed >= seconds / 2:  # as long as meant: a slow early run did not mislead
            break
    return flops / elapsed / 1e9


_ZEROS: dict = {}  # (length, dtype) -> a shared read-only array of zeros


def zeros(length: int, dtype) -> np.ndarray:
    """A read-only array of ``length`` zeros (the drivers read padded taps from it),
    shared between calls: small ones are cached."""
    key = (length, dtype)
    z = _ZEROS.get(key)
    if z is None:
        z = np.zeros(length, dtype=dtype)
        z.flags.writeable = False
        if length <= 4096 and len(_ZEROS) < 256:
            _ZEROS[key] = z
    return z


#: Outputs below this many bytes are allocated plainly (empty_aligned_as, empty_aligned):
#: finding two addresses costs about 5 us, more than misaligned stores cost a small layer.
ALIGN_MIN_BYTES = 1 << 20


def empty_aligned_as(shape, like: np.ndarray) -> np.ndarray:
    """An uninitialized C-contiguous array of ``like``'s dtype starting as far past a
    64-byte boundary as ``like`` does, so that a kernel's vector loads from ``like`` and
    stores to it cross cache lines alike (a view of a slightly larger array); a plain
    one below ALIGN_MIN_BYTES."""
    item, n = like.itemsize, math.prod(shape)
    off = kernels.address(like) % 64
    if n * item < ALIGN_MIN_BYTES or off % item:  # like not even element-aligned: plain
        return np.empty(shape, like.dtype)
    return _empty_at(shape, like.dtype, off)


def empty_aligned(shape, dtype, min_bytes: int = 0) -> np.ndarray:
    """An uninitialized C-contiguous array starting on a 64-byte boundary (a cache line),
    where the kernels' vector loads and stores of whole lines do not straddle two (numpy's
    own arrays start anywhere past a 16-byte boundary); a plain one below min_bytes.
    Measured (direct, 2 threads, interleaved, time over both aligned): packed weights 16
    bytes past a line 1.05-1.10 on pointwise, mid, deep and k5; an output 16 bytes past,
    0.91-1.17; an NCHW output 16 bytes past, 1.28 on pointwise."""
    dtype = np.dtype(dtype)
    if math.prod(shape) * dtype.itemsize < min_bytes:
        return np.empty(shape, dtype)
    return _empty_at(shape, dtype, 0)


def _empty_at(shape, dtype, offset: int) -> np.ndarray:
    """An uninitialized C-contiguous array starting ``offset`` bytes past a 64-byte
    boundary (a multiple of the item size): a view of a slightly larger array."""
    item, n = dtype.itemsize, math.prod(shape)
    buf = np.empty(n + 64 // item, dtype)
    start = ((offset - kernels.address(buf) % 64) % 64) // item
    return buf[start:start + n].reshape(shape)


def batch_as_rows(p: Problem, out: np.ndarray):
    """(x, out) for the driver: for a 1x1 kernel without padding whose output rows are
    every sh-th input row from the first (H == OH * sh), the batch seen as one image of
    N * H rows, so that the drivers' tiles (MR pixels, never two images) run on across
    images: a 7x7 image's 49 pixels otherwise take 7 tiles, the last of one pixel. Each
    output is the same sum. Else x and out as given."""
    n, h, w_, c = p.x.shape
    _, oh, ow, co = out.shape
    if (n > 1 and p.w.shape[:2] == (1, 1) and p.padding == ((0, 0), (0, 0))
            and h == oh * p.stride[0] and out.flags.c_contiguous and p.x.flags.c_contiguous):
        return p.x.reshape(1, n * h, w_, c), out.reshape(1, n * oh, ow, co)
    return p.x, out


class Packed:
    """A compiled driver with its weights packed (and checked for Inf/NaN) once: the
    callable ``(problem, out)`` that direct's and matmul's ``prepare`` hooks return."""

    __slots__ = ("driver", "wp", "finite", "zeros", "wt")

    def __init__(self, driver, template: Problem):
        w = template.w
        self.driver = driver
        self.wp, self.finite = pack_checked(
            w, tile_width(DTYPE_NAMES[w.dtype], w.shape[3]), template.threads)
        self.zeros = zeros(max(1, w.shape[1] * w.shape[2]), w.dtype)
        self.wt = None  # the weights transposed, for pointwise_nchw, made on first need

    def __call__(self, p: Problem, out=None) -> np.ndarray:
        return self.run(p, out, threads_for(p))

    def run(self, p: Problem, out, threads: int, nchw: bool = False) -> np.ndarray:
        return _run_driver(
            self.driver, p, out, self.wp, self.zeros,
            self.finite,  # padded taps may read zeros instead of being skipped
            self.wp.nbytes <= p.x.nbytes,  # input blocks outer when the weights are smaller
            threads, nchw=nchw)

    def _nchw_out(self, p: Problem, out):
        """The result as NCHW (N, C_out, OH, OW), into out if given, stored so by the
        direct driver's tiles (see nchw_out); None for a driver that cannot."""
        if not writes_nchw(self.driver):
            return None
        return self.run(p, out, threads_for(p), nchw=True)

    def _nchw_io(self, p: Problem, out):
        """pointwise_nchw for p (x in NCHW memory), with the transposed weights kept;
        None where it does not apply."""
        if not (writes_nchw(self.driver) and pointwise_nchw_applies(p)):
            return None
        if self.wt is None:  # two threads may both make it: same result, either kept
            self.wt = transposed_weights(p.w)
        return pointwise_nchw(p, out, self.wt)


def writes_nchw(driver) -> bool:
    """Whether an extension driver stores NCHW output itself (conv2d_direct's out_nchw)."""
    return driver is kernels.conv2d_direct


def _run_driver(driver, p: Problem, out, wp, zeros_, zeros_exact, blocks_outer, threads,
                w=None, nchw=False) -> np.ndarray:
    """One call of a driver on p's geometry (batch_as_rows applied), into out (a new
    array if None); w: the weights for the tasks to pack into wp (see call_driver);
    nchw: out is (N, C_out, OH, OW) (the direct driver only; no batch_as_rows: an
    image's channel planes are not contiguous with the next image's)."""
    if out is None:
        out = empty_aligned(to_layout(p.out_shape, nchw), p.x.dtype, ALIGN_MIN_BYTES)
    x, o = (p.x, out) if nchw else batch_as_rows(p, out)
    driver(x, wp, zeros_, o, p.stride[0], p.stride[1], p.dilation[0], p.dilation[1],
           p.padding[0][0], p.padding[1][0], zeros_exact, blocks_outer, threads, w,
           *((True,) if nchw else ()))  # out_nchw: conv2d_direct's alone
    return out


#: pointwise_nchw runs where its panels of NR output pixels (32 float32, 16 float64 in the
#: AVX-512 build) leave at most this fraction of their columns past an image's last pixel:
#: measured against the NHWC call (1x1, 2 threads, kernels alone, interleaved), its time
#: was 1.07x on (8,28,28,128)->256 (2% of the columns idle), 1.08-1.26x on 56x56 layers
#: (none idle), where moving x and storing the result channel by channel costs about
#: 1.3x; but 1.25x on (1,14,14,256)->1024 (13% idle) and 1.28x on (1,7,7,512)->2048
#: (23%), where moving x (a few hundred KB) costs less and the NHWC tiles run on across
#: the images.
PW_NCHW_MAX_IDLE = 0.05


def pointwise_nchw_applies(p: Problem) -> bool:
    """Whether pointwise_nchw computes p: a 1x1 kernel without padding, x's memory NCHW
    (p.x an (N, H, W, C) view of an (N, C, H, W) C-contiguous array: conv's NCHW calls,
    _plan._execute_nchw), and few idle panel columns (PW_NCHW_MAX_IDLE)."""
    if not (p.w.shape[:2] == (1, 1) and p.padding == ((0, 0), (0, 0))
            and p.x.transpose(0, 3, 1, 2).flags.c_contiguous):
        return False
    pixels, nr = p.out_shape[1] * p.out_shape[2], kernels.NR[DTYPE_NAMES[p.w.dtype]]
    return -(-pixels // nr) * nr - pixels <= PW_NCHW_MAX_IDLE * pixels


def transposed_weights(w: np.ndarray) -> np.ndarray:
    """1x1 weights (1, 1, C_in, C_out) as (C_out, C_in), on a cache line."""
    ci, co = w.shape[2], w.shape[3]
    wt = empty_aligned((co, ci), w.dtype)
    wt[...] = w.reshape(ci, co).T
    return wt


def pointwise_nchw(p: Problem, out=None, wt=None) -> np.ndarray:
    """A 1x1 convolution without padding on NCHW memory with no layout change (the
    extension's conv2d_pointwise_nchw): p.x an NHWC view of the NCHW input (see
    pointwise_nchw_applies), the result (N, C_out, OH, OW) into out if given. The NHWC
    call's sums, bit for bit. wt: transposed_weights(p.w), if made already."""
    if out is None:
        out = empty_aligned(to_layout(p.out_shape, True), p.x.dtype, ALIGN_MIN_BYTES)
    ci = p.w.shape[2]
    kernels.conv2d_pointwise_nchw(p.x.transpose(0, 3, 1, 2),
                                  transposed_weights(p.w) if wt is None else wt,
                                  zeros(max(1, ci), p.w.dtype), out, p.stride[0],
                                  p.stride[1], threads_for(p))
    return out


#: A call packs in its tasks (see call_driver) only with at least this many channel tiles
#: a thread: a task chunk is then a whole channel tile, and fewer chunks balance badly.
PACK_IN_TASKS_TILES_PER_THREAD = 4


def call_driver(driver, p: Problem, out=None, nchw: bool = False) -> np.ndarray:
    """Run one of the extension's drivers once, into ``out`` if given, with the weights
    packed first (Packed), or, where the packed weights outweigh the input, packed by
    the driver's tasks: each channel tile by the thread that uses it, just before, so
    it is read from memory once and used from cache, instead of a pass of its own that
    writes it all out and reads it back (at batch 1 on a 7x7 layer with 512 channels,
    packing was a third of the call). The results are the same either way. nchw: out
    (and the result) (N, C_out, OH, OW), for a driver that writes_nchw."""
    w = p.w
    kh, kw, ci, co = w.shape
    nr = tile_width(DTYPE_NAMES[w.dtype], co)
    ncot, threads = -(-co // nr), threads_for(p)
    if (ncot * kh * kw * ci * nr * w.itemsize <= p.x.nbytes
            or ncot < PACK_IN_TASKS_TILES_PER_THREAD * threads):
        return Packed(driver, p).run(p, out, threads, nchw)
    wp = empty_aligned((ncot, kh, kw, ci, nr), w.dtype)  # filled by the tasks
    return _run_driver(driver, p, out, wp, zeros(max(1, kw * ci), w.dtype), True, False,
                       threads, np.ascontiguousarray(w).reshape(kh * kw * ci, co), nchw)
