"""``--accuracy``: each method's normwise error against the exact reference, on a grid.

The error of a result y is ``max|y - exact| / max|exact|``, with ``exact`` from
conv.testing.reference_conv2d (extended-precision sums, rounded once). The accuracy
contract that "auto" keeps: at most CONTRACT[dtype] on every problem of the grid (oneDNN's
benchdnn accepts 2e-5 for its float32 Winograd). The grid: C_in from 1 to 1024, 1x1, 3x3
and 5x5 kernels, SAME padding, standard normal inputs and inputs of mixed magnitude
(every element scaled by 10**u, u uniform in [-4, 4] for x and [-2, 2] for w).
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

import conv

from ..testing import reference_conv2d
from .report import render_table

CONTRACT = {"float32": 2e-5, "float64": 1e-12}
C_INS = (1, 3, 16, 64, 256, 1024)
KERNELS = (1, 3, 5)
MAGNITUDES = ("normal", "mixed")
BATCH, SIZE, C_OUT = 1, 9, 16

Problem = Tuple[int, int, str]  # (C_in, K, magnitude)


def grid() -> Iterator[Problem]:
    for c_in in C_INS:
        for k in KERNELS:
            for magnitude in MAGNITUDES:
                yield c_in, k, magnitude


def inputs(problem: Problem, dtype: str) -> Tuple[np.ndarray, np.ndarray]:
    c_in, k, magnitude = problem
    rng = np.random.default_rng(1000 * c_in + 10 * k + MAGNITUDES.index(magnitude))
    x = rng.standard_normal((BATCH, SIZE, SIZE, c_in))
    w = rng.standard_normal((k, k, c_in, C_OUT))
    if magnitude == "mixed":
        x *= 10.0 ** rng.uniform(-4, 4, x.shape)
        w *= 10.0 ** rng.uniform(-2, 2, w.shape)
    return x.astype(dtype), w.astype(dtype)


def normwise_error(y: np.ndarray, exact: np.ndarray) -> float:
    scale = float(np.abs(exact).max())
    err = float(np.abs(np.asarray(y, np.float64) - exact).max())
    return err / scale if scale else err


def measure(methods: Sequence[str], dtypes: Sequence[str] = ("float32", "float64"),
            progress=None) -> Dict[Tuple[str, str], Tuple[float, Problem]]:
    """(method, dtype) -> (the largest normwise error over the grid, the problem)."""
    worst: Dict[Tuple[str, str], Tuple[float, Problem]] = {}
    for dtype in dtypes:
        for problem in grid():
            if progress is not None:
                progress.update(f"accuracy {dtype}: C_in {problem[0]}, {problem[1]}x"
                                f"{problem[1]}, {problem[2]}", important=False)
            x, w = inputs(problem, dtype)
            exact = reference_conv2d(x, w, padding="SAME")
            for method in methods:
                if dtype not in conv.get_method(method).dtypes:
                    continue
                err = normwise_error(conv.conv2d(x, w, method=method, padding="SAME"), exact)
                if (method, dtype) not in worst or err > worst[method, dtype][0]:
                    worst[method, dtype] = (err, problem)
    return worst


def format_table(worst, methods: Sequence[str], dtypes: Sequence[str]) -> str:
    headers = ["method"] + [f"{dt} max error (where)" for dt in dtypes]
    body: List[List[str]] = []
    for method in methods:
        cells = [method]
        for dt in dtypes:
            if (method, dt) not in worst:
                cells.append("-")
                continue
            err, (c_in, k, mag) = worst[method, dt]
            mark = "" if err <= CONTRACT[dt] else " !"
            cells.append(f"{err:.1e} (C_in {c_in}, {k}x{k}, {mag}){mark}")
        body.append(cells)
    return render_table(headers, body)
