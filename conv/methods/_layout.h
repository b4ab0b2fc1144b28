/* Layout changes for data_format="NCHW": (N, A, B) -> (N, B, A) for each of N images, i.e.
 * NCHW (A = C, B = H*W) to NHWC and back (A = H*W, B = C). Cache-blocked: a task is one
 * image's CONV_SWAP_BLOCK columns of x by CONV_SWAP_SPAN rows (so no two tasks write to
 * the same stretch of out), moved as 8x8 (float) or 4x4 (double) squares transposed in
 * registers; both sides are read and written whole cache lines at a time. A copy: every
 * value moved as it is.
 * Included by _kernels.pxi. */
#ifndef CONV_LAYOUT_H
#define CONV_LAYOUT_H
#include <stddef.h>
#include "_pool.h"
#include "_drivers.h" /* conv_chunk */
#include "_transpose.h" /* the squares */

/* a task: CONV_SWAP_BLOCK columns of x (rows of out, which the task alone writes) by
 * CONV_SWAP_SPAN rows of x; both multiples of the squares' sides */
#define CONV_SWAP_BLOCK 32
#define CONV_SWAP_SPAN 512

typedef struct {
    const void *x;
    void *out;
    ptrdiff_t N, A, B;
    conv_interrupt *intr;
} conv_swap_problem;

/* Fewer rows than a square (NCHW x with C_in < 8 float32, < 4 float64): each task
 * CONV_SWAP_FEW_BLOCKS times as many columns; and with 1-7 rows each column's values are
 * moved by a loop of a constant count, which the compiler unrolls. Measured against the
 * general loop of the rows left over (2 threads, median of 31, three runs): (100, 3, 1024)
 * float32 2.6-3.0x faster, float64 1.6-1.8x; (8, 3, 50176) float32 2.7-3.0x; (8, 1,
 * 50176) float32 5.0-6.3x. */
#define CONV_SWAP_FEW_BLOCKS 64
#define CONV_SWAP_COLS(A, SQ) ((A) < (SQ) ? CONV_SWAP_BLOCK * CONV_SWAP_FEW_BLOCKS          \
                                          : CONV_SWAP_BLOCK)
#define CONV_SWAP_FEW(NA)                                                                  \
    case NA:                                                                               \
        for (b = b0; b < b1; b++)                                                          \
            for (a = 0; a < NA; a++)                                                       \
                o[b * NA + a] = x[a * B + b];                                              \
        continue;

#define CONV_SWAP(T, NAME, SQ, SQUARE)                                                     \
static void NAME##_tasks(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {                \
    const conv_swap_problem *p = (const conv_swap_problem *)ctx;                           \
    const ptrdiff_t A = p->A, B = p->B, cols = CONV_SWAP_COLS(A, SQ);                      \
    const ptrdiff_t bb = (B + cols - 1) / cols;                                            \
    const ptrdiff_t ab = (A + CONV_SWAP_SPAN - 1) / CONV_SWAP_SPAN;                        \
    ptrdiff_t t;                                                                           \
    for (t = begin; t < end; t++) {                                                        \
        const ptrdiff_t n = t / (bb * ab), rest = t - n * bb * ab;                         \
        const ptrdiff_t b0 = rest / ab * cols;                                             \
        const ptrdiff_t a0 = (rest - rest / ab * ab) * CONV_SWAP_SPAN;                     \
        const ptrdiff_t b1 = b0 + cols < B ? b0 + cols : B;                                \
        const ptrdiff_t a1 = a0 + CONV_SWAP_SPAN < A ? a0 + CONV_SWAP_SPAN : A;            \
        const T *x = (const T *)p->x + n * A * B;                                          \
        T *o = (T *)p->out + n * A * B;                                                    \
        ptrdiff_t a, b, as = a0, bs;                                                       \
        if (conv_interrupted(p->intr, t)) return;                                          \
        switch (A) {                                                                       \
            CONV_SWAP_FEW(1) CONV_SWAP_FEW(2) CONV_SWAP_FEW(3) CONV_SWAP_FEW(4)            \
            CONV_SWAP_FEW(5) CONV_SWAP_FEW(6) CONV_SWAP_FEW(7)                             \
            default: break;                                                                \
        }                                                                                  \
        for (; as + SQ <= a1; as += SQ) {                                                  \
            for (bs = b0; bs + SQ <= b1; bs += SQ) /* whole squares */                     \
                SQUARE(x + as * B + bs, B, o + bs * A + as, A);                            \
            for (b = bs; b < b1; b++) /* the columns left over */                          \
                for (a = as; a < as + SQ; a++)                                             \
                    o[b * A + a] = x[a * B + b];                                           \
        }                                                                                  \
        for (b = b0; b < b1; b++) /* the rows left over */                                 \
            for (a = as; a < a1; a++)                                                      \
                o[b * A + a] = x[a * B + b];                                               \
    }                                                                                      \
}                                                                                          \
static void NAME(const conv_swap_problem *p, int threads) {                                \
    const ptrdiff_t cols = CONV_SWAP_COLS(p->A, SQ);                                       \
    const ptrdiff_t ntask = p->N * ((p->B + cols - 1) / cols)                              \
                            * ((p->A + CONV_SWAP_SPAN - 1) / CONV_SWAP_SPAN);              \
    if (ntask == 0) return;                                                                \
    conv_pool_run(threads, ntask, conv_chunk(ntask, threads), NAME##_tasks, p);            \
}

CONV_SWAP(float, conv_swap_f, CONV_SWAP_SQ_F, conv_swap_square_f)
CONV_SWAP(double, conv_swap_d, CONV_SWAP_SQ_D, conv_swap_square_d)

#endif /* CONV_LAYOUT_H */
