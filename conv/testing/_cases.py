"""The case grid: conv2d problems (:class:`Case`), :data:`CASES` and deterministic inputs."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Tuple

import numpy as np

from ._reference import explicit_padding, output_shape, reference_conv2d
from ._tolerance import tolerance_scale


@dataclass(frozen=True)
class Case:
    """One conv2d problem of the grid: shapes and the keyword arguments of ``conv.conv2d``."""

    id: str
    x_shape: Tuple[int, int, int, int]
    w_shape: Tuple[int, int, int, int]
    stride: Any = 1
    padding: Any = "VALID"
    dilation: Any = 1

    @property
    def kwargs(self) -> dict:
        """stride, padding and dilation as keyword arguments for ``conv.conv2d``."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}

    @property
    def out_shape(self) -> Tuple[int, int, int, int]:
        return output_shape(self.x_shape, self.w_shape, self.stride, self.padding, self.dilation)

    @property
    def pads(self):
        """((top, bottom), (left, right)) by TensorFlow's rules."""
        return explicit_padding(
            self.padding, self.x_shape[1:3], self.w_shape[:2], self.stride, self.dilation
        )

    @property
    def macs(self) -> int:
        n, oh, ow, co = self.out_shape
        kh, kw, ci, _ = self.w_shape
        return n * oh * ow * co * kh * kw * ci

    def reference(self, x, w) -> np.ndarray:
        return reference_conv2d(x, w, self.stride, self.padding, self.dilation)

    def scale(self, x, w) -> np.ndarray:
        return tolerance_scale(x, w, self.stride, self.padding, self.dilation)


def _c(id, x, w, stride=1, padding="VALID", dilation=1):
    return Case(id, tuple(x), tuple(w), stride, padding, dilation)


