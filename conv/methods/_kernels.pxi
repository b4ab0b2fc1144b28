# conv's compiled kernels, included by _kernels.pyx (portable build) and
# _kernels_avx2.pyx (AVX2+FMA build): thin nogil drivers over const, C-contiguous
# typed memoryviews (fused float/double) that hand register-blocked tiles of
# 6 output pixels x NR output channels to the micro-kernel in _ukernel.h.
# Compiler directives (boundscheck/wraparound off, cdivision) are set in setup.py.
#
# Both drivers split the work over (channel tile, n, output row) with a dynamic
# OpenMP schedule; every output element is summed in the order (i, j, c_in)
# whatever the thread count, so threads=1, threads=k and the serial build agree
# bit for bit, and "direct" and "matmul" agree bit for bit with each other.
from cython.parallel cimport prange

cdef extern from "_ukernel.h" nogil:
    const int CONV_MR
    const int CONV_NR_F
    const int CONV_NR_D
    const char* CONV_SIMD
    void conv_tile_f(const float* x, const float* wp, float* out, Py_ssize_t ldo,
                     int mr, int nc, Py_ssize_t H, Py_ssize_t W, Py_ssize_t CI,
                     Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t iy0, Py_ssize_t ix0,
                     Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, int accumulate)
    void conv_tile_d(const double* x, const double* wp, double* out, Py_ssize_t ldo,
                     int mr, int nc, Py_ssize_t H, Py_ssize_t W, Py_ssize_t CI,
                     Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t iy0, Py_ssize_t ix0,
                     Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, int accumulate)

ctypedef fused real:
    float
    double

SIMD = CONV_SIMD.decode()
MR = CONV_MR
NR = {"float32": CONV_NR_F, "float64": CONV_NR_D}


cdef inline void _tile(const real* x, const real* wp, real* out, Py_ssize_t ldo,
                       int mr, int nc, Py_ssize_t H, Py_ssize_t W, Py_ssize_t CI,
                       Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t iy0, Py_ssize_t ix0,
                       Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, int accumulate) noexcept nogil:
    if real is float:
        conv_tile_f(x, wp, out, ldo, mr, nc, H, W, CI, KH, KW, iy0, ix0, sw, dh, dw, accumulate)
    else:
        conv_tile_d(x, wp, out, ldo, mr, nc, H, W, CI, KH, KW, iy0, ix0, sw, dh, dw, accumulate)


cdef inline Py_ssize_t _tile_x(Py_ssize_t t, Py_ssize_t OW) noexcept nogil:
    """First output column of tile t. A last tile that would run past OW is shifted
    left to stay full width: it recomputes a few columns with identical arithmetic
    instead of taking the slower narrow path."""
    cdef Py_ssize_t ox0 = t * CONV_MR
    if ox0 + CONV_MR > OW:
        ox0 = OW - CONV_MR if OW >= CONV_MR else 0
    return ox0


cdef inline void _decode(Py_ssize_t task, Py_ssize_t rows, Py_ssize_t ncot, bint rows_outer,
                         Py_ssize_t* cot, Py_ssize_t* row) noexcept nogil:
    """Task -> (channel tile, output row). rows_outer keeps one input row hot while every
    channel tile passes over it (best when all packed weights fit in cache); otherwise one
    channel tile's weights stay hot while the rows stream past."""
    if rows_outer:
        row[0] = task // ncot
        cot[0] = task - row[0] * ncot
    else:
        cot[0] = task // rows
        row[0] = task - cot[0] * rows


cdef inline Py_ssize_t _chunk(Py_ssize_t ntask, int threads) noexcept nogil:
    cdef Py_ssize_t c = ntask // (16 * threads)
    return c if c > 1 else 1


def conv2d_direct(const real[:, :, :, ::1] x, const real[:, :, :, :, ::1] wp,
                  real[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl,
                  int threads, bint rows_outer=False):
    """Direct order: each tile sums over every tap before it is stored.

    x: (N, H, W, C_in), unpadded; wp: (channel tiles, KH, KW, C_in, NR) from
    pack_weights; out: (N, OH, OW, C_out). pt/pl: top/left padding (padded taps
    are skipped).
    """
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], CI = x.shape[3]
    cdef Py_ssize_t ncot = wp.shape[0], KH = wp.shape[1], KW = wp.shape[2], nr = wp.shape[4]
    cdef Py_ssize_t OH = out.shape[1], OW = out.shape[2], CO = out.shape[3]
    cdef Py_ssize_t rows = N * OH, ntask = ncot * rows
    cdef Py_ssize_t nxt = (OW + CONV_MR - 1) // CONV_MR
    cdef int mr = <int>(OW if OW < CONV_MR else CONV_MR)
    cdef Py_ssize_t task, cot, row, n, oy, t, ox0
    cdef int nc
    if ntask == 0 or OW == 0 or CO == 0:
        return
    with nogil:
        for task in prange(ntask, num_threads=threads, schedule="dynamic",
                           chunksize=_chunk(ntask, threads)):
            _decode(task, rows, ncot, rows_outer, &cot, &row)
            n = row // OH
            oy = row - n * OH
            nc = <int>(CO - cot * nr if CO - cot * nr < nr else nr)
            for t in range(nxt):
                ox0 = _tile_x(t, OW)
                _tile(&x[n, 0, 0, 0], &wp[cot, 0, 0, 0, 0], &out[n, oy, ox0, cot * nr],
                      CO, mr, nc, H, W, CI, KH, KW, oy * sh - pt, ox0 * sw - pl,
                      sw, dh, dw, 0)


def conv2d_matmul(const real[:, :, :, ::1] x, const real[:, :, :, :, ::1] wp,
                  real[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl,
                  int threads, bint rows_outer=False):
    """The article's order: for each kernel tap (i, j), one (pixels x C_in) @
    (C_in x NR) product over the strided input slice, accumulated into the output.
    Blocked by output row so the row being accumulated stays in cache. Same
    arguments as conv2d_direct."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], CI = x.shape[3]
    cdef Py_ssize_t ncot = wp.shape[0], KH = wp.shape[1], KW = wp.shape[2], nr = wp.shape[4]
    cdef Py_ssize_t OH = out.shape[1], OW = out.shape[2], CO = out.shape[3]
    cdef Py_ssize_t rows = N * OH, ntask = ncot * rows
    cdef Py_ssize_t nxt = (OW + CONV_MR - 1) // CONV_MR
    cdef Py_ssize_t task, cot, row, n, oy, t, ox0, i, j
    cdef int nc, mr
    if ntask == 0 or OW == 0 or CO == 0:
        return
    with nogil:
        for task in prange(ntask, num_threads=threads, schedule="dynamic",
                           chunksize=_chunk(ntask, threads)):
            _decode(task, rows, ncot, rows_outer, &cot, &row)
            n = row // OH
            oy = row - n * OH
            nc = <int>(CO - cot * nr if CO - cot * nr < nr else nr)
            for i in range(KH):
                for j in range(KW):
                    for t in range(nxt):
                        # no overlapping last tile here: accumulating twice into the
                        # overlap would count a tap twice, so the remainder runs narrow
                        ox0 = t * CONV_MR
                        mr = <int>(OW - ox0 if OW - ox0 < CONV_MR else CONV_MR)
                        _tile(&x[n, 0, 0, 0], &wp[cot, i, j, 0, 0], &out[n, oy, ox0, cot * nr],
                              CO, mr, nc, H, W, CI, 1, 1, oy * sh + i * dh - pt,
                              ox0 * sw + j * dw - pl, sw, dh, dw, i + j > 0)
