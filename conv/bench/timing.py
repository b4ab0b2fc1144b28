"""The timing loop, one for ``python -m conv`` and asv's side-by-side ratios.

Standard library only: asv loads this file by path at commits whose conv has no
``conv.bench``, so every commit is measured by the same loop.
"""
from __future__ import annotations

import gc
import math
import time
from typing import Callable, List, Sequence, Tuple

#: (at least this many calls, at most this many, more only while under this many seconds)
Repeat = Tuple[int, int, float]


def side_by_side(fns: Sequence[Callable[[], object]], repeats: Sequence[Repeat]) -> List[float]:
    """The best (minimum) single-call wall time of each function, calls interleaved
    (a, b, a, b, ...) so all see the same machine load; no garbage collection while
    timing. Function i is called until it has had repeats[i] = (min calls, max calls,
    max seconds of calls after the minimum)."""
    best = [math.inf] * len(fns)
    spent = [0.0] * len(fns)
    done = [0] * len(fns)

    def more(i):
        lo, hi, budget = repeats[i]
        return done[i] < lo or (done[i] < hi and spent[i] < budget)

    enabled = gc.isenabled()
    gc.disable()  # no collection pauses inside the timed calls
    try:
        while any(more(i) for i in range(len(fns))):
            for i, fn in enumerate(fns):
                if more(i):
                    t0 = time.perf_counter()
                    fn()
                    t = time.perf_counter() - t0
                    best[i] = min(best[i], t)
                    spent[i] += t
                    done[i] += 1
    finally:
        if enabled:
            gc.enable()
    return best


def rounds_of_blocks(fns: Sequence[Callable[[], object]], repeat: Repeat,
                     rounds: int, pauses: Sequence[float] = ()) -> List[List[float]]:
    """Block-interleaved timing, for contenders that disturb each other: in each round
    every function runs one untimed warm-up call and then its best of ``repeat``
    consecutive calls, the order rotating from round to round; after function i's block
    the loop sleeps ``pauses[i]`` seconds (0 where pauses is shorter). Returns, per
    function, its best time in each round.

    Per-call interleaving (side_by_side) is fairer against load from elsewhere, but a
    library whose idle threads keep spinning after a call (OpenMP in PyTorch, TensorFlow's
    pool) then slows every call of the next contender. The warm-up call does not absorb
    that: PyTorch's threads spin for milliseconds, and a 0.1 ms conv call made in the
    blocks right after PyTorch's took 1.75x its time alone (MobileNet-v2's 112x112x32
    depthwise layer at batch 1); give such a function a pause."""
    best: List[List[float]] = [[] for _ in fns]
    for r in range(rounds):
        for k in range(len(fns)):
            i = (k + r) % len(fns)
            fns[i]()
            best[i].append(side_by_side([fns[i]], [repeat])[0])
            if i < len(pauses) and pauses[i] > 0:
                time.sleep(pauses[i])
    return best


def best_of(fn: Callable[[], object], repeat: int) -> Tuple[float, object]:
    """One untimed warm-up call (its result is returned), then the best of ``repeat``
    consecutive calls (timeit-style)."""
    result = fn()
    return side_by_side([fn], [(repeat, repeat, 0.0)])[0], result
