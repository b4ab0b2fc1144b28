"""Which output positions a kernel tap touches without landing in the padding."""
from __future__ import annotations


def valid_range(out_size: int, in_size: int, tap: int, stride: int, dilation: int, pad_before: int):
    """Output indices o in [lo, hi) with 0 <= o*stride + tap*dilation - pad_before < in_size,
    and the input index of o=lo. Returns (lo, hi, first_input)."""
    offset = tap * dilation - pad_before
    lo = max(0, -(offset // stride)) if offset < 0 else 0  # ceil(-offset / stride)
    hi = min(out_size, (in_size - 1 - offset) // stride + 1) if in_size - 1 - offset >= 0 else 0
    return lo, max(lo, hi), lo * stride + offset
