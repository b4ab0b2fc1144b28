"""The kernel: 2-D cross-correlation by the FFT.

conv's front end hands this kernel a ``conv.Problem`` that is already zero-padded
(the method does not declare ``pads_itself``), at stride 1 and dilation 1 (it
declares neither ``supports_stride`` nor ``supports_dilation``, so conv computes
the dense output and subsamples it, or splits the input into dilation phases).
What is left is a "valid" cross-correlation:

    out[n, i, j, o] = sum_{a, b, c} x[n, i + a, j + b, c] * w[a, b, c, o]

By the correlation theorem, with X = rfft2(x) and W = rfft2(w zero-padded to the
transform size), the circular correlation of x and w is irfft2(X * conj(W)); its
first OH x OW entries never wrap around, so they are exactly the valid output.
Summing over C_in happens in the frequency domain: at each frequency it is one
(N x C_in) @ (C_in x C_out) complex product, done for all frequencies at once by
a batched matmul.

Everything is computed in float64 / complex128 (a float32 problem is converted
on the way in and rounded back to float32 on the way out), so the float32 result
is about as accurate as the rounding of the exact sum.

An FFT's rounding error is spread evenly over the output, at the size of the
largest outputs. Outputs whose receptive field is all zeros (typically those that
see only padding) must be exactly 0, so they are set to 0 afterwards.

An FFT spreads an inf or NaN in the input over every output; TensorFlow keeps
them local. Problems with non-finite values are therefore computed by a direct
sum over the kernel taps instead, so that every output is what the definition
says.
"""
from __future__ import annotations

import numpy as np

# Batch images are transformed in groups so the complex intermediates stay
# around this many bytes.
_CHUNK_BYTES = 64 * 2**20


def next_fast_len(n: int) -> int:
    """The smallest 5-smooth integer >= n (a size numpy's pocketfft handles fast)."""
    if n <= 6:
        return max(n, 1)
    best = 2 * n
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            if m < best:
                best = m
            p35 *= 3
        p5 *= 5
    return best


def _fft_valid(x: np.ndarray, w: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Valid cross-correlation of x (N, H, W, C_in) with w (KH, KW, C_in, C_out), float64."""
    n, h, wd, c_in = x.shape
    c_out = w.shape[3]
    fh, fw = next_fast_len(h), next_fast_len(wd)
    fw2 = fw // 2 + 1
    n_freq = fh * fw2

    # (fh, fw2, C_in, C_out) -> (F, C_in, C_out): one matrix per frequency.
    wf = np.fft.rfft2(w.astype(np.float64, copy=False), s=(fh, fw), axes=(0, 1))
    wf = np.conj(wf).reshape(n_freq, c_in, c_out)

    out = np.empty((n, oh, ow, c_out), dtype=np.float64)
    per_image = n_freq * (c_in + c_out) * 16
    step = max(1, min(n, _CHUNK_BYTES // max(per_image, 1)))
    for start in range(0, n, step):
        xs = x[start : start + step].astype(np.float64, copy=False)
        m = xs.shape[0]
        xf = np.fft.rfft2(xs, s=(fh, fw), axes=(1, 2))  # (m, fh, fw2, C_in)
        xf = xf.reshape(m, n_freq, c_in).transpose(1, 0, 2)  # (F, m, C_in)
        yf = np.matmul(xf, wf)  # (F, m, C_out): the sum over C_in
        yf = yf.transpose(1, 0, 2).reshape(m, fh, fw2, c_out)
        y = np.fft.irfft2(yf, s=(fh, fw), axes=(1, 2))  # (m, fh, fw, C_out)
        out[start : start + m] = y[:, :oh, :ow, :]
    return out


def _zero_windows(x: np.ndarray, kh: int, kw: int, oh: int, ow: int) -> np.ndarray:
    """(N, OH, OW) bool: outputs whose whole receptive field in x is zero.

    Their exact value is 0, but an FFT leaves rounding noise of the size of the
    largest outputs there. They are common: every output that only sees padding.
    Counted with a summed-area table, so this costs O(N*H*W*C_in).
    """
    nonzero = (x != 0).any(axis=3)
    sat = np.zeros((x.shape[0], x.shape[1] + 1, x.shape[2] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(nonzero, axis=1, dtype=np.int64), axis=2, out=sat[:, 1:, 1:])
    count = sat[:, kh : kh + oh, kw : kw + ow] - sat[:, :oh, kw : kw + ow] - sat[:, kh : kh + oh, :ow] + sat[:, :oh, :ow]
    return count == 0


def _direct_valid(x: np.ndarray, w: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """The same sum, tap by tap (used only when the inputs hold inf or NaN)."""
    n, _, _, c_in = x.shape
    kh, kw, _, c_out = w.shape
    out = np.zeros((n, oh, ow, c_out), dtype=np.float64)
    with np.errstate(all="ignore"):
        for a in range(kh):
            for b in range(kw):
                patch = x[:, a : a + oh, b : b + ow, :].astype(np.float64)
                out += (patch.reshape(-1, c_in) @ w[a, b].astype(np.float64)).reshape(out.shape)
    return out


def kernel(problem) -> np.ndarray:
    """conv.Method kernel: ``problem.out_shape`` in ``problem.dtype``."""
    x, w = problem.x, problem.w
    # The capabilities this method declares guarantee these; a broken promise
    # here would be a bug in conv, so say so loudly rather than compute garbage.
    if problem.stride != (1, 1) or problem.dilation != (1, 1) or any(problem.padding[0] + problem.padding[1]):
        raise AssertionError(f"conv_fft got a problem it did not ask for: {problem!r}")
    n, oh, ow, c_out = problem.out_shape
    if np.isfinite(x).all() and np.isfinite(w).all():
        out = _fft_valid(x, w, oh, ow)
        out[_zero_windows(x, w.shape[0], w.shape[1], oh, ow)] = 0.0
    else:
        out = _direct_valid(x, w, oh, ow)
    return out.astype(problem.dtype, copy=False)
