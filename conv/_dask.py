"""conv2d on Dask arrays: lazy, chunk by chunk, each output element computed as the
in-memory call computes it.

``conv.conv2d(x, w, ...)`` and ``conv.depthwise_conv2d`` with a ``dask.array.Array`` x
return a lazy ``dask.array.Array``. Everything but x's values is checked at call time
(conv2d's ``specify``), and ``method="auto"`` chooses once, for the whole problem, as
the in-memory call would; every block then runs that method.

Geometry, per spatial axis (input chunk bounds b_0 = 0 < b_1 < ... < b_K = size; kernel
span ``(k - 1) * dilation + 1``; stride s; padding before p): output row ``o`` reads input
rows ``o * s - p`` onwards, its *anchor*. Output row o belongs to the input chunk holding
its anchor (the first chunk also takes anchors in the padding before, the last those past
the end), so output chunk boundaries fall where the anchors cross input chunk boundaries
(``ceil((b_k + p) / s)``: aligned to the stride). A chunk's outputs read at most
``span - 1`` rows past its end, so blocks get that halo from the next chunk, and no halo
before (``dask.array.overlap.overlap`` with asymmetric depth, boundary "none"). Each block
is cropped to the rows its outputs read and convolved with the explicit padding that
falls on it (the array's own padding, at its edges): padded taps are skipped exactly as in
memory, so ``direct`` gives the in-memory result bit for bit whatever the chunking (it sums
each output element in the order (i, j, c_in) whatever the tile), and every method stays
within its accuracy contract.

Channels stay in one chunk (x is rechunked, with a ``conv.ChunkWarning``, if not). What
travels to the workers is one ``_Runner`` per call (a delayed object: the weights go once,
not once per chunk), which makes a ``conv.plan`` per block geometry where it runs and keeps
it for the blocks after (weights packed once per worker process).
"""
from __future__ import annotations

import math
import threading
import warnings
from typing import List, Tuple

import numpy as np

from . import _geometry
from ._frontend import (_as_array, as_threads, available_cpus, check_real_dtype, check_x_shape,
                        from_layout, specify, to_layout)


class ChunkWarning(UserWarning):
    """conv rechunked a Dask array to compute it: channels split over chunks, or spatial
    chunks smaller than the kernel's halo."""


def is_dask_array(x) -> bool:
    """Whether x is a dask.array.Array, without importing Dask (conv never imports it
    unless it is given a Dask array)."""
    t = type(x)
    return t.__name__ == "Array" and t.__module__.split(".", 1)[0] == "dask"


