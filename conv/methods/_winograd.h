/* conv's Winograd convolution, F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray, 2016), for 3x3
 * kernels at stride 1 and dilation 1: input and output tiles transformed in C, vector
 * lanes across channels; the element-wise products as batched matrix products on the
 * micro-kernel of _ukernel.h; tasks on conv's pool (_pool.h). Included by _kernels.pxi;
 * the per-type code is the template _winograd_impl.h.
 *
 * Not exact: every output is a sum of rounded transforms, within the accuracy contract of
 * conv.methods.winograd (normwise 2e-5 float32, 1e-12 float64). An Inf or NaN met in a
 * transform (from the input, or from an overflow) is reported in `nonfinite`, and the
 * caller recomputes the call on the exact-order direct kernel: the transforms would
 * smear it over its whole tile.
 */
#ifndef CONV_WINOGRAD_H
#define CONV_WINOGRAD_H
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "_ukernel.h"
#include "_pool.h"
#include "_transpose.h"

typedef struct {
    const void *x, *u, *zeros;   /* zeros: at least CI of them */
    void *out;
    const void *w;               /* weights-stationary order: the (3, 3, CI, CO) weights, */
    void *vall;                  /* and room for every tile's transformed input */
    ptrdiff_t N, H, W, CI;       /* input (N, H, W, CI), unpadded */
    ptrdiff_t ncot, nr;          /* transformed weights (WA*WA, ncot, CI, nr) */
    ptrdiff_t OH, OW, CO;        /* output (N, OH, OW, CO); out_nchw: (N, CO, OH, OW) */
    int out_nchw;
    ptrdiff_t pt, pl;            /* top/left padding */
    int m;                       /* output tile edge: 2 or 4 */
    ptrdiff_t bt, gcot;          /* tiles, channel tiles per task (speed only; 0: chosen) */
    ptrdiff_t unit, nblk;        /* set by conv_wino_shape: the tiles in nblk blocks of
                                  * whole units of `unit` tiles (at most bt), as even as
                                  * they can be: block b starts at tile
                                  * unit * (b * units / nblk) */
    int nonfinite;               /* out: an Inf or NaN met; the output is not valid */
    int failed;                  /* out: scratch memory could not be allocated */
    conv_interrupt *intr;
} conv_wino_problem;

typedef struct {
    const void *w;               /* (3, 3, CI, CO) */
    void *u;                     /* (WA*WA, ncot, CI, nr) */
    ptrdiff_t CI, CO, ncot;
    int nonfinite;               /* out: some weight is Inf or NaN; u is not valid */
} conv_wino_weights;

static ptrdiff_t conv_wino_tiles(const conv_wino_problem *p) {
    return p->N * ((p->OH + p->m - 1) / p->m) * ((p->OW + p->m - 1) / p->m);
}

/* Block b's tiles: [*t0, *t0 + *nt). */
static void conv_wino_block(const conv_wino_problem *p, ptrdiff_t b, ptrdiff_t *t0,
                            ptrdiff_t *nt) {
    const ptrdiff_t ntile = conv_wino_tiles(p), units = (ntile + p->unit - 1) / p->unit;
    const ptrdiff_t t1 = p->unit * ((b + 1) * units / p->nblk);
    *t0 = p->unit * (b * units / p->nblk);
    *nt = (t1 < ntile ? t1 : ntile) - *t0;
}

/* Input channels a weight-transform task covers (see weight_tasks). */
#define CONV_WINO_CI_RUN 64

/* The template, once per element type and output tile edge; V is one element and L 1
 * in the scalar build (_simd.h). */
#define T float
#define V conv_vf32
#define L CONV_LANES_F32
#define LOADV conv_load_f32
#define STOREV conv_store_f32
#define PUTLANES conv_put_lanes_f32
#define TILE CONV_UKERNEL_F32
#define NR CONV_NR_F
#define WM 2
#define WNAME(s) conv_wino2_f_##s
#include "_winograd_impl.h"
#define WM 4
#define WNAME(s) conv_wino4_f_##s
#include "_winograd_impl.h"
#undef T
#undef V
#undef L
#undef LOADV
#undef STOREV
#undef PUTLANES
#undef TILE
#undef NR

#define T double
#define V conv_vf64
#define L CONV_LANES_F64
#define LOADV conv_load_f64
#define STOREV conv_store_f64
#define PUTLANES conv_put_lanes_f64
#define TILE CONV_UKERNEL_F64
#define NR CONV_NR_D
#define WM 2
#define WNAME(s) conv_wino2_d_##s
#include "_winograd_impl.h"
#define WM 4
#define WNAME(s) conv_wino4_d_##s
#include "_winograd_impl.h"
#undef T
#undef V
#undef L
#undef LOADV
#undef STOREV
#undef PUTLANES
#undef TILE
#undef NR

/* Tasks: nblk blocks of tiles x groups of gcot channel tiles. */
static ptrdiff_t conv_wino_ntask(const conv_wino_problem *p) {
    return p->nblk * ((p->ncot + p->gcot - 1) / p->gcot);
}

