# conv's compiled kernels, included by _kernels.pyx (portable build) and
# _kernels_avx2.pyx (AVX2+FMA build): thin nogil drivers over const, C-contiguous
# typed memoryviews (fused float/double) that hand register-blocked tiles of
# MR=6 output pixels x NR output channels to the micro-kernel in _ukernel.h.
# Compiler directives (boundscheck/wraparound off, cdivision) are set in setup.py.
#
# The work is split into tasks (channel tile, image, block of pixels) under a
# dynamic OpenMP schedule. Every output element is summed in the order
# (i, j, c_in) whatever the thread count, so threads=1, threads=k and the serial
# build agree bit for bit, and "direct" and "matmul" agree bit for bit.
from cython.parallel cimport prange

cdef extern from "_ukernel.h" nogil:
    const int CONV_MR
    const int CONV_NR_F
    const int CONV_NR_D
    const char* CONV_SIMD
    void conv_tile_f(const float* x, const float* wp, const float* zeros, float* out,
                     Py_ssize_t CO, int mr, int nc, Py_ssize_t oy, Py_ssize_t ox, Py_ssize_t OW,
                     Py_ssize_t H, Py_ssize_t W, Py_ssize_t CI, Py_ssize_t KH, Py_ssize_t KW,
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                     Py_ssize_t pt, Py_ssize_t pl, int zeros_exact, int accumulate)
    void conv_tile_d(const double* x, const double* wp, const double* zeros, double* out,
                     Py_ssize_t CO, int mr, int nc, Py_ssize_t oy, Py_ssize_t ox, Py_ssize_t OW,
                     Py_ssize_t H, Py_ssize_t W, Py_ssize_t CI, Py_ssize_t KH, Py_ssize_t KW,
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                     Py_ssize_t pt, Py_ssize_t pl, int zeros_exact, int accumulate)

ctypedef fused real:
    float
    double

SIMD = CONV_SIMD.decode()
MR = CONV_MR
NR = {"float32": CONV_NR_F, "float64": CONV_NR_D}
cdef enum:
    # Pixel tiles per task: one channel tile's weights serve BLOCK tiles in a row, and in
    # the "matmul" order the block being accumulated tap by tap (MR * BLOCK pixels x NR
    # channels) stays in L1.
    BLOCK = 8


cdef inline void _tile(const real* x, const real* wp, const real* zeros, real* out,
                       Py_ssize_t CO, int mr, int nc, Py_ssize_t oy, Py_ssize_t ox, Py_ssize_t OW,
                       Py_ssize_t H, Py_ssize_t W, Py_ssize_t CI, Py_ssize_t KH,
                       Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                       Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl, int zeros_exact,
                       int accumulate) noexcept nogil:
    if real is float:
        conv_tile_f(x, wp, zeros, out, CO, mr, nc, oy, ox, OW, H, W, CI, KH, KW,
                    sh, sw, dh, dw, pt, pl, zeros_exact, accumulate)
    else:
        conv_tile_d(x, wp, zeros, out, CO, mr, nc, oy, ox, OW, H, W, CI, KH, KW,
                    sh, sw, dh, dw, pt, pl, zeros_exact, accumulate)


cdef inline Py_ssize_t _chunk(Py_ssize_t ntask, int threads) noexcept nogil:
    cdef Py_ssize_t c = ntask // (16 * threads)
    return c if c > 1 else 1


