/* Packing the weights for the micro-kernel, with the check for Inf and NaN in the same
 * pass: w viewed as (rows, CO) (rows = KH * KW * C_in) becomes wp (ncot, rows, nr), zero
 * past CO, so a tile streams one channel tile's weights contiguously. Tasks on conv's pool
 * are a channel tile and a run of CONV_PACK_ROWS rows. Included by _kernels.pxi.
 */
#ifndef CONV_PACK_H
#define CONV_PACK_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_pool.h"

typedef struct {
    const void *w;
    void *wp;
    ptrdiff_t rows, CO, ncot, nr;
    int nonfinite;               /* out: some weight is Inf or NaN */
} conv_pack_job;

#define CONV_PACK_ROWS 512

/* One element type: T, its bits as U, and the exponent mask (all ones: Inf or NaN).
 * NAME_rows packs rows r0..r1-1 of channel tile cot and returns 1 when one of those
 * weights is Inf or NaN; the drivers call it too, when they pack in their tasks. */
#define CONV_PACK(NAME, T, U, EXP)                                                         \
static int NAME##_rows(const T *w, T *wp, ptrdiff_t rows, ptrdiff_t CO, ptrdiff_t nr,     \
                       ptrdiff_t cot, ptrdiff_t r0, ptrdiff_t r1) {                        \
    const ptrdiff_t n = CO - cot * nr < nr ? CO - cot * nr : nr;                           \
    U bad = 0;                                                                             \
    ptrdiff_t r, k;                                                                        \
    for (r = r0; r < r1; r++) {                                                            \
        const T *src = w + r * CO + cot * nr;                                              \
        T *dst = wp + (cot * rows + r) * nr;                                               \
        for (k = 0; k < n; k++) {                                                          \
            U bits;                                                                        \
            memcpy(&bits, src + k, sizeof bits);                                           \
            bad |= (U)((bits & (EXP)) == (EXP));                                           \
            dst[k] = src[k];                                                               \
        }                                                                                  \
        for (; k < nr; k++) dst[k] = 0;                                                    \
    }                                                                                      \
    return bad != 0;                                                                       \
}                                                                                          \
static void NAME##_tasks(const void *ctx, ptrdiff_t begin, ptrdiff_t end) {                \
    conv_pack_job *p = (conv_pack_job *)ctx;                                               \
    const ptrdiff_t runs = (p->rows + CONV_PACK_ROWS - 1) / CONV_PACK_ROWS;               \
    int bad = 0;                                                                           \
    ptrdiff_t task;                                                                        \
    for (task = begin; task < end; task++) {                                               \
        const ptrdiff_t cot = task / runs, r0 = (task - cot * runs) * CONV_PACK_ROWS;      \
        const ptrdiff_t r1 = r0 + CONV_PACK_ROWS < p->rows ? r0 + CONV_PACK_ROWS : p->rows; \
        bad |= NAME##_rows((const T *)p->w, (T *)p->wp, p->rows, p->CO, p->nr, cot, r0,  \
                           r1);                                                            \
    }                                                                                      \
    if (bad) CONV_STORE_RELAXED(&p->nonfinite, 1);                                         \
}                                                                                          \
static void NAME(conv_pack_job *p, int threads) {                                          \
    const ptrdiff_t ntask = p->ncot * ((p->rows + CONV_PACK_ROWS - 1) / CONV_PACK_ROWS);   \
    p->nonfinite = 0;                                                                      \
    if (ntask > 0) conv_pool_run(threads, ntask, 1, NAME##_tasks, p);                      \
}

CONV_PACK(conv_pack_f, float, uint32_t, UINT32_C(0x7f800000))
CONV_PACK(conv_pack_d, double, uint64_t, UINT64_C(0x7ff0000000000000))
#undef CONV_PACK

#endif /* CONV_PACK_H */
