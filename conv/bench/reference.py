"""What the errors are measured against, and how."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Tuple

import numpy as np

from ..testing import reference_conv2d
from . import frameworks

#: Largest relative error (max |out - ref| / max |ref|) accepted before a row is flagged.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


@dataclass
class Reference:
    name: str  # "tensorflow" or "exact"
    description: str
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray] = field(repr=False)


def select_reference() -> Reference:
    """tf.nn.conv2d when TensorFlow is importable (as in the article), else
    conv.testing.reference_conv2d (exact)."""
    if frameworks.tensorflow_available():
        tf = frameworks.tensorflow()
        return Reference(
            "tensorflow",
            f"tf.nn.conv2d (TensorFlow {tf.__version__}) in the same dtype, as in the article",
            lambda x, w: frameworks.tensorflow_callable(x, w)(),
        )
    return Reference(
        "exact",
        "conv.testing.reference_conv2d (exact: extended-precision sums, rounded to float64), "
        "because TensorFlow is not installed",
        lambda x, w: reference_conv2d(x, w, stride=1, padding="VALID", dilation=1),
    )


def errors(out: np.ndarray, ref: np.ndarray) -> Tuple[float, float]:
    """(max |out - ref|, max |out - ref| / max |ref|), computed in float64."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        return math.inf, math.inf
    with np.errstate(all="ignore"):
        diff = np.abs(out - ref)
        if np.isnan(diff).any():
            return math.nan, math.nan
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(ref).max()) if ref.size else 0.0
    if scale == 0.0:
        return max_abs, (0.0 if max_abs == 0.0 else math.inf)
    return max_abs, max_abs / scale
