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

/* One 8x8 (float) or 4x4 (double) square, o[b * lo + a] = x[a * lx + b]: in registers
 * with AVX (the 256-bit shuffles every AVX2 and AVX-512 CPU has), else one value at a
 * time. */
#if defined(__AVX__)
#include <immintrin.h>
#define CONV_SWAP_SQ_F 8
#define CONV_SWAP_SQ_D 4
static inline void conv_swap_square_f(const float *x, ptrdiff_t lx, float *o, ptrdiff_t lo) {
    __m256 r0 = _mm256_loadu_ps(x), r1 = _mm256_loadu_ps(x + lx);
    __m256 r2 = _mm256_loadu_ps(x + 2 * lx), r3 = _mm256_loadu_ps(x + 3 * lx);
    __m256 r4 = _mm256_loadu_ps(x + 4 * lx), r5 = _mm256_loadu_ps(x + 5 * lx);
    __m256 r6 = _mm256_loadu_ps(x + 6 * lx), r7 = _mm256_loadu_ps(x + 7 * lx);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    r0 = _mm256_shuffle_ps(t0, t2, 0x44); r1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    r2 = _mm256_shuffle_ps(t1, t3, 0x44); r3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    r4 = _mm256_shuffle_ps(t4, t6, 0x44); r5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    r6 = _mm256_shuffle_ps(t5, t7, 0x44); r7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(o, _mm256_permute2f128_ps(r0, r4, 0x20));
    _mm256_storeu_ps(o + lo, _mm256_permute2f128_ps(r1, r5, 0x20));
    _mm256_storeu_ps(o + 2 * lo, _mm256_permute2f128_ps(r2, r6, 0x20));
    _mm256_storeu_ps(o + 3 * lo, _mm256_permute2f128_ps(r3, r7, 0x20));
    _mm256_storeu_ps(o + 4 * lo, _mm256_permute2f128_ps(r0, r4, 0x31));
    _mm256_storeu_ps(o + 5 * lo, _mm256_permute2f128_ps(r1, r5, 0x31));
    _mm256_storeu_ps(o + 6 * lo, _mm256_permute2f128_ps(r2, r6, 0x31));
    _mm256_storeu_ps(o + 7 * lo, _mm256_permute2f128_ps(r3, r7, 0x31));
}
static inline void conv_swap_square_d(const double *x, ptrdiff_t lx, double *o, ptrdiff_t lo) {
    __m256d r0 = _mm256_loadu_pd(x), r1 = _mm256_loadu_pd(x + lx);
    __m256d r2 = _mm256_loadu_pd(x + 2 * lx), r3 = _mm256_loadu_pd(x + 3 * lx);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(o, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(o + lo, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(o + 2 * lo, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(o + 3 * lo, _mm256_permute2f128_pd(t1, t3, 0x31));
}
#else
#define CONV_SWAP_SQ_F 8
#define CONV_SWAP_SQ_D 4
#define CONV_SWAP_SQUARE(T, NAME, SQ)                                                      \
static inline void NAME(const T *x, ptrdiff_t lx, T *o, ptrdiff_t lo) {                    \
    int a, b;                                                                              \
    for (b = 0; b < SQ; b++)                                                               \
        for (a = 0; a < SQ; a++)                                                           \
            o[b * lo + a] = x[a * lx + b];                                                 \
}
CONV_SWAP_SQUARE(float, conv_swap_square_f, CONV_SWAP_SQ_F)
CONV_SWAP_SQUARE(double, conv_swap_square_d, CONV_SWAP_SQ_D)
#endif

#define CONV_SWAP(T, NAME, SQ, SQUARE)                                                     \
static void NAME##_tasks(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {                \
    const conv_swap_problem *p = (const conv_swap_problem *)ctx;                           \
    const ptrdiff_t A = p->A, B = p->B;                                                    \
    const ptrdiff_t bb = (B + CONV_SWAP_BLOCK - 1) / CONV_SWAP_BLOCK;                      \
    const ptrdiff_t ab = (A + CONV_SWAP_SPAN - 1) / CONV_SWAP_SPAN;                        \
    ptrdiff_t t;                                                                           \
    for (t = begin; t < end; t++) {                                                        \
        const ptrdiff_t n = t / (bb * ab), rest = t - n * bb * ab;                         \
        const ptrdiff_t b0 = rest / ab * CONV_SWAP_BLOCK;                                  \
        const ptrdiff_t a0 = (rest - rest / ab * ab) * CONV_SWAP_SPAN;                     \
        const ptrdiff_t b1 = b0 + CONV_SWAP_BLOCK < B ? b0 + CONV_SWAP_BLOCK : B;          \
        const ptrdiff_t a1 = a0 + CONV_SWAP_SPAN < A ? a0 + CONV_SWAP_SPAN : A;            \
        const T *x = (const T *)p->x + n * A * B;                                          \
        T *o = (T *)p->out + n * A * B;                                                    \
        ptrdiff_t a, b, as = a0, bs;                                                       \
        if (conv_interrupted(p->intr, t)) return;                                          \
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
    const ptrdiff_t ntask = p->N * ((p->B + CONV_SWAP_BLOCK - 1) / CONV_SWAP_BLOCK)         \
                            * ((p->A + CONV_SWAP_SPAN - 1) / CONV_SWAP_SPAN);              \
    if (ntask == 0) return;                                                                \
    conv_pool_run(threads, ntask, conv_chunk(ntask, threads), NAME##_tasks, p);            \
}

CONV_SWAP(float, conv_swap_f, CONV_SWAP_SQ_F, conv_swap_square_f)
CONV_SWAP(double, conv_swap_d, CONV_SWAP_SQ_D, conv_swap_square_d)

#endif /* CONV_LAYOUT_H */