/* A task's shape (speed only; any shape gives the same results), from measurements of
 * ResNet-50's 3x3 layers at batch 1 and 8 on 2 threads:
 * - channel tiles a task: about CONV_WINO_GROUP_BYTES of output channels of a tile
 *   (256 float32 channels), split evenly: each input tile is transformed once per group,
 *   and a group's transformed weights stream once per block of tiles;
 * - tiles a task: as many as keep its scratch (transformed inputs and products) within
 *   CONV_WINO_SCRATCH bytes, at most 16 * CONV_MR: the more tiles, the more often each
 *   transformed weight streamed in is used;
 * - then, while there are fewer than 2 tasks a thread, halve the block, then the group;
 * - then the blocks are evened out, whole micro-kernel tiles (CONV_MR) each, and made
 *   more numerous until the tasks are a multiple of the threads: blocks of bt tiles left
 *   a short last one, and a thread with one block more than the other set the time (mid
 *   at batch 8: 1568 tiles in 16 blocks of 96 and one of 32, 17 tasks on 2 threads).
 *   Measured on Zen 3 (plans against PyTorch, paired, two alternations of the builds):
 *   mid float32 0.52-0.54x PyTorch's time -> 0.47-0.49x, float64 0.106-0.110 -> 0.101-0.102;
 *   (1,56,56,64) 0.46-0.49 -> 0.41-0.45; deep and (8,28,28,128) the same within the noise. */
#define CONV_WINO_GROUP_BYTES 1024
#define CONV_WINO_SCRATCH (2 * 1024 * 1024)
static void conv_wino_shape(conv_wino_problem *p, size_t elem, int threads) {
    const ptrdiff_t wt = (p->m + 2) * (p->m + 2);
    const ptrdiff_t tiles = conv_wino_tiles(p), units = (tiles + CONV_MR - 1) / CONV_MR;
    ptrdiff_t per, bt, groups, ncog, nblk;
    if (p->bt > 0 && p->gcot > 0) { /* set by the caller: blocks of bt tiles */
        p->unit = p->bt;
        p->nblk = (tiles + p->bt - 1) / p->bt;
        return;
    }
    p->gcot = (CONV_WINO_GROUP_BYTES / (ptrdiff_t)elem + p->nr - 1) / p->nr;
    groups = (p->ncot + p->gcot - 1) / p->gcot;
    p->gcot = (p->ncot + groups - 1) / groups;
    per = wt * (p->CI + p->gcot * p->nr) * (ptrdiff_t)elem;
    bt = (CONV_WINO_SCRATCH / per) / CONV_MR * CONV_MR;
    p->bt = bt < CONV_MR ? CONV_MR : bt > 16 * CONV_MR ? 16 * CONV_MR : bt;
    for (;;) {
        ncog = (p->ncot + p->gcot - 1) / p->gcot;
        if ((tiles + p->bt - 1) / p->bt * ncog >= 2 * (ptrdiff_t)threads) break;
        if (p->bt > CONV_MR) p->bt = (p->bt / 2 + CONV_MR - 1) / CONV_MR * CONV_MR;
        else if (p->gcot > 1) p->gcot = (p->gcot + 1) / 2;
        else break;
    }
    nblk = (tiles + p->bt - 1) / p->bt; /* = ceil(units / (bt / MR)): bt stays an upper bound */
    while (threads > 1 && nblk * ncog % threads != 0 && nblk < units) nblk++;
    p->unit = CONV_MR;
    p->nblk = nblk;
    p->bt = CONV_MR * ((units + nblk - 1) / nblk);
}

/* The drivers: p->m says which transform; p->nr must be the build's full tile width. */
#define CONV_WINO_DRIVER(NAME, T, NRW, F2, F4)                                             \
static void NAME(conv_wino_problem *p, int threads) {                                     \
    ptrdiff_t ntask;                                                                       \
    CONV_ASSERT(p->nr == (NRW) && (p->m == 2 || p->m == 4));                               \
    p->nonfinite = p->failed = 0;                                                          \
    if (p->N * p->OH * p->OW * p->CO == 0) return;                                         \
    conv_wino_shape(p, sizeof(T), threads);                                                \
    ntask = conv_wino_ntask(p);                                                            \
    conv_pool_run(threads, ntask, 1, p->m == 2 ? F2##_tasks : F4##_tasks, p);              \
}                                                                                          \
/* The weights-stationary order (p->w and p->vall set; p->u unused). */                   \
static void NAME##_ws(conv_wino_problem *p, int threads) {                                 \
    const ptrdiff_t ntile = conv_wino_tiles(p);                                            \
    CONV_ASSERT(p->nr == (NRW) && (p->m == 2 || p->m == 4) && p->w && p->vall);            \
    p->nonfinite = p->failed = 0;                                                          \
    if (p->N * p->OH * p->OW * p->CO == 0) return;                                         \
    p->bt = ntile;                                                                         \
    p->gcot = 1;                                                                           \
    conv_pool_run(threads, (ntile + CONV_MR - 1) / CONV_MR, 1,                             \
                  p->m == 2 ? F2##_input_tasks : F4##_input_tasks, p);                     \
    if (p->nonfinite) return;                                                              \
    conv_pool_run(threads, p->ncot, 1, p->m == 2 ? F2##_ws_tasks : F4##_ws_tasks, p);      \
}                                                                                          \
static void NAME##_weights(conv_wino_weights *p, int m, int threads) {                     \
    ptrdiff_t ntask = p->ncot * ((p->CI + CONV_WINO_CI_RUN - 1) / CONV_WINO_CI_RUN);       \
    p->nonfinite = 0;                                                                      \
    if (p->CI * p->ncot == 0) return;                                                      \
    conv_pool_run(threads, ntask, 1, m == 2 ? F2##_weight_tasks : F4##_weight_tasks, p);   \
}
CONV_WINO_DRIVER(conv_winograd_f, float, CONV_NR_F, conv_wino2_f, conv_wino4_f)
CONV_WINO_DRIVER(conv_winograd_d, double, CONV_NR_D, conv_wino2_d, conv_wino4_d)
#undef CONV_WINO_DRIVER

#endif /* CONV_WINOGRAD_H */