def conv2d_direct(const real[:, :, :, ::1] x, const real[:, :, :, :, ::1] wp,
                  const real[::1] zeros, real[:, :, :, ::1] out,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                  Py_ssize_t pt, Py_ssize_t pl, bint zeros_exact, bint blocks_outer,
                  int threads):
    """Direct order: each tile sums over every tap before it is stored.

    x: (N, H, W, C_in), unpadded; wp: (channel tiles, KH, KW, C_in, NR) from
    pack_weights; zeros: KW*C_in zeros; out: (N, OH, OW, C_out). pt/pl: top/left
    padding. zeros_exact: every weight is finite (see _tile.h). blocks_outer: task
    order; it changes speed, never results.
    """
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], CI = x.shape[3]
    cdef Py_ssize_t ncot = wp.shape[0], KH = wp.shape[1], KW = wp.shape[2], nr = wp.shape[4]
    cdef Py_ssize_t OH = out.shape[1], OW = out.shape[2], CO = out.shape[3]
    cdef Py_ssize_t P = OH * OW, tiles = (P + CONV_MR - 1) // CONV_MR
    cdef Py_ssize_t per_image = (tiles + BLOCK - 1) // BLOCK
    cdef Py_ssize_t blocks = N * per_image, ntask = ncot * blocks
    cdef Py_ssize_t task, cot, block, n, t0, t, p0, oy, ox
    cdef int mr, nc
    if ntask == 0 or CO == 0:
        return
    with nogil:
        for task in prange(ntask, num_threads=threads, schedule="dynamic",
                           chunksize=_chunk(ntask, threads)):
            # Task -> (channel tile, pixel block). Plain assignments: prange makes a
            # variable thread-private only when the loop body assigns it.
            if blocks_outer:  # one input block stays hot while every channel tile passes
                block = task // ncot
                cot = task - block * ncot
            else:  # one channel tile's weights stay hot while the input streams past
                cot = task // blocks
                block = task - cot * blocks
            n = block // per_image
            t0 = (block - n * per_image) * BLOCK
            nc = <int>(CO - cot * nr if CO - cot * nr < nr else nr)
            oy = (t0 * CONV_MR) // OW  # one division per block; then stepped
            ox = t0 * CONV_MR - oy * OW
            for t in range(t0, min(t0 + BLOCK, tiles)):
                p0 = t * CONV_MR
                mr = <int>(P - p0 if P - p0 < CONV_MR else CONV_MR)
                _tile(&x[n, 0, 0, 0], &wp[cot, 0, 0, 0, 0], &zeros[0],
                      &out[n, 0, 0, 0] + p0 * CO + cot * nr, CO, mr, nc, oy, ox, OW,
                      H, W, CI, KH, KW, sh, sw, dh, dw, pt, pl, zeros_exact, 0)
                ox = ox + CONV_MR
                while ox >= OW:
                    ox = ox - OW
                    oy = oy + 1


def conv2d_matmul(const real[:, :, :, ::1] x, const real[:, :, :, :, ::1] wp,
                  const real[::1] zeros, real[:, :, :, ::1] out,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                  Py_ssize_t pt, Py_ssize_t pl, bint zeros_exact, bint blocks_outer,
                  int threads):
    """The article's order: for each kernel tap (i, j), one (pixels x C_in) @
    (C_in x NR) product over the strided input slice, accumulated into the output.
    Blocked by BLOCK pixel tiles so the block being accumulated stays in
    cache. Same arguments as conv2d_direct."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], CI = x.shape[3]
    cdef Py_ssize_t ncot = wp.shape[0], KH = wp.shape[1], KW = wp.shape[2], nr = wp.shape[4]
    cdef Py_ssize_t OH = out.shape[1], OW = out.shape[2], CO = out.shape[3]
    cdef Py_ssize_t P = OH * OW, tiles = (P + CONV_MR - 1) // CONV_MR
    cdef Py_ssize_t per_image = (tiles + BLOCK - 1) // BLOCK
    cdef Py_ssize_t blocks = N * per_image, ntask = ncot * blocks
    cdef Py_ssize_t task, cot, block, n, t0, t, p0, i, j, oy, ox
    cdef int mr, nc
    if ntask == 0 or CO == 0:
        return
    with nogil:
        for task in prange(ntask, num_threads=threads, schedule="dynamic",
                           chunksize=_chunk(ntask, threads)):
            # Task -> (channel tile, pixel block). Plain assignments: prange makes a
            # variable thread-private only when the loop body assigns it.
            if blocks_outer:  # one input block stays hot while every channel tile passes
                block = task // ncot
                cot = task - block * ncot
            else:  # one channel tile's weights stay hot while the input streams past
                cot = task // blocks
                block = task - cot * blocks
            n = block // per_image
            t0 = (block - n * per_image) * BLOCK
            nc = <int>(CO - cot * nr if CO - cot * nr < nr else nr)
            for i in range(KH):
                for j in range(KW):
                    oy = (t0 * CONV_MR) // OW
                    ox = t0 * CONV_MR - oy * OW
                    for t in range(t0, min(t0 + BLOCK, tiles)):
                        p0 = t * CONV_MR
                        mr = <int>(P - p0 if P - p0 < CONV_MR else CONV_MR)
                        _tile(&x[n, 0, 0, 0], &wp[cot, i, j, 0, 0], &zeros[0],
                              &out[n, 0, 0, 0] + p0 * CO + cot * nr, CO, mr, nc, oy, ox, OW,
                              H, W, CI, 1, 1, sh, sw, dh, dw, pt - i * dh, pl - j * dw,
                              zeros_exact, i + j > 0)
                        ox = ox + CONV_MR
                        while ox >= OW:
                            ox = ox - OW
                            oy = oy + 1
