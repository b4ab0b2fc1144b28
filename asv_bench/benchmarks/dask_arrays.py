"""conv2d on a Dask array against one in-memory call (docs/dask.md): the public "mid"
shape's images at batch 64, float32, SAME, all cores.

"memory": conv.conv2d on the NumPy array; "dask-threads": the same array as a Dask array
in chunks of 8 images, conv.conv2d(...).compute() on Dask's threaded scheduler;
"dask-store": the same graph stored into a preallocated array (no concatenation of the
chunks). Inputs are made in ``setup``; skipped where Dask is not installed or conv takes
no Dask arrays (older commits).
"""
import importlib.util

import numpy as np

import conv

from .common import PUBLIC_SHAPES, warm_up

BATCH, CHUNK = 64, 8


class DaskOverhead:
    params = [["memory", "dask-threads", "dask-store"]]
    param_names = ["call"]
    timeout = 300
    number = 1
    repeat = (3, 10, 20.0)

    def setup(self, call):
        if importlib.util.find_spec("dask") is None:
            raise NotImplementedError("Dask is not installed")
        import dask.array as da

        if not hasattr(conv, "ChunkWarning"):
            raise NotImplementedError("conv takes no Dask arrays at this commit")
        xs, ws = PUBLIC_SHAPES["mid"]
        rng = np.random.default_rng(20240501)
        x = rng.standard_normal((BATCH,) + tuple(xs[1:])).astype("float32")
        w = rng.standard_normal(ws).astype("float32")
        if call == "memory":
            self.fn = lambda: conv.conv2d(x, w, padding="SAME")
        else:
            xd = da.from_array(x, chunks=(CHUNK, -1, -1, -1))
            if call == "dask-threads":
                self.fn = lambda: conv.conv2d(xd, w, padding="SAME").compute(
                    scheduler="threads")
            else:
                out = np.empty((BATCH,) + tuple(xs[1:3]) + (ws[3],), np.float32)
                self.fn = lambda: conv.conv2d(xd, w, padding="SAME").store(
                    out, scheduler="threads", lock=False)
        warm_up(("dask overhead", call), self.fn)

    def time_call(self, call):
        self.fn()
