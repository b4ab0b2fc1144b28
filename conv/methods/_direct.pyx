"""The direct convolution loop, compiled: one output row (n, oy) per prange step.

A nogil core over const, C-contiguous typed memoryviews (fused float/double).
Compiler directives (bounds checking and wraparound off, cdivision) are set in
setup.py. Padded taps are skipped, so x arrives unpadded.
"""
from cython.parallel cimport prange

ctypedef fused real:
    float
    double


cdef void _row(const real* x, const real* w, real* out, Py_ssize_t row,
               Py_ssize_t H, Py_ssize_t W, Py_ssize_t CI,
               Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t CO,
               Py_ssize_t OH, Py_ssize_t OW,
               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
               Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    cdef Py_ssize_t n = row // OH
    cdef Py_ssize_t oy = row - n * OH
    cdef real* orow = out + row * OW * CO
    cdef real* acc
    cdef const real* xp
    cdef const real* wp
    cdef real v
    cdef Py_ssize_t k, i, j, ox, iy, ix, ci, co
    for k in range(OW * CO):
        orow[k] = 0
    for i in range(KH):
        iy = oy * sh + i * dh - pt
        if iy < 0 or iy >= H:
            continue
        for ox in range(OW):
            acc = orow + ox * CO
            for j in range(KW):
                ix = ox * sw + j * dw - pl
                if ix < 0 or ix >= W:
                    continue
                xp = x + ((n * H + iy) * W + ix) * CI
                wp = w + (i * KW + j) * CI * CO
                for ci in range(CI):
                    v = xp[ci]
                    for co in range(CO):
                        acc[co] += v * wp[ci * CO + co]


def conv2d_direct(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w,
                  real[:, :, :, ::1] out, stride, dilation, pads, int threads):
    """Fill out (N, OH, OW, C_out) with the convolution of x by w."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], CI = x.shape[3]
    cdef Py_ssize_t KH = w.shape[0], KW = w.shape[1], CO = w.shape[3]
    cdef Py_ssize_t OH = out.shape[1], OW = out.shape[2]
    cdef Py_ssize_t sh = stride[0], sw = stride[1], dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t pt = pads[0], pl = pads[1]
    cdef Py_ssize_t row
    if N * OH * OW * CO == 0:
        return
    with nogil:
        for row in prange(N * OH, num_threads=threads, schedule="static"):
            _row(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &out[0, 0, 0, 0], row,
                 H, W, CI, KH, KW, CO, OH, OW, sh, sw, dh, dw, pt, pl)
