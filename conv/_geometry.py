"""Sizes and counts of a convolution, in one place.

Every part of conv that needs an output size or a flop count asks here: the front end
(conv._frontend), the dense and phase-split fallbacks (conv._api), the contract's
``Problem.flops`` and the benchmark (conv.bench). The testing kit (conv.testing) is the
one deliberate exception: it recomputes all of this itself, so that it can catch a
mistake made here.
"""
from __future__ import annotations

from typing import Sequence, Tuple


def span(k: int, d: int) -> int:
    """Input rows (or columns) one output reads: k taps, d apart."""
    return (k - 1) * d + 1


def dense_size(padded: int, k: int, d: int) -> int:
    """Outputs along one axis at stride 1, on an input already ``padded``
    (negative when the kernel does not fit)."""
    return padded - span(k, d) + 1


def out_size(padded: int, k: int, s: int, d: int) -> int:
    """Outputs along one axis at stride ``s`` (the kernel must fit: ``padded >= span``)."""
    return (padded - span(k, d)) // s + 1


def same_out_size(size: int, s: int) -> int:
    """Outputs along one axis with TensorFlow's "SAME" padding: ceil(size / s)."""
    return -(-size // s)


def valid_out_shape(x_shape: Sequence[int], w_shape: Sequence[int]) -> Tuple[int, int, int, int]:
    """(N, OH, OW, C_out) of a VALID, stride-1, undilated convolution."""
    n, h, w, _ = x_shape
    kh, kw, _, co = w_shape
    return (n, dense_size(h, kh, 1), dense_size(w, kw, 1), co)


def flops(out_shape: Sequence[int], w_shape: Sequence[int]) -> int:
    """Multiply-adds counted as two flops: 2*N*OH*OW*KH*KW*C_in*C_out."""
    n, oh, ow, co = out_shape
    kh, kw, ci, _ = w_shape
    return 2 * n * oh * ow * kh * kw * ci * co
