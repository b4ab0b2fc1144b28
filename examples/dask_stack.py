"""conv2d over an image stack larger than memory, with Dask.

A (N, H, W, C) float32 stack is read lazily (a zarr array on disk, or generated chunk by
chunk), convolved with a 3x3 C -> C filter by ``conv.conv2d`` (a lazy Dask array: nothing
is computed until asked), and reduced to each image's channel means, (N, C), which are
written to a zarr array (or only printed). The work runs on a local dask.distributed
cluster of worker processes with a memory limit each, or on Dask's threaded scheduler.

    python examples/dask_stack.py                        # a small stack, written to zarr first
    python examples/dask_stack.py --images 8000 --size 256 --source random \\
        --workers 2 --memory-limit 2GB --measure-memory  # 32 GB, never all in memory

Needs ``pip install "conv2d-cpu[dask]"`` (dask, distributed, zarr). With --workers the
dashboard's address is printed: open it to watch the tasks and each worker's memory.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import numpy as np

import conv


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=64, help="N, the stack's images (64)")
    ap.add_argument("--size", type=int, default=64, help="H = W of an image (64)")
    ap.add_argument("--channels", type=int, default=16, help="C, in and out (16)")
    ap.add_argument("--chunk", type=int, default=16, help="images a chunk (16)")
    ap.add_argument("--source", choices=("zarr", "random"), default="zarr",
                    help="zarr: write a random stack to a zarr array, then read it back "
                         "lazily; random: generate it chunk by chunk, never stored")
    ap.add_argument("--out", default=None,
                    help="zarr path for the (N, C) channel means (default: a temporary one)")
    ap.add_argument("--workers", type=int, default=0,
                    help="worker processes of a local dask.distributed cluster (0: the "
                         "threaded scheduler)")
    ap.add_argument("--memory-limit", default="2GB", help="per worker (2GB)")
    ap.add_argument("--measure-memory", action="store_true",
                    help="sample each worker's resident memory during the run")
    return ap.parse_args(argv)


def stack(args, tmp):
    import dask.array as da

    shape = (args.images, args.size, args.size, args.channels)
    chunks = (args.chunk, args.size, args.size, args.channels)
    x = da.random.default_rng(0).standard_normal(shape, chunks=chunks, dtype=np.float32)
    if args.source == "random":
        return x
    path = os.path.join(tmp, "stack.zarr")
    x.to_zarr(path, overwrite=True)
    return da.from_zarr(path)


def sample_memory(client, peaks, stop):
    """Each worker's largest resident set seen, polled every 0.2 s until stop is set."""
    import psutil

    while not stop.is_set():
        try:
            for addr, rss in client.run(lambda: psutil.Process().memory_info().rss).items():
                peaks[addr] = max(peaks.get(addr, 0), rss)
        except Exception:  # noqa: BLE001 - the cluster is closing
            return
        stop.wait(0.2)


def main(argv=None) -> int:
    args = parse(argv)
    import dask
    import dask.array as da
    import zarr  # noqa: F401 - needed by to_zarr; fail early with a clear message

    w = np.random.default_rng(1).standard_normal(
        (3, 3, args.channels, args.channels)).astype(np.float32) / (3 * args.channels)
    with tempfile.TemporaryDirectory() as tmp:
        x = stack(args, tmp)
        gb = x.nbytes / 1e9
        y = conv.conv2d(x, w, padding="SAME")         # lazy: nothing computed yet
        means = y.mean(axis=(1, 2))                    # (N, C), lazy too
        out = args.out or os.path.join(tmp, "means.zarr")
        print(f"stack {x.shape} float32, {gb:.2f} GB in {x.npartitions} chunks; "
              f"conv2d 3x3 SAME -> {y.shape}; channel means -> {means.shape} in {out}")
        t0 = time.perf_counter()
        if args.workers:
            from distributed import Client, LocalCluster, progress

            with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                              memory_limit=args.memory_limit, silence_logs=40) as cluster, \
                    Client(cluster) as client:
                print(f"dashboard: {client.dashboard_link}")
                peaks, stop = {}, threading.Event()
                sampler = threading.Thread(target=sample_memory, args=(client, peaks, stop),
                                           daemon=True)
                if args.measure_memory:
                    sampler.start()
                t0 = time.perf_counter()
                job = means.to_zarr(out, overwrite=True, compute=False)
                job = client.compute(job)
                progress(job)
                job.result()
                seconds = time.perf_counter() - t0
                stop.set()
                if args.measure_memory:
                    sampler.join()
                    limit = dask.utils.parse_bytes(args.memory_limit)
                    for addr, rss in sorted(peaks.items()):
                        print(f"\nworker {addr}: peak resident memory {rss / 1e9:.2f} GB "
                              f"(limit {limit / 1e9:.2f} GB)")
        else:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                means.to_zarr(out, overwrite=True)
            seconds = time.perf_counter() - t0
        result = da.from_zarr(out).compute()
        print(f"\n{args.images} images in {seconds:.1f} s: {args.images / seconds:.1f} images/s, "
              f"{gb / seconds:.2f} GB/s of input; channel means of image 0: "
              f"{np.array2string(result[0, :4], precision=4)} ...")
        if args.images <= 256 and args.source == "zarr":  # small: check against memory
            want = conv.conv2d(da.from_zarr(os.path.join(tmp, "stack.zarr")).compute(), w,
                               padding="SAME").mean(axis=(1, 2))
            np.testing.assert_allclose(result, want, rtol=1e-5, atol=1e-6)
            print("checked against the in-memory conv2d: equal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