class _Axis:
    """One spatial axis's chunk geometry (see the module docstring)."""

    def __init__(self, chunks: Tuple[int, ...], size: int, k: int, stride: int, dilation: int,
                 pads: Tuple[int, int], out_size: int):
        span = _geometry.span(k, dilation)
        bounds = [0]
        for c in chunks:
            bounds.append(bounds[-1] + c)
        last = len(chunks) - 1
        starts = [0] + [min(out_size, max(0, -(-(b + pads[0]) // stride))) for b in bounds[1:-1]]
        ends = starts[1:] + [out_size]
        self.out_chunks = tuple(e - s for s, e in zip(starts, ends))
        # per chunk: (first row, end row) of its extended block to read, padding before, after
        self.crops: List[Tuple[int, int, int, int]] = []
        for i, (o0, o1) in enumerate(zip(starts, ends)):
            if o1 <= o0:
                self.crops.append((0, 0, 0, 0))
                continue
            need0 = o0 * stride - pads[0]
            need1 = (o1 - 1) * stride - pads[0] + span
            r0, r1 = max(need0, 0), min(need1, size)
            self.crops.append((r0 - bounds[i], r1 - bounds[i], r0 - need0, need1 - r1))
            assert i == 0 or need0 >= bounds[i]
            assert r1 <= bounds[i + 1] + (span - 1 if i < last else 0)


def _fit_halo(x, axis: int, halo: int):
    """x with every chunk of ``axis`` at least ``halo`` long (dask's overlap takes a
    block's halo from its next neighbour alone, and rechunks on its own otherwise),
    rechunked with a warning if not."""
    chunks = x.chunks[axis]
    if len(chunks) < 2 or min(chunks) >= halo:
        return x
    size, total = max(halo, max(chunks)), sum(chunks)
    new = [size] * (total // size)
    if total % size:
        new.append(total % size)
        if len(new) > 1 and new[-1] < halo:  # a short last chunk joins the one before
            new[-2] += new[-1]
            new.pop()
    warnings.warn(
        f"conv: x's chunks along axis {axis} ({min(chunks)} at the smallest) are "
        f"smaller than the kernel's halo ({halo}); rechunking that axis to chunks of "
        f"{size}", ChunkWarning, stacklevel=5)
    return x.rechunk({axis: tuple(new)})


def _host_threads(worker) -> int:
    """The threads of every dask.distributed worker on this worker's host (they share its
    cores), from the scheduler's list; this worker's own when that cannot be had."""
    own = max(1, int(getattr(getattr(worker, "state", worker), "nthreads", 1)))
    try:
        from distributed import get_client

        workers = get_client().scheduler_info().get("workers", {})
        mine = workers.get(worker.address, {}).get("host")
        total = sum(int(w.get("nthreads", 0)) for w in workers.values()
                    if mine is not None and w.get("host") == mine)
        return max(own, total)
    except Exception:  # noqa: BLE001 - no scheduler to ask: this worker alone
        return own


def _worker():
    """The dask.distributed worker this code runs in, or None."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


#: _host_threads of the worker this process runs (asked once per worker)
_HOST_THREADS: dict = {}


def _local_tasks() -> int:
    """How many tasks a local scheduler may run at once: 1 on the synchronous one (tasks
    run in the main thread of the main process), else the pool's size (dask's num_workers
    setting, default every CPU)."""
    import multiprocessing

    if (threading.current_thread() is threading.main_thread()
            and multiprocessing.current_process().name == "MainProcess"):
        return 1
    import dask

    return max(1, int(dask.config.get("num_workers", None) or as_threads(None)))


def task_threads(threads) -> int:
    """The threads one task uses: ``threads`` when given; else, so that tasks x threads
    never exceed the cores, the CPUs divided among the tasks that may run at once on them:
    on a dask.distributed worker, this process's CPUs over the threads of all workers on
    its host (OMP_NUM_THREADS, which dask.distributed sets to 1 in its workers against
    other libraries' oversubscription, is not read there); elsewhere conv's default
    threads (OMP_NUM_THREADS when set) over the local scheduler's (_local_tasks)."""
    if threads is not None:
        return as_threads(threads)
    worker = _worker()
    if worker is None:
        return max(1, as_threads(None) // _local_tasks())
    key = getattr(worker, "address", None)
    if key not in _HOST_THREADS:
        _HOST_THREADS.clear()
        _HOST_THREADS[key] = _host_threads(worker)
    return max(1, available_cpus() // _HOST_THREADS[key])


class _Runner:
    """What the workers get (once per call): the weights and arguments; it plans each
    block geometry once where it runs."""

    def __init__(self, w: np.ndarray, kwargs: dict, threads):
        self.w = w
        self.kwargs = kwargs  # stride, dilation, groups, method (never "auto"), data_format
        self.threads = threads
        self._plans = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"w": self.w, "kwargs": self.kwargs, "threads": self.threads}

    def __setstate__(self, state):
        self.__init__(state["w"], state["kwargs"], state["threads"])

    def __call__(self, block: np.ndarray, pads) -> np.ndarray:
        threads = task_threads(self.threads)
        key = (block.shape[1:], block.dtype.str, pads, threads)
        plan = self._plans.get(key)
        if plan is None:
            import conv

            shape = (None,) + block.shape[1:]
            plan = conv.plan(shape, self.w, padding=pads, threads=threads, dtype=block.dtype,
                             **self.kwargs)
            with self._lock:
                self._plans[key] = plan
        return plan(block)


def _block(xb, runner, axes, geometry, out_shape, odtype, block_info=None):
    """One output block: the extended input block cropped to the rows and columns its
    outputs read, convolved with the padding that falls on it."""
    loc = block_info[None]["chunk-location"]
    (h_ax, w_ax), (gh, gw) = axes, geometry
    i, j = loc[h_ax], loc[w_ax]
    shape = list(out_shape)
    shape[0] = xb.shape[0]
    shape[h_ax], shape[w_ax] = gh.out_chunks[i], gw.out_chunks[j]
    if 0 in shape:
        return np.empty(shape, dtype=odtype)
    r0, r1, pt, pb = gh.crops[i]
    c0, c1, pl, pr = gw.crops[j]
    index = [slice(None)] * 4
    index[h_ax], index[w_ax] = slice(r0, r1), slice(c0, c1)
    return runner(np.ascontiguousarray(xb[tuple(index)]), ((pt, pb), (pl, pr)))


def conv2d(x, w, *, stride, padding, dilation, threads, method, groups, data_format, nchw,
           out=None):
    """conv.conv2d for a dask.array.Array x (documented there and in docs/dask.md)."""
    import dask
    import dask.array as da

    from . import _plan
    from ._registry import REGISTRY

    if out is not None:
        raise TypeError("out= is not supported with a Dask array x: the result is a "
                        "lazy dask.array.Array (store it with .to_zarr, .store, ...)")
    wa = _as_array(w, "w")
    check_x_shape(x.shape, layout=data_format)
    if any(isinstance(s, float) and math.isnan(s) for s in x.shape):
        raise ValueError(f"x has unknown chunk sizes {x.shape}; call x.compute_chunk_sizes() "
                         f"first")
    check_real_dtype(x.dtype, "x")
    shape = from_layout(tuple(int(s) for s in x.shape), nchw)
    spec = specify(shape, x.dtype, wa, stride=stride, padding=padding, dilation=dilation,
                   threads=threads, groups=groups, layout=data_format)
    n = shape[0]
    chosen = REGISTRY.usable(method) if method != "auto" else None
    out_nhwc = spec.out_shape(n)
    out_shape = to_layout(out_nhwc, nchw)
    dtype = spec.result_dtype
    if 0 in out_nhwc:
        return da.empty(out_shape, dtype=dtype)
    if 0 in shape:  # no input channels: every output is an empty sum
        return da.zeros(out_shape, dtype=dtype)
    if chosen is None:  # auto: chosen once, as the in-memory call chooses
        chosen = _plan._choose_auto(spec, n)[0]
    h_ax, w_ax, c_ax = (2, 3, 1) if nchw else (1, 2, 3)
    if len(x.chunks[c_ax]) > 1:
        warnings.warn(f"conv: x's channels are split over {len(x.chunks[c_ax])} chunks; "
                      f"rechunking them into one (a convolution reads every channel)",
                      ChunkWarning, stacklevel=4)
        x = x.rechunk({c_ax: -1})
    kh, kw = spec.w.shape[:2]
    halo_h = _geometry.span(kh, spec.dilation[0]) - 1  # rows a block reads past its end
    halo_w = _geometry.span(kw, spec.dilation[1]) - 1
    x = _fit_halo(_fit_halo(x, h_ax, halo_h), w_ax, halo_w)
    gh = _Axis(x.chunks[h_ax], shape[1], kh, spec.stride[0], spec.dilation[0],
               spec.padding[0], spec.out_hw[0])
    gw = _Axis(x.chunks[w_ax], shape[2], kw, spec.stride[1], spec.dilation[1],
               spec.padding[1], spec.out_hw[1])
    depth = {h_ax: (0, halo_h) if len(x.chunks[h_ax]) > 1 else 0,
             w_ax: (0, halo_w) if len(x.chunks[w_ax]) > 1 else 0}
    xo = x if depth[h_ax] == depth[w_ax] == 0 else da.overlap.overlap(x, depth=depth,
                                                                       boundary="none")
    # the caller's w as it is now (a later change to their array does not reach the
    # result), in its own dtype: each block computes as conv2d does for x's and w's dtypes
    runner = dask.delayed(_Runner(np.array(wa, order="C", copy=True), dict(
        stride=spec.stride, dilation=spec.dilation, groups=groups, method=chosen.name,
        data_format=data_format), threads), pure=True)
    chunks = [None] * 4
    chunks[0] = x.chunks[0]
    chunks[h_ax], chunks[w_ax] = gh.out_chunks, gw.out_chunks
    chunks[c_ax] = (out_nhwc[3],)
    return da.map_blocks(_block, xo, runner, axes=(h_ax, w_ax), geometry=(gh, gw),
                         out_shape=out_shape, odtype=dtype, dtype=dtype, chunks=tuple(chunks),
                         meta=np.empty((0, 0, 0, 0), dtype=dtype), token="conv2d")
