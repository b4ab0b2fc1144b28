/* conv's depthwise kernel: each input channel convolved with its own filters,
 * tf.nn.depthwise_conv2d's semantics (x (N, H, W, C), w (KH, KW, C, M), output channel
 * c * M + m). Memory bound, so built for streaming: a task is one output row; each output
 * pixel's C * M sums live in the (L1-resident) output row and are updated tap by tap with
 * loops over channels the compiler vectorizes. Padded taps are skipped, never multiplied,
 * and each sum runs over the taps in the order (i, j), whatever the thread count.
 * Included by _kernels.pxi. */
#ifndef CONV_DEPTHWISE_H
#define CONV_DEPTHWISE_H
#include <stddef.h>
#include "_pool.h"
#include "_drivers.h" /* conv_chunk */

typedef struct {
    const void *x, *w;               /* x (N, H, W, C), unpadded; w (KH, KW, C, M) */
    void *out;                       /* (N, OH, OW, C * M) */
    ptrdiff_t N, H, W, C, KH, KW, M, OH, OW;
    ptrdiff_t sh, sw, dh, dw, pt, pl;
    conv_interrupt *intr;            /* checked between rows; NULL: not interruptible */
} conv_dw_problem;

#define CONV_DEPTHWISE(T, NAME)                                                            \
static void NAME##_tap(T *restrict o, const T *restrict xp, const T *restrict wt,          \
                       ptrdiff_t C, ptrdiff_t M) {                                         \
    ptrdiff_t c, m;                                                                        \
    if (M == 1) {                                                                          \
        for (c = 0; c < C; c++)                                                            \
            o[c] += xp[c] * wt[c];                                                         \
    } else {                                                                               \
        for (c = 0; c < C; c++)                                                            \
            for (m = 0; m < M; m++)                                                        \
                o[c * M + m] += xp[c] * wt[c * M + m];                                     \
    }                                                                                      \
}                                                                                          \
static void NAME##_rows(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {                 \
    const conv_dw_problem *p = (const conv_dw_problem *)ctx;                               \
    const T *x = (const T *)p->x, *w = (const T *)p->w;                                    \
    const ptrdiff_t C = p->C, M = p->M, CM = p->C * p->M;                                  \
    ptrdiff_t row;                                                                         \
    for (row = begin; row < end; row++) {                                                  \
        const ptrdiff_t n = row / p->OH, oy = row - n * p->OH;                             \
        T *o = (T *)p->out + row * p->OW * CM;                                             \
        ptrdiff_t ox, i, j, k;                                                             \
        if (conv_interrupted(p->intr, row)) return;  /* Ctrl-C: every thread stops */      \
        for (ox = 0; ox < p->OW; ox++, o += CM) {                                          \
            for (k = 0; k < CM; k++)                                                       \
                o[k] = 0;                                                                  \
            for (i = 0; i < p->KH; i++) {                                                  \
                const ptrdiff_t iy = oy * p->sh - p->pt + i * p->dh;                       \
                if (iy < 0 || iy >= p->H) continue;                                        \
                for (j = 0; j < p->KW; j++) {                                              \
                    const ptrdiff_t ix = ox * p->sw - p->pl + j * p->dw;                   \
                    if (ix < 0 || ix >= p->W) continue;                                    \
                    NAME##_tap(o, x + ((n * p->H + iy) * p->W + ix) * C,                   \
                               w + (i * p->KW + j) * CM, C, M);                            \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
static void NAME(const conv_dw_problem *p, int threads) {                                  \
    const ptrdiff_t rows = p->N * p->OH;                                                   \
    if (rows == 0 || p->OW == 0 || p->C * p->M == 0) return;                               \
    conv_pool_run(threads, rows, conv_chunk(rows, threads), NAME##_rows, p);               \
}

CONV_DEPTHWISE(float, conv_depthwise_f)
CONV_DEPTHWISE(double, conv_depthwise_d)

#endif /* CONV_DEPTHWISE_H */