#: The correctness grid: small enough that the pure-Python method runs all of it in seconds.
CASES: Tuple[Case, ...] = (
    # stride 1, the basic paddings
    _c("k3x2-valid", (2, 7, 8, 3), (3, 2, 3, 4)),
    _c("k3x2-same", (2, 7, 8, 3), (3, 2, 3, 4), padding="SAME"),
    _c("k3-same-s1", (2, 6, 7, 3), (3, 3, 3, 4), padding="SAME"),
    # strides 2 and 3, square and not, odd SAME totals
    _c("k3-valid-s2", (2, 7, 8, 3), (3, 3, 3, 4), stride=2),
    _c("k3-same-s2", (2, 7, 8, 3), (3, 3, 3, 4), stride=2, padding="SAME"),
    _c("k3-valid-s3", (2, 9, 10, 2), (3, 3, 2, 3), stride=3),
    _c("k2-same-s3", (1, 8, 7, 2), (2, 2, 2, 3), stride=3, padding="SAME"),
    _c("k3-same-s1x2", (2, 6, 9, 3), (3, 3, 3, 2), stride=(1, 2), padding="SAME"),
    _c("k2x3-explicit-s3x1", (1, 9, 6, 2), (2, 3, 2, 3), stride=(3, 1), padding=((1, 0), (2, 1))),
    _c("k2-valid-s3-gt-kernel", (1, 9, 9, 2), (2, 2, 2, 2), stride=3),
    # dilation
    _c("k3-valid-d2", (2, 8, 9, 2), (3, 3, 2, 3), dilation=2),
    _c("k3-same-d2", (2, 8, 9, 2), (3, 3, 2, 3), padding="SAME", dilation=2),
    _c("k2x4-same-d1x2", (1, 7, 8, 2), (2, 4, 2, 3), padding="SAME", dilation=(1, 2)),
    _c("k3-explicit-d2x1", (1, 7, 8, 2), (3, 2, 2, 2), padding=((2, 0), (1, 1)), dilation=(2, 1)),
    # stride > 1 together with dilation > 1
    _c("k3-valid-s2-d2", (2, 9, 9, 2), (3, 3, 2, 3), stride=2, dilation=2),
    _c("k3-same-s2-d2", (2, 9, 8, 2), (3, 3, 2, 3), stride=2, padding="SAME", dilation=2),
    _c("k2x3-explicit-s3-d2", (1, 10, 11, 2), (2, 3, 2, 2), stride=3, padding=((1, 2), (0, 3)),
       dilation=2),
    _c("k3x2-same-s2x1-d1x2", (2, 7, 9, 3), (3, 2, 3, 2), stride=(2, 1), padding="SAME",
       dilation=(1, 2)),
    _c("k2-pad1-s1x3-d2x1", (1, 8, 9, 2), (2, 2, 2, 3), stride=(1, 3), padding=1, dilation=(2, 1)),
    _c("k3-pad2-s3-d2", (1, 8, 7, 2), (3, 3, 2, 2), stride=3, padding=2, dilation=2),
    # every explicit padding form
    _c("k3-pad-int1", (2, 6, 7, 3), (3, 3, 3, 4), padding=1),
    _c("k3-pad-int0", (1, 6, 7, 3), (3, 3, 3, 2), padding=0),
    _c("k3-pad-int2-s2", (1, 5, 6, 2), (3, 3, 2, 2), stride=2, padding=2),
    _c("k3x2-pad-hw", (2, 6, 7, 3), (3, 2, 3, 4), padding=(2, 1)),
    _c("k3-pad-tblr", (2, 6, 7, 3), (3, 3, 3, 2), padding=((0, 2), (3, 1))),
    _c("k3-pad-tblr-zero", (1, 5, 6, 2), (3, 3, 2, 2), padding=((0, 0), (0, 0))),
    _c("k2-pad-tf4", (1, 6, 5, 2), (2, 2, 2, 3), padding=((0, 0), (1, 2), (2, 1), (0, 0))),
    _c("k2-pad-wider-than-kernel", (1, 3, 4, 2), (2, 2, 2, 2), padding=((3, 2), (1, 4))),
    # kernel sizes and shapes
    _c("k1-valid", (2, 5, 6, 4), (1, 1, 4, 3)),
    _c("k1-same-s2", (2, 5, 6, 4), (1, 1, 4, 3), stride=2, padding="SAME"),
    _c("k1-pad1-s3", (1, 7, 5, 3), (1, 1, 3, 2), stride=3, padding=1),
    _c("k2-same-even", (2, 6, 6, 2), (2, 2, 2, 3), padding="SAME"),
    _c("k4-same-even", (1, 7, 6, 2), (4, 4, 2, 2), padding="SAME"),
    _c("k1x3-same", (2, 5, 7, 2), (1, 3, 2, 3), padding="SAME"),
    _c("k3x1-valid-s2", (2, 7, 5, 2), (3, 1, 2, 3), stride=2),
    _c("k5-same", (1, 7, 7, 2), (5, 5, 2, 2), padding="SAME"),
    # small dimensions
    _c("cin1-same", (1, 6, 7, 1), (3, 3, 1, 4), padding="SAME"),
    _c("cout1-valid", (2, 6, 5, 3), (2, 3, 3, 1)),
    _c("cin16-same", (1, 5, 5, 16), (3, 3, 16, 8), padding="SAME"),
    _c("n1-x1x1-k1", (2, 1, 1, 3), (1, 1, 3, 2)),
    _c("x1x1-k3-same", (2, 1, 1, 3), (3, 3, 3, 2), padding="SAME"),
    # kernel as large as the (padded) input
    _c("kernel-eq-input-valid", (2, 4, 5, 3), (4, 5, 3, 2)),
    _c("kernel-eq-input-same", (1, 4, 5, 3), (4, 5, 3, 2), padding="SAME"),
    _c("kernel-eq-input-valid-s2", (1, 3, 3, 2), (3, 3, 2, 2), stride=2),
    _c("kernel-gt-input-same", (1, 2, 2, 2), (3, 3, 2, 2), padding="SAME"),
    _c("kernel-eq-padded-input", (1, 2, 3, 2), (3, 4, 2, 2), padding=((1, 0), (0, 1))),
    # grouped (x's C_in a multiple of w's, as TensorFlow infers it), and depthwise
    _c("grouped3-same", (2, 7, 8, 6), (3, 3, 2, 9), padding="SAME"),
    _c("grouped2-valid-s2-d2", (1, 9, 9, 4), (3, 2, 2, 4), stride=2, dilation=2),
    _c("depthwise-x2-same-s2", (2, 7, 6, 3), (3, 3, 1, 6), stride=2, padding="SAME"),
    # the article's shapes, scaled down
    _c("article-small-same", (4, 32, 32, 3), (3, 3, 3, 16), padding="SAME"),
    _c("article-small-valid-s2", (2, 16, 16, 3), (3, 3, 3, 16), stride=2),
)

#: The article's full-size shapes: for fast methods only (not "python").
ARTICLE_CASES: Tuple[Case, ...] = (
    _c("article-valid", (100, 32, 32, 3), (3, 3, 3, 16)),
    _c("article-same", (100, 32, 32, 3), (3, 3, 3, 16), padding="SAME"),
)


def case_ids(cases: Optional[Iterable[Case]] = None) -> List[str]:
    """The ids of ``cases`` (default :data:`CASES`), for ``pytest.mark.parametrize(ids=...)``."""
    return [c.id for c in (CASES if cases is None else cases)]


def get_case(case_id: str) -> Case:
    for c in CASES + ARTICLE_CASES:
        if c.id == case_id:
            return c
    raise KeyError(case_id)


def make_inputs(case: Case, dtype="float64", seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic (x, w) for ``case``: uniform in [-1, 1), rounded to ``dtype``,
    C-contiguous and writeable. The same (case, dtype, seed) always gives the same arrays."""
    rng = np.random.default_rng([seed, zlib.crc32(case.id.encode())])
    x = rng.uniform(-1.0, 1.0, case.x_shape).astype(dtype)
    w = rng.uniform(-1.0, 1.0, case.w_shape).astype(dtype)
    return x, w
